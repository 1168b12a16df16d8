//! What a client shares with its threads: its state and listeners, metrics, the first error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::metadata::InstanceMetadata;
use super::query::QueryRouter;
use super::state_updater::StateUpdater;
use super::RestoreEvent;
use crate::metrics::MetricsRegistry;
use crate::error::StreamsError;

/// The client's lifecycle, as in Kafka Streams.
///
/// ```text
/// Created -> Rebalancing <-> Running -> PendingShutdown -> NotRunning
///                  \-----------\-------> PendingError -> Error
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Built, not started.
    Created,
    /// Joining the group, or restoring state.
    Rebalancing,
    /// Processing.
    Running,
    /// Closing.
    PendingShutdown,
    /// Closed.
    NotRunning,
    /// A thread failed; closing.
    PendingError,
    /// Stopped by an error.
    Error,
}

impl State {
    fn can_transition_to(self, next: State) -> bool {
        use State::*;
        matches!(
            (self, next),
            (Created, Rebalancing)
                | (Created, PendingShutdown)
                | (Rebalancing, Running)
                | (Rebalancing, PendingShutdown)
                | (Rebalancing, PendingError)
                | (Running, Rebalancing)
                | (Running, PendingShutdown)
                | (Running, PendingError)
                | (PendingShutdown, NotRunning)
                | (PendingError, Error)
        )
    }

    /// Whether the client is started and not shutting down.
    pub fn is_running_or_rebalancing(self) -> bool {
        matches!(self, State::Running | State::Rebalancing)
    }
}

/// What to do when a stream thread fails with an error its handlers did not absorb, as Kafka
/// Streams' `StreamsUncaughtExceptionHandler` responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamThreadExceptionResponse {
    /// Start the thread again with new clients; its tasks resume from their last commit.
    ReplaceThread,
    /// Stop every thread of this client; the client ends in [`State::Error`] (the default).
    ShutdownClient,
}

type StateListener = Box<dyn Fn(State, State) + Send>;
type UncaughtHandler = Box<dyn Fn(&StreamsError) -> StreamThreadExceptionResponse + Send>;
type RestoreListener = Box<dyn Fn(&RestoreEvent) + Send>;

/// State shared by the client and its threads.
pub(crate) struct ClientShared {
    pub(crate) application_id: String,
    /// `<application.id>-<process id>`: the prefix of the thread and client names, set at start.
    pub(crate) client_id: std::sync::OnceLock<String>,
    pub(super) state: Mutex<State>,
    pub(super) state_listener: Mutex<Option<StateListener>>,
    pub(super) restore_listener: Mutex<Option<RestoreListener>>,
    pub(super) uncaught_handler: Mutex<Option<UncaughtHandler>>,
    pub(super) rebalancing: Mutex<Vec<bool>>,
    pub(super) alive: Mutex<Vec<bool>>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) metrics: Arc<MetricsRegistry>,
    pub(super) error: Mutex<Option<StreamsError>>,
    /// Where each local task is, for interactive queries.
    pub(crate) router: QueryRouter,
    /// The group's instances and their endpoints (with `application.server`).
    pub(crate) metadata: InstanceMetadata,
    /// The state updater thread, started with the stream threads (a topology with logged stores).
    pub(crate) state_updater: std::sync::OnceLock<StateUpdater>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientShared {
    /// `<application.id>-<process id>` once started, else the application id.
    pub(crate) fn client_id(&self) -> &str {
        self.client_id.get().map_or(&self.application_id, String::as_str)
    }

    /// The client's state.
    pub(crate) fn state(&self) -> State {
        *lock(&self.state)
    }

    pub(super) fn set_state(&self, next: State) -> bool {
        let mut state = lock(&self.state);
        let previous = *state;
        if previous == next || !previous.can_transition_to(next) {
            return false;
        }
        *state = next;
        drop(state);
        tracing::info!(from = ?previous, to = ?next, "client state");
        if let Some(listener) = lock(&self.state_listener).as_ref() {
            listener(next, previous);
        }
        true
    }

    pub(crate) fn thread_rebalancing(&self, thread: usize, rebalancing: bool) {
        let any = {
            let mut flags = lock(&self.rebalancing);
            flags[thread] = rebalancing;
            flags.iter().any(|f| *f)
        };
        self.set_state(if any { State::Rebalancing } else { State::Running });
    }

    pub(crate) fn on_restore(&self, event: &RestoreEvent) {
        if let Some(listener) = lock(&self.restore_listener).as_ref() {
            listener(event);
        }
    }

    /// The uncaught-exception handler's response to a thread's error.
    pub(crate) fn on_uncaught(&self, error: &StreamsError) -> StreamThreadExceptionResponse {
        match lock(&self.uncaught_handler).as_ref() {
            Some(handler) => handler(error),
            None => StreamThreadExceptionResponse::ShutdownClient,
        }
    }

    pub(crate) fn fail(&self, error: StreamsError) {
        lock(&self.error).get_or_insert(error);
        self.set_state(State::PendingError);
        self.shutdown.store(true, Ordering::Release);
    }

    /// How many stream threads are alive.
    pub(crate) fn alive_threads(&self) -> usize {
        lock(&self.alive).iter().filter(|a| **a).count()
    }

    pub(crate) fn thread_stopped(&self, thread: usize) {
        let all_stopped = {
            let mut alive = lock(&self.alive);
            alive[thread] = false;
            alive.iter().all(|a| !a)
        };
        if all_stopped && *lock(&self.state) == State::PendingError {
            self.set_state(State::Error);
        }
    }
}

//! The Kafka runtime: [`KafkaStreams`] runs a topology on a cluster with N stream threads,
//! internal topics, changelog-backed stores and restoration after rebalances.

mod changelog_reader;
mod checkpoint;
mod collector;
mod global_thread;
pub mod embedded;
pub mod test_utils;
mod state_directory;
mod stream_thread;
mod task_manager;
mod topics;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use changelog_reader::RestoreEvent;
pub use checkpoint::{OffsetCheckpoint, Offsets};
pub use state_directory::{StateDirLock, StateDirectory, TaskDirLock};

use crate::config::{Settings, StreamsConfig};
use crate::error::{Result, StreamsError};
use crate::state::GlobalStores;
use crate::topology::Topology;
use global_thread::GlobalStreamThread;

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

/// Counters of a running client.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Metrics {
    /// Records processed by all tasks.
    pub processed_records: AtomicU64,
    /// Changelog records restored into stores.
    pub restored_records: AtomicU64,
    /// Commits done.
    pub commits: AtomicU64,
    /// Records processed while an input partition of their task was empty, after the task had
    /// waited `max.task.idle.ms` for it (Kafka Streams' `enforced-processing`).
    pub enforced_processing: AtomicU64,
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
    state: Mutex<State>,
    state_listener: Mutex<Option<StateListener>>,
    restore_listener: Mutex<Option<RestoreListener>>,
    uncaught_handler: Mutex<Option<UncaughtHandler>>,
    rebalancing: Mutex<Vec<bool>>,
    alive: Mutex<Vec<bool>>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) metrics: Metrics,
    error: Mutex<Option<StreamsError>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ClientShared {
    fn set_state(&self, next: State) -> bool {
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
        self.metrics.restored_records.fetch_add(event.restored, Ordering::Relaxed);
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

/// Runs a [`Topology`] against a Kafka cluster.
///
/// ```no_run
/// # use streams_core::{KafkaStreams, StreamsConfig, Topology};
/// # fn run(topology: Topology) -> streams_core::Result<()> {
/// let config = StreamsConfig::new()
///     .with(StreamsConfig::APPLICATION_ID, "word-count")
///     .with(StreamsConfig::BOOTSTRAP_SERVERS, "localhost:9092");
/// let mut streams = KafkaStreams::new(topology, config)?;
/// streams.start()?;
/// // ...
/// streams.close(std::time::Duration::from_secs(30));
/// # Ok(()) }
/// ```
pub struct KafkaStreams {
    topology: Arc<Topology>,
    settings: Arc<Settings>,
    shared: Arc<ClientShared>,
    threads: Vec<JoinHandle<()>>,
    /// This instance's lock on `<state.dir>/<application.id>`, from start to close.
    state_lock: Option<state_directory::StateDirLock>,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams").field("application_id", &self.shared.application_id).field("state", &self.state()).finish()
    }
}

impl KafkaStreams {
    /// A client for `topology`; `application.id` and `bootstrap.servers` are required.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        topology.validate()?;
        let settings = config.settings(None)?;
        if settings.bootstrap_servers.is_none() {
            return Err(StreamsError::Config { key: StreamsConfig::BOOTSTRAP_SERVERS.into(), message: "required".into() });
        }
        let (application_id, threads) = (settings.application_id.clone(), settings.num_stream_threads);
        Ok(KafkaStreams {
            topology: Arc::new(topology),
            settings: Arc::new(settings),
            shared: Arc::new(ClientShared {
                application_id,
                state: Mutex::new(State::Created),
                state_listener: Mutex::new(None),
                restore_listener: Mutex::new(None),
                uncaught_handler: Mutex::new(None),
                rebalancing: Mutex::new(vec![false; threads]),
                alive: Mutex::new(vec![false; threads]),
                shutdown: AtomicBool::new(false),
                metrics: Metrics::default(),
                error: Mutex::new(None),
            }),
            threads: Vec::new(),
            state_lock: None,
        })
    }

    /// Called with `(new, old)` on each state change.
    pub fn set_state_listener(&self, listener: impl Fn(State, State) + Send + 'static) {
        *lock(&self.shared.state_listener) = Some(Box::new(listener));
    }

    /// Called after each store restoration.
    pub fn set_restore_listener(&self, listener: impl Fn(&RestoreEvent) + Send + 'static) {
        *lock(&self.shared.restore_listener) = Some(Box::new(listener));
    }

    /// Decides what happens when a stream thread fails (default: shut the client down).
    ///
    /// ```no_run
    /// # use streams_core::{KafkaStreams, StreamThreadExceptionResponse};
    /// # fn f(streams: &KafkaStreams) {
    /// streams.set_uncaught_exception_handler(|error| {
    ///     eprintln!("stream thread failed: {error}");
    ///     StreamThreadExceptionResponse::ReplaceThread
    /// });
    /// # }
    /// ```
    pub fn set_uncaught_exception_handler(
        &self,
        handler: impl Fn(&StreamsError) -> StreamThreadExceptionResponse + Send + 'static,
    ) {
        *lock(&self.shared.uncaught_handler) = Some(Box::new(handler));
    }

    /// The current state.
    pub fn state(&self) -> State {
        *lock(&self.shared.state)
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The error that stopped the client, if any.
    pub fn take_error(&self) -> Option<StreamsError> {
        lock(&self.shared.error).take()
    }

    /// Checks source topics, creates internal topics, and starts the stream threads.
    pub fn start(&mut self) -> Result<()> {
        if self.state() != State::Created {
            return Err(StreamsError::IllegalState(format!("cannot start a client in state {:?}", self.state())));
        }
        // One instance per state directory: a second one would share (and corrupt) its stores.
        let state_dir = StateDirectory::new(&self.settings.state_dir, &self.shared.application_id)?;
        self.state_lock = Some(state_dir.lock_instance()?);
        // Created once here, before the threads that name their transactional producers by it.
        state_dir.process_id();
        let started = self.start_threads();
        if started.is_err() && self.threads.is_empty() {
            self.state_lock = None;
        }
        started
    }

    fn start_threads(&mut self) -> Result<()> {
        let admin = self.settings.client_config("admin.", &[]);
        let dead_letter_queue = self.settings.dead_letter_queue_topic.clone();
        topics::setup(
            &self.topology,
            &self.shared.application_id,
            &admin,
            self.settings.replication_factor,
            dead_letter_queue.as_deref(),
            Duration::from_secs(30),
        )?;
        // Global stores are complete before any task processes a record.
        let global_consumer = self.settings.client_config(
            "global.consumer.",
            &[("client.id", format!("{}-GlobalStreamThread-consumer", self.shared.application_id))],
        );
        let app_dir = self.settings.state_dir.join(&self.shared.application_id);
        let global = match GlobalStreamThread::new(&self.topology, &global_consumer, &app_dir, self.settings.commit_interval)? {
            Some((mut thread, stores)) => {
                thread.bootstrap(Duration::from_secs(300))?;
                let name = format!("{}-GlobalStreamThread", self.shared.application_id);
                self.threads.push(thread.spawn(name, self.shared.clone())?);
                stores
            }
            None => GlobalStores::default(),
        };
        self.shared.set_state(State::Rebalancing);
        let threads = self.settings.num_stream_threads;
        *lock(&self.shared.rebalancing) = vec![true; threads];
        *lock(&self.shared.alive) = vec![true; threads];
        for index in 0..threads {
            let (topology, settings, shared) = (self.topology.clone(), self.settings.clone(), self.shared.clone());
            let global = global.clone();
            let name = format!("{}-StreamThread-{}", self.shared.application_id, index + 1);
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || stream_thread::run(index, topology, settings, shared, global))
                .map_err(|e| StreamsError::io("a stream thread (spawn)", e))?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// Waits until the client is `Running` (or stopped), at most `timeout`; returns the state.
    pub fn wait_until_running(&self, timeout: Duration) -> State {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.state() {
                State::Rebalancing | State::Created => std::thread::sleep(Duration::from_millis(20)),
                other => return other,
            }
        }
        self.state()
    }

    /// Stops the threads: each commits, writes checkpoints and leaves the group. Returns
    /// whether all stopped within `timeout`.
    pub fn close(&mut self, timeout: Duration) -> bool {
        self.shared.set_state(State::PendingShutdown);
        self.shared.shutdown.store(true, Ordering::Release);
        let deadline = Instant::now() + timeout;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let all = self.threads.iter().all(JoinHandle::is_finished);
        if all {
            for handle in self.threads.drain(..) {
                let _ = handle.join();
            }
            self.shared.set_state(State::NotRunning);
            self.state_lock = None;
        }
        all
    }

    /// Deletes this application's local state (`<state.dir>/<application.id>`); only before start or after close.
    pub fn cleanup(&self) -> Result<()> {
        if self.state().is_running_or_rebalancing() {
            return Err(StreamsError::IllegalState("cleanup() needs a client that is not running".into()));
        }
        StateDirectory::new(&self.settings.state_dir, &self.shared.application_id)?.clean()
    }
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.close(Duration::from_secs(60));
        }
    }
}

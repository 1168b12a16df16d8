//! [`KafkaStreams`], the client that runs a topology on a cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::global_thread::GlobalStreamThread;
use super::shared::{lock, ClientShared, Metrics, State, StreamThreadExceptionResponse};
use super::{state_directory, stream_thread, topics, RestoreEvent, StateDirectory};
use crate::config::{Settings, StreamsConfig};
use crate::error::{Result, StreamsError};
use crate::state::GlobalStores;
use crate::topology::Topology;

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

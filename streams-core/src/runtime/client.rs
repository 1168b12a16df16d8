//! [`KafkaStreams`], the client that runs a topology on a cluster.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::global_thread::GlobalStreamThread;
use super::metadata::{metadata_topic, MetadataThread};
use super::shared::{lock, ClientShared, State, StreamThreadExceptionResponse};
use super::state_updater::StateUpdater;
use super::{state_directory, stream_thread, topics, RestoreEvent, StateDirectory};
use crate::config::{GroupProtocol, Settings, StreamsConfig};
use crate::error::{InvalidStateStoreReason, Result, StreamsError};
use crate::metrics::{MetricsRegistry, MetricsSnapshot};
use crate::query::sealed::StoreHandle;
use crate::query::{KeyQueryMetadata, QueryableStoreType, StoreQueryParameters, StreamsMetadata};
use crate::record::default_partition;
use crate::serdes::Serde;
use crate::state::changelog_topic;
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
    /// Tasks (partitions) per sub-topology, known once started.
    partition_counts: std::collections::BTreeMap<u32, i32>,
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
        let client_id = application_id.clone();
        let debug_metrics = settings.debug_metrics;
        Ok(KafkaStreams {
            topology: Arc::new(topology),
            settings: Arc::new(settings),
            shared: Arc::new(ClientShared {
                application_id,
                client_id: Default::default(),
                state: Mutex::new(State::Created),
                state_listener: Mutex::new(None),
                restore_listener: Mutex::new(None),
                uncaught_handler: Mutex::new(None),
                rebalancing: Mutex::new(vec![false; threads]),
                alive: Mutex::new(vec![false; threads]),
                shutdown: AtomicBool::new(false),
                metrics: Arc::new(MetricsRegistry::new(client_id, debug_metrics)),
                error: Mutex::new(None),
                router: Default::default(),
                metadata: Default::default(),
                state_updater: Default::default(),
            }),
            threads: Vec::new(),
            state_lock: None,
            partition_counts: Default::default(),
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

    /// Every metric of this client now, with Kafka Streams' names (see [`metrics`](crate::metrics));
    /// [`MetricsSnapshot::to_prometheus`] renders them for a scrape.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot(self.state(), self.shared.alive_threads())
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
        // Created once here, before the threads that name their transactional producers by it
        // and their clients (as Kafka Streams: `<application.id>-<process id>-StreamThread-<n>`,
        // which is how instance metadata tells the group's members apart).
        let process_id = state_dir.process_id();
        let _ = self.shared.client_id.set(format!("{}-{process_id}", self.shared.application_id));
        let started = self.start_threads(&process_id);
        if started.is_err() && self.threads.is_empty() {
            self.state_lock = None;
        }
        started
    }

    fn start_threads(&mut self, process_id: &str) -> Result<()> {
        let admin = self.settings.client_config("admin.", &[]);
        let dead_letter_queue = self.settings.dead_letter_queue_topic.clone();
        // Instance metadata serves queries (`application.server`) and standby placement.
        let with_metadata = self.settings.application_server.is_some() || self.settings.num_standby_replicas > 0;
        let metadata_topic = with_metadata.then(|| metadata_topic(&self.shared.application_id));
        if self.topology.has_source_patterns() {
            let resolved = topics::resolve_source_patterns(&self.topology, &self.shared.application_id, &admin, Duration::from_secs(30))?;
            self.topology = Arc::new(resolved);
        }
        let counts = topics::setup(
            &self.topology,
            &self.shared.application_id,
            &admin,
            self.settings.replication_factor,
            dead_letter_queue.as_deref(),
            metadata_topic.as_deref(),
            Duration::from_secs(30),
        )?;
        self.partition_counts = counts.tasks;
        if with_metadata {
            let server = &self.settings.application_server;
            let app = &self.shared.application_id;
            let mut consumer = self.settings.client_config(
                "consumer.",
                &[
                    ("client.id", format!("{app}-{process_id}-metadata-consumer")),
                    // Never joins: the topic is assigned, not subscribed, and nothing is committed.
                    ("group.id", format!("{app}-{process_id}-metadata")),
                    ("enable.auto.commit", "false".into()),
                    ("enable.partition.eof", "false".into()),
                ],
            );
            for key in ["group.instance.id", "isolation.level"] {
                consumer.remove(key);
            }
            let producer = self.settings.client_config("producer.", &[("client.id", format!("{app}-{process_id}-metadata-producer"))]);
            let from_claims = self.settings.group_protocol == GroupProtocol::Consumer;
            let thread = MetadataThread::new(app, process_id, server.clone(), &consumer, &producer, from_claims, &self.shared.metadata)?;
            self.threads.push(thread.spawn(format!("{app}-MetadataThread"), self.shared.clone())?);
        }
        // Global stores are complete before any task processes a record.
        let global_consumer = self.settings.client_config(
            "global.consumer.",
            &[("client.id", format!("{}-GlobalStreamThread-consumer", self.shared.client_id()))],
        );
        let app_dir = self.settings.state_dir.join(&self.shared.application_id);
        let global = match GlobalStreamThread::new(&self.topology, &global_consumer, &app_dir, &self.settings)? {
            Some((mut thread, stores)) => {
                thread.bootstrap(Duration::from_secs(300))?;
                let name = format!("{}-GlobalStreamThread", self.shared.application_id);
                self.threads.push(thread.spawn(name, self.shared.clone())?);
                stores
            }
            None => GlobalStores::default(),
        };
        if self.topology.stores.values().any(|b| b.logging_enabled()) {
            let name = format!("{}-StateUpdater-1", self.shared.client_id());
            let (updater, handle) = StateUpdater::spawn(name, self.topology.clone(), &self.settings, self.shared.clone())?;
            self.threads.push(handle);
            let _ = self.shared.state_updater.set(updater);
        }
        self.shared.set_state(State::Rebalancing);
        let threads = self.settings.num_stream_threads;
        *lock(&self.shared.rebalancing) = vec![true; threads];
        *lock(&self.shared.alive) = vec![true; threads];
        for index in 0..threads {
            let (topology, settings, shared) = (self.topology.clone(), self.settings.clone(), self.shared.clone());
            let global = global.clone();
            let name = format!("{}-StreamThread-{}", self.shared.client_id(), index + 1);
            let handle = std::thread::Builder::new()
                .name(name)
                .spawn(move || stream_thread::run(index, topology, settings, shared, global))
                .map_err(|e| StreamsError::io("a stream thread (spawn)", e))?;
            self.threads.push(handle);
        }
        Ok(())
    }

    /// A read-only view of a state store over this instance's tasks (Kafka Streams'
    /// `KafkaStreams#store`); see [`query`](crate::query).
    ///
    /// Fails with [`StreamsError::InvalidStateStore`]: unknown store or type (not retriable),
    /// client not started or no queryable local task of the store (retriable).
    pub fn store<T: QueryableStoreType>(&self, params: StoreQueryParameters<T>) -> Result<T::Store> {
        let name = params.store_name();
        let unknown = |message: String| StreamsError::invalid_store(name, InvalidStateStoreReason::UnknownStore, message);
        let builder = self.topology.stores.get(name).ok_or_else(|| unknown("no such store in the topology".into()))?;
        let store_type = sealed_type(&params);
        if !store_type.accepts(&builder.type_name()) {
            return Err(unknown(format!("it is a {}, which {store_type:?} cannot read", builder.type_name())));
        }
        let sub = self.store_subtopology(name)?;
        if let (Some(p), Some(n)) = (params.partition(), self.partition_counts.get(&sub)) {
            if p < 0 || p >= *n {
                return Err(StreamsError::invalid_store(
                    name,
                    InvalidStateStoreReason::UnknownPartition,
                    format!("partition {p} does not exist: the store has {n}"),
                ));
            }
        }
        let handle = StoreHandle::new(&params, changelog_topic(&self.shared.application_id, name), sub, self.shared.clone());
        // A first check now, as Kafka Streams does: a store that is not here fails at once.
        handle.check()?;
        Ok(store_type.create(handle))
    }

    fn store_subtopology(&self, store: &str) -> Result<u32> {
        self.topology
            .subtopologies()
            .into_iter()
            .find(|s| s.stores.iter().any(|n| n == store))
            .map(|s| s.id)
            .ok_or_else(|| StreamsError::invalid_store(store, InvalidStateStoreReason::UnknownStore, "no processor uses it"))
    }

    /// Where to query `key` of `store` (Kafka Streams' `queryMetadataForKey`): the instance
    /// with the active task of the key's partition (by the default partitioner over the key
    /// serialized with `serializer`), its standbys, and the partition. Needs
    /// `application.server`; retriable [`StreamsError::MetadataUnavailable`] while the group
    /// rebalances.
    pub fn query_metadata_for_key<K: 'static>(&self, store: &str, key: &K, serializer: &dyn Serde<K>) -> Result<KeyQueryMetadata> {
        let sub = self.store_subtopology(store)?;
        let partitions = *self.partition_counts.get(&sub).ok_or_else(|| {
            StreamsError::invalid_store(store, InvalidStateStoreReason::NotStarted, "the client has not started")
        })?;
        let topic = changelog_topic(&self.shared.application_id, store);
        let bytes = serializer
            .serialize(&topic, key)
            .map_err(|e| StreamsError::serde(format!("the key of a metadata query of store `{store}`"), e))?
            .unwrap_or_default();
        let partition = default_partition(&bytes, partitions);
        let sources = self.source_topics_of(sub);
        let all = self.metadata_for_all_streams_clients()?;
        let holds = |partitions: &std::collections::BTreeSet<(String, i32)>| {
            partitions.iter().any(|(t, p)| *p == partition && sources.contains(t))
        };
        let standby_hosts = all.iter().filter(|m| holds(&m.standby_topic_partitions)).map(|m| m.host_info.clone()).collect();
        match all.into_iter().find(|m| holds(&m.topic_partitions)) {
            Some(owner) => Ok(KeyQueryMetadata { active_host: owner.host_info, standby_hosts, partition }),
            None => Err(StreamsError::MetadataUnavailable(format!("no instance holds partition {partition} of store `{store}` yet"))),
        }
    }

    /// Every instance of the application with its endpoint, stores and partitions (Kafka
    /// Streams' `metadataForAllStreamsClients`). Needs `application.server`; retriable
    /// [`StreamsError::MetadataUnavailable`] while the group rebalances.
    pub fn metadata_for_all_streams_clients(&self) -> Result<Vec<StreamsMetadata>> {
        if self.settings.application_server.is_none() {
            return Err(StreamsError::Config {
                key: StreamsConfig::APPLICATION_SERVER.into(),
                message: "instance metadata needs this instance's host:port".into(),
            });
        }
        let app = &self.shared.application_id;
        let subs = self.topology.subtopologies();
        let stores_of = |sub: &crate::topology::Subtopology| -> Vec<String> {
            sub.stores.iter().filter(|n| self.topology.stores.contains_key(*n)).cloned().collect()
        };
        let mut all = self.shared.metadata.instances(|topic| {
            subs.iter().filter(|s| s.source_topics.iter().any(|t| t.resolve(app) == topic)).flat_map(stores_of).collect()
        })?;
        // Standbys as every instance plans them from the same view of the group.
        let replicas = self.settings.num_standby_replicas;
        if let Some(members) = self.shared.metadata.plan_members(app).filter(|_| replicas > 0) {
            let task_of = |topic: &str, p: i32| {
                subs.iter()
                    .find(|s| !s.stores.is_empty() && s.source_topics.iter().any(|t| t.resolve(app) == topic))
                    .map(|s| crate::record::TaskId::new(s.id, p))
            };
            for (key, tasks) in super::standby::plan(&members, replicas, task_of) {
                let Some(process) = members.iter().find(|m| m.key == key).map(|m| &m.process) else { continue };
                let Some(instance) = all.iter_mut().find(|m| &m.process_id == process) else { continue };
                for task in tasks {
                    let sub = &subs[task.subtopology as usize];
                    instance.standby_state_store_names.extend(stores_of(sub));
                    instance.standby_topic_partitions.extend(sub.source_topics.iter().map(|t| (t.resolve(app), task.partition)));
                }
            }
        }
        Ok(all)
    }

    /// The instances whose active tasks hold `store` (Kafka Streams' `streamsMetadataForStore`).
    pub fn streams_metadata_for_store(&self, store: &str) -> Result<Vec<StreamsMetadata>> {
        self.store_subtopology(store)?;
        Ok(self.metadata_for_all_streams_clients()?.into_iter().filter(|m| m.state_store_names.contains(store)).collect())
    }

    fn source_topics_of(&self, sub: u32) -> Vec<String> {
        let app = &self.shared.application_id;
        self.topology
            .subtopologies()
            .into_iter()
            .filter(|s| s.id == sub)
            .flat_map(|s| s.source_topics.iter().map(|t| t.resolve(app)).collect::<Vec<_>>())
            .collect()
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

/// The store type of a query's parameters.
fn sealed_type<T: QueryableStoreType>(params: &StoreQueryParameters<T>) -> &T {
    params.store_type()
}

impl Drop for KafkaStreams {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.close(Duration::from_secs(60));
        }
    }
}

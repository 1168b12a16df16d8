//! `TopologyTestDriver`: runs a topology's real `StreamTask`s synchronously, without a broker.
//!
//! Topics live in memory. Unlike Kafka Streams' driver, an input topic may have several
//! partitions (a keyed record goes where Kafka's default partitioner puts it), and records
//! written to repartition topics are routed to the tasks that read them, so repartitioning
//! and multi-task topologies are testable.
//!
//! As in Kafka Streams' driver, every piped record is processed at once and followed by a
//! commit, which flushes the record caches, and so is every wall-clock advance: a cache still
//! merges the updates one record causes to a key and sets the timestamps, but holds nothing
//! between records. Records written to repartition topics are processed one at a time, each
//! followed by a commit, earliest first.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};


use crate::collector::RecordCollector;
use crate::config::StreamsConfig;
use crate::error::{Result, StreamsError};
use crate::record::{default_partition, ConsumerRecord, Headers, ProducerRecord, TaskId};
use crate::serdes::{Serde, SerdeRef};
use crate::state::{
    GlobalBytesStore, GlobalKeyValueStore, KeyValueStore, SessionStore, ThreadCache, TimestampedKeyValueStore,
    VersionedKeyValueStore, WindowStore,
};
use crate::processor::context::TaskMetrics;
use crate::task::{StreamTask, TaskEnv};
use crate::topology::{neither_broker_nor_internal, InternalTopologyBuilder, SourcePattern, Topology};
use crate::topic::{topic_entry, TopicMap};

/// A record read from or piped into a test topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord<K, V> {
    /// Key.
    pub key: K,
    /// Value.
    pub value: V,
    /// Timestamp in milliseconds.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
    /// Partition it was written to.
    pub partition: i32,
}

/// In-memory topics: the log of every topic and where each reader stands. Every record piped
/// or written passes through [`append`](Topics::append), so its maps hash with foldhash and
/// look a topic up by `&str` before they allocate its name.
#[derive(Default)]
struct Topics {
    partitions: TopicMap<i32>,
    logs: TopicMap<Vec<ConsumerRecord>>,
    read_positions: TopicMap<usize>,
    /// By topic, the next offset of each partition.
    next_offsets: TopicMap<Vec<i64>>,
    round_robin: TopicMap<i32>,
    /// Records written to topics that a sub-topology reads, waiting to be routed.
    pending: VecDeque<ConsumerRecord>,
    /// Topics the topology wrote to (outputs, repartition topics, changelogs).
    produced: BTreeSet<String>,
    source_topics: TopicMap<u32>,
}

impl Topics {
    fn partitions_of(&self, topic: &str) -> i32 {
        self.partitions.get(topic).copied().unwrap_or(1)
    }

    /// Appends a record to its topic. Records the topology wrote are kept for the output
    /// topics (`keep`); piped input records only pass through, as in Kafka Streams' driver, so
    /// a long test holds no copy of its input.
    fn append(&mut self, record: ProducerRecord, keep: bool) -> Result<()> {
        let n = self.partitions_of(&record.topic);
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if (0..n).contains(&p) => p,
            // What the producer reports for a partition the topic does not have.
            (Some(p), _) => {
                return Err(StreamsError::Send {
                    topic: format!("{}-{p}", record.topic),
                    source: rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::UnknownPartition),
                })
            }
            (None, Some(key)) => default_partition(key, n),
            (None, None) => {
                let next = topic_entry(&mut self.round_robin, &record.topic);
                *next = (*next + 1) % n;
                *next
            }
        };
        let offsets = topic_entry(&mut self.next_offsets, &record.topic);
        if offsets.len() <= partition as usize {
            offsets.resize(partition as usize + 1, 0);
        }
        let offset = &mut offsets[partition as usize];
        let consumed = ConsumerRecord {
            topic: record.topic,
            partition,
            offset: *offset,
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        };
        *offset += 1;
        let routed = self.source_topics.contains_key(&*consumed.topic);
        match (keep, routed) {
            (true, true) => {
                topic_entry(&mut self.logs, &consumed.topic).push(consumed.clone());
                self.pending.push_back(consumed);
            }
            (true, false) => topic_entry(&mut self.logs, &consumed.topic).push(consumed),
            (false, true) => self.pending.push_back(consumed),
            (false, false) => {}
        }
        Ok(())
    }
}

struct DriverCollector(Rc<RefCell<Topics>>);

impl RecordCollector for DriverCollector {
    fn send(&mut self, record: ProducerRecord) -> Result<()> {
        let mut topics = self.0.borrow_mut();
        if !topics.produced.contains(&*record.topic) {
            topics.produced.insert(record.topic.to_string());
        }
        topics.append(record, true)
    }
    fn partitions(&mut self, topic: &str) -> Result<i32> {
        Ok(self.0.borrow().partitions_of(topic))
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}

struct DriverInner {
    topics: Rc<RefCell<Topics>>,
    /// Global stores by the topic they copy.
    globals: HashMap<String, Arc<dyn GlobalBytesStore>>,
    /// The global stores' names.
    global_names: Vec<String>,
    tasks: BTreeMap<TaskId, StreamTask>,
    /// Pattern sources (node index, sub-topology, pattern): piped topics they match become
    /// inputs of their sub-topology's tasks.
    patterns: Vec<(usize, u32, SourcePattern)>,
    application_id: String,
    wall_clock_ms: i64,
    closed: bool,
    _state_dir: tempfile::TempDir,
}

impl DriverInner {
    /// Processes until every queue is empty, one record at a time, each followed by a commit
    /// (as Kafka Streams' driver does): caches flush after every record, and what they and the
    /// record wrote to repartition topics queues behind it. The next record is the earliest
    /// queued one of any task (Kafka Streams' driver runs one task whose partition group picks
    /// the earliest head).
    fn run(&mut self) -> Result<()> {
        loop {
            self.route();
            let mut next = None;
            for (id, task) in &mut self.tasks {
                if let Some(ts) = task.next_timestamp()? {
                    if next.is_none_or(|n| (ts, *id) < n) {
                        next = Some((ts, *id));
                    }
                }
            }
            let Some((_, id)) = next else { return Ok(()) };
            let wall_clock_ms = self.wall_clock_ms;
            if !self.tasks.get_mut(&id).expect("a task of the driver").process(wall_clock_ms)? {
                return Ok(());
            }
            self.flush_caches()?;
        }
    }

    fn route(&mut self) {
        let mut topics = self.topics.borrow_mut();
        while let Some(record) = topics.pending.pop_front() {
            let subtopology = topics.source_topics[&*record.topic];
            if let Some(task) = self.tasks.get_mut(&TaskId::new(subtopology, record.partition)) {
                task.add_records([record]);
            }
        }
    }

    /// A commit without durability: processors flush and caches forward what they hold.
    fn flush_caches(&mut self) -> Result<()> {
        for task in self.tasks.values_mut() {
            task.flush_processors()?;
        }
        Ok(())
    }

    /// A full commit: caches flush, what they forward is processed, and stores flush.
    fn commit(&mut self) -> Result<()> {
        self.flush_caches()?;
        self.run()?;
        for task in self.tasks.values_mut() {
            task.flush()?;
        }
        Ok(())
    }

    fn pipe(&mut self, record: ProducerRecord) -> Result<()> {
        if self.closed {
            return Err(StreamsError::IllegalState("the test driver is closed".into()));
        }
        if let Some(global) = self.globals.get(&*record.topic) {
            // A global topic goes straight into its store, as the global thread would put it.
            let (key, value) = (record.key.clone(), record.value.clone());
            self.topics.borrow_mut().append(record, false)?;
            if let Some(key) = &key {
                global.put(key, value.as_deref())?;
            }
            return Ok(());
        }
        if !self.topics.borrow().source_topics.contains_key(&*record.topic) {
            self.match_pattern(&record.topic)?;
        }
        self.topics.borrow_mut().append(record, false)?;
        self.run()
    }

    /// Makes `topic` an input of the pattern source that matches it, as Kafka Streams' driver
    /// routes a piped topic that matches a source pattern.
    fn match_pattern(&mut self, topic: &str) -> Result<()> {
        // Global topics never get here: `pipe` writes them to their stores.
        let candidate = neither_broker_nor_internal(&self.application_id, topic);
        let mut matching = self.patterns.iter().filter(|(_, _, p)| candidate && p.matches(topic));
        let Some(&(node, subtopology, _)) = matching.next() else {
            return Err(StreamsError::Topology(format!("unknown input topic `{topic}`: no source reads it")));
        };
        if let Some((_, _, other)) = matching.next() {
            return Err(StreamsError::Topology(format!("topic `{topic}` matches more than one source pattern (also `{other}`)")));
        }
        for task in self.tasks.values_mut().filter(|t| t.id().subtopology == subtopology) {
            task.add_pattern_topic(node, topic);
        }
        self.topics.borrow_mut().source_topics.insert(topic.to_string(), subtopology);
        Ok(())
    }
}

/// Runs a [`Topology`] with real tasks and stores, synchronously and without a broker.
pub struct TopologyTestDriver {
    inner: Rc<RefCell<DriverInner>>,
    application_id: String,
}

impl std::fmt::Debug for TopologyTestDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyTestDriver").field("application_id", &self.application_id).finish()
    }
}

impl TopologyTestDriver {
    /// A driver where every topic has one partition.
    pub fn new(topology: Topology, config: StreamsConfig) -> Result<Self> {
        Self::with_partitions(topology, config, &[])
    }

    /// A driver with the given partition counts for input topics (others have one).
    /// Repartition topics get the largest partition count of the sub-topology that writes them.
    ///
    /// A pattern source reads the topics listed here that its pattern matches, and any other
    /// matching topic (of one partition) once records are piped into it.
    pub fn with_partitions(topology: Topology, config: StreamsConfig, partitions: &[(&str, i32)]) -> Result<Self> {
        topology.validate()?;
        let settings = config.settings(Some("topology-test-driver"))?;
        let application_id = settings.application_id.clone();
        let topology = topology.with_pattern_topics(&application_id, partitions.iter().map(|(t, _)| *t), false)?;
        // A directory of its own, removed on drop, under `state.dir` (the system's temporary
        // directory by default).
        std::fs::create_dir_all(&settings.state_dir).map_err(|e| StreamsError::io(&settings.state_dir, e))?;
        let state_dir = tempfile::Builder::new()
            .prefix("streams-test-driver-")
            .tempdir_in(&settings.state_dir)
            .map_err(|e| StreamsError::io(&settings.state_dir, e))?;
        let mut topics = Topics::default();
        for (topic, n) in partitions {
            if *n < 1 {
                return Err(StreamsError::Config {
                    key: format!("partitions of {topic}"),
                    message: "must be at least 1".into(),
                });
            }
            topics.partitions.insert(topic.to_string(), *n);
        }
        let subtopologies = topology.subtopologies();
        let patterns = topology
            .source_patterns()
            .map(|(node, pattern)| {
                let sub = subtopologies.iter().find(|s| s.nodes.contains(&node)).expect("every node is in a sub-topology");
                (node, sub.id, pattern.clone())
            })
            .collect();
        topology.check_copartitioning(&application_id, |t| topics.partitions_of(t))?;
        let counts = topology.partition_counts(&application_id, |t| topics.partitions_of(t));
        topics.partitions.extend(counts.repartition_topics.clone());
        topics.partitions.extend(counts.changelog_topics.clone());
        for sub in &subtopologies {
            for topic in &sub.source_topics {
                topics.source_topics.insert(topic.resolve(&application_id), sub.id);
            }
        }
        let topics = Rc::new(RefCell::new(topics));
        let global_dir = state_dir.path().join(&application_id).join("global");
        let mut globals = HashMap::new();
        let mut global_stores = BTreeMap::new();
        for spec in topology.global_stores() {
            let store = spec.open(&global_dir, &settings.rocksdb_config)?;
            globals.insert(spec.topic.clone(), store.clone());
            global_stores.insert(spec.name.clone(), store);
        }
        let global_names = global_stores.keys().cloned().collect();
        let env = TaskEnv {
            application_id: application_id.clone(),
            app_dir: state_dir.path().join(&application_id),
            collector: Rc::new(RefCell::new(DriverCollector(topics.clone()))),
            thread_cache: Rc::new(RefCell::new(ThreadCache::new(settings.cache_max_bytes))),
            deserialization_handler: settings.handlers.deserialization.clone(),
            processing_handler: settings.handlers.processing.clone(),
            timestamp_extractor: settings.timestamp_extractor,
            global_stores: Arc::new(global_stores),
            exactly_once: false,
            // Each piped record is processed at once: there is no fetch to wait for.
            max_task_idle_ms: -1,
            metrics: None,
            rocksdb_config: settings.rocksdb_config.clone(),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let mut tasks = BTreeMap::new();
        for sub in &subtopologies {
            for partition in 0..counts.tasks[&sub.id] {
                let mut task = StreamTask::new(&topology, sub, partition, &env, now)?;
                task.transition_to(crate::task::TaskState::Restoring)?;
                task.transition_to(crate::task::TaskState::Running)?;
                tasks.insert(task.id(), task);
            }
        }
        let inner = DriverInner {
            topics,
            global_names,
            globals,
            tasks,
            patterns,
            application_id: application_id.clone(),
            wall_clock_ms: now,
            closed: false,
            _state_dir: state_dir,
        };
        Ok(TopologyTestDriver { inner: Rc::new(RefCell::new(inner)), application_id })
    }

    /// An input topic whose records get the driver's wall-clock time as timestamp.
    pub fn create_input_topic<K, V>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestInputTopic<K, V> {
        let now = self.inner.borrow().wall_clock_ms;
        self.create_input_topic_with_time(topic, key_serde, value_serde, now, Duration::ZERO)
    }

    /// An input topic whose record timestamps start at `start_ms` and advance by `auto_advance`.
    pub fn create_input_topic_with_time<K, V>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        start_ms: i64,
        auto_advance: Duration,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            inner: self.inner.clone(),
            topic: topic.to_string(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            next_timestamp: start_ms,
            auto_advance_ms: auto_advance.as_millis() as i64,
        }
    }

    /// An output topic (any topic: sinks, repartition and changelog topics alike).
    pub fn create_output_topic<K, V>(
        &self,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            inner: self.inner.clone(),
            topic: topic.to_string(),
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
        }
    }

    /// Advances the mocked wall clock: fires wall-clock punctuations, then commits.
    pub fn advance_wall_clock_time(&self, by: Duration) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        inner.wall_clock_ms += by.as_millis() as i64;
        let now = inner.wall_clock_ms;
        for task in inner.tasks.values_mut() {
            task.punctuate_wall_clock(now)?;
        }
        inner.flush_caches()?;
        inner.run()
    }

    /// Commits every task now: caches flush and forward downstream.
    pub fn commit(&self) -> Result<()> {
        self.inner.borrow_mut().commit()
    }

    /// The store `name`, when exactly one task has it (one partition).
    pub fn key_value_store<K: 'static, V: 'static>(&self, name: &str) -> Result<KeyValueStore<K, V>> {
        self.state_store(name)
    }

    /// A KTable's store (values with timestamps), when exactly one task has it.
    pub fn get_timestamped_key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<TimestampedKeyValueStore<K, V>> {
        self.state_store(name)
    }

    /// A versioned key-value store, when exactly one task has it.
    pub fn versioned_key_value_store<K: 'static, V: 'static>(&self, name: &str) -> Result<VersionedKeyValueStore<K, V>> {
        self.state_store(name)
    }

    /// A window store, when exactly one task has it.
    pub fn window_store<K: 'static, V: 'static>(&self, name: &str) -> Result<WindowStore<K, V>> {
        self.state_store(name)
    }

    /// A session store, when exactly one task has it.
    pub fn session_store<K: 'static, V: 'static>(&self, name: &str) -> Result<SessionStore<K, V>> {
        self.state_store(name)
    }

    /// The typed handle of store `name` (key-value, window or session), when exactly one task has it.
    pub fn state_store<S: Clone + 'static>(&self, name: &str) -> Result<S> {
        let mut stores = self.state_stores::<S>(name)?;
        match stores.len() {
            1 => Ok(stores.remove(0).1),
            n => Err(StreamsError::IllegalState(format!(
                "state store `{name}` exists in {n} tasks; use state_stores to read each partition"
            ))),
        }
    }

    /// The store `name` of every task that has it.
    pub fn get_key_value_stores<K: 'static, V: 'static>(&self, name: &str) -> Result<Vec<(TaskId, KeyValueStore<K, V>)>> {
        self.state_stores(name)
    }

    /// The global store `name`, read with these serdes.
    pub fn global_store<K: 'static, V: 'static>(
        &self,
        name: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Result<GlobalKeyValueStore<K, V>> {
        let inner = self.inner.borrow();
        let task = inner.tasks.values().next().ok_or_else(|| StreamsError::Topology("the topology has no tasks".into()))?;
        let bytes = task.global_store(name).ok_or_else(|| StreamsError::Topology(format!("no global store named `{name}`")))?;
        Ok(GlobalKeyValueStore::new(name, bytes, Arc::new(key_serde), Arc::new(value_serde)))
    }

    /// The typed store `name` of every task that has it.
    pub fn state_stores<S: Clone + 'static>(&self, name: &str) -> Result<Vec<(TaskId, S)>> {
        let inner = self.inner.borrow();
        let mut out = Vec::new();
        for (id, task) in &inner.tasks {
            if task.state_store(name).is_some() {
                out.push((*id, task.typed_store(name)?));
            }
        }
        if out.is_empty() {
            return Err(StreamsError::Topology(format!("no state store named `{name}` in the topology")));
        }
        Ok(out)
    }

    /// Counters summed over all tasks.
    pub fn metrics(&self) -> TaskMetrics {
        let mut total = TaskMetrics::default();
        for task in self.inner.borrow().tasks.values() {
            total += task.metrics();
        }
        total
    }

    /// The topics the topology wrote to so far: output, repartition and changelog topics
    /// (Kafka Streams' `producedTopicNames`).
    pub fn produced_topic_names(&self) -> BTreeSet<String> {
        self.inner.borrow().topics.borrow().produced.clone()
    }

    /// The names of every store of the topology, global stores included (Kafka Streams'
    /// `getAllStateStores`; read each with its typed accessor).
    pub fn state_store_names(&self) -> BTreeSet<String> {
        let inner = self.inner.borrow();
        let local = inner.tasks.values().flat_map(|t| t.store_names().map(str::to_string).collect::<Vec<_>>());
        local.chain(inner.global_names.iter().cloned()).collect()
    }

    /// The ids of the driver's tasks.
    pub fn task_ids(&self) -> Vec<TaskId> {
        self.inner.borrow().tasks.keys().copied().collect()
    }

    /// Commits and closes every task.
    pub fn close(self) -> Result<()> {
        let mut inner = self.inner.borrow_mut();
        if inner.closed {
            return Ok(());
        }
        let committed = inner.commit();
        inner.closed = true;
        let mut result = committed;
        for task in inner.tasks.values_mut() {
            result = result.and(task.close(true));
        }
        result
    }
}

/// Pipes records into one input topic of a [`TopologyTestDriver`].
pub struct TestInputTopic<K, V> {
    inner: Rc<RefCell<DriverInner>>,
    topic: String,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    next_timestamp: i64,
    auto_advance_ms: i64,
}

impl<K, V> std::fmt::Debug for TestInputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestInputTopic").field("topic", &self.topic).finish()
    }
}

impl<K: 'static, V: 'static> TestInputTopic<K, V> {
    fn timestamp(&mut self) -> i64 {
        let ts = self.next_timestamp;
        self.next_timestamp += self.auto_advance_ms;
        ts
    }

    /// Pipes a record with the topic's next timestamp and processes it (and all it causes).
    pub fn pipe_input(&mut self, key: K, value: V) -> Result<()> {
        let ts = self.timestamp();
        self.pipe_input_at(key, value, ts)
    }

    /// Pipes a record with the given timestamp.
    pub fn pipe_input_at(&mut self, key: K, value: V, timestamp: i64) -> Result<()> {
        self.pipe_record(TestRecord { key, value, timestamp, headers: Vec::new(), partition: -1 }, None)
    }

    /// Pipes a record with a null key.
    pub fn pipe_value(&mut self, value: V) -> Result<()> {
        let ts = self.timestamp();
        let value = self
            .value_serde
            .serialize(&self.topic, &value)
            .map_err(|e| StreamsError::serde(format!("test input topic `{}`", self.topic), e))?;
        self.pipe_raw(None, value, ts)
    }

    /// Pipes null-keyed records, one per value.
    pub fn pipe_value_list(&mut self, values: impl IntoIterator<Item = V>) -> Result<()> {
        values.into_iter().try_for_each(|v| self.pipe_value(v))
    }

    /// Pipes keyed records.
    pub fn pipe_key_value_list(&mut self, records: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        records.into_iter().try_for_each(|(k, v)| self.pipe_input(k, v))
    }

    /// Pipes a record with headers into `partition`, or the key's partition (Kafka's default
    /// partitioner) if `None`.
    pub fn pipe_record(&mut self, record: TestRecord<K, V>, partition: Option<i32>) -> Result<()> {
        let context = |e| StreamsError::serde(format!("test input topic `{}`", self.topic), e);
        let mut headers = record.headers;
        let key = self.key_serde.serialize_with_headers(&self.topic, &mut headers, &record.key).map_err(context)?;
        let value = self.value_serde.serialize_with_headers(&self.topic, &mut headers, &record.value).map_err(context)?;
        self.pipe_bytes(ProducerRecord { topic: self.topic.as_str().into(), partition, timestamp: record.timestamp, key, value, headers })
    }

    /// Pipes raw bytes, as a producer with other serdes (or a broken one) would write them.
    pub fn pipe_raw(&mut self, key: Option<Vec<u8>>, value: Option<Vec<u8>>, timestamp: i64) -> Result<()> {
        self.pipe_bytes(ProducerRecord { topic: self.topic.as_str().into(), partition: None, timestamp, key, value, headers: Vec::new() })
    }

    fn pipe_bytes(&mut self, record: ProducerRecord) -> Result<()> {
        self.inner.borrow_mut().pipe(record)
    }

    /// Sets the timestamp of the next record.
    pub fn advance_time(&mut self, by: Duration) {
        self.next_timestamp += by.as_millis() as i64;
    }
}

/// Reads what a topology wrote to a topic. Reading consumes: each record is read once.
pub struct TestOutputTopic<K, V> {
    inner: Rc<RefCell<DriverInner>>,
    topic: String,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
}

impl<K, V> std::fmt::Debug for TestOutputTopic<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestOutputTopic").field("topic", &self.topic).finish()
    }
}

impl<K: 'static, V: 'static> TestOutputTopic<K, V> {
    /// Reads the next record, if any.
    pub fn read_record(&self) -> Result<Option<TestRecord<K, V>>> {
        let inner = self.inner.borrow();
        let mut topics = inner.topics.borrow_mut();
        let position = topics.read_positions.get(&self.topic).copied().unwrap_or(0);
        let Some(raw) = topics.logs.get(&self.topic).and_then(|log| log.get(position)).cloned() else {
            return Ok(None);
        };
        topics.read_positions.insert(self.topic.clone(), position + 1);
        let context = |e| StreamsError::serde(format!("test output topic `{}`", self.topic), e);
        Ok(Some(TestRecord {
            key: self.key_serde.deserialize_with_headers(&self.topic, &raw.headers, raw.key.as_deref()).map_err(context)?,
            value: self.value_serde.deserialize_with_headers(&self.topic, &raw.headers, raw.value.as_deref()).map_err(context)?,
            timestamp: raw.timestamp,
            headers: raw.headers,
            partition: raw.partition,
        }))
    }

    /// Reads the next key and value, if any.
    pub fn read_key_value(&self) -> Result<Option<(K, V)>> {
        Ok(self.read_record()?.map(|r| (r.key, r.value)))
    }

    /// Reads the next value, if any.
    pub fn read_value(&self) -> Result<Option<V>> {
        Ok(self.read_record()?.map(|r| r.value))
    }

    /// Reads all remaining records.
    pub fn read_records_to_list(&self) -> Result<Vec<TestRecord<K, V>>> {
        std::iter::from_fn(|| self.read_record().transpose()).collect()
    }

    /// Reads all remaining keys and values.
    pub fn read_key_values_to_list(&self) -> Result<Vec<(K, V)>> {
        std::iter::from_fn(|| self.read_key_value().transpose()).collect()
    }

    /// Reads all remaining values.
    pub fn read_values_to_list(&self) -> Result<Vec<V>> {
        std::iter::from_fn(|| self.read_value().transpose()).collect()
    }

    /// Reads all remaining records into a map: the last value of each key wins.
    pub fn read_key_values_to_map(&self) -> Result<HashMap<K, V>>
    where
        K: Eq + Hash,
    {
        std::iter::from_fn(|| self.read_key_value().transpose()).collect()
    }

    /// Records not read yet.
    pub fn queue_size(&self) -> usize {
        let inner = self.inner.borrow();
        let topics = inner.topics.borrow();
        let position = topics.read_positions.get(&self.topic).copied().unwrap_or(0);
        topics.logs.get(&self.topic).map_or(0, |log| log.len().saturating_sub(position))
    }

    /// Whether every record has been read.
    pub fn is_empty(&self) -> bool {
        self.queue_size() == 0
    }
}

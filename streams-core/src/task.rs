//! `StreamTask`: one partition of one sub-topology, with its nodes, stores and record queues.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use tracing::{debug, info, trace, warn};

use crate::collector::RecordCollector;
use crate::handlers::{DeserializationExceptionHandler, ProcessingExceptionHandler};
use crate::error::{Result, StreamsError};
use crate::processor::context::{TaskContext, TaskMetrics};
use crate::processor::node::{Decoded, NodeMeta, SourceNode, TaskNode};
use crate::processor::{BuiltinTimestampExtractor, Punctuation, PunctuationType};
use crate::record::{ConsumerRecord, RecordContext, TaskId};
use crate::state::builder::{StoreContext, StoreMetricsContext};
use crate::state::{GlobalStores, RocksDbConfig, StateStore, ThreadCache};
use crate::topology::{NodeKind, Subtopology, Topology};

/// The lifecycle of a task, as in Kafka Streams.
///
/// ```text
/// Created -> Restoring -> Running -> Closed
///     \-----------\--------------------^
/// ```
///
/// Revoked tasks are closed (eager rebalancing): there is no suspended state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Built, stores open, not yet restored.
    Created,
    /// Restoring stores from changelogs.
    Restoring,
    /// Processing records.
    Running,
    /// Closed; stores released.
    Closed,
}

impl TaskState {
    fn can_transition_to(self, next: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, next),
            (Created, Restoring) | (Restoring, Running) | (Created | Restoring | Running, Closed)
        )
    }
}

/// What a task needs from the thread that runs it.
#[derive(Clone)]
pub(crate) struct TaskEnv {
    /// The application id.
    pub application_id: String,
    /// `<state.dir>/<application.id>`.
    pub app_dir: PathBuf,
    /// Where the task's output goes.
    pub collector: Rc<RefCell<dyn RecordCollector>>,
    /// The thread's cache budget.
    pub thread_cache: Rc<RefCell<ThreadCache>>,
    /// `deserialization.exception.handler`.
    pub deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    /// `processing.exception.handler`.
    pub processing_handler: Arc<dyn ProcessingExceptionHandler>,
    /// `default.timestamp.extractor`.
    pub timestamp_extractor: BuiltinTimestampExtractor,
    /// The instance's global stores.
    pub global_stores: GlobalStores,
    /// `processing.guarantee = exactly_once_v2`: persistent stores buffer writes until the
    /// transaction commits ([`StreamTask::commit_state`]).
    pub exactly_once: bool,
    /// `max.task.idle.ms` (-1: never wait for empty partitions).
    pub max_task_idle_ms: i64,
    /// Where store metrics go (none in the test driver).
    pub metrics: Option<StoreMetricsContext>,
    /// The options RocksDB stores open with.
    pub rocksdb_config: RocksDbConfig,
}

impl std::fmt::Debug for TaskEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskEnv").field("application_id", &self.application_id).field("app_dir", &self.app_dir).finish()
    }
}

/// One partition of one sub-topology: typed nodes, state stores and per-partition record queues.
pub(crate) struct StreamTask {
    id: TaskId,
    state: TaskState,
    ctx: TaskContext,
    dir: PathBuf,
    nodes: Vec<(usize, Rc<RefCell<dyn TaskNode>>)>,
    queues: Vec<RecordQueue>,
    /// The source nodes that subscribe by pattern, by node index: the test driver adds their
    /// topics as records of matching topics are piped.
    pattern_sources: BTreeMap<usize, Rc<RefCell<dyn SourceNode>>>,
    /// Whether the processors' `init` ran (on the first move to Running, after restoration,
    /// so processors that read their stores in `init` see the restored state).
    initialized: bool,
    /// `max.task.idle.ms`; -1 never waits.
    max_task_idle_ms: i64,
}

/// How long a task waits at most for an empty input partition whose records are on the broker
/// (or whose lag is not known yet) before it processes its other inputs. Kafka Streams waits as
/// long as it takes; a bound keeps a task going when the lag is only apparent: a
/// `read_committed` consumer sees the high watermark, not the last stable offset, so records of
/// an open transaction count as lag until it ends (a hung one: until the broker aborts it).
/// The bound is long because real waits can be: a fetch answer for a partition that ran dry may
/// queue behind fetches for the thread's other partitions on the same broker connection.
pub(crate) const LAG_WAIT_MS: i64 = 10_000;

/// The records buffered for one input partition, its source node, and the last offset processed
/// (Kafka Streams' `RecordQueue`): the first record is decoded, its event time extracted, so that
/// the task takes the partition whose head is earliest.
struct RecordQueue {
    topic: String,
    partition: i32,
    source: Rc<RefCell<dyn SourceNode>>,
    /// The first record, decoded, once `fill_heads` reached it.
    head: Option<(ConsumerRecord, Decoded)>,
    /// The raw records behind the head.
    records: VecDeque<ConsumerRecord>,
    /// The highest event time extracted from this partition (-1 before the first).
    partition_time: i64,
    consumed: Option<i64>,
    /// While the queue is empty and caught up: when the task stops waiting for it
    /// (`max.task.idle.ms`).
    idle_deadline: Option<i64>,
    /// While the queue is empty with records on the broker (or its lag unknown): when the task
    /// stops waiting for them ([`LAG_WAIT_MS`]).
    lag_deadline: Option<i64>,
    /// The task gave up waiting for this partition's records on the broker (logged once).
    lag_given_up: bool,
}

impl RecordQueue {
    fn new(topic: String, partition: i32, source: Rc<RefCell<dyn SourceNode>>) -> Self {
        RecordQueue {
            topic,
            partition,
            source,
            head: None,
            records: VecDeque::new(),
            partition_time: -1,
            consumed: None,
            idle_deadline: None,
            lag_deadline: None,
            lag_given_up: false,
        }
    }

    fn len(&self) -> usize {
        self.records.len() + usize::from(self.head.is_some())
    }
}

impl std::fmt::Debug for StreamTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTask").field("id", &self.id).field("state", &self.state).finish()
    }
}

impl StreamTask {
    /// Builds the task's stores and nodes (children first) and initializes the processors.
    ///
    /// Type mismatches and unknown or mistyped stores are reported here, before any record flows.
    /// `now_ms` is the system time, from which wall-clock punctuations are scheduled.
    pub(crate) fn new(
        topology: &Topology,
        subtopology: &Subtopology,
        partition: i32,
        env: &TaskEnv,
        now_ms: i64,
    ) -> Result<Self> {
        let id = TaskId::new(subtopology.id, partition);
        let _span = tracing::debug_span!("task", task_id = %id).entered();
        let dir = env.app_dir.join(id.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| StreamsError::io(&dir, e))?;
        let record_context = Rc::new(RefCell::new(RecordContext { partition, ..Default::default() }));
        let store_ctx = StoreContext {
            application_id: env.application_id.clone(),
            task_id: id,
            task_dir: dir.clone(),
            collector: env.collector.clone(),
            record_context: record_context.clone(),
            thread_cache: env.thread_cache.clone(),
            exactly_once: env.exactly_once,
            metrics: env.metrics.clone(),
            rocksdb_config: env.rocksdb_config.clone(),
        };
        let mut stores = BTreeMap::new();
        for name in &subtopology.stores {
            let builder = topology.stores.get(name).ok_or_else(|| {
                StreamsError::Topology(format!("state store `{name}` is connected but was never added"))
            })?;
            stores.insert(name.clone(), builder.build(&store_ctx)?);
        }
        let ctx = TaskContext {
            task_id: id,
            application_id: env.application_id.clone(),
            stream_time: -1,
            wall_clock_ms: now_ms,
            record_context,
            collector: env.collector.clone(),
            stores,
            schedules: Vec::new(),
            next_schedule_id: 0,
            commit_requested: false,
            deserialization_handler: env.deserialization_handler.clone(),
            processing_handler: env.processing_handler.clone(),
            timestamp_extractor: env.timestamp_extractor,
            metrics: TaskMetrics::default(),
            global_stores: env.global_stores.clone(),
            source_record: None,
            dead_letters: Vec::new(),
        };

        let mut inputs: BTreeMap<usize, Rc<dyn std::any::Any>> = BTreeMap::new();
        let mut nodes = Vec::new();
        let mut queues = Vec::new();
        let mut pattern_sources = BTreeMap::new();
        let patterns: BTreeSet<usize> = topology.source_patterns().map(|(i, _)| i).collect();
        for &index in subtopology.nodes.iter().rev() {
            let def = &topology.nodes[index];
            let children = def
                .children
                .iter()
                .map(|c| {
                    let input = inputs.get(c).expect("children are built before parents").clone();
                    (topology.nodes[*c].name.clone(), input)
                })
                .collect();
            let meta = NodeMeta { name: def.name.clone(), index, stores: def.stores.clone() };
            let built = def.factory.build(meta, children, &env.application_id)?;
            if let Some(input) = built.input {
                inputs.insert(index, input);
            }
            if let (Some(source), NodeKind::Source { topics }) = (built.source, &def.kind) {
                for topic in topics {
                    queues.push(RecordQueue::new(topic.resolve(&env.application_id), partition, source.clone()));
                }
                if patterns.contains(&index) {
                    pattern_sources.insert(index, source);
                }
            }
            nodes.push((index, built.lifecycle));
        }
        nodes.reverse();
        queues.sort_by(|a, b| a.topic.cmp(&b.topic));
        let task = StreamTask {
            id,
            state: TaskState::Created,
            ctx,
            dir,
            nodes,
            queues,
            pattern_sources,
            initialized: false,
            max_task_idle_ms: env.max_task_idle_ms,
        };
        debug!(task_id = %id, "task created");
        Ok(task)
    }

    /// The task id.
    pub(crate) fn id(&self) -> TaskId {
        self.id
    }

    /// The current state.
    pub(crate) fn state(&self) -> TaskState {
        self.state
    }

    /// Moves to `next` if the lifecycle allows it.
    pub(crate) fn transition_to(&mut self, next: TaskState) -> Result<()> {
        if !self.state.can_transition_to(next) {
            return Err(StreamsError::IllegalState(format!(
                "task {}: invalid state transition {:?} -> {:?}",
                self.id, self.state, next
            )));
        }
        if next == TaskState::Running && !self.initialized {
            for (_, node) in &self.nodes {
                node.borrow_mut().init(&mut self.ctx)?;
            }
            self.initialized = true;
        }
        self.state = next;
        Ok(())
    }

    /// The task's directory, `<state.dir>/<application.id>/<task_id>`.
    pub(crate) fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Changelog topic of each logged store.
    pub(crate) fn changelogs(&self) -> Vec<(String, String)> {
        self.ctx
            .stores
            .iter()
            .filter_map(|(name, s)| s.changelog_topic.clone().map(|t| (name.clone(), t)))
            .collect()
    }

    /// Changelog topic of each logged store on disk: only these are checkpointed, since an
    /// in-memory store loses what it held and restores its changelog in full.
    pub(crate) fn checkpointed_changelogs(&self) -> Vec<String> {
        self.ctx
            .stores
            .values()
            .filter(|s| s.store.borrow().persistent())
            .filter_map(|s| s.changelog_topic.clone())
            .collect()
    }

    /// Each processor and source node's name and the records it processed.
    pub(crate) fn node_counts(&self) -> Vec<(String, u64)> {
        self.nodes.iter().filter_map(|(_, n)| n.borrow().processed().map(|(name, c)| (name.to_string(), c))).collect()
    }

    /// Each store's name, metrics tag and RocksDB properties.
    pub(crate) fn store_properties(&self) -> Vec<(String, &'static str, Vec<(&'static str, u64)>)> {
        self.ctx
            .stores
            .iter()
            .map(|(name, s)| (name.clone(), s.metrics_scope, s.store.borrow().rocksdb_properties()))
            .collect()
    }

    /// The names of the task's stores.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn store_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.ctx.stores.keys().map(String::as_str)
    }

    /// The erased store `name`, for restoration.
    pub(crate) fn state_store(&self, name: &str) -> Option<Rc<RefCell<dyn StateStore>>> {
        self.ctx.stores.get(name).map(|s| s.store.clone())
    }

    /// The global store `name`, shared by every task of the instance.
    #[cfg(feature = "test-utils")]
    pub(crate) fn global_store(&self, name: &str) -> Option<std::sync::Arc<dyn crate::state::GlobalBytesStore>> {
        self.ctx.global_stores.get(name).cloned()
    }

    /// The typed handle of any store of this task (`KeyValueStore`, `WindowStore`, `SessionStore`).
    pub(crate) fn typed_store<S: Clone + 'static>(&self, name: &str) -> Result<S> {
        self.ctx.state_store(name)
    }

    /// Counters since creation.
    pub(crate) fn metrics(&self) -> TaskMetrics {
        self.ctx.metrics
    }

    /// The task's stream time (-1 before the first record).
    #[cfg(test)]
    pub(crate) fn stream_time(&self) -> i64 {
        self.ctx.stream_time
    }

    /// Whether a processor asked for a commit.
    pub(crate) fn commit_requested(&self) -> bool {
        self.ctx.commit_requested
    }

    /// Reads `topic` too, through the pattern source `node`: the test driver's topics matched
    /// by a pattern as records of them are piped.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn add_pattern_topic(&mut self, node: usize, topic: &str) {
        let partition = self.id.partition;
        if let Some(source) = self.pattern_sources.get(&node) {
            if !self.queues.iter().any(|q| q.topic == topic) {
                self.queues.push(RecordQueue::new(topic.to_string(), partition, source.clone()));
                self.queues.sort_by(|a, b| a.topic.cmp(&b.topic));
            }
        }
    }

    /// Queues raw records of one of the task's input partitions.
    pub(crate) fn add_records(&mut self, records: impl IntoIterator<Item = ConsumerRecord>) {
        for record in records {
            match self.queues.iter_mut().find(|q| q.partition == record.partition && *q.topic == *record.topic) {
                Some(queue) => queue.records.push_back(record),
                None => warn!(task_id = %self.id, topic = %record.topic, partition = record.partition,
                    "dropping a record of a partition this task does not read"),
            }
        }
    }

    /// The offset of the last record processed from each input partition: `(topic, partition, offset)`.
    pub(crate) fn consumed_offsets(&self) -> impl Iterator<Item = (&str, i32, i64)> + '_ {
        self.queues.iter().filter_map(|q| q.consumed.map(|o| (q.topic.as_str(), q.partition, o)))
    }

    /// Records queued for one input partition and not processed yet.
    pub(crate) fn buffered_in(&self, topic: &str, partition: i32) -> usize {
        self.queues.iter().filter(|q| q.topic == topic && q.partition == partition).map(RecordQueue::len).sum()
    }

    /// `(topic, partition, records queued)` of each input partition.
    pub(crate) fn buffered_by_partition(&self) -> impl Iterator<Item = (&str, i32, usize)> + '_ {
        self.queues.iter().map(|q| (q.topic.as_str(), q.partition, q.len()))
    }

    /// Records queued and not processed yet.
    pub(crate) fn buffered(&self) -> usize {
        self.queues.iter().map(RecordQueue::len).sum()
    }

    /// Whether the task may process now, as Kafka Streams' `PartitionGroup.readyToProcess`
    /// (KIP-695): every input partition has a record queued, or else each empty one is caught
    /// up and the task has waited `max.task.idle.ms` for it (enforced processing, counted in
    /// the metrics). An empty partition whose records are still on the broker, by `lags`, or
    /// whose lag is not known yet, is waited for, at most [`LAG_WAIT_MS`]. Waiting keeps the
    /// records of co-partitioned inputs in timestamp order when one input's fetches lag behind
    /// the other's: a join then sees the same records whatever the fetch timing.
    fn ready_to_process(&mut self, now: i64, lags: &dyn Fn(&str, i32) -> Option<i64>) -> bool {
        if self.max_task_idle_ms < 0 {
            return true;
        }
        let mut enforced = false;
        for queue in &mut self.queues {
            if queue.len() > 0 {
                queue.idle_deadline = None;
                queue.lag_deadline = None;
                queue.lag_given_up = false;
                continue;
            }
            let lag = lags(&queue.topic, queue.partition);
            let deadline = if lag == Some(0) {
                queue.lag_deadline = None;
                *queue.idle_deadline.get_or_insert(now.saturating_add(self.max_task_idle_ms))
            } else {
                queue.idle_deadline = None;
                *queue.lag_deadline.get_or_insert(now.saturating_add(LAG_WAIT_MS.max(self.max_task_idle_ms)))
            };
            if now < deadline {
                return false;
            }
            if lag != Some(0) && !queue.lag_given_up {
                queue.lag_given_up = true;
                info!(topic = %queue.topic, partition = queue.partition, ?lag, wait_ms = LAG_WAIT_MS,
                    "processing although an input partition still has records on the broker: records may be processed out of timestamp order");
            }
            enforced = true;
        }
        if enforced {
            self.ctx.metrics.enforced_processing += 1;
        }
        true
    }

    /// Processes the queued record with the lowest timestamp; returns false if none is queued,
    /// or if the task waits for data on an empty partition (see `max.task.idle.ms`). Every
    /// input is taken as caught up (the test driver's view: all records are local).
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fn process(&mut self, wall_clock_ms: i64) -> Result<bool> {
        self.process_with_lags(wall_clock_ms, &|_, _| Some(0))
    }

    /// [`process`](Self::process), with each input partition's lag on the broker as `lags`
    /// gives it (`None`: not known yet).
    pub(crate) fn process_with_lags(&mut self, wall_clock_ms: i64, lags: &dyn Fn(&str, i32) -> Option<i64>) -> Result<bool> {
        self.ctx.wall_clock_ms = wall_clock_ms;
        self.fill_heads()?;
        if self.buffered() == 0 || !self.ready_to_process(wall_clock_ms, lags) {
            return Ok(false);
        }
        let Some(index) = self.earliest_head() else { return Ok(false) };
        let queue = &mut self.queues[index];
        let (record, decoded) = queue.head.take().expect("the earliest head");
        let source = queue.source.clone();
        trace!(task_id = %self.id, topic = %record.topic, partition = record.partition, offset = record.offset, "process");
        self.ctx.stream_time = self.ctx.stream_time.max(decoded.timestamp);
        {
            let mut context = self.ctx.record_context.borrow_mut();
            if context.topic != *record.topic {
                context.topic.clear();
                context.topic.push_str(&record.topic);
            }
            context.partition = record.partition;
            context.offset = record.offset;
            context.timestamp = decoded.timestamp;
        }
        let offset = record.offset;
        self.ctx.source_record = Some(record);
        let processed = source.borrow_mut().process(&mut self.ctx, decoded);
        self.ctx.source_record = None;
        processed?;
        self.send_dead_letters()?;
        self.queues[index].consumed = Some(offset);
        self.ctx.metrics.processed_records += 1;
        self.punctuate(PunctuationType::StreamTime, self.ctx.stream_time)?;
        Ok(true)
    }

    /// Decodes the first record of every queue that has none decoded, dropping (as consumed)
    /// the records their source skips and those with a negative event time.
    fn fill_heads(&mut self) -> Result<()> {
        for index in 0..self.queues.len() {
            while self.queues[index].head.is_none() {
                let queue = &mut self.queues[index];
                let Some(record) = queue.records.pop_front() else { break };
                let source = queue.source.clone();
                match source.borrow_mut().decode(&mut self.ctx, &record, queue.partition_time)? {
                    Some(decoded) if decoded.timestamp >= 0 => {
                        queue.partition_time = queue.partition_time.max(decoded.timestamp);
                        queue.head = Some((record, decoded));
                        continue;
                    }
                    Some(decoded) => {
                        warn!(task_id = %self.id, topic = %record.topic, partition = record.partition,
                            offset = record.offset, timestamp = decoded.timestamp,
                            "skipping record with invalid (negative) timestamp");
                        self.ctx.metrics.dropped_records += 1;
                    }
                    None => {}
                }
                queue.consumed = Some(record.offset);
                self.send_dead_letters()?;
            }
        }
        Ok(())
    }

    /// The queue whose decoded head has the lowest timestamp.
    fn earliest_head(&self) -> Option<usize> {
        self.queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.head.as_ref().map(|(_, d)| (d.timestamp, i)))
            .min_by_key(|(ts, _)| *ts)
            .map(|(_, i)| i)
    }

    /// Sends the records the handlers asked for.
    fn send_dead_letters(&mut self) -> Result<()> {
        for dead in std::mem::take(&mut self.ctx.dead_letters) {
            self.ctx.collector.borrow_mut().send(dead.into_producer_record())?;
        }
        Ok(())
    }

    /// Fires wall-clock punctuations due at `now_ms`; returns whether any fired.
    pub(crate) fn punctuate_wall_clock(&mut self, now_ms: i64) -> Result<bool> {
        self.ctx.wall_clock_ms = now_ms;
        self.punctuate(PunctuationType::WallClockTime, now_ms)
    }

    fn punctuate(&mut self, kind: PunctuationType, now: i64) -> Result<bool> {
        let mut fired = false;
        let mut i = 0;
        while i < self.ctx.schedules.len() {
            let s = &mut self.ctx.schedules[i];
            i += 1;
            if s.kind != kind || s.next > now {
                continue;
            }
            // Missed intervals fire once.
            let missed = (now - s.next) / s.interval_ms;
            s.next += (missed + 1) * s.interval_ms;
            let (id, node_index) = (s.id, s.node);
            let node = self
                .nodes
                .iter()
                .find(|(index, _)| *index == node_index)
                .map(|(_, n)| n.clone())
                .expect("schedules come from the task's nodes");
            node.borrow_mut().punctuate(&mut self.ctx, Punctuation { id, kind, timestamp: now })?;
            self.ctx.metrics.punctuations += 1;
            fired = true;
        }
        Ok(fired)
    }

    /// The timestamp of the record `process` would take next, if it would take one now.
    #[cfg_attr(not(feature = "test-utils"), allow(dead_code))]
    pub(crate) fn next_timestamp(&mut self) -> Result<Option<i64>> {
        self.fill_heads()?;
        Ok(self.earliest_head().and_then(|i| self.queues[i].head.as_ref()).map(|(_, d)| d.timestamp))
    }

    /// Flushes processors in topological order, so caches forward downstream; stores keep
    /// their writes unflushed (the test driver's commits, which need no durability).
    pub(crate) fn flush_processors(&mut self) -> Result<()> {
        for (_, node) in &self.nodes {
            node.borrow_mut().flush(&mut self.ctx)?;
        }
        self.ctx.commit_requested = false;
        Ok(())
    }

    /// What every commit does first (Kafka Streams' `prepareCommit`): flushes processors (in
    /// topological order, so caches forward downstream), then writes every store's cache down.
    ///
    /// The caller flushes the record collector and commits offsets; stores reach the disk only
    /// before a checkpoint ([`flush`](Self::flush)).
    pub(crate) fn flush_caches(&mut self) -> Result<()> {
        self.flush_processors()?;
        for store in self.ctx.stores.values() {
            store.store.borrow_mut().flush_cache()?;
        }
        Ok(())
    }

    /// [`flush_caches`](Self::flush_caches), then flushes the stores to disk.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.flush_caches()?;
        for store in self.ctx.stores.values() {
            store.store.borrow_mut().flush()?;
        }
        Ok(())
    }

    /// Flushes the stores alone to disk: a standby task (whose processors never run), or an
    /// active one whose commit flushed its caches, before a checkpoint.
    pub(crate) fn flush_stores(&mut self) -> Result<()> {
        for store in self.ctx.stores.values() {
            let mut store = store.store.borrow_mut();
            store.flush()?;
            store.commit_transaction(true)?;
        }
        Ok(())
    }

    /// Under exactly-once, after the transaction committed: writes the stores' buffered writes
    /// to disk; with `durable`, also flushes them so a checkpoint can follow.
    pub(crate) fn commit_state(&mut self, durable: bool) -> Result<()> {
        self.ctx.stores.values().try_for_each(|store| store.store.borrow_mut().commit_transaction(durable))
    }

    /// Closes processors and stores. With `clean`, flushes first. Processors of a task that
    /// never finished restoring were never initialized: only its stores are flushed and closed.
    pub(crate) fn close(&mut self, clean: bool) -> Result<()> {
        if self.state == TaskState::Closed {
            return Ok(());
        }
        let mut result = Ok(());
        if self.initialized {
            if clean {
                result = self.flush();
            }
            for (_, node) in &self.nodes {
                if let Err(e) = node.borrow_mut().close() {
                    result = result.and(Err(e));
                }
            }
        }
        for store in self.ctx.stores.values() {
            if !clean {
                store.store.borrow_mut().discard_cache();
            }
            if let Err(e) = store.store.borrow_mut().close() {
                result = result.and(Err(e));
            }
        }
        self.state = TaskState::Closed;
        debug!(task_id = %self.id, clean, "task closed");
        result
    }
}

impl Drop for StreamTask {
    fn drop(&mut self) {
        if self.state != TaskState::Closed {
            if let Err(e) = self.close(false) {
                warn!(task_id = %self.id, error = %e, "error closing task");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExceptionHandler;
    use crate::handlers::Builtin;
    use crate::processor::{Processor, ProcessorContext};
    use crate::record::{ProducerRecord, Record};
    use crate::serdes::Serdes;
    use crate::state::ThreadCache;

    /// Output goes nowhere.
    struct Discard;

    impl RecordCollector for Discard {
        fn send(&mut self, _record: ProducerRecord) -> Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
    }

    /// Fails the test if flushed or closed before `init`, as processors holding state from
    /// `init` (caches, store handles) would.
    struct NeedsInit(bool);

    impl Processor<String, String> for NeedsInit {
        fn init(&mut self, _ctx: &mut ProcessorContext<'_, String, String>) -> Result<()> {
            self.0 = true;
            Ok(())
        }
        fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, record: Record<String, String>) -> Result<()> {
            ctx.forward(record)
        }
        fn flush(&mut self, _ctx: &mut ProcessorContext<'_, String, String>) -> Result<()> {
            assert!(self.0, "flushed before init");
            Ok(())
        }
        fn close(&mut self) -> Result<()> {
            assert!(self.0, "closed before init");
            Ok(())
        }
    }

    fn task(dir: &Path) -> StreamTask {
        task_with(dir, &["in"], 0)
    }

    /// A running-to-be task reading `topics` (one partition each) into one processor.
    fn task_with(dir: &Path, topics: &[&str], max_task_idle_ms: i64) -> StreamTask {
        let mut topology = Topology::new();
        topology.add_source::<String, String>("src", topics, Serdes::string(), Serdes::string()).unwrap();
        topology.add_processor("needs-init", || NeedsInit(false), &["src"]).unwrap();
        let env = TaskEnv {
            application_id: "app".into(),
            app_dir: dir.to_path_buf(),
            collector: Rc::new(RefCell::new(Discard)),
            thread_cache: Rc::new(RefCell::new(ThreadCache::new(1 << 20))),
            deserialization_handler: Arc::new(Builtin { kind: ExceptionHandler::LogAndFail, dead_letter_queue: None }),
            processing_handler: Arc::new(Builtin { kind: ExceptionHandler::LogAndFail, dead_letter_queue: None }),
            timestamp_extractor: BuiltinTimestampExtractor::FailOnInvalid,
            global_stores: Arc::default(),
            exactly_once: false,
            max_task_idle_ms,
            metrics: None,
            rocksdb_config: RocksDbConfig::default(),
        };
        let subtopologies = topology.subtopologies();
        StreamTask::new(&topology, &subtopologies[0], 0, &env, 0).unwrap()
    }

    fn record(topic: &str, offset: i64, timestamp: i64) -> ConsumerRecord {
        ConsumerRecord {
            topic: topic.into(),
            partition: 0,
            offset,
            timestamp,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: Vec::new(),
        }
    }

    #[test]
    fn an_empty_input_partition_is_waited_for_max_task_idle_ms() {
        let dir = tempfile::tempdir().unwrap();
        for (idle, processable_at) in [(-1, 0), (0, 0), (500, 500)] {
            let mut task = task_with(dir.path(), &["a", "b"], idle);
            task.transition_to(TaskState::Restoring).unwrap();
            task.transition_to(TaskState::Running).unwrap();
            task.add_records([record("a", 0, 10), record("a", 1, 30)]);
            if processable_at > 0 {
                assert!(!task.process(0).unwrap(), "idle {idle}: waits for b");
                assert!(!task.process(processable_at - 1).unwrap(), "idle {idle}: still waits");
                // Data for b arrives in time: timestamp order across both partitions.
                task.add_records([record("b", 0, 20)]);
                assert!(task.process(processable_at - 1).unwrap());
                assert_eq!(task.stream_time(), 10);
                assert!(task.process(processable_at - 1).unwrap());
                assert_eq!(task.stream_time(), 20);
                assert_eq!(task.metrics().enforced_processing, 0);
                // b is empty again: after another wait, a's last record goes alone.
                assert!(!task.process(processable_at).unwrap());
                assert!(task.process(2 * processable_at).unwrap());
                assert_eq!(task.metrics().enforced_processing, 1);
            } else {
                assert!(task.process(0).unwrap(), "idle {idle}: no wait");
                assert_eq!(task.metrics().enforced_processing, u64::from(idle == 0));
            }
            task.close(true).unwrap();
        }
    }

    #[test]
    fn an_empty_input_partition_with_records_on_the_broker_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut task = task_with(dir.path(), &["a", "b"], 0);
        task.transition_to(TaskState::Restoring).unwrap();
        task.transition_to(TaskState::Running).unwrap();
        task.add_records([record("a", 0, 10), record("a", 1, 30)]);
        let b_lag = std::cell::Cell::new(None);
        let lags = |topic: &str, _: i32| if topic == "b" { b_lag.get() } else { Some(0) };
        assert!(!task.process_with_lags(0, &lags).unwrap(), "b's lag is not known yet");
        b_lag.set(Some(3));
        assert!(!task.process_with_lags(LAG_WAIT_MS - 1, &lags).unwrap(), "b has records on the broker");
        // They arrive: timestamp order across both partitions, nothing enforced.
        task.add_records([record("b", 0, 20)]);
        b_lag.set(Some(2));
        assert!(task.process_with_lags(LAG_WAIT_MS - 1, &lags).unwrap());
        assert!(task.process_with_lags(LAG_WAIT_MS - 1, &lags).unwrap());
        assert_eq!(task.stream_time(), 20);
        assert_eq!(task.metrics().enforced_processing, 0);
        // A lag that does not drain holds the task for LAG_WAIT_MS at most.
        assert!(!task.process_with_lags(LAG_WAIT_MS, &lags).unwrap());
        assert!(!task.process_with_lags(2 * LAG_WAIT_MS - 1, &lags).unwrap());
        assert!(task.process_with_lags(2 * LAG_WAIT_MS, &lags).unwrap());
        assert_eq!(task.stream_time(), 30);
        assert_eq!(task.metrics().enforced_processing, 1);
        // Caught up, with max.task.idle.ms 0: no wait.
        task.add_records([record("a", 2, 40)]);
        b_lag.set(Some(0));
        assert!(task.process_with_lags(2 * LAG_WAIT_MS, &lags).unwrap());
        task.close(true).unwrap();
    }

    #[test]
    fn a_task_closed_before_it_finished_restoring_leaves_its_processors_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut restoring = task(dir.path());
        restoring.transition_to(TaskState::Restoring).unwrap();
        restoring.close(true).unwrap();
        assert_eq!(restoring.state(), TaskState::Closed);

        let mut running = task(dir.path());
        running.transition_to(TaskState::Restoring).unwrap();
        running.transition_to(TaskState::Running).unwrap();
        running.close(true).unwrap();
    }
}

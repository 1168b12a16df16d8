//! `TaskManager`: the tasks of one stream thread — created on assignment, restored, processed,
//! committed, and closed on revocation.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::changelog_reader::{is_transient, ChangelogReader, RestoreEvent};
use super::checkpoint::{OffsetCheckpoint, Offsets};
use super::collector::KafkaRecordCollector;
use super::input_queues::InputSink;
use super::native;
use super::query::{self, QueryRequest};
use super::standby::{self, StandbyTasks};
use super::state_directory::{StateDirectory, TaskDirLock};
use super::state_updater::{RestoreRequest, Restored, StateUpdater};
use super::stream_thread::to_record_of;
use super::ClientShared;
use crate::collector::RecordCollector;
use crate::error::{Result, StreamsError};
use crate::metrics::{StoreKey, TaskSensors, ThreadMetrics};
use crate::record::{ConsumerRecord, TaskId};
use crate::task::{StreamTask, TaskEnv, TaskState};
use crate::topology::{Subtopology, Topology};

struct ManagedTask {
    task: StreamTask,
    sensors: Option<Arc<TaskSensors>>,
    checkpoint: Offsets,
    /// What the state updater restored, reported with what the thread restores after it.
    restored: Vec<RestoreEvent>,
    _lock: TaskDirLock,
}

/// A task the state updater is restoring.
struct Updating {
    /// Tells this hand-over's answer from an earlier one's.
    request: u64,
    lock: TaskDirLock,
    /// Records polled for the task meanwhile.
    records: Vec<ConsumerRecord>,
}

/// A stream thread's line to the client's state updater.
pub(crate) struct UpdaterLink {
    updater: StateUpdater,
    reply: Sender<Restored>,
    answers: Receiver<Restored>,
    requests: u64,
}

impl UpdaterLink {
    pub(crate) fn new(updater: StateUpdater) -> Self {
        let (reply, answers) = mpsc::channel();
        UpdaterLink { updater, reply, answers, requests: 0 }
    }
}

impl ManagedTask {
    /// Copies the task's counters into its sensors (and, with `debug`, its nodes').
    fn publish_metrics(&self, debug: bool) {
        if let Some(s) = &self.sensors {
            let m = self.task.metrics();
            s.process.set_total(m.processed_records);
            s.dropped.set_total(m.dropped_records);
            s.enforced.set_total(m.enforced_processing);
            s.punctuate.set_total(m.punctuations);
            if debug {
                let mut nodes = s.nodes.lock().unwrap_or_else(|e| e.into_inner());
                for (name, count) in self.task.node_counts() {
                    nodes.entry(name).or_default().set_total(count);
                }
            }
        }
    }
}

/// A thread's part in keeping standby replicas (`num.standby.replicas` > 0).
pub(crate) struct StandbyRole {
    pub(crate) tasks: StandbyTasks,
    pub(crate) replicas: usize,
    /// The plan's key for this thread: its consumer's client id (classic protocol), or the
    /// process id, with `(thread index, threads)` to share the instance's standbys out.
    pub(crate) key: String,
    pub(crate) claims: Option<(usize, usize)>,
    /// The standbys the last plan gave this thread.
    pub(crate) planned: std::collections::BTreeSet<TaskId>,
    pub(crate) last_plan: Option<Instant>,
}

/// Everything a stream thread needs to run its tasks.
pub(crate) struct TaskManager {
    pub(crate) thread_index: usize,
    topology: Arc<Topology>,
    subtopologies: Vec<Subtopology>,
    /// Looked up for every polled record (foldhash).
    source_topics: foldhash::HashMap<Arc<str>, u32>,
    env: TaskEnv,
    collector: Rc<RefCell<KafkaRecordCollector>>,
    state_dir: StateDirectory,
    reader: ChangelogReader,
    tasks: BTreeMap<TaskId, ManagedTask>,
    pub(crate) shared: Arc<ClientShared>,
    /// An error raised inside a rebalance callback, for the thread loop to act on.
    pub(crate) callback_error: Option<StreamsError>,
    /// Set after a fatal error: tasks close without committing.
    pub(crate) failed: bool,
    /// An assignment arrived; its tasks restore before the thread reports running.
    pub(crate) assignment_pending: bool,
    /// `processing.guarantee = exactly_once_v2`.
    exactly_once: bool,
    /// `task.timeout.ms`.
    task_timeout: Duration,
    last_checkpoint: Instant,
    /// Interactive queries for this thread's tasks.
    pub(crate) queries: Option<Receiver<QueryRequest>>,
    /// The thread's name and sensors.
    pub(crate) metrics: Option<(String, Arc<ThreadMetrics>)>,
    /// Empty input partitions, nothing polled from them since their assignment, whose high
    /// watermark was known at the last processing pass after a drained poll.
    answered_unpolled: std::collections::HashSet<(String, i32)>,
    /// `buffered.records.per.partition`.
    pub(crate) max_buffered: usize,
    last_store_sample: Instant,
    /// Standby tasks, with standby replicas configured.
    pub(crate) standby: Option<StandbyRole>,
    /// The client's state updater (a topology with logged stores).
    pub(crate) updater: Option<UpdaterLink>,
    /// Tasks whose persistent stores the state updater is restoring.
    updating: BTreeMap<TaskId, Updating>,
    /// How many assignments the thread has taken.
    assignments: u64,
}

/// How long the thread restores between two polls while it also has running tasks.
const RESTORE_SLICE: Duration = Duration::from_millis(100);

/// How often checkpoints are written under exactly-once (each one flushes RocksDB); a crash
/// replays at most this much changelog on top of the committed state on disk.
const EOS_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// Under at-least-once, a task's stores are flushed to disk and checkpointed once their
/// changelogs moved this many records past the last checkpoint (Kafka Streams'
/// `OFFSET_DELTA_THRESHOLD_FOR_CHECKPOINT`), not at every commit: each flush writes a RocksDB
/// file per store. A crash replays at most about this much changelog per task.
const CHECKPOINT_OFFSET_DELTA: i64 = 10_000;

impl TaskManager {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        thread_index: usize,
        topology: Arc<Topology>,
        env: TaskEnv,
        collector: Rc<RefCell<KafkaRecordCollector>>,
        state_dir: StateDirectory,
        reader: ChangelogReader,
        shared: Arc<ClientShared>,
        task_timeout: Duration,
    ) -> Self {
        let exactly_once = env.exactly_once;
        let subtopologies = topology.subtopologies();
        let mut source_topics = foldhash::HashMap::default();
        for sub in &subtopologies {
            for topic in &sub.source_topics {
                source_topics.insert(topic.resolve(&env.application_id).into(), sub.id);
            }
        }
        TaskManager {
            thread_index,
            topology,
            subtopologies,
            source_topics,
            env,
            collector,
            state_dir,
            reader,
            tasks: BTreeMap::new(),
            shared,
            callback_error: None,
            failed: false,
            assignment_pending: false,
            exactly_once,
            task_timeout,
            last_checkpoint: Instant::now(),
            queries: None,
            metrics: None,
            answered_unpolled: Default::default(),
            max_buffered: 1000,
            last_store_sample: Instant::now(),
            standby: None,
            updater: None,
            updating: BTreeMap::new(),
            assignments: 0,
        }
    }

    /// All source topics, internal ones with their full names.
    pub(crate) fn source_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.source_topics.keys().map(|t| t.to_string()).collect();
        topics.sort();
        topics
    }

    /// Creates the tasks of newly assigned partitions; they restore before processing, their
    /// persistent stores on the state updater.
    pub(crate) fn assign(&mut self, partitions: &[(String, i32)]) -> Result<()> {
        self.assignment_pending = true;
        self.assignments += 1;
        // A partition assigned again has not been polled since.
        self.answered_unpolled.clear();
        let mut ids: Vec<TaskId> = partitions
            .iter()
            .filter_map(|(topic, p)| self.task_of(topic, *p))
            .collect();
        ids.sort();
        ids.dedup();
        info!(thread = self.thread_index, tasks = ?ids.iter().map(ToString::to_string).collect::<Vec<_>>(), "assigned");
        let now = now_ms();
        for id in ids {
            if self.owns(&id) {
                continue;
            }
            // A standby of the task here becomes the active: its stores are checkpointed and
            // reopened, so the task restores only what the standby had not read yet.
            if let Some(role) = self.standby.as_mut().filter(|r| r.tasks.get(id).is_some()) {
                self.shared.router.task_removed(self.thread_index, id);
                if let Err(e) = role.tasks.remove(id) {
                    warn!(task_id = %id, error = %e, "closing the standby task failed; the active task restores from its last checkpoint");
                }
            }
            if let Some((_, m)) = &self.metrics {
                m.task_created.add(1);
            }
            if self.updater.is_some() && self.has_logged_stores(id) {
                self.hand_over(id)?;
                continue;
            }
            let (mut task, checkpoint, lock) = self.open_task(id, Duration::from_secs(10), now)?;
            task.transition_to(TaskState::Restoring)?;
            self.install(task, checkpoint, lock, Vec::new());
        }
        Ok(())
    }

    /// Locks the task's directory and hands the task to the state updater.
    fn hand_over(&mut self, id: TaskId) -> Result<()> {
        let lock = self.state_dir.lock(id, Duration::from_secs(10))?;
        let checkpoint = self.read_checkpoint(id)?;
        let metrics = self.metrics.as_ref().map(|(_, m)| m.clone());
        let Some(link) = self.updater.as_mut() else { return Err(StreamsError::IllegalState("no state updater".into())) };
        link.requests += 1;
        link.updater.add(RestoreRequest { task: id, request: link.requests, checkpoint, metrics, reply: link.reply.clone() })?;
        self.updating.insert(id, Updating { request: link.requests, lock, records: Vec::new() });
        Ok(())
    }

    /// Whether a task of `id`'s sub-topology has stores with changelogs.
    fn has_logged_stores(&self, id: TaskId) -> bool {
        let stores = &self.subtopologies[id.subtopology as usize].stores;
        stores.iter().any(|name| self.topology.stores.get(name).is_some_and(|b| b.logging_enabled()))
    }

    /// Adds an opened, restoring task: queries may read it stale from now on.
    fn install(&mut self, task: StreamTask, checkpoint: Offsets, lock: TaskDirLock, restored: Vec<RestoreEvent>) {
        let id = task.id();
        self.shared.router.task_added(self.thread_index, id, true);
        let sensors = self.metrics.as_ref().map(|(thread, _)| self.shared.metrics.task(thread, id));
        self.tasks.insert(id, ManagedTask { task, sensors, checkpoint, restored, _lock: lock });
    }

    /// Opens the tasks whose persistent stores the state updater has restored; their other
    /// stores restore on this thread. An error of the updater's is this thread's.
    fn take_restored(&mut self) -> Result<()> {
        let Some(link) = &self.updater else { return Ok(()) };
        let answers: Vec<Restored> = link.answers.try_iter().collect();
        for Restored { task: id, request, result } in answers {
            // An answer to an earlier hand-over of a task revoked meanwhile is stale.
            if self.updating.get(&id).is_none_or(|u| u.request != request) {
                continue;
            }
            let updating = self.updating.remove(&id).expect("checked above");
            let (checkpoint, restored) = result?;
            let (mut task, checkpoint) = self.build_task(id, checkpoint, now_ms())?;
            task.transition_to(TaskState::Restoring)?;
            task.add_records(updating.records);
            self.install(task, checkpoint, updating.lock, restored);
        }
        Ok(())
    }

    /// Locks a task's directory (waiting up to `wait`), reads its checkpoint and opens its
    /// stores. Unreadable checkpoints and unusable stores are wiped: the changelogs hold
    /// everything, so the task restores in full.
    fn open_task(&self, id: TaskId, wait: Duration, now: i64) -> Result<(StreamTask, Offsets, TaskDirLock)> {
        let lock = self.state_dir.lock(id, wait)?;
        let checkpoint = self.read_checkpoint(id)?;
        let (task, checkpoint) = self.build_task(id, checkpoint, now)?;
        Ok((task, checkpoint, lock))
    }

    /// The checkpoint of a locked task directory.
    fn read_checkpoint(&self, id: TaskId) -> Result<Offsets> {
        let task_dir = self.state_dir.task_dir(id);
        match OffsetCheckpoint::in_dir(&task_dir).read() {
            Ok(offsets) => Ok(offsets),
            Err(e) => {
                warn!(task_id = %id, error = %e, "unreadable checkpoint; wiping the task's stores and restoring them in full");
                StateDirectory::wipe_task_state(&task_dir)?;
                Ok(Offsets::new())
            }
        }
    }

    /// Builds a task in its locked directory, whose stores hold `checkpoint`; returns what
    /// they hold after (nothing, if they had to be wiped).
    fn build_task(&self, id: TaskId, checkpoint: Offsets, now: i64) -> Result<(StreamTask, Offsets)> {
        let sub = &self.subtopologies[id.subtopology as usize];
        match StreamTask::new(&self.topology, sub, id.partition, &self.env, now) {
            Ok(task) => Ok((task, checkpoint)),
            // A store that cannot be opened (a corrupt RocksDB directory).
            Err(e @ StreamsError::Store { .. }) => {
                warn!(task_id = %id, error = %e, "task state is unusable; wiping it and restoring from the changelogs");
                StateDirectory::wipe_task_state(&self.state_dir.task_dir(id))?;
                Ok((StreamTask::new(&self.topology, sub, id.partition, &self.env, now)?, Offsets::new()))
            }
            Err(e) => Err(e),
        }
    }

    /// Keeps this thread's standby tasks as the standby plan says (re-read every second) and
    /// applies what their changelogs bring within `budget`. Never a standby of a task active on
    /// this instance; a task whose directory another local thread still holds waits for the
    /// next round.
    pub(crate) fn maintain_standbys(&mut self, budget: Duration) -> Result<()> {
        let Some(mut role) = self.standby.take() else { return Ok(()) };
        let result = self.maintain(&mut role, budget);
        self.standby = Some(role);
        result
    }

    fn maintain(&mut self, role: &mut StandbyRole, budget: Duration) -> Result<()> {
        if role.last_plan.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            role.last_plan = Some(Instant::now());
            if let Some(members) = self.shared.metadata.plan_members(&self.env.application_id) {
                // Stateless tasks have nothing to keep warm.
                let stateful = |id: &TaskId| !self.subtopologies[id.subtopology as usize].stores.is_empty();
                let plan = standby::plan(&members, role.replicas, |t, p| self.task_of(t, p).filter(stateful));
                role.planned = plan
                    .get(&role.key)
                    .into_iter()
                    .flatten()
                    .filter(|id| role.claims.is_none_or(|(index, threads)| id.partition as usize % threads == index))
                    .copied()
                    .collect();
            }
        }
        let local: std::collections::BTreeSet<TaskId> =
            self.shared.metadata.local_partitions().iter().filter_map(|(t, p)| self.task_of(t, *p)).collect();
        let current = role.tasks.ids();
        for id in current.iter().filter(|id| !role.planned.contains(id) || local.contains(id)) {
            self.shared.router.task_removed(self.thread_index, *id);
            role.tasks.remove(*id)?;
        }
        let now = now_ms();
        let here = |id: &TaskId| self.tasks.contains_key(id) || self.updating.contains_key(id);
        for &id in role.planned.iter().filter(|id| !current.contains(id) && !local.contains(id) && !here(id)) {
            match self.open_task(id, Duration::ZERO, now) {
                Ok((task, checkpoint, lock)) => {
                    role.tasks.add(task, checkpoint, lock)?;
                    self.shared.router.task_added(self.thread_index, id, true);
                }
                Err(StreamsError::StateDir { message, .. }) => debug!(task_id = %id, message, "standby waits for the task's directory"),
                Err(e) => return Err(e),
            }
        }
        role.tasks.update(budget, self.metrics.as_ref().map(|(_, m)| m.as_ref()))
    }

    /// Closes the standby tasks, checkpointing them (the thread is stopping).
    pub(crate) fn close_standbys(&mut self) -> Result<()> {
        let Some(role) = self.standby.as_mut() else { return Ok(()) };
        for id in role.tasks.ids() {
            self.shared.router.task_removed(self.thread_index, id);
        }
        role.tasks.remove_all()
    }

    /// Opens the tasks the state updater has restored, and restores the rest (in-memory
    /// stores, and every store without an updater) for a slice of time, one task after the
    /// other; a task runs once its stores are restored, and the thread's other tasks process
    /// meanwhile. Returns whether no task is left restoring.
    pub(crate) fn restore(&mut self) -> Result<bool> {
        self.take_restored()?;
        // Tasks without changelogs run at once, whatever else restores.
        let stateless: Vec<TaskId> = self
            .tasks
            .values()
            .filter(|t| t.task.state() == TaskState::Restoring && t.task.changelogs().is_empty())
            .map(|t| t.task.id())
            .collect();
        for id in stateless {
            self.task_restored(id)?;
        }
        let running = self.tasks.values().any(|t| t.task.state() == TaskState::Running);
        // A thread with nothing else to do restores in longer slices.
        let budget = if running { RESTORE_SLICE } else { RESTORE_SLICE * 5 };
        let metrics = self.metrics.as_ref().map(|(_, m)| m.clone());
        // The task being restored first, so that a slice goes on where the previous stopped.
        let current = self.reader.restoring().filter(|id| self.tasks.get(id).is_some_and(|t| t.task.state() == TaskState::Restoring));
        let next = current.or_else(|| self.tasks.values().find(|t| t.task.state() == TaskState::Restoring).map(|t| t.task.id()));
        let Some(id) = next else { return Ok(self.updating.is_empty()) };
        let managed = self.tasks.get_mut(&id).expect("found above");
        if let Some(events) = self.reader.restore_step(&managed.task, &mut managed.checkpoint, budget, metrics.as_deref())? {
            for event in merge_restored(std::mem::take(&mut managed.restored), events) {
                self.shared.on_restore(&event);
            }
            self.task_restored(id)?;
        }
        Ok(self.updating.is_empty() && !self.tasks.values().any(|t| t.task.state() == TaskState::Restoring))
    }

    /// `id` is restored: it runs, queries may read it, its input flows again (resumed by
    /// [`pause_inputs`](Self::pause_inputs) once it holds no more than its bound).
    fn task_restored(&mut self, id: TaskId) -> Result<()> {
        let managed = self.tasks.get_mut(&id).expect("a task of this thread");
        managed.task.transition_to(TaskState::Running)?;
        self.shared.router.task_added(self.thread_index, id, false);
        self.shared.metadata.request_refresh();
        debug!(task_id = %id, "task running");
        Ok(())
    }

    /// The task that reads `topic`'s `partition`, if the topic is a source of the topology.
    fn task_of(&self, topic: &str, partition: i32) -> Option<TaskId> {
        self.source_topics.get(topic).map(|sub| TaskId::new(*sub, partition))
    }

    /// Answers the interactive queries waiting for this thread's tasks.
    pub(crate) fn serve_queries(&self) {
        if let Some(queue) = &self.queries {
            let standby = |id| self.standby.as_ref().and_then(|r| r.tasks.get(id));
            query::serve(queue, |id| self.tasks.get(&id).map(|m| &m.task).or_else(|| standby(id)));
        }
    }

    /// Queues a polled record in its task (or with the task while the state updater restores it).
    pub(crate) fn add_message(&mut self, message: &BorrowedMessage<'_>) {
        let Some((topic, sub)) = self.source_topics.get_key_value(message.topic()) else { return };
        let id = TaskId::new(*sub, message.partition());
        let record = to_record_of(message, topic.clone());
        if let Some(managed) = self.tasks.get_mut(&id) {
            managed.task.add_records([record]);
        } else if let Some(updating) = self.updating.get_mut(&id) {
            updating.records.push(record);
        } else {
            debug!(topic = %record.topic, partition = record.partition, "record for a task not owned");
        }
    }

    /// Processes everything queued in running tasks; returns the number of records. `drained`:
    /// the last poll left nothing in the consumer's queue, and polled every input partition's
    /// queue that its task had room for.
    pub(crate) fn process<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, drained: bool) -> Result<u64> {
        let now = now_ms();
        let debug = self.shared.metrics.debug();
        let mut processed = 0;
        let positions = std::cell::OnceCell::new();
        let answered = std::cell::RefCell::new(std::collections::HashSet::new());
        let answered_before = &self.answered_unpolled;
        // Kafka Streams' `currentLag` of an input partition, asked only for empty ones: the
        // high watermark of the last fetch less the position past the last record polled.
        let lags = |topic: &str, partition: i32| -> Option<i64> {
            let high = native::fetched_high_watermark(consumer.client(), topic, partition)?;
            let positions = positions.get_or_init(|| consumer.position().unwrap_or_default());
            match positions.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(position)) => Some((high - position).max(0)),
                // Nothing polled from it since it was assigned, though a fetch was answered:
                // caught up once a poll that began after that answer drained its queue without
                // a record of it. (A fetch answered just after the last poll drained the queue
                // may still be queueing its records.)
                _ if !drained => None,
                _ => {
                    let key = (topic.to_string(), partition);
                    let caught_up = answered_before.contains(&key);
                    answered.borrow_mut().insert(key);
                    caught_up.then_some(0)
                }
            }
        };
        for managed in self.tasks.values_mut().filter(|t| t.task.state() == TaskState::Running) {
            let _span = tracing::trace_span!("task", task_id = %managed.task.id()).entered();
            while managed.task.process_with_lags(now, &lags)? {
                processed += 1;
            }
            managed.publish_metrics(debug);
        }
        self.answered_unpolled = answered.into_inner();
        Ok(processed)
    }

    /// The input partitions whose records wait in librdkafka, each in a queue of its own (see
    /// `InputQueues`): those a running task holds `buffered.records.per.partition` of (it
    /// waits on another input, say), and every input of a task that is not running (it
    /// restores, here or in the state updater), as Kafka Streams pauses them.
    pub(crate) fn held_inputs(&self) -> Vec<(&str, i32)> {
        let mut held = Vec::new();
        for managed in self.tasks.values() {
            let running = managed.task.state() == TaskState::Running;
            held.extend(
                managed
                    .task
                    .buffered_by_partition()
                    .filter(|(.., buffered)| !running || *buffered >= self.max_buffered)
                    .map(|(topic, partition, _)| (topic, partition)),
            );
        }
        for id in self.updating.keys() {
            let topics = self.source_topics.iter().filter(|(_, sub)| **sub == id.subtopology);
            held.extend(topics.map(|(topic, _)| (&**topic, id.partition)));
        }
        held
    }

    /// Fires due wall-clock punctuations; returns how many fired.
    pub(crate) fn punctuate(&mut self) -> Result<u64> {
        let now = now_ms();
        let debug = self.shared.metrics.debug();
        let mut fired = 0;
        for managed in self.tasks.values_mut().filter(|t| t.task.state() == TaskState::Running) {
            let before = managed.task.metrics().punctuations;
            if managed.task.punctuate_wall_clock(now)? {
                fired += managed.task.metrics().punctuations - before;
                managed.publish_metrics(debug);
            }
        }
        Ok(fired)
    }

    /// Every few seconds: the RocksDB properties of every running task's stores.
    pub(crate) fn sample_store_metrics(&mut self) {
        const EVERY: Duration = Duration::from_secs(5);
        let Some((thread, _)) = &self.metrics else { return };
        if self.last_store_sample.elapsed() < EVERY {
            return;
        }
        self.last_store_sample = Instant::now();
        for managed in self.tasks.values().filter(|t| t.task.state() == TaskState::Running) {
            for (name, scope, properties) in managed.task.store_properties() {
                if properties.is_empty() {
                    continue;
                }
                let key = StoreKey { thread: thread.clone(), task: managed.task.id(), scope, name };
                *self.shared.metrics.store(key).properties.lock().unwrap_or_else(|e| e.into_inner()) = properties;
            }
        }
    }

    /// Whether a processor asked for a commit.
    pub(crate) fn commit_requested(&self) -> bool {
        self.tasks.values().any(|t| t.task.commit_requested())
    }

    /// Commits: flush processors and caches, then make outputs, changelog writes and input
    /// offsets durable. At-least-once: flush the producer, checkpoint the tasks whose stores
    /// took [`CHECKPOINT_OFFSET_DELTA`] changelog records since their last checkpoint, commit
    /// offsets. Exactly-once: commit one transaction holding all three, then write the stores'
    /// buffered writes to disk; checkpoints (committed changelog offsets only) follow every
    /// [`EOS_CHECKPOINT_INTERVAL`]. When `final_commit` (tasks are about to close) every task
    /// is checkpointed.
    pub(crate) fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, final_commit: bool) -> Result<()> {
        let running = |t: &&mut ManagedTask| t.task.state() == TaskState::Running;
        for managed in self.tasks.values_mut().filter(running) {
            managed.task.flush_caches()?;
        }
        // A partition with nothing left queued commits the consumer's position, which is past
        // any transaction markers after its last record (so a caught-up group has no lag).
        let positions = consumer.position().unwrap_or_default();
        let mut offsets = TopicPartitionList::new();
        for managed in self.tasks.values().filter(|t| t.task.state() == TaskState::Running) {
            for (topic, p, offset) in managed.task.consumed_offsets() {
                let mut next = offset + 1;
                if managed.task.buffered_in(topic, p) == 0 {
                    if let Some(Offset::Offset(position)) = positions.find_partition(topic, p).map(|e| e.offset()) {
                        next = next.max(position);
                    }
                }
                offsets
                    .add_partition_offset(topic, p, Offset::Offset(next))
                    .map_err(|e| StreamsError::kafka("build offsets", e))?;
            }
        }
        if self.exactly_once {
            let group = consumer
                .group_metadata()
                .ok_or_else(|| StreamsError::TaskMigrated("the consumer has no group metadata".into()))?;
            self.collector.borrow_mut().commit_transaction(&offsets, &group)?;
            let durable = final_commit || self.last_checkpoint.elapsed() >= EOS_CHECKPOINT_INTERVAL;
            for managed in self.tasks.values_mut().filter(running) {
                managed.task.commit_state(durable)?;
            }
            if durable {
                self.write_checkpoints(true)?;
            }
        } else {
            self.collector.borrow_mut().flush()?;
            self.write_checkpoints(final_commit)?;
            if offsets.count() > 0 {
                self.commit_offsets(consumer, &offsets)?;
            }
        }
        Ok(())
    }

    /// Writes the checkpoint of each running task (the last changelog offset its stores on
    /// disk hold) whose changelogs moved [`CHECKPOINT_OFFSET_DELTA`] records past its last one,
    /// or of every task with `enforce`. Under at-least-once the task's stores are flushed to
    /// disk first; under exactly-once the caller made them durable.
    fn write_checkpoints(&mut self, enforce: bool) -> Result<()> {
        let deliveries = self.collector.borrow().deliveries().clone();
        for managed in self.tasks.values_mut().filter(|t| t.task.state() == TaskState::Running) {
            let partition = managed.task.id().partition;
            let mut next = managed.checkpoint.clone();
            let mut delta = 0;
            for topic in managed.task.checkpointed_changelogs() {
                if let Some(offset) = deliveries.offset(&topic, partition) {
                    let entry = next.entry((topic, partition)).or_insert(0);
                    delta += (offset - *entry).max(0);
                    *entry = (*entry).max(offset);
                }
            }
            if !enforce && delta <= CHECKPOINT_OFFSET_DELTA {
                continue;
            }
            if !self.exactly_once {
                managed.task.flush_stores()?;
            }
            OffsetCheckpoint::in_dir(managed.task.state_dir()).write(&next)?;
            managed.checkpoint = next;
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Commits consumed offsets (at-least-once), retrying transient errors up to `task.timeout.ms`.
    fn commit_offsets<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, offsets: &TopicPartitionList) -> Result<()> {
        let deadline = Instant::now() + self.task_timeout;
        loop {
            match consumer.commit(offsets, CommitMode::Sync) {
                Ok(()) => return Ok(()),
                // The group is rebalancing: the revocation callback commits before partitions
                // move; if they were lost instead, their new owner reprocesses (at-least-once).
                Err(e) if is_rebalance_error(&e) => {
                    debug!(thread = self.thread_index, error = %e, "offset commit skipped during a rebalance");
                    return Ok(());
                }
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    warn!(thread = self.thread_index, error = %e, "offset commit failed; retrying (task.timeout.ms)");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(StreamsError::kafka("commit offsets", e)),
            }
        }
    }

    /// Recovers from an aborted transaction or lost tasks (exactly-once): aborts, closes every
    /// task without committing (their stores drop the uncommitted writes), replaces a fenced
    /// producer, and re-creates the tasks of the current assignment from the last commit:
    /// stores restore the committed changelog tail and the consumer goes back to the committed
    /// input offsets.
    pub(crate) fn recover<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, error: &StreamsError) -> Result<()> {
        warn!(thread = self.thread_index, error = %error, "re-initializing tasks from the last committed transaction");
        match error {
            // A new producer with the same transactional.id aborts what the old one left open.
            StreamsError::TaskMigrated(_) => self.collector.borrow_mut().recreate()?,
            _ => self.collector.borrow_mut().abort_transaction()?,
        }
        if let Err(e) = self.close_all(false) {
            warn!(thread = self.thread_index, error = %e, "error closing tasks");
        }
        let assignment = consumer.assignment().map_err(|e| StreamsError::kafka("read the assignment", e))?;
        let partitions = partitions_of(&assignment);
        if partitions.is_empty() {
            return Ok(());
        }
        let committed = consumer
            .committed_offsets(assignment, self.task_timeout)
            .map_err(|e| StreamsError::kafka("read committed offsets", e))?;
        let mut seek = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Beginning,
            };
            seek.add_partition_offset(e.topic(), e.partition(), offset).map_err(|e| StreamsError::kafka("build offsets", e))?;
        }
        let sought = consumer.seek_partitions(seek, self.task_timeout).map_err(|e| StreamsError::kafka("seek to committed offsets", e))?;
        for e in sought.elements() {
            if let Err(error) = e.error() {
                return Err(StreamsError::kafka(format!("seek {}-{} to its committed offset", e.topic(), e.partition()), error));
            }
            info!(thread = self.thread_index, topic = e.topic(), partition = e.partition(), offset = ?e.offset(), "rewound to the last commit");
        }
        self.assign(&partitions)
    }

    /// Some partitions are being revoked (incremental rebalancing): commit, then close the
    /// tasks of those partitions cleanly; the others keep running.
    pub(crate) fn revoke<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, partitions: &[(String, i32)]) -> Result<()> {
        let revoked: Vec<TaskId> = partitions
            .iter()
            .filter_map(|(topic, p)| self.task_of(topic, *p))
            .filter(|id| self.owns(id))
            .collect();
        self.commit_and_close(consumer, &revoked)
    }

    /// Partitions are being revoked: commit, then close every task cleanly (checkpoints kept).
    pub(crate) fn revoke_all<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        let all = self.all_tasks();
        self.commit_and_close(consumer, &all)
    }

    /// Commits, then closes `ids` cleanly; after a fatal error, closes them without committing.
    fn commit_and_close<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, ids: &[TaskId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        if self.failed {
            return self.close_tasks(ids, false);
        }
        info!(thread = self.thread_index, tasks = ?ids.iter().map(ToString::to_string).collect::<Vec<_>>(), "partitions revoked: committing and closing their tasks");
        let committed = self.commit(consumer, true);
        if committed.is_err() && self.exactly_once {
            // Nothing of the failed transaction becomes visible; the next owner starts from the last commit.
            if let Err(e) = self.collector.borrow_mut().abort_transaction() {
                warn!(thread = self.thread_index, error = %e, "abort on revocation failed");
            }
        }
        let closed = self.close_tasks(ids, committed.is_ok());
        committed.and(closed)
    }

    /// Closes every task; a clean close flushes and keeps the checkpoints.
    pub(crate) fn close_all(&mut self, clean: bool) -> Result<()> {
        let all = self.all_tasks();
        self.close_tasks(&all, clean)
    }

    /// Whether `id` is a task of the thread, the state updater's included.
    fn owns(&self, id: &TaskId) -> bool {
        self.tasks.contains_key(id) || self.updating.contains_key(id)
    }

    /// Every task of the thread, the state updater's included.
    fn all_tasks(&self) -> Vec<TaskId> {
        self.tasks.keys().chain(self.updating.keys()).copied().collect()
    }

    /// Closes these tasks; a clean close flushes and keeps the checkpoints.
    fn close_tasks(&mut self, ids: &[TaskId], clean: bool) -> Result<()> {
        let mut result = Ok(());
        if self.reader.restoring().is_some_and(|r| ids.contains(&r)) {
            if let Err(e) = self.reader.forget() {
                warn!(thread = self.thread_index, error = %e, "releasing the restore consumer failed");
            }
        }
        for id in ids {
            if self.updating.remove(id).is_some() {
                // The updater keeps what it restored and lets go of the stores; then the lock goes.
                if let Some(link) = &self.updater {
                    link.updater.remove(*id);
                }
                if let Some((_, m)) = &self.metrics {
                    m.task_closed.add(1);
                }
                continue;
            }
            let Some(mut managed) = self.tasks.remove(id) else { continue };
            self.shared.router.task_removed(self.thread_index, *id);
            if let Some((thread, m)) = &self.metrics {
                self.shared.metrics.remove_task(thread, *id);
                m.task_closed.add(1);
            }
            if let Err(e) = managed.task.close(clean) {
                warn!(task_id = %managed.task.id(), error = %e, "error closing task");
                result = result.and(Err(e));
            }
        }
        result
    }
}

/// One event per store: what the state updater restored followed by what the thread did.
fn merge_restored(updater: Vec<RestoreEvent>, thread: Vec<RestoreEvent>) -> Vec<RestoreEvent> {
    let mut merged: Vec<RestoreEvent> = updater;
    for event in thread {
        match merged.iter_mut().find(|e| e.store == event.store) {
            Some(first) => {
                first.restored += event.restored;
                first.elapsed += event.elapsed;
            }
            None => merged.push(event),
        }
    }
    merged
}

fn is_rebalance_error(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(RebalanceInProgress | IllegalGeneration | UnknownMemberId | FencedInstanceId | AssignmentLost)
    )
}

/// The `(topic, partition)`s of a partition list.
pub(crate) fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The thread's input queues hand their records to the tasks.
impl InputSink for TaskManager {
    fn reads(&self, topic: &str, partition: i32) -> bool {
        self.task_of(topic, partition).is_some_and(|id| self.owns(&id))
    }

    fn assignments(&self) -> u64 {
        self.assignments
    }

    /// How many more records of `topic`'s `partition` its task takes now: up to
    /// `buffered.records.per.partition` queued in a running task, none in a task that is not
    /// running (it restores, in this thread or the state updater), whose input waits in its
    /// librdkafka queue, as Kafka Streams pauses it.
    fn room(&self, topic: &str, partition: i32) -> usize {
        let Some(managed) = self.task_of(topic, partition).and_then(|id| self.tasks.get(&id)) else { return 0 };
        if managed.task.state() != TaskState::Running {
            return 0;
        }
        self.max_buffered.saturating_sub(managed.task.buffered_in(topic, partition))
    }

    fn deliver(&mut self, message: &BorrowedMessage<'_>) {
        self.add_message(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(store: &str, start: Option<i64>, restored: u64, ms: u64) -> RestoreEvent {
        RestoreEvent {
            task: TaskId::new(0, 0),
            store: store.into(),
            topic: format!("app-{store}-changelog"),
            partition: 0,
            start_offset: start,
            restored,
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn one_restore_event_per_store_from_the_updater_and_the_thread() {
        // The updater restored the persistent store; the thread found a tail of 2 and restored
        // an in-memory store in full.
        let merged = merge_restored(vec![event("disk", Some(10), 100, 30)], vec![event("disk", Some(110), 2, 5), event("memory", None, 7, 1)]);
        assert_eq!(merged, vec![event("disk", Some(10), 102, 35), event("memory", None, 7, 1)]);
        assert_eq!(merge_restored(Vec::new(), vec![event("memory", None, 7, 1)]), vec![event("memory", None, 7, 1)]);
    }
}

//! Standby replicas (`num.standby.replicas`): warm copies of other instances' task stores,
//! kept up to date from the changelogs, so that a task that fails over restores only the tail.
//!
//! **Placement without a custom assignor.** Kafka Streams' assignor hands out standbys with
//! the active tasks; librdkafka has no hook for one. Instead every instance computes the same
//! plan from the same view of the group (the instance metadata: the current generation's
//! members under the classic protocol, the instances' claims under the consumer protocol):
//! a task's standby goes where the group's own assignor would move the task if its active
//! instance died. Under the classic protocol that is exact, because the `range` assignor is a
//! pure function of the members (sorted by member id, which survivors keep across a rebalance)
//! and the partition counts: the standby of a task is its owner in the range assignment of the
//! group without the active's instance, the second standby its owner without those two
//! instances, and so on. So when an instance dies, each of its tasks is assigned to the very
//! thread that kept it warm. Under the consumer protocol the broker assigns (KIP-848, sticky);
//! the same rule over instances is applied as a guess, and a failover lands on the warm copy
//! only where the broker agrees.
//!
//! **Updating.** Each stream thread reads its standbys' changelogs with a consumer of its own
//! (`read_committed` under exactly-once), between polls and for a bounded slice, as it
//! restores; stores are single-threaded, so there is no separate updater thread. Standby
//! stores are flushed and checkpointed every [`CHECKPOINT_INTERVAL`] and when the standby
//! closes: when the task becomes active here, it opens the same stores and restores from that
//! checkpoint, which is at most the records the standby had not read yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::changelog_reader::is_transient;
use super::checkpoint::{OffsetCheckpoint, Offsets};
use super::state_directory::TaskDirLock;
use crate::error::{Result, StreamsError};
use crate::metrics::ThreadMetrics;
use crate::record::TaskId;
use crate::state::RestoreRecord;
use crate::task::StreamTask;

/// How often standby stores are flushed and checkpointed (also on close).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// A member of the group as the standby plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanMember {
    /// The group's member id (the range assignor's order).
    pub(crate) member_id: String,
    /// The instance (process id) the member belongs to.
    pub(crate) process: String,
    /// Who hosts the standbys planned for this member: a consumer's client id, or a process id.
    pub(crate) key: String,
    /// The member's input partitions.
    pub(crate) partitions: Vec<(String, i32)>,
}

/// The owner of `partition` of a topic with `count` partitions among `members` (sorted by
/// member id) under the range assignor: the first `count % n` members get one extra partition.
fn range_owner<'a>(members: &[&'a PlanMember], count: i32, partition: i32) -> Option<&'a PlanMember> {
    let n = i32::try_from(members.len()).ok().filter(|n| *n > 0)?;
    let (per, extra) = (count / n, count % n);
    (0..n).find_map(|i| {
        let start = per * i + i.min(extra);
        let len = per + i32::from(i < extra);
        (start..start + len).contains(&partition).then(|| members[i as usize])
    })
}

/// The standby tasks of each member key: for every active task, `replicas` owners in turn
/// of the range assignment without the instances already holding the task (see the module
/// docs). Fewer when there are not enough instances.
pub(crate) fn plan(
    members: &[PlanMember],
    replicas: usize,
    task_of: impl Fn(&str, i32) -> Option<TaskId>,
) -> BTreeMap<String, BTreeSet<TaskId>> {
    let mut sorted: Vec<&PlanMember> = members.iter().collect();
    sorted.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    // Partition counts as the assignments show them; a task is placed by one of its topics
    // (co-partitioned topics have equal counts and so the same owners).
    let mut counts: BTreeMap<&str, i32> = BTreeMap::new();
    let mut tasks: BTreeMap<TaskId, (&str, i32, &str)> = BTreeMap::new();
    for member in &sorted {
        for (topic, p) in &member.partitions {
            let count = counts.entry(topic.as_str()).or_default();
            *count = (*count).max(p + 1);
            if let Some(id) = task_of(topic, *p) {
                tasks.entry(id).or_insert((topic.as_str(), *p, member.process.as_str()));
            }
        }
    }
    let mut plan: BTreeMap<String, BTreeSet<TaskId>> = BTreeMap::new();
    for (id, (topic, partition, active)) in tasks {
        let mut excluded: BTreeSet<&str> = BTreeSet::from([active]);
        for _ in 0..replicas {
            let remaining: Vec<&PlanMember> = sorted.iter().copied().filter(|m| !excluded.contains(m.process.as_str())).collect();
            let Some(owner) = range_owner(&remaining, counts[topic], partition) else { break };
            plan.entry(owner.key.clone()).or_default().insert(id);
            excluded.insert(owner.process.as_str());
        }
    }
    plan
}

/// The standby consumer's statistics: each changelog partition's (low watermark, end).
#[derive(Clone, Default)]
pub(crate) struct StandbyContext {
    ends: Arc<Mutex<HashMap<(String, i32), (i64, i64)>>>,
    read_committed: bool,
}

impl ClientContext for StandbyContext {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.clear();
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0 && p.desired) {
                let end = if self.read_committed { p.ls_offset } else { p.hi_offset };
                if end >= 0 {
                    ends.insert((topic.clone(), p.partition), (p.lo_offset.max(0), end));
                }
            }
        }
    }
}

impl ConsumerContext for StandbyContext {}

/// A standby task: the stores of a task (its processors never run), updated from its changelogs.
struct StandbyTask {
    task: StreamTask,
    /// The last changelog offset applied to each store.
    checkpoint: Offsets,
    _lock: TaskDirLock,
}

/// The standby tasks of one stream thread and the consumer that keeps them up to date.
pub(crate) struct StandbyTasks {
    consumer: BaseConsumer<StandbyContext>,
    context: StandbyContext,
    tasks: BTreeMap<TaskId, StandbyTask>,
    /// Changelog partition -> (task, store).
    stores: HashMap<(String, i32), (TaskId, String)>,
    last_checkpoint: Instant,
    client_id: String,
}

impl StandbyTasks {
    pub(crate) fn new(config: &ClientConfig, read_committed: bool) -> Result<Self> {
        let mut config = config.clone();
        if config.get("group.id").is_none() {
            config.set("group.id", "standby-consumer");
        }
        config
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("isolation.level", if read_committed { "read_committed" } else { "read_uncommitted" })
            .set("auto.offset.reset", "earliest");
        // Standbys tail their changelogs: fresh within a tenth of a second.
        super::consumer_defaults(&mut config, Some("100"));
        if config.get("statistics.interval.ms").is_none() {
            config.set("statistics.interval.ms", "1000");
        }
        let client_id = config.get("client.id").unwrap_or_default().to_string();
        let context = StandbyContext { ends: Default::default(), read_committed };
        let consumer = config
            .create_with_context(context.clone())
            .map_err(|e| StreamsError::kafka("create the standby consumer", e))?;
        Ok(StandbyTasks { consumer, context, tasks: BTreeMap::new(), stores: HashMap::new(), last_checkpoint: Instant::now(), client_id })
    }

    /// The standby tasks.
    pub(crate) fn ids(&self) -> BTreeSet<TaskId> {
        self.tasks.keys().copied().collect()
    }

    pub(crate) fn get(&self, id: TaskId) -> Option<&StreamTask> {
        self.tasks.get(&id).map(|t| &t.task)
    }

    /// Starts keeping `task` warm from `checkpoint` (its stores' offsets on disk).
    pub(crate) fn add(&mut self, task: StreamTask, checkpoint: Offsets, lock: TaskDirLock) -> Result<()> {
        let id = task.id();
        for (store, topic) in task.changelogs() {
            self.stores.insert((topic, id.partition), (id, store));
        }
        info!(task_id = %id, from = ?checkpoint, "standby task created");
        self.tasks.insert(id, StandbyTask { task, checkpoint, _lock: lock });
        self.reassign()
    }

    /// Stops keeping `id` warm: flushes its stores, writes its checkpoint and releases them
    /// (the active task that may follow here restores from that checkpoint).
    pub(crate) fn remove(&mut self, id: TaskId) -> Result<()> {
        let Some(mut standby) = self.tasks.remove(&id) else { return Ok(()) };
        self.stores.retain(|_, (task, _)| *task != id);
        let written = checkpoint(&mut standby);
        let closed = standby.task.close(written.is_ok());
        info!(task_id = %id, at = ?standby.checkpoint, "standby task closed");
        self.reassign()?;
        written.and(closed)
    }

    /// Closes every standby task.
    pub(crate) fn remove_all(&mut self) -> Result<()> {
        let mut result = Ok(());
        for id in self.ids() {
            result = result.and(self.remove(id));
        }
        result
    }

    /// Assigns the standby consumer every standby changelog partition, at the position after
    /// what its store holds.
    fn reassign(&mut self) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), (id, _)) in &self.stores {
            let offset = self.tasks[id].checkpoint.get(&(topic.clone(), *partition)).map_or(Offset::Beginning, |o| Offset::Offset(o + 1));
            tpl.add_partition_offset(topic, *partition, offset).map_err(|e| StreamsError::kafka("assign standby changelogs", e))?;
        }
        self.consumer.assign(&tpl).map_err(|e| StreamsError::kafka("assign standby changelogs", e))
    }

    /// Applies the changelog records that arrive within `budget` to the standby stores;
    /// checkpoints every [`CHECKPOINT_INTERVAL`]; publishes counts and lag to `metrics`.
    pub(crate) fn update(&mut self, budget: Duration, metrics: Option<&ThreadMetrics>) -> Result<()> {
        if self.tasks.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + budget;
        let mut polled = Vec::new();
        while polled.len() < 10_000 && (polled.len() % 1_000 != 0 || Instant::now() < deadline) {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(m)) => polled.push(m),
                Some(Err(e)) if is_transient(&e) => {
                    debug!(error = %e, "transient error reading standby changelogs");
                    break;
                }
                Some(Err(e)) => return Err(StreamsError::kafka("read standby changelogs", e)),
            }
        }
        // One batch per changelog partition, borrowed from the consumer's buffers.
        let read = polled.len();
        let mut batches: HashMap<(&str, i32), (Vec<RestoreRecord<'_>>, i64)> = HashMap::new();
        for m in &polled {
            let entry = batches.entry((m.topic(), m.partition())).or_default();
            entry.0.push((m.key().unwrap_or_default(), m.payload()));
            entry.1 = m.offset();
        }
        for ((topic, partition), (batch, last)) in batches {
            let tp = (topic.to_string(), partition);
            let Some((id, store)) = self.stores.get(&tp) else { continue };
            let standby = self.tasks.get_mut(id).expect("stores name standby tasks");
            let handle = standby.task.state_store(store).expect("changelogs name the task's stores");
            handle.borrow_mut().restore_batch(&batch)?;
            standby.checkpoint.insert(tp, last);
        }
        if let Some(m) = metrics {
            m.standby_update.add(read as u64);
            m.standby_tasks.store(self.tasks.len() as i64, std::sync::atomic::Ordering::Relaxed);
            // The consumer's position is past any transaction markers after the last record
            // (under exactly-once a caught-up changelog ends with one), so it, not the last
            // applied offset, measures what is left.
            let positions = self.consumer.position().unwrap_or_default();
            let ends = self.context.ends.lock().unwrap_or_else(|e| e.into_inner());
            let mut lag = BTreeMap::new();
            for (tp, (id, _)) in &self.stores {
                if let Some((low, end)) = ends.get(tp) {
                    let applied = self.tasks[id].checkpoint.get(tp).map_or(*low, |o| o + 1);
                    let fetched = match positions.find_partition(&tp.0, tp.1).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => 0,
                    };
                    let position = applied.max(fetched).max(*low);
                    lag.insert(tp.clone(), (end - position).max(0));
                }
            }
            *m.standby_lag.lock().unwrap_or_else(|e| e.into_inner()) = (self.client_id.clone(), lag);
        }
        if self.last_checkpoint.elapsed() >= CHECKPOINT_INTERVAL {
            self.last_checkpoint = Instant::now();
            for standby in self.tasks.values_mut() {
                if let Err(e) = checkpoint(standby) {
                    warn!(task_id = %standby.task.id(), error = %e, "checkpointing a standby task failed");
                }
            }
        }
        Ok(())
    }
}

/// Flushes a standby's stores to disk and records what they hold.
fn checkpoint(standby: &mut StandbyTask) -> Result<()> {
    standby.task.flush_stores()?;
    let topics = standby.task.checkpointed_changelogs();
    let persistent: Offsets = standby.checkpoint.iter().filter(|((topic, _), _)| topics.contains(topic)).map(|(k, v)| (k.clone(), *v)).collect();
    OffsetCheckpoint::in_dir(standby.task.state_dir()).write(&persistent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, process: &str, partitions: &[i32]) -> PlanMember {
        PlanMember {
            member_id: id.into(),
            process: process.into(),
            key: format!("{process}-{id}"),
            partitions: partitions.iter().map(|p| ("in".to_string(), *p)).collect(),
        }
    }

    fn task_of(topic: &str, p: i32) -> Option<TaskId> {
        (topic == "in").then(|| TaskId::new(0, p))
    }

    #[test]
    fn range_owner_matches_the_range_assignor() {
        let ms = [member("a", "p1", &[]), member("b", "p2", &[]), member("c", "p3", &[])];
        let refs: Vec<&PlanMember> = ms.iter().collect();
        // 7 partitions over 3: [0,1,2] [3,4] [5,6].
        let owners: Vec<&str> = (0..7).map(|p| range_owner(&refs, 7, p).unwrap().member_id.as_str()).collect();
        assert_eq!(owners, ["a", "a", "a", "b", "b", "c", "c"]);
        assert!(range_owner(&[], 7, 0).is_none());
    }

    #[test]
    fn a_standby_sits_where_the_task_goes_when_its_instance_dies() {
        // 6 partitions over 3 instances: a [0,1], b [2,3], c [4,5].
        let ms = vec![member("a", "p1", &[0, 1]), member("b", "p2", &[2, 3]), member("c", "p3", &[4, 5])];
        let plan = plan(&ms, 1, task_of);
        // Without p1: b [0,1,2], c [3,4,5] -> b gets 0 and 1. Without p2: a [0,1,2], c [3,4,5]
        // -> a gets 2, c 3. Without p3: a [0,1,2], b [3,4,5] -> b gets 4 and 5.
        let of = |key: &str| plan.get(key).map(|s| s.iter().map(|t| t.partition).collect::<Vec<_>>()).unwrap_or_default();
        assert_eq!(of("p2-b"), vec![0, 1, 4, 5]);
        assert_eq!(of("p1-a"), vec![2]);
        assert_eq!(of("p3-c"), vec![3]);
        // And every prediction is a member that really gets the task without the active one.
        for (key, tasks) in &plan {
            let holder = ms.iter().find(|m| &m.key == key).unwrap();
            for t in tasks {
                let active = ms.iter().find(|m| m.partitions.contains(&("in".into(), t.partition))).unwrap();
                assert_ne!(holder.process, active.process);
                let survivors: Vec<&PlanMember> = ms.iter().filter(|m| m.process != active.process).collect();
                assert_eq!(range_owner(&survivors, 6, t.partition).unwrap().key, *key);
            }
        }
    }

    #[test]
    fn replicas_go_to_distinct_instances_and_never_beside_the_active() {
        // Two threads on p1: a standby never lands on the active's instance.
        let ms = vec![member("a", "p1", &[0]), member("b", "p1", &[1]), member("c", "p2", &[2]), member("d", "p3", &[3])];
        let plan = plan(&ms, 2, task_of);
        for p in 0..4 {
            let holders: Vec<&str> = ms
                .iter()
                .filter(|m| plan.get(&m.key).is_some_and(|s| s.contains(&TaskId::new(0, p))))
                .map(|m| m.process.as_str())
                .collect();
            let active = ms.iter().find(|m| m.partitions.contains(&("in".into(), p))).unwrap();
            assert_eq!(holders.len(), 2, "partition {p}: {holders:?}");
            assert!(!holders.contains(&active.process.as_str()));
            assert_ne!(holders[0], holders[1]);
        }
        // One instance: nowhere to put a standby.
        assert!(super::plan(&[member("a", "p1", &[0, 1])], 1, task_of).is_empty());
    }
}

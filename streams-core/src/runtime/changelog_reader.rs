//! `ChangelogReader`: restores a task's stores from their changelog partitions, from the
//! checkpointed offset + 1 to the end, in batches, before the task processes input; a slice
//! at a time, so that its thread (the state updater, or a stream thread for in-memory stores)
//! attends to other work in between.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::checkpoint::Offsets;
use super::native::{ConsumerQueue, Fetched, FetchedBatch};
use crate::metrics::{Sensor, ThreadMetrics};
use crate::error::{Result, StreamsError};
use crate::state::{RestoreRecord, StateStore};
use crate::record::TaskId;
use crate::task::StreamTask;

/// What one store restored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreEvent {
    /// The task.
    pub task: crate::record::TaskId,
    /// The store.
    pub store: String,
    /// The changelog topic.
    pub topic: String,
    /// The changelog partition.
    pub partition: i32,
    /// First offset read (`None`: from the beginning).
    pub start_offset: Option<i64>,
    /// Records applied.
    pub restored: u64,
    /// Time spent reading and applying them.
    pub elapsed: Duration,
}

const BATCH: usize = 1000;

/// A client context that does not report reaching the end of a partition as an error.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EndAwareContext;

impl rdkafka::ClientContext for EndAwareContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF);
        if !end {
            tracing::error!(error = %error, reason, "kafka client error");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndAwareContext {}

/// What a [`ChangelogReader`] restores: the logged stores of one task.
pub(crate) trait RestoreTarget {
    /// The task.
    fn id(&self) -> TaskId;
    /// `(store, changelog topic)` of each store to restore.
    fn changelogs(&self) -> Vec<(String, String)>;
    /// The store `name`.
    fn state_store(&self, name: &str) -> Option<Rc<RefCell<dyn StateStore>>>;
}

impl RestoreTarget for StreamTask {
    fn id(&self) -> TaskId {
        StreamTask::id(self)
    }
    fn changelogs(&self) -> Vec<(String, String)> {
        StreamTask::changelogs(self)
    }
    fn state_store(&self, name: &str) -> Option<Rc<RefCell<dyn StateStore>>> {
        StreamTask::state_store(self, name)
    }
}

/// Reads changelogs with a consumer of its own (no group; `read_committed`).
pub(crate) struct ChangelogReader {
    /// The consumer's queue, read in batches; declared before the consumer, so dropped before it.
    queue: ConsumerQueue,
    consumer: BaseConsumer<EndAwareContext>,
    timeout: Duration,
    active: Option<ActiveRestore>,
    /// Also counts restored records here (the state updater's own sensor).
    counted: Option<Arc<Sensor>>,
}

impl ChangelogReader {
    pub(crate) fn new(config: &ClientConfig, timeout: Duration) -> Result<Self> {
        let mut config = config.clone();
        // A group id is only needed by librdkafka to assign and unassign; nothing is committed.
        if config.get("group.id").is_none() {
            config.set("group.id", "restore-consumer");
        }
        config
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest");
        // The end of a changelog shows as an empty fetch: the broker should not hold it for
        // the default 500 ms (a caught-up store would take that long to "restore").
        super::consumer_defaults(&mut config, Some("20"));
        let consumer: BaseConsumer<EndAwareContext> =
            config.create_with_context(EndAwareContext).map_err(|e| StreamsError::kafka("create restore consumer", e))?;
        let queue = ConsumerQueue::of(consumer.client()).expect("a consumer with a group id has a consumer queue");
        Ok(ChangelogReader { queue, consumer, timeout, active: None, counted: None })
    }

    /// Also counts every restored record in `sensor`.
    pub(crate) fn counting_in(mut self, sensor: Arc<Sensor>) -> Self {
        self.counted = Some(sensor);
        self
    }

    /// Restores the logged stores of `task` for at most `budget`, from where the previous call
    /// for the same task stopped, so that the calling thread attends to its other work in
    /// between (a stream thread keeps its group membership and processes its running tasks).
    /// Returns the restore events once every store is restored.
    ///
    /// `checkpoint` holds the offsets already in the stores and is advanced as records are
    /// applied. Progress goes to `metrics`: records restored, and records left by the
    /// changelog's end offset when the store's restore began.
    pub(crate) fn restore_step(
        &mut self,
        task: &dyn RestoreTarget,
        checkpoint: &mut Offsets,
        budget: Duration,
        metrics: Option<&ThreadMetrics>,
    ) -> Result<Option<Vec<RestoreEvent>>> {
        let partition = task.id().partition;
        if self.active.as_ref().is_none_or(|a| a.task != task.id()) {
            self.forget()?;
            self.active = Some(ActiveRestore { task: task.id(), pending: task.changelogs().into(), current: None, events: Vec::new() });
        }
        let deadline = Instant::now() + budget;
        loop {
            let active = self.active.as_mut().expect("set above");
            if active.current.is_none() {
                let Some((store, topic)) = active.pending.pop_front() else {
                    let events = std::mem::take(&mut active.events);
                    self.forget()?;
                    return Ok(Some(events));
                };
                let handle = task.state_store(&store).expect("changelogs name the task's stores");
                // An in-memory store starts empty: it restores its whole changelog.
                let persistent = handle.borrow().persistent();
                let start = checkpoint.get(&(topic.clone(), partition)).filter(|_| persistent).map(|o| o + 1);
                let started = Instant::now();
                // The watermarks first: they also make the consumer learn the partition's
                // leader, and a consumer assigned a partition whose leader it does not know
                // asks for its start offset only 500 ms later (librdkafka).
                let end = self.consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5)).ok();
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, partition, start.map_or(Offset::Beginning, Offset::Offset))
                    .map_err(|e| StreamsError::kafka("assign changelog", e))?;
                self.consumer.assign(&tpl).map_err(|e| StreamsError::kafka(format!("assign {topic}-{partition}"), e))?;
                let current = StoreRestore { store, topic, start, end, started, restored: 0, last: None };
                current.report(metrics, None, 0);
                active.current = Some(current);
            }
            let current = active.current.as_mut().expect("set above");
            let timeout = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
            // The end is where the broker reports end-of-partition for our fetch position; a
            // listed end offset alone can be stale on some brokers. The first record is waited
            // for through rdkafka's poll, which also reports the client's errors; the rest of
            // what is queued is read in one batch, without a clock reading per record, and
            // written to the store in one batch, straight from the consumer's buffers.
            let failed = |e: KafkaError| {
                if is_transient(&e) {
                    tracing::debug!(topic = %current.topic, partition, error = %e, "transient error while restoring");
                    Ok(())
                } else {
                    Err(StreamsError::kafka(format!("restore {}-{partition}", current.topic), e))
                }
            };
            let mut ended = false;
            let first = match self.consumer.poll(timeout) {
                None => None,
                Some(Ok(message)) => Some(message),
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    ended = true;
                    None
                }
                Some(Err(e)) => {
                    failed(e)?;
                    None
                }
            };
            let mut fetched = FetchedBatch::default();
            if first.is_some() {
                self.queue.consume(Duration::ZERO, BATCH - 1, &mut fetched);
            }
            let mut batch: Vec<RestoreRecord<'_>> = Vec::with_capacity(BATCH);
            let mut last = first.as_ref().map(|m| m.offset());
            batch.extend(first.iter().map(|m| (m.key().unwrap_or_default(), m.payload())));
            for message in fetched.iter() {
                match message {
                    Fetched::Record { offset, key, value } => {
                        batch.push((key.unwrap_or_default(), value));
                        last = Some(offset);
                    }
                    Fetched::End => ended = true,
                    Fetched::Error(e) => failed(e)?,
                }
            }
            current.apply(task, checkpoint, partition, metrics, self.counted.as_deref(), &batch, last)?;
            drop(batch);
            if ended {
                if let Some(m) = metrics {
                    m.restore_remaining.store(0, std::sync::atomic::Ordering::Relaxed);
                }
                let done = active.current.take().expect("restoring a store");
                tracing::info!(task_id = %task.id(), store = %done.store, topic = %done.topic, partition, restored = done.restored, "restored store");
                active.events.push(RestoreEvent {
                    task: task.id(),
                    store: done.store,
                    topic: done.topic,
                    partition,
                    start_offset: done.start,
                    restored: done.restored,
                    elapsed: done.started.elapsed(),
                });
                continue;
            }
            if current.started.elapsed() > self.timeout {
                return Err(StreamsError::Timeout(format!(
                    "restoring {}-{partition}: end of changelog not reached within {:?}",
                    current.topic, self.timeout
                )));
            }
            if Instant::now() >= deadline {
                // What was read is in the store: the next call goes on from there.
                return Ok(None);
            }
        }
    }

    /// Drops a restore in progress (its task closed) and releases the changelog partition.
    pub(crate) fn forget(&mut self) -> Result<()> {
        self.active = None;
        if self.consumer.assignment().is_ok_and(|a| a.count() > 0) {
            self.consumer
                .assign(&TopicPartitionList::new())
                .map_err(|e| StreamsError::kafka("unassign restore consumer", e))?;
        }
        Ok(())
    }

    /// The task being restored, if any.
    pub(crate) fn restoring(&self) -> Option<TaskId> {
        self.active.as_ref().map(|a| a.task)
    }
}

/// A task's restoration in progress.
struct ActiveRestore {
    task: TaskId,
    /// `(store, changelog topic)` still to restore after the current one.
    pending: VecDeque<(String, String)>,
    current: Option<StoreRestore>,
    events: Vec<RestoreEvent>,
}

/// One store's restoration in progress.
struct StoreRestore {
    store: String,
    topic: String,
    start: Option<i64>,
    /// The changelog's (low, high) watermarks when the restore began.
    end: Option<(i64, i64)>,
    started: Instant,
    restored: u64,
    last: Option<i64>,
}

impl StoreRestore {
    /// Writes `batch`, whose last record is at offset `last`, to the store in one batch and
    /// advances the checkpoint.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        task: &dyn RestoreTarget,
        checkpoint: &mut Offsets,
        partition: i32,
        metrics: Option<&ThreadMetrics>,
        counted: Option<&Sensor>,
        batch: &[RestoreRecord<'_>],
        last: Option<i64>,
    ) -> Result<()> {
        let Some(last) = last.filter(|_| !batch.is_empty()) else { return Ok(()) };
        let store = task.state_store(&self.store).expect("changelogs name the task's stores");
        store.borrow_mut().restore_batch(batch)?;
        let applied = batch.len() as u64;
        self.restored += applied;
        self.last = Some(last);
        checkpoint.insert((self.topic.clone(), partition), last);
        self.report(metrics, counted, applied);
        Ok(())
    }

    fn report(&self, metrics: Option<&ThreadMetrics>, counted: Option<&Sensor>, applied: u64) {
        if let Some(sensor) = counted {
            sensor.add(applied);
        }
        if let Some(m) = metrics {
            m.restore.add(applied);
            let left = match self.end {
                Some((low, high)) => (high - self.last.map_or(self.start.unwrap_or(low), |o| o + 1).max(low)).max(0),
                None => 0,
            };
            m.restore_remaining.store(left, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Errors a client retries by itself.
pub(crate) fn is_transient(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::WaitingForCoordinator
        )
    )
}

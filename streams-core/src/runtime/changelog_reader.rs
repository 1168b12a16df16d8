//! `ChangelogReader`: restores a task's stores from their changelog partitions, from the
//! checkpointed offset + 1 to the end, in batches, before the task processes input.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::checkpoint::Offsets;
use crate::metrics::ThreadMetrics;
use crate::error::{Result, StreamsError};
use crate::state::RestoreRecord;
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

/// Reads changelogs with a consumer of its own (no group; `read_committed`).
pub(crate) struct ChangelogReader {
    consumer: BaseConsumer<EndAwareContext>,
    timeout: Duration,
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
        let consumer =
            config.create_with_context(EndAwareContext).map_err(|e| StreamsError::kafka("create restore consumer", e))?;
        Ok(ChangelogReader { consumer, timeout })
    }

    /// Restores every logged store of `task`; `checkpoint` holds the offsets already in the
    /// stores and is advanced to the last offset applied.
    /// Progress goes to `metrics`: records restored, and records left by the changelog's end
    /// offset when the restore began.
    pub(crate) fn restore(&self, task: &StreamTask, checkpoint: &mut Offsets, metrics: Option<&ThreadMetrics>) -> Result<Vec<RestoreEvent>> {
        let partition = task.id().partition;
        let mut events = Vec::new();
        for (store_name, topic) in task.changelogs() {
            let store = task.state_store(&store_name).expect("changelogs name the task's stores");
            // An in-memory store starts empty: it restores its whole changelog.
            let persistent = store.borrow().persistent();
            let start = checkpoint.get(&(topic.clone(), partition)).filter(|_| persistent).map(|o| o + 1);
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&topic, partition, start.map_or(Offset::Beginning, Offset::Offset))
                .map_err(|e| StreamsError::kafka("assign changelog", e))?;
            self.consumer.assign(&tpl).map_err(|e| StreamsError::kafka(format!("assign {topic}-{partition}"), e))?;
            let started = Instant::now();
            let deadline = started + self.timeout;
            let end = metrics.and_then(|_| self.consumer.fetch_watermarks(&topic, partition, Duration::from_secs(5)).ok());
            let report = |restored_now: u64, next: Option<i64>| {
                if let Some(m) = metrics {
                    m.restore.add(restored_now);
                    let left = match (end, next) {
                        (Some((low, high)), next) => (high - next.unwrap_or(start.unwrap_or(low)).max(low)).max(0),
                        (None, _) => 0,
                    };
                    m.restore_remaining.store(left, std::sync::atomic::Ordering::Relaxed);
                }
            };
            report(0, None);
            let mut batch: Vec<RestoreRecord> = Vec::with_capacity(BATCH);
            let mut restored = 0u64;
            let mut last = None;
            // The end is where the broker reports end-of-partition for our fetch position; a
            // listed end offset alone can be stale on some brokers.
            loop {
                match self.consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Ok(message)) => {
                        last = Some(message.offset());
                        batch.push((message.key().unwrap_or_default().to_vec(), message.payload().map(<[u8]>::to_vec)));
                        if batch.len() >= BATCH {
                            store.borrow_mut().restore_batch(&batch)?;
                            restored += batch.len() as u64;
                            report(batch.len() as u64, last.map(|o| o + 1));
                            batch.clear();
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) if is_transient(&e) => {
                        tracing::debug!(topic = %topic, partition, error = %e, "transient error while restoring");
                    }
                    Some(Err(e)) => {
                        return Err(StreamsError::kafka(format!("restore {topic}-{partition}"), e));
                    }
                }
                if Instant::now() > deadline {
                    return Err(StreamsError::Timeout(format!(
                        "restoring {topic}-{partition}: end of changelog not reached within {:?}",
                        self.timeout
                    )));
                }
            }
            if !batch.is_empty() {
                store.borrow_mut().restore_batch(&batch)?;
                restored += batch.len() as u64;
                report(batch.len() as u64, last.map(|o| o + 1));
            }
            if let Some(m) = metrics {
                m.restore_remaining.store(0, std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(offset) = last {
                checkpoint.insert((topic.clone(), partition), offset);
            }
            tracing::info!(task_id = %task.id(), store = %store_name, topic = %topic, partition, restored, "restored store");
            let elapsed = started.elapsed();
            events.push(RestoreEvent { task: task.id(), store: store_name, topic, partition, start_offset: start, restored, elapsed });
        }
        self.consumer
            .assign(&TopicPartitionList::new())
            .map_err(|e| StreamsError::kafka("unassign restore consumer", e))?;
        Ok(events)
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

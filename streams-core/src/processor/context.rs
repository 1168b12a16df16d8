//! The task-wide context that every node of a task runs in, and the task's counters.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::collector::RecordCollector;
use crate::config::{DeserializationHandler, ExceptionHandler};
use crate::error::{Result, StreamsError};
use crate::processor::{PunctuationType, ScheduleId};
use crate::record::{ConsumerRecord, ProducerRecord, RecordContext, TaskId};
use crate::state::builder::RegisteredStore;
use crate::state::GlobalStores;

/// Counters of one task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(not(feature = "test-utils"), allow(unreachable_pub))]
pub struct TaskMetrics {
    /// Records processed.
    pub processed_records: u64,
    /// Records skipped: undeserializable (with log-and-continue), null keys where keys are
    /// required, or invalid timestamps.
    pub dropped_records: u64,
    /// Punctuations delivered.
    pub punctuations: u64,
    /// Records processed while another input partition of the task was empty, after it had
    /// idled `max.task.idle.ms` (Kafka Streams' `enforced-processing` metric).
    pub enforced_processing: u64,
}

impl std::ops::AddAssign for TaskMetrics {
    fn add_assign(&mut self, other: Self) {
        self.processed_records += other.processed_records;
        self.dropped_records += other.dropped_records;
        self.punctuations += other.punctuations;
        self.enforced_processing += other.enforced_processing;
    }
}

pub(crate) struct Schedule {
    pub(crate) id: ScheduleId,
    pub(crate) node: usize,
    pub(crate) kind: PunctuationType,
    pub(crate) interval_ms: i64,
    pub(crate) next: i64,
}

/// Task-wide state shared by all nodes of a task while they run.
pub(crate) struct TaskContext {
    pub(crate) task_id: TaskId,
    pub(crate) application_id: String,
    pub(crate) stream_time: i64,
    pub(crate) wall_clock_ms: i64,
    pub(crate) record_context: Rc<RefCell<RecordContext>>,
    pub(crate) collector: Rc<RefCell<dyn RecordCollector>>,
    pub(crate) stores: BTreeMap<String, RegisteredStore>,
    pub(crate) schedules: Vec<Schedule>,
    pub(crate) next_schedule_id: u64,
    pub(crate) commit_requested: bool,
    pub(crate) deserialization_handler: DeserializationHandler,
    pub(crate) processing_handler: ExceptionHandler,
    pub(crate) metrics: TaskMetrics,
    pub(crate) global_stores: GlobalStores,
    /// `errors.dead.letter.queue.topic.name`.
    pub(crate) dead_letter_queue: Option<String>,
    /// Set by a handler that skipped the record being processed.
    pub(crate) skipped: Option<SkippedRecord>,
}

/// Why a handler skipped the current input record (for the dead-letter queue).
#[derive(Debug, Clone)]
pub(crate) struct SkippedRecord {
    /// `deserialization` or `processing`.
    kind: &'static str,
    message: String,
}

impl SkippedRecord {
    pub(crate) fn new(kind: &'static str, error: &dyn std::fmt::Display) -> Self {
        SkippedRecord { kind, message: error.to_string() }
    }

    /// The input record as it was consumed, with the error in `__streams.errors.*` headers.
    pub(crate) fn dead_letter(self, topic: &str, task: TaskId, record: &ConsumerRecord) -> ProducerRecord {
        let mut headers = record.headers.clone();
        let text = |s: String| Some(s.into_bytes());
        headers.push(("__streams.errors.exception".into(), text(format!("{}-exception", self.kind))));
        headers.push(("__streams.errors.message".into(), text(self.message)));
        headers.push(("__streams.errors.topic".into(), text(record.topic.clone())));
        headers.push(("__streams.errors.partition".into(), text(record.partition.to_string())));
        headers.push(("__streams.errors.offset".into(), text(record.offset.to_string())));
        headers.push(("__streams.errors.task".into(), text(task.to_string())));
        ProducerRecord {
            topic: topic.to_string(),
            partition: None,
            timestamp: record.timestamp,
            key: record.key.clone(),
            value: record.value.clone(),
            headers,
        }
    }
}

impl TaskContext {
    /// The typed handle of store `name` (a `KeyValueStore`, `WindowStore` or `SessionStore`).
    pub(crate) fn state_store<S: Clone + 'static>(&self, name: &str) -> Result<S> {
        let entry = self.stores.get(name).ok_or_else(|| {
            StreamsError::Topology(format!("task {} has no state store named `{name}`", self.task_id))
        })?;
        entry.typed.downcast_ref::<S>().cloned().ok_or_else(|| {
            StreamsError::Topology(format!(
                "state store `{name}` is a {} but was requested as {}",
                entry.type_name,
                std::any::type_name::<S>()
            ))
        })
    }
}

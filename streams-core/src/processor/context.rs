//! The task-wide context that every node of a task runs in, and the task's counters.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use crate::collector::RecordCollector;
use crate::error::{Result, StreamsError};
use crate::handlers::{DeadLetter, DeserializationExceptionHandler, ErrorHandlerContext, HandlerResponse, ProcessingExceptionHandler};
use crate::processor::{BuiltinTimestampExtractor, PunctuationType, ScheduleId};
use crate::record::{ConsumerRecord, Headers, RecordContext, TaskId};
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
    pub(crate) deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
    pub(crate) processing_handler: Arc<dyn ProcessingExceptionHandler>,
    /// `default.timestamp.extractor`, for sources without their own.
    pub(crate) timestamp_extractor: BuiltinTimestampExtractor,
    pub(crate) metrics: TaskMetrics,
    pub(crate) global_stores: GlobalStores,
    /// The input record being processed, as consumed (for the handlers' context).
    pub(crate) source_record: Option<ConsumerRecord>,
    /// Records the handlers asked to write (dead letters), sent after the record.
    pub(crate) dead_letters: Vec<DeadLetter>,
}

impl TaskContext {
    /// Asks the processing handler about `error`, raised by `node` on the current record;
    /// returns whether to go on.
    pub(crate) fn handle_processing_error(&mut self, node: &str, error: &StreamsError) -> bool {
        static NO_HEADERS: Headers = Vec::new();
        let response = match &self.source_record {
            Some(raw) => self.processing_handler.handle(&ErrorHandlerContext::of_source(raw, node, self.task_id), error),
            // A punctuation: no input record.
            None => {
                let at = self.record_context.borrow().clone();
                let ctx = ErrorHandlerContext {
                    topic: &at.topic,
                    partition: at.partition,
                    offset: at.offset,
                    timestamp: at.timestamp,
                    headers: &NO_HEADERS,
                    processor_node: node,
                    task_id: self.task_id,
                    source_raw_key: None,
                    source_raw_value: None,
                };
                self.processing_handler.handle(&ctx, error)
            }
        };
        self.resumes(response)
    }

    /// Whether a handler's `response` goes on with the next record; if so the skipped record
    /// counts as dropped and the dead letters are queued.
    pub(crate) fn resumes(&mut self, response: HandlerResponse) -> bool {
        match response {
            HandlerResponse::Fail => false,
            HandlerResponse::Resume(dead) => {
                self.metrics.dropped_records += 1;
                self.dead_letters.extend(dead);
                true
            }
        }
    }

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

//! Exception handlers (Kafka Streams' `DeserializationExceptionHandler`,
//! `ProcessingExceptionHandler` and `ProductionExceptionHandler`, with KIP-1033's record
//! context and KIP-1034's dead-letter records): what happens to a record that cannot be read,
//! processed or written.
//!
//! Set one with [`StreamsConfig::set_deserialization_exception_handler`](crate::StreamsConfig::set_deserialization_exception_handler)
//! and friends; without one, the `*.exception.handler` settings pick a built-in
//! [`ExceptionHandler`] (log and fail, or log and continue, sending skipped records to
//! `errors.dead.letter.queue.topic.name` when it is set).
//!
//! ```
//! use streams_core::handlers::{DeadLetter, DeserializationExceptionHandler, ErrorHandlerContext, HandlerResponse};
//! use streams_core::{SerdeError, StreamsConfig};
//!
//! /// Drops heartbeats nobody can parse; quarantines other bad records; never stops.
//! struct Quarantine;
//!
//! impl DeserializationExceptionHandler for Quarantine {
//!     fn handle(&self, ctx: &ErrorHandlerContext<'_>, error: &SerdeError) -> HandlerResponse {
//!         if ctx.source_raw_value.is_some_and(|v| v.starts_with(b"HB")) {
//!             return HandlerResponse::resume();
//!         }
//!         HandlerResponse::resume_with(vec![DeadLetter::of_source(ctx, "quarantine", "deserialization", error)])
//!     }
//! }
//!
//! let mut config = StreamsConfig::new();
//! config.set_deserialization_exception_handler(Quarantine);
//! ```

use std::fmt;

use crate::config::ExceptionHandler;
use crate::error::{KafkaError, SerdeError, StreamsError};
use crate::record::{ConsumerRecord, Headers, ProducerRecord, TaskId};

/// Where a failed record came from: the input record being processed and the node that failed.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ErrorHandlerContext<'a> {
    /// The input record's topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp.
    pub timestamp: i64,
    /// Its headers as consumed.
    pub headers: &'a Headers,
    /// The node that failed (the source node for deserialization errors).
    pub processor_node: &'a str,
    /// The task.
    pub task_id: TaskId,
    /// The input record's key as consumed (KIP-1034's `sourceRawKey`).
    pub source_raw_key: Option<&'a [u8]>,
    /// The input record's value as consumed (`sourceRawValue`).
    pub source_raw_value: Option<&'a [u8]>,
}

impl<'a> ErrorHandlerContext<'a> {
    /// The context of input record `raw`, failed in `processor_node` of `task_id`.
    pub(crate) fn of_source(raw: &'a ConsumerRecord, processor_node: &'a str, task_id: TaskId) -> Self {
        ErrorHandlerContext {
            topic: &raw.topic,
            partition: raw.partition,
            offset: raw.offset,
            timestamp: raw.timestamp,
            headers: &raw.headers,
            processor_node,
            task_id,
            source_raw_key: raw.key.as_deref(),
            source_raw_value: raw.value.as_deref(),
        }
    }
}

/// A record a handler asks to write, typically to a dead-letter topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// The topic (it must exist).
    pub topic: String,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Timestamp.
    pub timestamp: i64,
    /// Headers.
    pub headers: Headers,
}

impl DeadLetter {
    /// The input record as consumed, to `topic`, with the error in headers as the built-in
    /// handlers write it: `__streams.errors.exception` (`<kind>-exception`), `.message`,
    /// `.topic`, `.partition`, `.offset` and `.task`.
    pub fn of_source(ctx: &ErrorHandlerContext<'_>, topic: impl Into<String>, kind: &str, error: &dyn fmt::Display) -> Self {
        let mut headers = ctx.headers.clone();
        let text = |s: String| Some(s.into_bytes());
        headers.push(("__streams.errors.exception".into(), text(format!("{kind}-exception"))));
        headers.push(("__streams.errors.message".into(), text(error.to_string())));
        headers.push(("__streams.errors.topic".into(), text(ctx.topic.to_string())));
        headers.push(("__streams.errors.partition".into(), text(ctx.partition.to_string())));
        headers.push(("__streams.errors.offset".into(), text(ctx.offset.to_string())));
        headers.push(("__streams.errors.task".into(), text(ctx.task_id.to_string())));
        DeadLetter {
            topic: topic.into(),
            key: ctx.source_raw_key.map(<[u8]>::to_vec),
            value: ctx.source_raw_value.map(<[u8]>::to_vec),
            timestamp: ctx.timestamp,
            headers,
        }
    }

    pub(crate) fn into_producer_record(self) -> ProducerRecord {
        ProducerRecord {
            topic: self.topic.into(),
            partition: None,
            timestamp: self.timestamp,
            key: self.key,
            value: self.value,
            headers: self.headers,
        }
    }
}

/// A handler's decision.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HandlerResponse {
    /// Stop: the error fails the stream thread (nothing after the last commit is committed).
    Fail,
    /// Skip the record (counted in `dropped-records`), after writing these records.
    Resume(Vec<DeadLetter>),
}

impl HandlerResponse {
    /// Stop with the error.
    pub fn fail() -> Self {
        HandlerResponse::Fail
    }

    /// Skip the record.
    pub fn resume() -> Self {
        HandlerResponse::Resume(Vec::new())
    }

    /// Skip the record and write `dead_letters`.
    pub fn resume_with(dead_letters: Vec<DeadLetter>) -> Self {
        HandlerResponse::Resume(dead_letters)
    }
}

/// Decides about an input record whose key or value the source's serdes cannot read.
pub trait DeserializationExceptionHandler: Send + Sync + 'static {
    /// Fail, or skip the record (and write dead letters).
    fn handle(&self, ctx: &ErrorHandlerContext<'_>, error: &SerdeError) -> HandlerResponse;
}

/// Decides about a record a processor failed on (its error, or a serde error inside it).
/// Broken stores and clients are never handed to it: they always fail.
pub trait ProcessingExceptionHandler: Send + Sync + 'static {
    /// Fail, or skip the record in this node (and write dead letters).
    fn handle(&self, ctx: &ErrorHandlerContext<'_>, error: &StreamsError) -> HandlerResponse;
}

/// An output record the producer refused or could not deliver.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ProducedRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition, if chosen.
    pub partition: Option<i32>,
    /// Key bytes.
    pub key: Option<&'a [u8]>,
    /// Value bytes.
    pub value: Option<&'a [u8]>,
}

/// Decides about an output record the producer refused (too large, unknown partition) or,
/// under at-least-once, failed to deliver. Under exactly-once a failed delivery always aborts
/// the transaction: skipping it would commit a transaction without it.
pub trait ProductionExceptionHandler: Send + Sync + 'static {
    /// Fail, or skip the record (and write dead letters).
    fn handle(&self, record: &ProducedRecord<'_>, error: &KafkaError) -> HandlerResponse;
}

/// A built-in [`ExceptionHandler`] with the dead-letter topic it writes skipped records to.
#[derive(Debug, Clone)]
pub(crate) struct Builtin {
    pub(crate) kind: ExceptionHandler,
    pub(crate) dead_letter_queue: Option<String>,
}

impl Builtin {
    fn respond(&self, ctx: &ErrorHandlerContext<'_>, kind: &str, error: &dyn fmt::Display, setting: &str) -> HandlerResponse {
        match self.kind {
            ExceptionHandler::LogAndFail => {
                tracing::error!(topic = %ctx.topic, partition = ctx.partition, offset = ctx.offset, node = %ctx.processor_node,
                    error = %error, "{kind} failed; stopping ({setting} = log-and-fail)");
                HandlerResponse::fail()
            }
            ExceptionHandler::LogAndContinue => {
                tracing::warn!(topic = %ctx.topic, partition = ctx.partition, offset = ctx.offset, node = %ctx.processor_node,
                    error = %error, "{kind} failed; skipping the record ({setting} = log-and-continue)");
                let dead = self.dead_letter_queue.iter().map(|topic| DeadLetter::of_source(ctx, topic.clone(), kind, error));
                HandlerResponse::resume_with(dead.collect())
            }
        }
    }
}

impl DeserializationExceptionHandler for Builtin {
    fn handle(&self, ctx: &ErrorHandlerContext<'_>, error: &SerdeError) -> HandlerResponse {
        self.respond(ctx, "deserialization", error, "deserialization.exception.handler")
    }
}

impl ProcessingExceptionHandler for Builtin {
    fn handle(&self, ctx: &ErrorHandlerContext<'_>, error: &StreamsError) -> HandlerResponse {
        self.respond(ctx, "processing", error, "processing.exception.handler")
    }
}

impl ProductionExceptionHandler for Builtin {
    fn handle(&self, record: &ProducedRecord<'_>, error: &KafkaError) -> HandlerResponse {
        match self.kind {
            ExceptionHandler::LogAndFail => HandlerResponse::fail(),
            ExceptionHandler::LogAndContinue => {
                tracing::warn!(topic = %record.topic, error = %error,
                    "send failed; skipping the record (default.production.exception.handler = log-and-continue)");
                HandlerResponse::resume()
            }
        }
    }
}

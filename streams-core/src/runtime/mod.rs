//! The Kafka runtime: [`KafkaStreams`] runs a topology on a cluster with N stream threads,
//! internal topics, changelog-backed stores and restoration after rebalances.
//!
//! `client` is the user's handle, `shared` the state its threads share with it; each stream
//! thread (`stream_thread`) drives a `TaskManager` of tasks with a consumer, a record collector
//! (producer) and a `ChangelogReader` (restore consumer); the `state_updater` thread restores
//! persistent stores for all of them; `topics` creates internal topics.

mod changelog_reader;
mod checkpoint;
mod client;
mod collector;
mod global_thread;
mod metadata;
mod offset_reset;
mod query;
mod shared;
mod standby;
mod state_directory;
mod state_updater;
mod stream_thread;
mod task_manager;
mod topics;

pub use changelog_reader::RestoreEvent;
pub use client::KafkaStreams;
pub use shared::{State, StreamThreadExceptionResponse};
#[cfg(feature = "test-utils")]
pub(crate) use changelog_reader::EndAwareContext;
pub(crate) use state_directory::StateDirectory;
#[cfg(feature = "test-utils")]
pub(crate) use {stream_thread::to_record, topics::resolve_source_patterns, topics::topic_partitions};

pub(crate) use shared::ClientShared;
pub(crate) use task_manager::now_ms;
#[cfg(feature = "test-utils")]
pub(crate) use metadata::metadata_topic;

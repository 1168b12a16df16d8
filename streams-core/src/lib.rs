//! The core of the library: serdes, records, the Processor API, [`Topology`], state stores and
//! the [`KafkaStreams`] runtime (stream threads, tasks, changelogs); with the `test-utils`
//! feature, also the broker-free `TopologyTestDriver` and an embedded cluster.
//!
//! Records flow between typed processor nodes as [`Record<K, V>`](Record); bytes appear only at
//! sources, sinks and the store serde layer.
//!
//! What is public here is the user API. The runtime's internals (stream tasks, the record
//! collector, the thread cache, checkpoints, the state directory) are private to the crate;
//! [`internals`] holds the few hooks the DSL crate builds topologies with, and is not part of
//! the API.

mod collector;
mod config;
mod error;
pub mod handlers;
pub mod metrics;
mod processor;
pub mod query;
mod record;
mod runtime;
pub mod serdes;
pub mod state;
mod task;
#[cfg(feature = "test-utils")]
pub mod test_utils;
mod topic;
mod topology;

#[doc(hidden)]
pub mod internals;

pub use config::{DeserializationHandler, ExceptionHandler, GroupProtocol, ProcessingGuarantee, StreamsConfig};
pub use error::{BoxError, InvalidStateStoreReason, KafkaError, Result, SerdeError, StreamsError};
pub use processor::{
    fixed_key_supplier, AnyKey, BuiltinTimestampExtractor, ConsumedRecord, FixedKey, FixedKeyProcessor, FixedKeyProcessorContext,
    FixedKeyProcessorSupplier, FixedKeyRecord, Processor, ProcessorContext, ProcessorSupplier, Punctuation, PunctuationType,
    ScheduleId, StreamPartitioner, TimestampExtractor, TopicNameExtractor,
};
pub use record::{Headers, Record, RecordContext, TaskId};
pub use runtime::{KafkaStreams, RestoreEvent, State, StreamThreadExceptionResponse};
pub use serdes::{Serde, SerdeRef, Serdes};
pub use state::{KeyValueIterator, KeyValueStore, StoreBuilder, Stores, TimestampedKeyValueStore, ValueAndTimestamp};
#[cfg(feature = "test-utils")]
pub use test_utils::{TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use topology::{AutoOffsetReset, Topology, TopologyDescription};

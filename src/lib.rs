//! Kafka Streams for Rust: typed stream processing over Apache Kafka, with RocksDB state
//! that is logged to changelog topics.
//!
//! The user API of the workspace's two crates, in one place:
//! - the DSL: [`StreamsBuilder`], [`KStream`], [`KTable`], grouped and windowed aggregations,
//!   joins and suppression;
//! - the Processor API ([`Processor`], [`ProcessorContext`]) and [`Topology`];
//! - state stores ([`state`]), serdes ([`serdes`]), the [`KafkaStreams`] client and its
//!   [`StreamsConfig`], interactive queries and instance metadata ([`query`]);
//! - with the `test-utils` feature: the broker-free `TopologyTestDriver`, an embedded
//!   cluster and integration-test helpers (`test_utils`).
//!
//! ```
//! use streams::prelude::*;
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()))
//!     .filter(|_, order| !order.is_empty())
//!     .map_values(|order| order.len() as i64)
//!     .to("order-sizes", Produced::with(Serdes::string(), Serdes::i64()));
//! println!("{}", builder.build().unwrap().describe());
//! ```

#[cfg(feature = "test-utils")]
pub mod topologies;

// Linked for its `malloc`, which replaces the C library's for the whole process.
#[cfg(feature = "jemalloc")]
use tikv_jemalloc_sys as _;

pub use streams_core::{
    handlers, metrics, query, serdes, state, AutoOffsetReset, BoxError, fixed_key_supplier, AnyKey, BuiltinTimestampExtractor, ConsumedRecord, FixedKey, FixedKeyProcessor, FixedKeyProcessorContext, FixedKeyProcessorSupplier, FixedKeyRecord, InvalidStateStoreReason, DeserializationHandler, ExceptionHandler, Headers, KafkaError, KafkaStreams,
    KeyValueIterator, KeyValueStore, ProcessingGuarantee, Processor, ProcessorContext, ProcessorSupplier,
    Punctuation, PunctuationType, Record, RecordContext, RestoreEvent, Result, ScheduleId, Serde, SerdeError,
    SerdeRef, Serdes, State, StoreBuilder, Stores, StreamPartitioner, StreamThreadExceptionResponse, StreamsConfig, StreamsError, TaskId,
    TimestampExtractor, TimestampedKeyValueStore, TopicNameExtractor, Topology, TopologyDescription, ValueAndTimestamp,
};
#[cfg(feature = "test-utils")]
pub use streams_core::{test_utils, TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use streams_dsl::*;

/// The names most applications use.
pub mod prelude {
    pub use streams_core::{Processor, ProcessorContext, Record, Serde, Serdes, StreamsConfig, StreamsError};
    #[cfg(feature = "test-utils")]
    pub use streams_core::TopologyTestDriver;
    pub use streams_dsl::{
        Branched, Consumed, Grouped, Joined, KGroupedStream, KGroupedTable, KStream, KTable, Materialized, Named, Produced,
        Printed, Repartitioned, StreamsBuilder,
    };
}

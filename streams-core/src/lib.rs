//! The core of the library: serdes, records, the Processor API, `Topology`, state stores,
//! `StreamTask` and the broker-free `TopologyTestDriver`.
//!
//! Records flow between typed processor nodes as [`Record<K, V>`](record::Record); bytes
//! appear only at sources, sinks and the store serde layer.

pub mod collector;
pub mod config;
pub mod error;
pub mod processor;
pub mod record;
pub mod runtime;
pub mod serdes;
pub mod state;
pub mod task;
pub mod test_driver;
pub mod topology;

pub use config::{DeserializationHandler, ExceptionHandler, ProcessingGuarantee, StreamsConfig};
pub use error::{Result, SerdeError, StreamsError};
pub use processor::{Processor, ProcessorContext, ProcessorSupplier, Punctuation, PunctuationType, ScheduleId};
pub use runtime::{embedded::EmbeddedKafkaCluster, KafkaStreams, RestoreEvent, State, StreamThreadExceptionResponse};
pub use record::{ConsumerRecord, Headers, ProducerRecord, Record, RecordContext, TaskId};
pub use serdes::{Serde, SerdeRef, Serdes};
pub use state::{KeyValueStore, StoreBuilder, Stores, TimestampedKeyValueStore, ValueAndTimestamp};
pub use task::{StreamTask, TaskMetrics, TaskState};
pub use test_driver::{TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use topology::{PartitionCounts, TopicName, Topology, TopologyDescription};

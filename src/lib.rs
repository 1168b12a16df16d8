//! Kafka Streams for Rust: typed stream processing over Apache Kafka, with RocksDB state
//! that is logged to changelog topics.
//!
//! This facade re-exports the two crates of the workspace:
//! - [`streams_core`]: serdes, the Processor API, `Topology`, state stores, `StreamTask` and the
//!   broker-free `TopologyTestDriver`;
//! - [`streams_dsl`]: `StreamsBuilder`, `KStream`, `KTable` and grouped aggregations.
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

pub mod topologies;

pub use streams_core::*;
pub use streams_dsl::*;

/// The names most applications use.
pub mod prelude {
    pub use streams_core::{
        Processor, ProcessorContext, Record, Serde, Serdes, StreamsConfig, StreamsError, TopologyTestDriver,
    };
    pub use streams_dsl::{
        Branched, Consumed, Grouped, KGroupedStream, KGroupedTable, KStream, KTable, Materialized, Named, Produced,
        StreamsBuilder,
    };
}

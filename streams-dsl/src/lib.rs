//! The typed DSL: [`StreamsBuilder`], [`KStream`], [`KTable`], [`KGroupedStream`] and
//! [`KGroupedTable`], written into a `streams_core::Topology`.
//!
//! ```
//! use streams_core::{Serdes, StreamsConfig, TopologyTestDriver};
//! use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream::<Option<String>, String>("lines", Consumed::with(Serdes::string(), Serdes::string()))
//!     .flat_map_values(|line| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
//!     .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
//!     .count(Materialized::as_("counts").with_caching_disabled())
//!     .to_stream()
//!     .to("word-counts", Produced::with(Serdes::string(), Serdes::i64()));
//! let topology = builder.build().unwrap();
//!
//! let driver = TopologyTestDriver::new(topology, StreamsConfig::new()).unwrap();
//! let mut lines = driver.create_input_topic::<Option<String>, String>("lines", Serdes::string(), Serdes::string());
//! let counts = driver.create_output_topic::<String, i64>("word-counts", Serdes::string(), Serdes::i64());
//! lines.pipe_value("hello kafka hello".into()).unwrap();
//! assert_eq!(counts.read_key_values_to_list().unwrap(),
//!            vec![("hello".into(), 1), ("kafka".into(), 1), ("hello".into(), 2)]);
//! ```

mod builder;
mod change;
mod grouped;
mod join;
mod kstream;
mod ktable;
mod options;
mod processors;
mod suppress;
mod windowed;
mod windows;

pub use builder::{GlobalKTable, StreamsBuilder};
pub use change::{Change, ChangeSerde};
pub use grouped::{CogroupedKStream, KGroupedStream, KGroupedTable};
pub use kstream::{BranchedKStream, KStream};
pub use ktable::KTable;
pub use options::{Branched, Consumed, Grouped, Materialized, Named, Produced};
pub use join::StreamJoined;
pub use suppress::{BufferConfig, Suppressed};
pub use windowed::{EmitStrategy, SessionWindowedKStream, TimeWindowedKStream};
pub use windows::{JoinWindows, SessionWindows, SlidingWindows, TimeWindows};

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
mod cogroup;
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
pub use cogroup::{CogroupedKStream, SessionWindowedCogroupedKStream, TimeWindowedCogroupedKStream};
pub use grouped::{KGroupedStream, KGroupedTable};
pub use kstream::{BranchedKStream, KStream};
pub use ktable::KTable;
pub use options::{Branched, Consumed, Grouped, Joined, Materialized, Named, Printed, Produced, Repartitioned};
pub use join::StreamJoined;
pub use suppress::{BufferConfig, Suppressed};
pub use windowed::{EmitStrategy, SessionWindowedKStream, TimeWindowedKStream};
pub use windows::{JoinWindows, SessionWindows, SlidingWindows, TimeWindows};

/// Arbitrary bytes thrown at every serde of the DSL's internal topics and stores: each either
/// decodes or returns an error, never panics.
#[cfg(test)]
mod arbitrary_bytes {
    use std::sync::Arc;

    use streams_core::{Serde, SerdeRef, Serdes};

    use crate::change::ChangeSerde;
    use crate::processors::fk_join::{CombinedKeySerde, ResponseSerde, SubscriptionSerde};
    use crate::processors::join::{LeftOrRightSerde, OuterKeySerde};
    use crate::processors::suppress::BufferedSerde;

    /// 20,000 random byte strings of up to 47 bytes (xorshift, fixed seed).
    fn inputs() -> Vec<Vec<u8>> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..20_000).map(|_| (0..next() % 48).map(|_| next() as u8).collect()).collect()
    }

    fn survives<T: 'static>(serde: &dyn Serde<T>, inputs: &[Vec<u8>]) {
        for input in inputs {
            let _ = serde.deserialize("t", Some(input));
        }
        let _ = serde.deserialize("t", None);
    }

    #[test]
    fn internal_serdes_never_panic() {
        let inputs = inputs();
        let s: SerdeRef<String> = Arc::new(Serdes::string());
        let i: SerdeRef<i64> = Arc::new(Serdes::i64());
        survives(&ChangeSerde(i.clone()), &inputs);
        survives(&BufferedSerde(ChangeSerde(s.clone())), &inputs);
        survives(&OuterKeySerde(s.clone()), &inputs);
        survives(&LeftOrRightSerde(s.clone(), i.clone()), &inputs);
        survives(&SubscriptionSerde(s.clone()), &inputs);
        survives(&ResponseSerde(i.clone()), &inputs);
        survives(&CombinedKeySerde(s.clone(), s.clone()), &inputs);
        survives(&streams_core::state::WindowedSerde::time(s.clone(), 10), &inputs);
        survives(&streams_core::state::WindowedSerde::session(s.clone()), &inputs);
        survives(&streams_core::state::ValueAndTimestampSerde(i), &inputs);
        survives(&Serdes::json::<Vec<String>>(), &inputs);
        survives(&Serdes::bincode::<(String, i64)>(), &inputs);
        survives::<Option<String>>(&Serdes::string(), &inputs);
    }
}

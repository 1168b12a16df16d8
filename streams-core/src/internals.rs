//! Hooks the DSL crate builds topologies with. Not part of the API: no stability promise.

pub use crate::state::builder::{RegisteredStore, StoreContext};
pub use crate::state::typed::{CacheFlush, CachedStateStore};
pub use crate::processor::ValueCapture;
pub use crate::topic::TopicName;
pub use crate::topology::{InternalTopologyBuilder, PartitionCounts};

//! Hooks the DSL crate builds topologies with. Not part of the API: no stability promise.

pub use crate::state::{CacheFlush, CachedStateStore, RegisteredStore, StoreContext};
pub use crate::topic::TopicName;
pub use crate::topology::{InternalTopologyBuilder, PartitionCounts};

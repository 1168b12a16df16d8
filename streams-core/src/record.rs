//! Records as they flow through a topology, and the raw records at its edges.

use std::fmt;
use std::sync::Arc;

/// Record headers: ordered (key, nullable value) pairs.
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// A typed record between processor nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds since the epoch.
    pub timestamp: i64,
    /// Headers carried from input to output.
    pub headers: Headers,
}

impl<K, V> Record<K, V> {
    /// A record without headers.
    pub fn new(key: K, value: V, timestamp: i64) -> Self {
        Record { key, value, timestamp, headers: Vec::new() }
    }

    /// The same record with another key.
    pub fn with_key<K2>(self, key: K2) -> Record<K2, V> {
        Record { key, value: self.value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> Record<K, V2> {
        Record { key: self.key, value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }
}

/// Where the record being processed came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordContext {
    /// Source topic (empty during punctuation).
    pub topic: String,
    /// Source partition (-1 during punctuation).
    pub partition: i32,
    /// Source offset (-1 during punctuation).
    pub offset: i64,
    /// Timestamp of the record being processed.
    pub timestamp: i64,
}

/// A task: one partition of one sub-topology, shown as `<subtopology>_<partition>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// The sub-topology index.
    pub subtopology: u32,
    /// The input partition.
    pub partition: i32,
}

impl TaskId {
    /// A task id.
    pub fn new(subtopology: u32, partition: i32) -> Self {
        TaskId { subtopology, partition }
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.subtopology, self.partition)
    }
}

/// A raw record read from a topic partition.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(feature = "test-utils"), allow(unreachable_pub))]
pub struct ConsumerRecord {
    /// Topic (shared: records of one topic hold one copy of its name).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in milliseconds.
    pub timestamp: i64,
    /// Key bytes, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Value bytes, `None` for a null value.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
}

/// A raw record to be written to a topic.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProducerRecord {
    /// Topic (shared with the sink or store that writes it).
    pub topic: Arc<str>,
    /// Partition; `None` lets the collector choose with the default partitioner.
    pub partition: Option<i32>,
    /// Timestamp in milliseconds.
    pub timestamp: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Headers,
}

/// Kafka's default partitioner for keyed records: `murmur2(key) & 0x7fffffff % partitions`.
pub(crate) fn default_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Kafka's murmur2 hash (the Java client's `Utils.murmur2`).
pub(crate) fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Values from Kafka's own partitioner tests (Utils.murmur2 as signed ints).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32, -58897971);
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn task_id_displays_like_kafka_streams() {
        assert_eq!(TaskId::new(1, 3).to_string(), "1_3");
    }
}

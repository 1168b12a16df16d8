//! Event time of input records: [`TimestampExtractor`] and Kafka Streams' built-in extractors.

use crate::error::BoxError;
use crate::record::Headers;

/// An input record as the source read it, key and value deserialized: what a
/// [`TimestampExtractor`] sees.
#[derive(Debug)]
#[non_exhaustive]
pub struct ConsumedRecord<'a, K, V> {
    /// The key.
    pub key: &'a K,
    /// The value.
    pub value: &'a V,
    /// The topic it was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The timestamp Kafka stored with it (producer or broker time).
    pub timestamp: i64,
    /// Its headers.
    pub headers: &'a Headers,
}

impl<'a, K, V> ConsumedRecord<'a, K, V> {
    /// The same record with another value (for extractors that adapt others).
    pub fn with_value<'b, V2>(&self, value: &'b V2) -> ConsumedRecord<'b, K, V2>
    where
        'a: 'b,
    {
        ConsumedRecord {
            key: self.key,
            value,
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            headers: self.headers,
        }
    }
}

/// Gives each input record its event time, which orders records across a task's partitions and
/// drives windows, joins, grace periods and stream-time punctuation (Kafka Streams'
/// `TimestampExtractor`).
///
/// `partition_time` is the highest timestamp extracted so far from the record's partition
/// (-1 before the first). A negative result drops the record (logged, counted in
/// `dropped-records`); an error stops the task with [`StreamsError::TimestampExtraction`](crate::StreamsError::TimestampExtraction).
///
/// Closures `Fn(&ConsumedRecord<K, V>, i64) -> i64` are extractors:
///
/// ```
/// # use streams_core::ConsumedRecord;
/// // Event time from the payload, e.g. "1700000000000,click".
/// let from_payload = |record: &ConsumedRecord<String, String>, _partition_time: i64| {
///     record.value.split(',').next().and_then(|t| t.parse().ok()).unwrap_or(-1)
/// };
/// # let _ = from_payload;
/// ```
pub trait TimestampExtractor<K, V>: Send + Sync + 'static {
    /// The record's event time in milliseconds since the epoch.
    fn extract(&self, record: &ConsumedRecord<'_, K, V>, partition_time: i64) -> Result<i64, BoxError>;
}

impl<K, V, F> TimestampExtractor<K, V> for F
where
    F: Fn(&ConsumedRecord<'_, K, V>, i64) -> i64 + Send + Sync + 'static,
{
    fn extract(&self, record: &ConsumedRecord<'_, K, V>, partition_time: i64) -> Result<i64, BoxError> {
        Ok(self(record, partition_time))
    }
}

/// Kafka Streams' built-in extractors, for any record type: the value of
/// `default.timestamp.extractor` and usable per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BuiltinTimestampExtractor {
    /// The record's own timestamp; a negative one stops the task (`FailOnInvalidTimestamp`,
    /// Kafka Streams' default).
    #[default]
    FailOnInvalid,
    /// The record's own timestamp; a record with a negative one is dropped with a warning
    /// (`LogAndSkipOnInvalidTimestamp`).
    LogAndSkipOnInvalid,
    /// The record's own timestamp; a negative one is replaced by the partition's time, and
    /// stops the task if there is none yet (`UsePartitionTimeOnInvalidTimestamp`).
    UsePartitionTimeOnInvalid,
    /// The system clock at processing time (`WallclockTimestampExtractor`).
    WallClock,
}

impl BuiltinTimestampExtractor {
    /// From a config value: `fail-on-invalid`, `log-and-skip-on-invalid`,
    /// `use-partition-time-on-invalid`, `wall-clock`, or Kafka Streams' class name (simple or
    /// fully qualified).
    pub fn from_name(name: &str) -> Option<Self> {
        let class = name.rsplit('.').next().unwrap_or(name);
        Some(match (name, class) {
            ("fail-on-invalid", _) | (_, "FailOnInvalidTimestamp") => Self::FailOnInvalid,
            ("log-and-skip-on-invalid", _) | (_, "LogAndSkipOnInvalidTimestamp") => Self::LogAndSkipOnInvalid,
            ("use-partition-time-on-invalid", _) | (_, "UsePartitionTimeOnInvalidTimestamp") => {
                Self::UsePartitionTimeOnInvalid
            }
            ("wall-clock", _) | (_, "WallclockTimestampExtractor") => Self::WallClock,
            _ => return None,
        })
    }

    /// The event time of a record whose own timestamp is `timestamp`.
    pub(crate) fn timestamp(self, timestamp: i64, partition_time: i64) -> Result<i64, BoxError> {
        match self {
            Self::WallClock => Ok(crate::runtime::now_ms()),
            _ if timestamp >= 0 => Ok(timestamp),
            Self::FailOnInvalid => Err(format!(
                "invalid (negative) timestamp {timestamp}; the producer may be too old to set one, or \
                 it was set wrongly: use another default.timestamp.extractor or a TimestampExtractor \
                 that takes event time from the payload"
            )
            .into()),
            Self::LogAndSkipOnInvalid => Ok(timestamp),
            Self::UsePartitionTimeOnInvalid if partition_time >= 0 => Ok(partition_time),
            Self::UsePartitionTimeOnInvalid => Err(format!(
                "invalid (negative) timestamp {timestamp}, and no partition time to use instead \
                 (no valid record read from this partition yet)"
            )
            .into()),
        }
    }
}

impl<K, V> TimestampExtractor<K, V> for BuiltinTimestampExtractor {
    fn extract(&self, record: &ConsumedRecord<'_, K, V>, partition_time: i64) -> Result<i64, BoxError> {
        self.timestamp(record.timestamp, partition_time)
    }
}

#[cfg(test)]
mod tests {
    use super::BuiltinTimestampExtractor as B;

    #[test]
    fn builtins_as_kafka_streams() {
        assert_eq!(B::FailOnInvalid.timestamp(5, -1).unwrap(), 5);
        assert!(B::FailOnInvalid.timestamp(-1, 10).is_err());
        assert_eq!(B::LogAndSkipOnInvalid.timestamp(-1, 10).unwrap(), -1);
        assert_eq!(B::UsePartitionTimeOnInvalid.timestamp(-1, 10).unwrap(), 10);
        assert!(B::UsePartitionTimeOnInvalid.timestamp(-1, -1).is_err());
        assert!(B::WallClock.timestamp(-1, -1).unwrap() > 1_600_000_000_000);
    }

    #[test]
    fn names() {
        assert_eq!(B::from_name("wall-clock"), Some(B::WallClock));
        assert_eq!(B::from_name("org.apache.kafka.streams.processor.LogAndSkipOnInvalidTimestamp"), Some(B::LogAndSkipOnInvalid));
        assert_eq!(B::from_name("UsePartitionTimeOnInvalidTimestamp"), Some(B::UsePartitionTimeOnInvalid));
        assert_eq!(B::from_name("FailOnInvalidTimestamp"), Some(B::FailOnInvalid));
        assert_eq!(B::from_name("record-time"), None);
    }
}

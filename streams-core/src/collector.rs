//! `RecordCollector`: where sinks and changelogging stores send their records.

use crate::error::Result;
use crate::record::ProducerRecord;

/// Receives every record a task writes: sink output, repartition and changelog records.
///
/// The runtime sends them to Kafka; the test driver keeps them in memory.
pub(crate) trait RecordCollector {
    /// Sends one record.
    fn send(&mut self, record: ProducerRecord) -> Result<()>;
    /// The partition count of `topic` (for sinks with a partitioner).
    fn partitions(&mut self, topic: &str) -> Result<i32> {
        Err(crate::error::StreamsError::IllegalState(format!("no partition count of `{topic}` here")))
    }
    /// Waits until every record sent so far is acknowledged.
    fn flush(&mut self) -> Result<()>;
}

//! Where newly assigned partitions without a committed offset start: per source topic.
//!
//! librdkafka has one `auto.offset.reset` per consumer. A stream thread's consumer keeps it for
//! the topics that follow it; for the others (sources with a policy of their own, and internal
//! topics, always read from the earliest offset as in Kafka Streams) the assignment is given
//! explicit start offsets before it takes effect, so the committed offset still wins wherever
//! there is one.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::{Result, StreamsError};
use crate::topology::AutoOffsetReset;

/// How long the offset lookups of one assignment may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The topics whose reset policy differs from the consumer's own.
#[derive(Debug, Default)]
pub(crate) struct OffsetResets {
    topics: BTreeMap<String, AutoOffsetReset>,
}

impl OffsetResets {
    /// `resets` (each topic's policy, as the topology gives them) less those the consumer's
    /// `auto.offset.reset` (`consumer_default`) already applies.
    pub(crate) fn new(resets: BTreeMap<String, AutoOffsetReset>, consumer_default: Option<&str>) -> Self {
        let default = AutoOffsetReset::from_config(consumer_default.unwrap_or("earliest"));
        OffsetResets { topics: resets.into_iter().filter(|(_, reset)| Some(*reset) != default).collect() }
    }

    /// Sets the start offset of every partition of `assignment` that has a policy of its own
    /// and no committed offset.
    pub(crate) fn position<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        assignment: &mut TopicPartitionList,
    ) -> Result<()> {
        let mut own = TopicPartitionList::new();
        for e in assignment.elements() {
            if self.topics.contains_key(e.topic()) {
                own.add_partition(e.topic(), e.partition());
            }
        }
        if own.count() == 0 {
            return Ok(());
        }
        let committed = consumer
            .committed_offsets(own, LOOKUP_TIMEOUT)
            .map_err(|e| StreamsError::kafka("read committed offsets", e))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut by_time = TopicPartitionList::new();
        for e in committed.elements() {
            if matches!(e.offset(), Offset::Offset(_)) {
                continue;
            }
            let (topic, partition) = (e.topic(), e.partition());
            let start = match self.topics[topic] {
                AutoOffsetReset::Earliest => Offset::Beginning,
                AutoOffsetReset::Latest => Offset::End,
                AutoOffsetReset::ByDuration(back) => {
                    let since = now.saturating_sub(back).as_millis() as i64;
                    by_time
                        .add_partition_offset(topic, partition, Offset::Offset(since))
                        .map_err(|e| StreamsError::kafka("look up offsets by time", e))?;
                    continue;
                }
                AutoOffsetReset::Fail => return Err(StreamsError::NoCommittedOffset { topic: topic.to_string(), partition }),
            };
            set(assignment, topic, partition, start)?;
        }
        if by_time.count() > 0 {
            let found = consumer
                .offsets_for_times(by_time, LOOKUP_TIMEOUT)
                .map_err(|e| StreamsError::kafka("look up offsets by time", e))?;
            for e in found.elements() {
                // No record that recent: from the end.
                let start = match e.offset() {
                    Offset::Offset(offset) if offset >= 0 => Offset::Offset(offset),
                    _ => Offset::End,
                };
                set(assignment, e.topic(), e.partition(), start)?;
            }
        }
        Ok(())
    }
}

fn set(assignment: &mut TopicPartitionList, topic: &str, partition: i32, start: Offset) -> Result<()> {
    assignment
        .set_partition_offset(topic, partition, start)
        .map_err(|e| StreamsError::kafka(format!("position {topic}-{partition}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_policies_other_than_the_consumers_are_applied() {
        let resets: BTreeMap<String, AutoOffsetReset> = [
            ("app-x-repartition".to_string(), AutoOffsetReset::Earliest),
            ("clicks".to_string(), AutoOffsetReset::Latest),
            ("orders".to_string(), AutoOffsetReset::ByDuration(Duration::from_secs(60))),
        ]
        .into();
        let keep = |default| OffsetResets::new(resets.clone(), default).topics.into_keys().collect::<Vec<_>>();
        assert_eq!(keep(None), ["clicks", "orders"], "the consumer reads from the earliest by default");
        assert_eq!(keep(Some("smallest")), ["clicks", "orders"]);
        assert_eq!(keep(Some("latest")), ["app-x-repartition", "orders"]);
        assert_eq!(keep(Some("error")), ["app-x-repartition", "clicks", "orders"]);
    }
}

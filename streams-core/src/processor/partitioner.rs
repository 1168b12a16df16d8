//! Where a sink writes each record: [`StreamPartitioner`] (the partition) and
//! [`TopicNameExtractor`] (the topic).

use crate::record::RecordContext;

/// Chooses the partition of each record a sink writes (Kafka Streams' `StreamPartitioner`):
/// set it on `Produced` or `Repartitioned`, or on a Processor-API sink.
///
/// Closures `Fn(&str, &K, &V, i32) -> Option<i32>` are partitioners:
///
/// ```
/// // Orders by region: the region's number, whatever the key.
/// let by_region = |_topic: &str, _key: &String, order: &(u32, String), partitions: i32| {
///     Some(order.0 as i32 % partitions)
/// };
/// # let _ = by_region;
/// ```
pub trait StreamPartitioner<K, V>: Send + Sync + 'static {
    /// The partition of the record among the `partitions` of `topic`, or `None` for the
    /// default (murmur2 of the serialized key, as Kafka's producer). A partition outside
    /// `0..partitions` fails the send.
    fn partition(&self, topic: &str, key: &K, value: &V, partitions: i32) -> Option<i32>;
}

impl<K, V, F> StreamPartitioner<K, V> for F
where
    F: Fn(&str, &K, &V, i32) -> Option<i32> + Send + Sync + 'static,
{
    fn partition(&self, topic: &str, key: &K, value: &V, partitions: i32) -> Option<i32> {
        self(topic, key, value, partitions)
    }
}

/// Chooses the topic of each record a sink writes (Kafka Streams' `TopicNameExtractor`): the
/// topics must exist. Closures `Fn(&K, &V, &RecordContext) -> String` are extractors.
///
/// ```
/// # use streams_core::RecordContext;
/// // Orders to a topic per region, e.g. `orders-eu`.
/// let by_region = |_key: &String, order: &(String, u64), _ctx: &RecordContext| format!("orders-{}", order.0);
/// # let _ = by_region;
/// ```
pub trait TopicNameExtractor<K, V>: Send + Sync + 'static {
    /// The topic of the record; `ctx` is the input record's topic, partition, offset and time.
    fn extract(&self, key: &K, value: &V, ctx: &RecordContext) -> String;
}

impl<K, V, F> TopicNameExtractor<K, V> for F
where
    F: Fn(&K, &V, &RecordContext) -> String + Send + Sync + 'static,
{
    fn extract(&self, key: &K, value: &V, ctx: &RecordContext) -> String {
        self(key, value, ctx)
    }
}

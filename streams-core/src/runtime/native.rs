//! The librdkafka calls the rdkafka crate does not wrap (`unsafe`, as is the RocksDB iterator
//! `RocksDbKeyValueStore` keeps across reads; the project has no other).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::time::Duration;

use rdkafka::bindings::{
    rd_kafka_flush, rd_kafka_get_watermark_offsets, rd_kafka_queue_destroy, rd_kafka_queue_forward,
    rd_kafka_queue_get_consumer, rd_kafka_queue_get_partition, rd_kafka_resp_err_t,
};
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, KafkaResult};

/// Waits until every record handed to the producer `client` is acknowledged or failed, up to
/// `timeout`.
///
/// rdkafka's `flush` waits in 100 ms polls that run to their end even when the last
/// acknowledgement arrives sooner, so every commit took at least 100 ms. librdkafka's own
/// flush sends lingering records at once and returns as soon as none is left in flight when,
/// as in the record collector, the producer's thread serves the delivery reports.
pub(crate) fn flush<C: ClientContext>(client: &Client<C>, timeout: Duration) -> KafkaResult<()> {
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the handle lives as long as `client`; librdkafka's flush is thread-safe, and in
    // event mode (rdkafka's) it only waits for the count of records in flight to drop to 0.
    let code = unsafe { rd_kafka_flush(client.native_ptr(), millis) };
    match code {
        rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        code => Err(KafkaError::Flush(code.into())),
    }
}

/// The high watermark of a partition as the consumer `client`'s last fetch response for it
/// gave it (librdkafka's cached `rd_kafka_get_watermark_offsets`: no broker round trip);
/// `None` before one arrived.
pub(crate) fn fetched_high_watermark<C: ClientContext>(client: &Client<C>, topic: &str, partition: i32) -> Option<i64> {
    let topic = CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the handle lives as long as `client`; `topic` is a NUL-terminated string and the
    // out-parameters are valid for writes; the call only reads the partition's state under its lock.
    let code = unsafe { rd_kafka_get_watermark_offsets(client.native_ptr(), topic.as_ptr(), partition, &mut low, &mut high) };
    (code == rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// Forwards the queue of the consumer `client`'s `partition` of `topic` back to the consumer's
/// queue, undoing a split (rdkafka's `split_partition_queue`, which has no inverse): records
/// queued for the partition move to the consumer queue's end, later ones go there directly.
/// `false` if librdkafka has no such partition.
pub(crate) fn join_partition_queue<C: ClientContext>(client: &Client<C>, topic: &str, partition: i32) -> bool {
    let Ok(topic) = CString::new(topic) else { return false };
    // SAFETY: the handle lives as long as `client`; `topic` is NUL-terminated; both queue handles
    // are references librdkafka counts, released here after the forward, which takes its own.
    unsafe {
        let queue = rd_kafka_queue_get_partition(client.native_ptr(), topic.as_ptr(), partition);
        if queue.is_null() {
            return false;
        }
        let consumer = rd_kafka_queue_get_consumer(client.native_ptr());
        rd_kafka_queue_forward(queue, consumer);
        if !consumer.is_null() {
            rd_kafka_queue_destroy(consumer);
        }
        rd_kafka_queue_destroy(queue);
    }
    true
}

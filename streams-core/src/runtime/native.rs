//! The librdkafka calls the rdkafka crate does not wrap, and one read of a consumed record's
//! bytes it does not offer (`unsafe`, as is the RocksDB iterator `RocksDbKeyValueStore` keeps
//! across reads; the project has no other).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::time::Duration;

use rdkafka::bindings::{
    rd_kafka_flush, rd_kafka_get_watermark_offsets, rd_kafka_message_leader_epoch, rd_kafka_queue_destroy,
    rd_kafka_queue_forward, rd_kafka_queue_get_consumer, rd_kafka_queue_get_partition, rd_kafka_resp_err_t,
};
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Message};

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

/// The headers of a consumed record, `None` if it has none; without librdkafka's header parse
/// for a record whose header count is 0.
///
/// librdkafka parses a consumed record's headers on first access, and every record of Kafka's
/// v2 format carries a header count, so it allocates and frees a parse buffer for each record
/// even when the count is 0 (a seventh of a map/filter topology's CPU). In that format the count
/// is the byte sequence right after the value, where librdkafka's payload points into the fetched
/// (or decompressed) batch: a 0 byte there is a count of 0. The parse runs as before unless the
/// record came in a v2 batch (it has a leader epoch; the older formats have neither headers nor
/// the count) and has a non-empty value (librdkafka points an empty value at a static empty
/// string, a null value nowhere).
pub(crate) fn headers_of<'a>(message: &'a BorrowedMessage<'a>) -> Option<&'a BorrowedHeaders> {
    if let Some(value) = message.payload().filter(|v| !v.is_empty()) {
        // SAFETY: `message` is a live consumed message for the call; librdkafka only reads its
        // fields. If the epoch is that of a v2 batch, the value lies in the record's bytes,
        // which librdkafka hands out only when the whole record is in one contiguous buffer (a
        // fetch response's frame, or a decompressed batch) that the message keeps alive, and in
        // a v2 record the header count, at least one byte, follows the value: the byte read is
        // inside that buffer.
        let no_headers = unsafe {
            rd_kafka_message_leader_epoch(message.ptr()) >= 0 && *value.as_ptr().add(value.len()) == 0
        };
        if no_headers {
            return None;
        }
    }
    message.headers()
}

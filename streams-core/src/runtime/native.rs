//! The two librdkafka calls the rdkafka crate does not wrap (`unsafe`, as is the RocksDB iterator
//! `RocksDbKeyValueStore` keeps across reads; the project has no other).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::time::Duration;

use rdkafka::bindings::{rd_kafka_flush, rd_kafka_get_watermark_offsets, rd_kafka_resp_err_t};
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

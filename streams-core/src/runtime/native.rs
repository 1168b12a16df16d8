//! The librdkafka calls the rdkafka crate does not wrap, and one read of a consumed record's
//! bytes it does not offer (`unsafe`, as is the RocksDB iterator `RocksDbKeyValueStore` keeps
//! across reads; the project has no other).
#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings::{
    rd_kafka_consume_batch_queue, rd_kafka_flush, rd_kafka_get_watermark_offsets, rd_kafka_message_destroy,
    rd_kafka_message_leader_epoch, rd_kafka_message_t, rd_kafka_queue_destroy, rd_kafka_queue_forward,
    rd_kafka_queue_get_consumer, rd_kafka_queue_get_partition, rd_kafka_queue_t, rd_kafka_resp_err_t,
};
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
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

/// The consumer queue of a consumer that only assigns partitions (no subscription, so no
/// rebalance events), drained in batches: librdkafka's `rd_kafka_consume_batch_queue` reads
/// what is queued under one clock reading and one poll start, where rdkafka's `poll` takes two
/// clock readings and wraps an event for every record.
pub(crate) struct ConsumerQueue(NonNull<rd_kafka_queue_t>);

// SAFETY: librdkafka's queues are thread-safe; the handle is a counted reference.
unsafe impl Send for ConsumerQueue {}

impl ConsumerQueue {
    /// The consumer queue of `client`; `None` without a group id. It must be dropped before
    /// `client`.
    pub(crate) fn of<C: ClientContext>(client: &Client<C>) -> Option<Self> {
        // SAFETY: the handle lives as long as `client`; the queue returned is a reference
        // librdkafka counts, released on drop.
        NonNull::new(unsafe { rd_kafka_queue_get_consumer(client.native_ptr()) }).map(ConsumerQueue)
    }

    /// Appends to `into` what is queued, up to `max` records and ends of partitions, waiting up
    /// to `timeout` for `max` of them. Other events (errors, logs) are served by librdkafka's
    /// own handlers, not returned.
    pub(crate) fn consume(&self, timeout: Duration, max: usize, into: &mut FetchedBatch) {
        let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        into.messages.reserve(max);
        let free = &mut into.messages.spare_capacity_mut()[..max];
        // SAFETY: the queue is live; librdkafka writes at most `max` message pointers into the
        // spare capacity and returns how many it wrote (or -1, none).
        let read = unsafe { rd_kafka_consume_batch_queue(self.0.as_ptr(), millis, free.as_mut_ptr().cast(), max) };
        if read > 0 {
            // SAFETY: the first `read` slots were written.
            unsafe { into.messages.set_len(into.messages.len() + read as usize) };
        }
    }
}

impl Drop for ConsumerQueue {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `of`, released once.
        unsafe { rd_kafka_queue_destroy(self.0.as_ptr()) };
    }
}

/// Messages a [`ConsumerQueue`] read, owned until the batch is dropped or cleared.
#[derive(Default)]
pub(crate) struct FetchedBatch {
    messages: Vec<*mut rd_kafka_message_t>,
}

/// One message of a [`FetchedBatch`].
#[derive(Debug)]
pub(crate) enum Fetched<'a> {
    /// A record at `offset` of its partition.
    Record { offset: i64, key: Option<&'a [u8]>, value: Option<&'a [u8]> },
    /// The end of a partition (with `enable.partition.eof`).
    End,
    /// An error the consumer reported for a partition.
    Error(KafkaError),
}

impl FetchedBatch {
    /// The messages, in the order read.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Fetched<'_>> {
        self.messages.iter().map(|&message| {
            // SAFETY: the message stays valid until it is destroyed in `clear`, which needs
            // `&mut self`; its key and payload point to `len` bytes it owns or keeps alive.
            unsafe {
                let m = &*message;
                let bytes = |ptr: *mut std::ffi::c_void, len: usize| {
                    (!ptr.is_null()).then(|| if len == 0 { &[][..] } else { std::slice::from_raw_parts(ptr as *const u8, len) })
                };
                match m.err {
                    rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Fetched::Record {
                        offset: m.offset,
                        key: bytes(m.key, m.key_len),
                        value: bytes(m.payload, m.len),
                    },
                    rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF => Fetched::End,
                    code => Fetched::Error(KafkaError::MessageConsumption(RDKafkaErrorCode::from(code))),
                }
            }
        })
    }

    /// Destroys the messages read.
    pub(crate) fn clear(&mut self) {
        for message in self.messages.drain(..) {
            // SAFETY: each message was handed out by librdkafka once and is destroyed once.
            unsafe { rd_kafka_message_destroy(message) };
        }
    }
}

impl Drop for FetchedBatch {
    fn drop(&mut self) {
        self.clear();
    }
}

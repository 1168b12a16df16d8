//! The metered layer (`metrics.recording.level = DEBUG`): latencies of the store's
//! operations, as Kafka Streams' `MeteredKeyValueStore`, outermost so that they include the
//! cache and the changelog.

use std::sync::Arc;
use std::time::Instant;

use super::{BytesIter, FlushedEntry, KeyRange, KeyValueBytesStore, RawEntries, RestoreRecord};
use crate::error::Result;
use crate::metrics::StoreSensors;

pub(crate) struct MeteredKeyValueStore {
    inner: Box<dyn KeyValueBytesStore>,
    sensors: Arc<StoreSensors>,
}

impl MeteredKeyValueStore {
    pub(crate) fn new(inner: Box<dyn KeyValueBytesStore>, sensors: Arc<StoreSensors>) -> Self {
        MeteredKeyValueStore { inner, sensors }
    }
}

impl KeyValueBytesStore for MeteredKeyValueStore {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let started = Instant::now();
        let value = self.inner.get(key);
        self.sensors.get.record(1, started.elapsed());
        value
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let started = Instant::now();
        let done = self.inner.put(key, value);
        self.sensors.put.record(1, started.elapsed());
        done
    }
    /// The latency of opening the scan (seeking every layer to its start).
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        let started = Instant::now();
        let iter = self.inner.range(range);
        self.sensors.range.record(1, started.elapsed());
        iter
    }
    fn read_batch(&mut self, range: &KeyRange, limit: usize, out: &mut RawEntries) -> Result<()> {
        let started = Instant::now();
        let read = self.inner.read_batch(range, limit, out);
        self.sensors.range.record(1, started.elapsed());
        read
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
    fn flush(&mut self) -> Result<()> {
        let started = Instant::now();
        let done = self.inner.flush();
        self.sensors.flush.record(1, started.elapsed());
        done
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        self.inner.restore(batch)
    }
    fn commit_transaction(&mut self, durable: bool) -> Result<()> {
        self.inner.commit_transaction(durable)
    }
    fn enable_flush_forwarding(&mut self) -> bool {
        self.inner.enable_flush_forwarding()
    }
    fn flush_cache(&mut self) -> Result<()> {
        self.inner.flush_cache()
    }
    fn discard_cache(&mut self) {
        self.inner.discard_cache()
    }
    fn take_flushed(&mut self) -> Vec<FlushedEntry> {
        self.inner.take_flushed()
    }
    fn rocksdb_properties(&self, out: &mut Vec<(&'static str, u64)>) {
        self.inner.rocksdb_properties(out)
    }
}

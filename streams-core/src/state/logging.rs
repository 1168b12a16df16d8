//! The change-logging layer: every write also goes to the store's changelog partition.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::{BytesIter, KeyRange, KeyValueBytesStore, RawEntries, RestoreRecord};
use crate::collector::RecordCollector;
use crate::error::Result;
use crate::record::{ProducerRecord, RecordContext};

/// Writes through to the inner store and sends each change to `<app>-<store>-changelog`.
pub(crate) struct ChangeLoggingKeyValueStore {
    inner: Box<dyn KeyValueBytesStore>,
    topic: Arc<str>,
    partition: i32,
    collector: Rc<RefCell<dyn RecordCollector>>,
    record_context: Rc<RefCell<RecordContext>>,
}

impl std::fmt::Debug for ChangeLoggingKeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeLoggingKeyValueStore")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .finish()
    }
}

impl ChangeLoggingKeyValueStore {
    pub(crate) fn new(
        inner: Box<dyn KeyValueBytesStore>,
        topic: Arc<str>,
        partition: i32,
        collector: Rc<RefCell<dyn RecordCollector>>,
        record_context: Rc<RefCell<RecordContext>>,
    ) -> Self {
        ChangeLoggingKeyValueStore { inner, topic, partition, collector, record_context }
    }
}

impl KeyValueBytesStore for ChangeLoggingKeyValueStore {
    fn rocksdb_properties(&self, out: &mut Vec<(&'static str, u64)>) {
        self.inner.rocksdb_properties(out)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.inner.put(key, value)?;
        let timestamp = self.record_context.borrow().timestamp;
        self.collector.borrow_mut().send(ProducerRecord {
            topic: self.topic.clone(),
            partition: Some(self.partition),
            timestamp,
            key: Some(key.to_vec()),
            value: value.map(<[u8]>::to_vec),
            headers: Vec::new(),
        })
    }
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        self.inner.range(range)
    }
    fn read_batch(&mut self, range: &KeyRange, limit: usize, out: &mut RawEntries) -> Result<()> {
        self.inner.read_batch(range, limit, out)
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn commit_transaction(&mut self, durable: bool) -> Result<()> {
        self.inner.commit_transaction(durable)
    }
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        self.inner.restore(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::in_memory::InMemoryKeyValueStore;

    #[derive(Default)]
    struct Sent(Vec<ProducerRecord>);
    impl RecordCollector for Sent {
        fn send(&mut self, record: ProducerRecord) -> Result<()> {
            self.0.push(record);
            Ok(())
        }
        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_write_is_logged_with_the_record_timestamp() {
        let sent = Rc::new(RefCell::new(Sent::default()));
        let ctx = Rc::new(RefCell::new(RecordContext { timestamp: 42, ..Default::default() }));
        let mut store = ChangeLoggingKeyValueStore::new(
            Box::new(InMemoryKeyValueStore::new("s")),
            "app-s-changelog".into(),
            3,
            sent.clone(),
            ctx,
        );
        store.put(b"k", Some(b"v")).unwrap();
        store.put(b"k", None).unwrap();
        store.restore(&[(b"r", Some(b"x"))]).unwrap();
        let sent = &sent.borrow().0;
        assert_eq!(sent.len(), 2, "restore must not be logged again");
        assert_eq!(sent[0].partition, Some(3));
        assert_eq!(sent[0].timestamp, 42);
        assert_eq!(sent[1].value, None);
    }
}

//! The transaction buffer of a persistent store under `exactly_once_v2`.
//!
//! Writes made while a Kafka transaction is open stay in memory (reads see them); they reach
//! RocksDB only after the transaction committed. So a store on disk never holds uncommitted
//! data: after a crash it is the state of some committed transaction, and replaying its
//! changelog (read_committed) from the checkpoint makes it exact, without wiping it. An aborted
//! transaction simply discards the buffer.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::rc::Rc;

use super::{KeyValueBytesStore, RestoreRecord};
use crate::error::Result;

/// Buffers writes of the open transaction over an inner (persistent) store.
pub(crate) struct TransactionalBytesStore {
    inner: Box<dyn KeyValueBytesStore>,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl std::fmt::Debug for TransactionalBytesStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalBytesStore").field("store", &self.inner.name()).field("pending", &self.pending.len()).finish()
    }
}

/// The task's handles on its transaction buffers.
pub(crate) type TransactionBuffers = Rc<RefCell<Vec<Rc<RefCell<TransactionalBytesStore>>>>>;

impl TransactionalBytesStore {
    /// Wraps `inner`, registers the buffer with the task and returns the store to layer on.
    pub(crate) fn register(inner: Box<dyn KeyValueBytesStore>, buffers: &TransactionBuffers) -> Box<dyn KeyValueBytesStore> {
        let name = inner.name().to_string();
        let store = Rc::new(RefCell::new(TransactionalBytesStore { inner, pending: BTreeMap::new() }));
        buffers.borrow_mut().push(store.clone());
        Box::new(SharedBytesStore { name, store })
    }

    /// The transaction committed: writes the buffer to the inner store in one batch; with
    /// `durable`, also makes the inner store durable (before a checkpoint is written).
    pub(crate) fn commit(&mut self, durable: bool) -> Result<()> {
        if !self.pending.is_empty() {
            let batch: Vec<RestoreRecord> = std::mem::take(&mut self.pending).into_iter().collect();
            self.inner.restore(&batch)?;
        }
        if durable {
            self.inner.flush()?;
        }
        Ok(())
    }

    /// The transaction aborted: forgets its writes.
    pub(crate) fn abort(&mut self) {
        self.pending.clear();
    }
}

impl KeyValueBytesStore for TransactionalBytesStore {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.pending.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.inner.get(key),
        }
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.pending.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        Ok(())
    }
    fn range(&mut self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let committed = self.inner.range(from, to)?;
        let bounds = (from.map_or(Bound::Unbounded, Bound::Included), to.map_or(Bound::Unbounded, Bound::Included));
        let mut overlay = self.pending.range::<[u8], _>(bounds).peekable();
        if overlay.peek().is_none() {
            return Ok(committed);
        }
        // Merge two sorted sequences; the buffer wins on equal keys, and its deletes hide entries.
        let mut merged = Vec::with_capacity(committed.len());
        let mut committed = committed.into_iter().peekable();
        loop {
            let take_overlay = match (committed.peek(), overlay.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((ck, _)), Some((ok, _))) => {
                    let order = ok.as_slice().cmp(ck.as_slice());
                    if order == std::cmp::Ordering::Equal {
                        committed.next();
                    }
                    order != std::cmp::Ordering::Greater
                }
            };
            if take_overlay {
                let (key, value) = overlay.next().expect("peeked");
                if let Some(value) = value {
                    merged.push((key.clone(), value.clone()));
                }
            } else {
                merged.push(committed.next().expect("peeked"));
            }
        }
        Ok(merged)
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        Ok(self.inner.approximate_num_entries()? + self.pending.len() as u64)
    }
    /// Nothing to do before the transaction commits; see [`commit`](Self::commit).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        // Uncommitted writes never reach the disk.
        self.abort();
        self.inner.close()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    /// Restoration happens before processing, with nothing buffered; restored records are
    /// committed data and replace anything buffered for their keys.
    fn restore(&mut self, batch: &[RestoreRecord]) -> Result<()> {
        for (key, _) in batch {
            self.pending.remove(key);
        }
        self.inner.restore(batch)
    }
}

/// A store shared between the layer above it and the task's commit path.
struct SharedBytesStore {
    name: String,
    store: Rc<RefCell<TransactionalBytesStore>>,
}

impl KeyValueBytesStore for SharedBytesStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store.borrow_mut().get(key)
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.store.borrow_mut().put(key, value)
    }
    fn range(&mut self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store.borrow_mut().range(from, to)
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        self.store.borrow_mut().approximate_num_entries()
    }
    fn flush(&mut self) -> Result<()> {
        self.store.borrow_mut().flush()
    }
    fn close(&mut self) -> Result<()> {
        self.store.borrow_mut().close()
    }
    fn persistent(&self) -> bool {
        self.store.borrow().persistent()
    }
    fn restore(&mut self, batch: &[RestoreRecord]) -> Result<()> {
        self.store.borrow_mut().restore(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::in_memory::InMemoryKeyValueStore;

    fn buffered() -> (Box<dyn KeyValueBytesStore>, TransactionBuffers) {
        let buffers = TransactionBuffers::default();
        let store = TransactionalBytesStore::register(Box::new(InMemoryKeyValueStore::new("s")), &buffers);
        (store, buffers)
    }

    #[test]
    fn behaves_as_a_key_value_store() {
        let (mut store, _buffers) = buffered();
        crate::state::check_bytes_store(store.as_mut());
    }

    #[test]
    fn writes_reach_the_inner_store_only_on_commit() {
        let (mut store, buffers) = buffered();
        store.put(b"a", Some(b"1")).unwrap();
        store.put(b"c", Some(b"3")).unwrap();
        buffers.borrow()[0].borrow_mut().commit(true).unwrap();
        store.put(b"a", None).unwrap();
        store.put(b"b", Some(b"2")).unwrap();
        store.put(b"c", Some(b"30")).unwrap();
        // Reads see the open transaction merged over committed data.
        assert_eq!(store.get(b"a").unwrap(), None);
        let all = store.range(None, None).unwrap();
        assert_eq!(all, vec![(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"30".to_vec())]);
        assert_eq!(store.range(Some(b"c"), None).unwrap(), vec![(b"c".to_vec(), b"30".to_vec())]);
        // Abort: back to the committed state.
        buffers.borrow()[0].borrow_mut().abort();
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        let all = store.range(None, None).unwrap();
        assert_eq!(all, vec![(b"a".to_vec(), b"1".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
    }

    #[test]
    fn merged_ranges_match_a_plain_store() {
        // A deterministic pseudo-random mix of committed and open writes, checked against a map.
        let (mut store, buffers) = buffered();
        let mut truth = BTreeMap::new();
        let mut seed = 7u64;
        for round in 0..2000u64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let key = vec![b'k', (seed >> 33) as u8 % 40];
            let value = (!(seed >> 20).is_multiple_of(3)).then(|| round.to_be_bytes().to_vec());
            store.put(&key, value.as_deref()).unwrap();
            match value {
                Some(v) => truth.insert(key, v),
                None => truth.remove(&key),
            };
            if round % 97 == 0 {
                buffers.borrow()[0].borrow_mut().commit(false).unwrap();
            }
            if round % 31 == 0 {
                let expected: Vec<_> = truth.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(store.range(None, None).unwrap(), expected);
                let (from, to) = (vec![b'k', 10], vec![b'k', 20]);
                let expected: Vec<_> =
                    truth.range(from.clone()..=to.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(store.range(Some(&from), Some(&to)).unwrap(), expected);
            }
        }
    }
}

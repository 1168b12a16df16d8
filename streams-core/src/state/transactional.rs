//! The transaction buffer of a persistent store under `exactly_once_v2`.
//!
//! Writes made while a Kafka transaction is open stay in memory (reads see them); they reach
//! RocksDB only after the transaction committed. So a store on disk never holds uncommitted
//! data: after a crash it is the state of some committed transaction, and replaying its
//! changelog (read_committed) from the checkpoint makes it exact, without wiping it. An aborted
//! transaction simply discards the buffer.

use std::collections::BTreeMap;

use super::iter::{directed, overlay};
use super::{BytesIter, KeyRange, KeyValueBytesStore, RestoreRecord};
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

impl TransactionalBytesStore {
    pub(crate) fn new(inner: Box<dyn KeyValueBytesStore>) -> Self {
        TransactionalBytesStore { inner, pending: BTreeMap::new() }
    }

    /// The transaction aborted: forgets its writes.
    fn abort(&mut self) {
        self.pending.clear();
    }
}

impl KeyValueBytesStore for TransactionalBytesStore {
    fn rocksdb_properties(&self, out: &mut Vec<(&'static str, u64)>) {
        self.inner.rocksdb_properties(out)
    }
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
    /// Committed entries with the open transaction's writes over them; its deletes hide entries.
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        let committed = self.inner.range(range)?;
        if range.is_empty() {
            return Ok(committed);
        }
        let pending = self.pending.range::<[u8], _>(range.bounds()).map(|(k, v)| (k.as_slice(), v.as_deref()));
        Ok(overlay(committed, directed(pending, range), range))
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        Ok(self.inner.approximate_num_entries()? + self.pending.len() as u64)
    }
    /// Nothing to do before the transaction commits; see
    /// [`commit_transaction`](KeyValueBytesStore::commit_transaction).
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
    /// The transaction committed: writes the buffer to the inner store in one batch; with
    /// `durable`, also makes the inner store durable (before a checkpoint is written).
    fn commit_transaction(&mut self, durable: bool) -> Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            let batch: Vec<RestoreRecord<'_>> = pending.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
            self.inner.restore(&batch)?;
        }
        if durable {
            self.inner.flush()?;
        }
        Ok(())
    }
    /// Restoration happens before processing, with nothing buffered; restored records are
    /// committed data and replace anything buffered for their keys.
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        for (key, _) in batch {
            self.pending.remove(*key);
        }
        self.inner.restore(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::in_memory::InMemoryKeyValueStore;

    fn buffered() -> TransactionalBytesStore {
        TransactionalBytesStore::new(Box::new(InMemoryKeyValueStore::new("s")))
    }

    fn scan(store: &mut TransactionalBytesStore, range: KeyRange) -> Vec<(Vec<u8>, Vec<u8>)> {
        store.range(&range).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn behaves_as_a_key_value_store() {
        crate::state::check_bytes_store(&mut buffered());
    }

    #[test]
    fn writes_reach_the_inner_store_only_on_commit() {
        let mut store = buffered();
        store.put(b"a", Some(b"1")).unwrap();
        store.put(b"c", Some(b"3")).unwrap();
        store.commit_transaction(true).unwrap();
        store.put(b"a", None).unwrap();
        store.put(b"b", Some(b"2")).unwrap();
        store.put(b"c", Some(b"30")).unwrap();
        // Reads see the open transaction merged over committed data.
        assert_eq!(store.get(b"a").unwrap(), None);
        let all = scan(&mut store, KeyRange::all());
        assert_eq!(all, vec![(b"b".to_vec(), b"2".to_vec()), (b"c".to_vec(), b"30".to_vec())]);
        assert_eq!(scan(&mut store, KeyRange::inclusive(Some(b"c"), None)), vec![(b"c".to_vec(), b"30".to_vec())]);
        // Abort: back to the committed state.
        store.abort();
        assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
        let all = scan(&mut store, KeyRange::all());
        assert_eq!(all, vec![(b"a".to_vec(), b"1".to_vec()), (b"c".to_vec(), b"3".to_vec())]);
    }

    #[test]
    fn merged_ranges_match_a_plain_store() {
        // A deterministic pseudo-random mix of committed and open writes, checked against a map.
        let mut store = buffered();
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
                store.commit_transaction(false).unwrap();
            }
            if round % 31 == 0 {
                let expected: Vec<_> = truth.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(scan(&mut store, KeyRange::all()), expected);
                let (from, to) = (vec![b'k', 10], vec![b'k', 20]);
                let expected: Vec<_> =
                    truth.range(from.clone()..=to.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(scan(&mut store, KeyRange::inclusive(Some(&from), Some(&to))), expected);
            }
        }
    }
}

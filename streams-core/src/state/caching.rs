//! The caching layer: absorbs repeated updates of a key between commits.
//!
//! Dirty entries are written down (and, for KTable stores, forwarded) when the task commits, or
//! when one of them is evicted (then all of the store's, as in Kafka Streams), so N updates of
//! one key before a commit reach the changelog and the children once.
//! All caching stores of a thread share one byte budget, `statestore.cache.max.bytes`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::iter::{directed, overlay};
use super::{BytesIter, FlushedEntry, KeyRange, KeyValueBytesStore, RestoreRecord};
use crate::error::Result;
use crate::record::RecordContext;

/// Per-entry bookkeeping charged against the budget besides key and value bytes.
const ENTRY_OVERHEAD: usize = 64;

/// The byte budget shared by the caches of one stream thread.
#[derive(Debug)]
pub(crate) struct ThreadCache {
    max_bytes: usize,
    used_bytes: usize,
}

impl ThreadCache {
    /// A budget of `max_bytes` (0 disables caching in effect: every write is evicted at once).
    pub(crate) fn new(max_bytes: usize) -> Self {
        ThreadCache { max_bytes, used_bytes: 0 }
    }

    /// Bytes in use by all caches.
    #[cfg(test)]
    pub(crate) fn used_bytes(&self) -> usize {
        self.used_bytes
    }
}

#[derive(Debug)]
struct CacheEntry {
    /// The key, shared by the entry's places in `entries`, `lru` and `dirty`.
    key: Rc<[u8]>,
    value: Option<Vec<u8>>,
    /// Not written down yet: the entry's place in the order of writes (its key in `dirty`).
    dirty: Option<u64>,
    timestamp: i64,
    /// Its place in the least-recently-used order (its key in `lru`).
    seq: u64,
}

fn entry_size(key: &[u8], value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

/// An LRU cache of entries in front of the inner (change-logging) store.
pub(crate) struct CachingKeyValueStore {
    inner: Box<dyn KeyValueBytesStore>,
    entries: BTreeMap<Rc<[u8]>, CacheEntry>,
    lru: BTreeMap<u64, Rc<[u8]>>,
    /// Dirty keys in the order of their last write, which is the order a flush writes them
    /// down in (as Kafka Streams' `NamedCache`): a flush costs its dirty entries, not the cache.
    dirty: BTreeMap<u64, Rc<[u8]>>,
    next_seq: u64,
    own_bytes: usize,
    thread_cache: Rc<RefCell<ThreadCache>>,
    record_context: Rc<RefCell<RecordContext>>,
    forward: bool,
    flushed: Vec<FlushedEntry>,
    /// Hit and miss counts (`metrics.recording.level = DEBUG`).
    sensors: Option<std::sync::Arc<crate::metrics::StoreSensors>>,
}

impl std::fmt::Debug for CachingKeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingKeyValueStore")
            .field("name", &self.inner.name())
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl CachingKeyValueStore {
    pub(crate) fn new(
        inner: Box<dyn KeyValueBytesStore>,
        thread_cache: Rc<RefCell<ThreadCache>>,
        record_context: Rc<RefCell<RecordContext>>,
    ) -> Self {
        CachingKeyValueStore {
            inner,
            entries: BTreeMap::new(),
            lru: BTreeMap::new(),
            dirty: BTreeMap::new(),
            next_seq: 0,
            own_bytes: 0,
            thread_cache,
            record_context,
            forward: false,
            flushed: Vec::new(),
            sensors: None,
        }
    }

    /// Counts hits and misses into `sensors`.
    pub(crate) fn with_sensors(mut self, sensors: Option<std::sync::Arc<crate::metrics::StoreSensors>>) -> Self {
        self.sensors = sensors;
        self
    }

    fn insert(&mut self, key: &[u8], value: Option<Vec<u8>>, dirty: bool) -> Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let timestamp = self.record_context.borrow().timestamp;
        let added = entry_size(key, &value);
        let (shared, replaced) = match self.entries.get_mut(key) {
            Some(entry) => {
                self.lru.remove(&entry.seq);
                let replaced = entry_size(key, &entry.value);
                entry.dirty = match (entry.dirty, dirty) {
                    // A new write: the key moves to the end of the write order.
                    (Some(order), true) => {
                        self.dirty.remove(&order);
                        Some(seq)
                    }
                    // A clean read never replaces a pending write.
                    (Some(order), false) => Some(order),
                    (None, dirty) => dirty.then_some(seq),
                };
                entry.value = value;
                entry.timestamp = timestamp;
                entry.seq = seq;
                (entry.key.clone(), replaced)
            }
            None => {
                let shared: Rc<[u8]> = Rc::from(key);
                let entry = CacheEntry { key: shared.clone(), value, dirty: dirty.then_some(seq), timestamp, seq };
                self.entries.insert(shared.clone(), entry);
                (shared, 0)
            }
        };
        self.release(replaced);
        if dirty {
            self.dirty.insert(seq, shared.clone());
        }
        self.lru.insert(seq, shared);
        self.own_bytes += added;
        self.thread_cache.borrow_mut().used_bytes += added;
        self.maybe_evict()
    }

    fn release(&mut self, bytes: usize) {
        self.own_bytes -= bytes;
        self.thread_cache.borrow_mut().used_bytes -= bytes;
    }

    fn maybe_evict(&mut self) -> Result<()> {
        loop {
            let over = {
                let cache = self.thread_cache.borrow();
                cache.used_bytes > cache.max_bytes
            };
            if !over {
                return Ok(());
            }
            let Some((_, key)) = self.lru.pop_first() else { return Ok(()) };
            let entry = self.entries.remove(&*key).expect("lru and entries agree");
            self.release(entry_size(&key, &entry.value));
            if let Some(order) = entry.dirty {
                // As Kafka Streams' `NamedCache`: evicting a dirty entry writes it down, then
                // every other dirty entry of the store.
                self.dirty.remove(&order);
                self.write_down(key.to_vec(), entry)?;
                self.flush_cache()?;
            }
        }
    }

    fn write_down(&mut self, key: Vec<u8>, entry: CacheEntry) -> Result<()> {
        let old_value = if self.forward { self.inner.get(&key)? } else { None };
        let saved = {
            let mut ctx = self.record_context.borrow_mut();
            let saved = ctx.timestamp;
            ctx.timestamp = entry.timestamp;
            saved
        };
        let result = self.inner.put(&key, entry.value.as_deref());
        self.record_context.borrow_mut().timestamp = saved;
        result?;
        if self.forward && (entry.value.is_some() || old_value.is_some()) {
            self.flushed.push(FlushedEntry {
                key,
                new_value: entry.value,
                old_value,
                timestamp: entry.timestamp,
            });
        }
        Ok(())
    }
}

impl KeyValueBytesStore for CachingKeyValueStore {
    fn rocksdb_properties(&self, out: &mut Vec<(&'static str, u64)>) {
        self.inner.rocksdb_properties(out)
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(entry) = self.entries.get_mut(key) {
            // Touch: move to the most recently used end.
            self.lru.remove(&entry.seq);
            entry.seq = self.next_seq;
            self.next_seq += 1;
            self.lru.insert(entry.seq, entry.key.clone());
            if let Some(s) = &self.sensors {
                s.cache_hits.add(1);
            }
            return Ok(entry.value.clone());
        }
        if let Some(s) = &self.sensors {
            s.cache_misses.add(1);
        }
        let value = self.inner.get(key)?;
        self.insert(key, value.clone(), false)?;
        Ok(value)
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.insert(key, value.map(<[u8]>::to_vec), true)
    }
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        let base = self.inner.range(range)?;
        if range.is_empty() {
            return Ok(base);
        }
        let cached = self.entries.range::<[u8], _>(range.bounds()).map(|(k, e)| (&**k, e.value.as_deref()));
        Ok(overlay(base, directed(cached, range), range))
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        Ok(self.inner.approximate_num_entries()? + self.dirty.len() as u64)
    }
    fn flush(&mut self) -> Result<()> {
        self.flush_cache()?;
        self.inner.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.flush_cache()?;
        self.discard_cache();
        self.inner.close()
    }
    fn discard_cache(&mut self) {
        let bytes = self.own_bytes;
        self.release(bytes);
        self.entries.clear();
        self.lru.clear();
        self.dirty.clear();
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn commit_transaction(&mut self, durable: bool) -> Result<()> {
        self.inner.commit_transaction(durable)
    }
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        for (key, _) in batch {
            if let Some(entry) = self.entries.remove(*key) {
                self.lru.remove(&entry.seq);
                if let Some(order) = entry.dirty {
                    self.dirty.remove(&order);
                }
                self.release(entry_size(key, &entry.value));
            }
        }
        self.inner.restore(batch)
    }
    fn enable_flush_forwarding(&mut self) -> bool {
        self.forward = true;
        true
    }
    fn flush_cache(&mut self) -> Result<()> {
        // Write dirty entries down in the order of their last writes; keep them cached as clean.
        for (_, key) in std::mem::take(&mut self.dirty) {
            let entry = self.entries.get_mut(&*key).expect("dirty keys are cached");
            entry.dirty = None;
            let snapshot =
                CacheEntry { key: key.clone(), value: entry.value.clone(), dirty: None, timestamp: entry.timestamp, seq: entry.seq };
            self.write_down(key.to_vec(), snapshot)?;
        }
        Ok(())
    }
    fn take_flushed(&mut self) -> Vec<FlushedEntry> {
        std::mem::take(&mut self.flushed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::in_memory::InMemoryKeyValueStore;

    fn store(max: usize) -> (CachingKeyValueStore, Rc<RefCell<ThreadCache>>) {
        let cache = Rc::new(RefCell::new(ThreadCache::new(max)));
        let ctx = Rc::new(RefCell::new(RecordContext::default()));
        (CachingKeyValueStore::new(Box::new(InMemoryKeyValueStore::new("s")), cache.clone(), ctx), cache)
    }

    #[test]
    fn behaves_as_a_key_value_store() {
        super::super::check_bytes_store(&mut store(1 << 20).0);
    }

    #[test]
    fn a_flush_writes_down_in_the_order_of_the_last_writes() {
        let (mut s, _) = store(1 << 20);
        assert!(s.enable_flush_forwarding());
        s.put(b"a", Some(b"1")).unwrap();
        s.put(b"b", Some(b"1")).unwrap();
        s.get(b"a").unwrap(); // a read leaves the write order alone
        s.put(b"c", Some(b"1")).unwrap();
        s.put(b"b", Some(b"2")).unwrap();
        assert_eq!(s.approximate_num_entries().unwrap(), 3);
        s.flush_cache().unwrap();
        let keys: Vec<Vec<u8>> = s.take_flushed().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, [b"a".to_vec(), b"c".to_vec(), b"b".to_vec()]);
        s.flush_cache().unwrap();
        assert!(s.take_flushed().is_empty(), "clean after a flush");
        assert_eq!(s.get(b"b").unwrap(), Some(b"2".to_vec()), "still cached");
    }

    #[test]
    fn repeated_updates_flush_once_with_the_first_old_value() {
        let (mut s, _) = store(1 << 20);
        assert!(s.enable_flush_forwarding());
        s.put(b"k", Some(b"1")).unwrap();
        s.flush_cache().unwrap();
        assert_eq!(s.take_flushed().len(), 1);
        s.put(b"k", Some(b"2")).unwrap();
        s.put(b"k", Some(b"3")).unwrap();
        assert!(s.take_flushed().is_empty());
        s.flush_cache().unwrap();
        let flushed = s.take_flushed();
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].new_value.as_deref(), Some(&b"3"[..]));
        assert_eq!(flushed[0].old_value.as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn a_full_budget_evicts_least_recently_used_first_and_writes_down_every_dirty_entry() {
        let (mut s, cache) = store(2 * (ENTRY_OVERHEAD + 2));
        s.enable_flush_forwarding();
        s.put(b"a", Some(b"1")).unwrap();
        s.put(b"b", Some(b"1")).unwrap();
        s.get(b"a").unwrap();
        s.put(b"c", Some(b"1")).unwrap();
        // `b` is evicted; as in Kafka Streams, the store's other dirty entries go down with it.
        let written: Vec<Vec<u8>> = s.take_flushed().into_iter().map(|e| e.key).collect();
        assert_eq!(written, [b"b".to_vec(), b"a".to_vec(), b"c".to_vec()]);
        assert!(cache.borrow().used_bytes() <= 2 * (ENTRY_OVERHEAD + 2));
        assert_eq!(s.get(b"b").unwrap(), Some(b"1".to_vec()));
        s.flush_cache().unwrap();
        assert!(s.take_flushed().is_empty(), "nothing left dirty");
    }
}

//! The caching layer: absorbs repeated updates of a key between commits.
//!
//! Dirty entries are written down (and, for KTable stores, forwarded) when the task commits, or
//! when one of them is evicted (then all of the store's, as in Kafka Streams), so N updates of
//! one key before a commit reach the changelog and the children once.
//! All caching stores of a thread share one byte budget, `statestore.cache.max.bytes`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
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
    /// The key, shared with the lookup maps.
    key: Rc<[u8]>,
    value: Option<Vec<u8>>,
    /// Written since the last flush (then the entry is on the `dirty` list).
    dirty: bool,
    timestamp: i64,
}

fn entry_size(key: &[u8], value: Option<&[u8]>) -> usize {
    key.len() + value.map_or(0, <[u8]>::len) + ENTRY_OVERHEAD
}

/// The end of a list.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
struct Links {
    prev: u32,
    next: u32,
}

/// A doubly linked list threaded through the cache's slots by index: moving an entry to its
/// end, or taking it out, costs no allocation and no search.
#[derive(Debug)]
struct SlotList {
    links: Vec<Links>,
    head: u32,
    tail: u32,
    len: usize,
}

impl SlotList {
    fn new() -> Self {
        SlotList { links: Vec::new(), head: NIL, tail: NIL, len: 0 }
    }

    fn push_back(&mut self, slot: u32) {
        let i = slot as usize;
        if self.links.len() <= i {
            self.links.resize(i + 1, Links { prev: NIL, next: NIL });
        }
        self.links[i] = Links { prev: self.tail, next: NIL };
        match self.tail {
            NIL => self.head = slot,
            tail => self.links[tail as usize].next = slot,
        }
        self.tail = slot;
        self.len += 1;
    }

    fn remove(&mut self, slot: u32) {
        let Links { prev, next } = self.links[slot as usize];
        match prev {
            NIL => self.head = next,
            prev => self.links[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.links[next as usize].prev = prev,
        }
        self.len -= 1;
    }

    fn move_to_back(&mut self, slot: u32) {
        if self.tail != slot {
            self.remove(slot);
            self.push_back(slot);
        }
    }

    fn pop_front(&mut self) -> Option<u32> {
        let head = self.head;
        (head != NIL).then(|| {
            self.remove(head);
            head
        })
    }

    fn clear(&mut self) {
        self.links.clear();
        self.head = NIL;
        self.tail = NIL;
        self.len = 0;
    }
}

/// An LRU cache of entries in front of the inner (change-logging) store.
///
/// Entries live in slots found by a hash map; two lists through the slots keep the
/// least-recently-used order (eviction) and the order of last writes (a flush writes dirty
/// entries down in that order, as Kafka Streams' `NamedCache` keeps `dirtyKeys`, so a flush
/// costs its dirty entries, not the cache). The sorted index that range queries need is built
/// on the first range query and kept from then on.
pub(crate) struct CachingKeyValueStore {
    inner: Box<dyn KeyValueBytesStore>,
    index: HashMap<Rc<[u8]>, u32, foldhash::fast::RandomState>,
    slots: Vec<Option<CacheEntry>>,
    free: Vec<u32>,
    lru: SlotList,
    dirty: SlotList,
    sorted: Option<BTreeMap<Rc<[u8]>, u32>>,
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
            .field("entries", &self.index.len())
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
            index: HashMap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            lru: SlotList::new(),
            dirty: SlotList::new(),
            sorted: None,
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

    fn entry(&mut self, slot: u32) -> &mut CacheEntry {
        self.slots[slot as usize].as_mut().expect("listed slots hold entries")
    }

    fn insert(&mut self, key: &[u8], value: Option<&[u8]>, dirty: bool) -> Result<()> {
        let timestamp = self.record_context.borrow().timestamp;
        let added = entry_size(key, value);
        let replaced = match self.index.get(key) {
            Some(&slot) => {
                let entry = self.slots[slot as usize].as_mut().expect("indexed slots hold entries");
                let replaced = entry_size(key, entry.value.as_deref());
                // Reuse the old value's buffer.
                match (&mut entry.value, value) {
                    (Some(old), Some(new)) => {
                        old.clear();
                        old.extend_from_slice(new);
                    }
                    (old, new) => *old = new.map(<[u8]>::to_vec),
                }
                entry.timestamp = timestamp;
                self.lru.move_to_back(slot);
                if dirty {
                    // A new write: the key moves to the end of the write order. A clean read
                    // never replaces a pending write's place.
                    if entry.dirty {
                        self.dirty.move_to_back(slot);
                    } else {
                        entry.dirty = true;
                        self.dirty.push_back(slot);
                    }
                }
                replaced
            }
            None => {
                let key: Rc<[u8]> = Rc::from(key);
                let entry = CacheEntry { key: key.clone(), value: value.map(<[u8]>::to_vec), dirty, timestamp };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.slots[slot as usize] = Some(entry);
                        slot
                    }
                    None => {
                        self.slots.push(Some(entry));
                        u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 cached entries")
                    }
                };
                if let Some(sorted) = &mut self.sorted {
                    sorted.insert(key.clone(), slot);
                }
                self.index.insert(key, slot);
                self.lru.push_back(slot);
                if dirty {
                    self.dirty.push_back(slot);
                }
                0
            }
        };
        self.release(replaced);
        self.own_bytes += added;
        self.thread_cache.borrow_mut().used_bytes += added;
        self.maybe_evict()
    }

    /// Takes the entry in `slot` out of the cache.
    fn remove(&mut self, slot: u32) -> CacheEntry {
        let entry = self.slots[slot as usize].take().expect("removed slots hold entries");
        self.free.push(slot);
        self.index.remove(&entry.key);
        if let Some(sorted) = &mut self.sorted {
            sorted.remove(&entry.key);
        }
        self.lru.remove(slot);
        if entry.dirty {
            self.dirty.remove(slot);
        }
        self.release(entry_size(&entry.key, entry.value.as_deref()));
        entry
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
            if !over || self.lru.head == NIL {
                return Ok(());
            }
            let entry = self.remove(self.lru.head);
            if entry.dirty {
                // As Kafka Streams' `NamedCache`: evicting a dirty entry writes it down, then
                // every other dirty entry of the store.
                self.write_down(entry.key.to_vec(), entry.value, entry.timestamp)?;
                self.flush_cache()?;
            }
        }
    }

    fn write_down(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, timestamp: i64) -> Result<()> {
        let old_value = if self.forward { self.inner.get(&key)? } else { None };
        let saved = {
            let mut ctx = self.record_context.borrow_mut();
            let saved = ctx.timestamp;
            ctx.timestamp = timestamp;
            saved
        };
        let result = self.inner.put(&key, value.as_deref());
        self.record_context.borrow_mut().timestamp = saved;
        result?;
        if self.forward && (value.is_some() || old_value.is_some()) {
            self.flushed.push(FlushedEntry { key, new_value: value, old_value, timestamp });
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
        if let Some(&slot) = self.index.get(key) {
            self.lru.move_to_back(slot);
            if let Some(s) = &self.sensors {
                s.cache_hits.add(1);
            }
            return Ok(self.entry(slot).value.clone());
        }
        if let Some(s) = &self.sensors {
            s.cache_misses.add(1);
        }
        let value = self.inner.get(key)?;
        self.insert(key, value.as_deref(), false)?;
        Ok(value)
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.insert(key, value, true)
    }
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        let base = self.inner.range(range)?;
        if range.is_empty() {
            return Ok(base);
        }
        let (index, slots) = (&self.index, &self.slots);
        let sorted = self.sorted.get_or_insert_with(|| index.iter().map(|(k, &slot)| (k.clone(), slot)).collect());
        let cached = sorted.range::<[u8], _>(range.bounds()).map(|(k, &slot)| {
            (&**k, slots[slot as usize].as_ref().expect("indexed slots hold entries").value.as_deref())
        });
        Ok(overlay(base, directed(cached, range), range))
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        Ok(self.inner.approximate_num_entries()? + self.dirty.len as u64)
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
        self.index.clear();
        self.slots.clear();
        self.free.clear();
        self.lru.clear();
        self.dirty.clear();
        self.sorted = None;
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn commit_transaction(&mut self, durable: bool) -> Result<()> {
        self.inner.commit_transaction(durable)
    }
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        for (key, _) in batch {
            if let Some(&slot) = self.index.get(*key) {
                self.remove(slot);
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
        while let Some(slot) = self.dirty.pop_front() {
            let entry = self.entry(slot);
            entry.dirty = false;
            let (key, value, timestamp) = (entry.key.to_vec(), entry.value.clone(), entry.timestamp);
            self.write_down(key, value, timestamp)?;
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

    #[test]
    fn range_queries_see_the_cache_as_it_changes_after_the_first_one() {
        let (mut s, cache) = store(3 * (ENTRY_OVERHEAD + 2));
        let keys = |s: &mut CachingKeyValueStore| -> Vec<Vec<u8>> {
            s.range(&KeyRange::all()).unwrap().map(|e| e.unwrap().0).collect()
        };
        s.put(b"a", Some(b"1")).unwrap();
        s.put(b"c", Some(b"3")).unwrap();
        assert_eq!(keys(&mut s), [b"a".to_vec(), b"c".to_vec()]);
        s.put(b"b", Some(b"2")).unwrap();
        s.put(b"c", None).unwrap();
        assert_eq!(keys(&mut s), [b"a".to_vec(), b"b".to_vec()]);
        // `d` evicts `a` (and writes every dirty entry down): the inner store answers for it.
        s.put(b"d", Some(b"4")).unwrap();
        assert!(cache.borrow().used_bytes() <= 3 * (ENTRY_OVERHEAD + 2));
        assert_eq!(keys(&mut s), [b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);
        s.discard_cache();
        assert_eq!(keys(&mut s), [b"a".to_vec(), b"b".to_vec(), b"d".to_vec()]);
        assert_eq!(cache.borrow().used_bytes(), 0);
    }
}

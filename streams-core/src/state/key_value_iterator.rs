//! [`KeyValueIterator`]: the typed scans of key-value, window and session stores.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use super::typed::SerdeKeyValueStore;
use super::{KeyRange, RawEntries};
use crate::error::Result;

/// Raw entries read from the store per batch.
const BATCH: usize = 256;

/// A scan of a store, in serialized-key order, as Kafka Streams' `KeyValueIterator`: items are
/// `(key, value)`, or `(window start, value)` for one key's windows.
///
/// The scan streams from the store's layers (RocksDB iterators, with the record cache and the
/// open transaction's writes merged over them in order), a batch of entries at a time: it never
/// holds more than one batch, and it holds no borrow of the store between calls to `next`, so a
/// processor may write to the store while it iterates. Each batch reads the store as it is
/// then: writes ahead of the scan's position are seen, writes behind it are not.
///
/// Dropping the iterator ends the scan; there is nothing to close.
pub struct KeyValueIterator<K, V> {
    fetch: Box<FetchBatch<(K, V)>>,
    /// What is left to scan.
    rest: KeyRange,
    buffer: VecDeque<(K, V)>,
    exhausted: bool,
}

/// Reads at most `n` raw entries from the start of a range and decodes them.
type FetchBatch<T> = dyn FnMut(&KeyRange, usize) -> Result<Batch<T>>;

/// One batch: the decoded items, whether the range ended, and if not, the last raw key read
/// (where the next batch starts).
pub(crate) struct Batch<T> {
    items: Vec<T>,
    last_key: Option<Vec<u8>>,
    complete: bool,
}

impl<T> Batch<T> {
    /// The items of `raw`, read with a limit of `n`, as `decode` gives them.
    pub(crate) fn decoded(raw: &RawEntries, n: usize, decode: impl Fn(&[u8], &[u8]) -> Result<Option<T>>) -> Result<Self> {
        let items = raw.iter().filter_map(|(k, v)| decode(k, v).transpose()).collect::<Result<Vec<_>>>()?;
        let complete = raw.len() < n;
        // Where the next batch starts; a complete batch has none.
        let last_key = if complete { None } else { raw.iter().next_back().map(|(k, _)| k.to_vec()) };
        Ok(Batch { items, complete, last_key })
    }
}

impl<K, V> fmt::Debug for KeyValueIterator<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValueIterator").field("buffered", &self.buffer.len()).field("exhausted", &self.exhausted).finish()
    }
}

impl<K: 'static, V: 'static> KeyValueIterator<K, V> {
    /// A scan of `range` in `store`; `decode` turns raw entries into items, or skips them
    /// (`None`: entries that fall inside the byte range but do not match, such as another
    /// key's windows). Reads the first batch at once, so opening errors show here.
    pub(crate) fn new<SK: 'static, SV: 'static>(
        store: Rc<RefCell<SerdeKeyValueStore<SK, SV>>>,
        range: KeyRange,
        decode: impl Fn(&SerdeKeyValueStore<SK, SV>, &[u8], &[u8]) -> Result<Option<(K, V)>> + 'static,
    ) -> Result<Self> {
        Self::from_batches(range, move |range, n| store.borrow_mut().read_batch(range, n, &decode))
    }

    /// A scan of `range` over any source of raw batches: `fetch(range, n)` reads at most `n`
    /// entries from the start of `range`.
    pub(crate) fn from_batches(
        range: KeyRange,
        fetch: impl FnMut(&KeyRange, usize) -> Result<Batch<(K, V)>> + 'static,
    ) -> Result<Self> {
        let mut iter = KeyValueIterator { fetch: Box::new(fetch), rest: range, buffer: VecDeque::new(), exhausted: false };
        iter.fill()?;
        Ok(iter)
    }

    /// Reads batches until one yields an item or the range ends.
    fn fill(&mut self) -> Result<()> {
        while self.buffer.is_empty() && !self.exhausted {
            if self.rest.is_empty() {
                self.exhausted = true;
                break;
            }
            let batch = match (self.fetch)(&self.rest, BATCH) {
                Ok(batch) => batch,
                Err(e) => {
                    self.exhausted = true;
                    return Err(e);
                }
            };
            self.exhausted = batch.complete;
            if let Some(last) = batch.last_key {
                self.rest = self.rest.past(&last);
            }
            // The loop runs only while the buffer is empty: take the batch's allocation.
            self.buffer = batch.items.into();
        }
        Ok(())
    }

    /// Starts the scan over at `rest`, a remainder of the same scan (from [`take_batch`](Self::take_batch)).
    pub(crate) fn restart_at(&mut self, rest: KeyRange) -> Result<()> {
        self.buffer.clear();
        self.rest = rest;
        self.exhausted = false;
        self.fill()
    }

    /// At least `n` items (fewer at the end), read in whole batches, and what is left of the
    /// scan after them (`None`: it ended). Interactive queries page through a store this way.
    pub(crate) fn take_batch(mut self, n: usize) -> Result<(Vec<(K, V)>, Option<KeyRange>)> {
        let mut items = Vec::new();
        loop {
            items.extend(self.buffer.drain(..));
            if self.exhausted || items.len() >= n {
                break;
            }
            self.fill()?;
        }
        Ok((items, (!self.exhausted).then_some(self.rest)))
    }

    /// The key of the next entry, without moving on (Kafka Streams' `peekNextKey`).
    pub fn peek_next_key(&mut self) -> Result<Option<&K>> {
        self.fill()?;
        Ok(self.buffer.front().map(|(k, _)| k))
    }
}

impl<K: 'static, V: 'static> Iterator for KeyValueIterator<K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl<K: 'static, V: 'static> std::iter::FusedIterator for KeyValueIterator<K, V> {}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::rc::Rc;
    use std::sync::Arc;

    use crate::record::RecordContext;
    use crate::serdes::{SerdeRef, Serdes};
    use crate::state::caching::{CachingKeyValueStore, ThreadCache};
    use crate::state::in_memory::InMemoryKeyValueStore;
    use crate::state::typed::SerdeKeyValueStore;
    use crate::state::rocksdb_store::RocksDbKeyValueStore;
    use crate::state::transactional::TransactionalBytesStore;
    use crate::state::{KeyValueBytesStore, KeyValueStore, StateStore};

    fn bytes() -> SerdeRef<Vec<u8>> {
        Arc::new(Serdes::bytes())
    }

    /// RocksDB under a transaction buffer under a record cache of `cache_bytes`, typed.
    fn layered(dir: &std::path::Path, cache_bytes: usize) -> KeyValueStore<Vec<u8>, Vec<u8>> {
        let rocks = RocksDbKeyValueStore::open("s", dir, &crate::state::RocksDbConfig::default()).unwrap();
        let buffered = TransactionalBytesStore::new(Box::new(rocks));
        let cache = Rc::new(RefCell::new(ThreadCache::new(cache_bytes)));
        let ctx = Rc::new(RefCell::new(RecordContext::default()));
        let cached = CachingKeyValueStore::new(Box::new(buffered), cache, ctx);
        KeyValueStore::new(SerdeKeyValueStore::new(Box::new(cached), "t".into(), bytes(), bytes()))
    }

    fn key(n: u32) -> Vec<u8> {
        format!("k{n:08}").into_bytes()
    }

    #[test]
    fn a_scan_longer_than_a_batch_sees_writes_ahead_of_it() {
        let store = KeyValueStore::new(SerdeKeyValueStore::new(
            Box::new(InMemoryKeyValueStore::new("s")),
            "t".into(),
            bytes(),
            bytes(),
        ));
        for n in 0..1000 {
            store.put(&key(n), &vec![1]).unwrap();
        }
        let (mut seen, mut deleted) = (Vec::new(), std::collections::BTreeSet::new());
        let mut scan = store.all().unwrap();
        assert_eq!(scan.peek_next_key().unwrap(), Some(&key(0)));
        for entry in &mut scan {
            let (k, _) = entry.unwrap();
            // Deleting what was read and the entry after it, while scanning.
            store.delete(&k).unwrap();
            let n: u32 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
            store.delete(&key(n + 1)).unwrap();
            deleted.extend([n, n + 1].into_iter().filter(|&d| d < 1000));
            seen.push(n);
        }
        // Batches read the store as it is then: deletes ahead of the position are seen (the
        // first key of each later batch was deleted), the entries of the batch being handed
        // out are not.
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in key order");
        assert_eq!(seen.len(), 1000 - 3, "three batches after the first start one key later");
        assert!(scan.next().is_none(), "fused");
        assert_eq!(store.all().unwrap().count(), 1000 - deleted.len());
    }

    #[test]
    fn scans_merge_cache_buffer_and_rocksdb_like_a_map() {
        let dir = tempfile::tempdir().unwrap();
        // A small cache: entries move between the three layers as the test goes.
        let store = layered(dir.path(), 40 * 80);
        let state: Rc<RefCell<dyn StateStore>> = store.as_state_store();
        let mut truth = BTreeMap::new();
        let mut seed = 11u64;
        for round in 0..5000u32 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let k = key((seed >> 33) as u32 % 700);
            if (seed >> 20).is_multiple_of(5) {
                store.delete(&k).unwrap();
                truth.remove(&k);
            } else {
                store.put(&k, &round.to_be_bytes().to_vec()).unwrap();
                truth.insert(k, round.to_be_bytes().to_vec());
            }
            if round % 211 == 0 {
                state.borrow_mut().flush().unwrap();
                state.borrow_mut().commit_transaction(round % 2 == 0).unwrap();
            }
            if round % 97 == 0 {
                let all: Vec<_> = store.all().unwrap().map(Result::unwrap).collect();
                assert_eq!(all, truth.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>());
                let (from, to) = (key(100), key(400));
                let range: Vec<_> = store.range(&from, &to).unwrap().map(Result::unwrap).collect();
                let expected: Vec<_> = truth.range(from..=to).map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(range, expected);
            }
        }
    }

    /// Peak resident memory of this process, in bytes (Linux).
    fn peak_rss() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    }

    #[test]
    fn a_million_entry_scan_holds_a_batch_not_the_store() {
        // Resetting the peak needs Linux's clear_refs.
        if std::fs::write("/proc/self/clear_refs", "5").is_err() || peak_rss().is_none() {
            eprintln!("skipped: needs Linux /proc/self/clear_refs and VmHWM to measure peak memory");
            return;
        }
        const ENTRIES: u32 = 1_000_000;
        const VALUE: usize = 200;
        let dir = tempfile::tempdir().unwrap();
        {
            let mut rocks = RocksDbKeyValueStore::open("s", dir.path(), &crate::state::RocksDbConfig::default()).unwrap();
            for chunk in (0..ENTRIES).collect::<Vec<_>>().chunks(10_000) {
                let owned: Vec<_> = chunk.iter().map(|&n| (key(n), vec![(n % 251) as u8; VALUE])).collect();
                let batch: Vec<_> = owned.iter().map(|(k, v)| (k.as_slice(), Some(v.as_slice()))).collect();
                rocks.restore(&batch).unwrap();
            }
            rocks.close().unwrap();
        }
        let store = layered(dir.path(), 10 << 20);
        // Open writes in the cache and the transaction buffer: deletes and new keys between
        // the stored ones.
        for n in (0..ENTRIES).step_by(1000) {
            store.delete(&key(n)).unwrap();
            store.put(&[key(n + 1), b"x".to_vec()].concat(), &vec![7]).unwrap();
        }
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = peak_rss().unwrap();
        let (mut count, mut last): (u64, Option<Vec<u8>>) = (0, None);
        for entry in store.all().unwrap() {
            let (k, _) = entry.unwrap();
            assert!(last.as_ref().is_none_or(|l| *l < k), "out of order at {k:?}");
            last = Some(k);
            count += 1;
        }
        let growth = peak_rss().unwrap().saturating_sub(before);
        assert_eq!(count, u64::from(ENTRIES), "1,000 deleted, 1,000 added");
        let data = u64::from(ENTRIES) * (VALUE as u64 + 9);
        eprintln!("scan of {count} entries ({} MB of data): peak RSS grew {} MB", data >> 20, growth >> 20);
        assert!(growth < data / 4, "peak RSS grew {growth} bytes scanning {data} bytes of data");
        // The gauge works: the same scan collected into memory grows the peak past the bound.
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = peak_rss().unwrap();
        let collected: Vec<_> = store.all().unwrap().map(Result::unwrap).collect();
        let collected_growth = peak_rss().unwrap().saturating_sub(before);
        eprintln!("the same scan collected: peak RSS grew {} MB", collected_growth >> 20);
        assert_eq!(collected.len() as u64, count);
        assert!(collected_growth > data / 4, "collecting grew the peak by only {collected_growth} bytes");
    }
}

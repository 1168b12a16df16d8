//! The persistent bytes store: one RocksDB instance per store per task (and per global store).
//!
//! The changelog topic is the store's write-ahead log, so RocksDB's own WAL is off and
//! memtables are flushed at each commit, before the checkpoint is written.

use std::path::{Path, PathBuf};

use rocksdb::{DBRawIterator, Direction, FlushOptions, IteratorMode, ReadOptions, WriteBatch, WriteOptions, DB};

use super::{BytesIter, KeyRange, KeyValueBytesStore, RawEntries, RestoreRecord, RocksDbConfig};
use crate::error::{Result, StreamsError};

/// A RocksDB-backed key-value store at `<task dir>/rocksdb/<store>`.
pub(crate) struct RocksDbKeyValueStore {
    name: String,
    path: PathBuf,
    /// A forward iterator kept for bounded reads (a join's window fetches, say) and refreshed
    /// before each: a refresh moves an iterator to the latest write for next to nothing unless
    /// a flush or compaction changed the store's files, where creating one builds an iterator
    /// per memtable and file. It pins the memtables and files it reads, so a flush drops it.
    /// Declared before `db`, so dropped before it.
    cursor: Option<DBRawIterator<'static>>,
    /// The end of the kept iterator's current read, kept so that a fetch does not allocate.
    until: Vec<u8>,
    db: Option<DB>,
    write_options: WriteOptions,
}

impl std::fmt::Debug for RocksDbKeyValueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksDbKeyValueStore").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl RocksDbKeyValueStore {
    /// Opens (creating if needed) the store under `task_dir`.
    pub(crate) fn open(name: &str, task_dir: &Path, config: &RocksDbConfig) -> Result<Self> {
        Self::open_at(name, &task_dir.join("rocksdb").join(name), config)
    }

    /// Opens (creating if needed) the store `name` at `path`, with the options `config` gives.
    pub(crate) fn open_at(name: &str, path: &Path, config: &RocksDbConfig) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StreamsError::io(dir, e))?;
        }
        let path = path.to_path_buf();
        let options = config.options(name);
        let db = DB::open(&options, &path).map_err(|e| {
            StreamsError::store(name, format!("cannot open RocksDB at {}: {e}", path.display()))
        })?;
        let mut write_options = WriteOptions::default();
        write_options.disable_wal(true);
        Ok(RocksDbKeyValueStore { name: name.to_string(), path, cursor: None, until: Vec::new(), db: Some(db), write_options })
    }

    fn db(&self) -> Result<&DB> {
        self.db.as_ref().ok_or_else(|| StreamsError::store(&self.name, "store is closed"))
    }

    fn err(&self, op: &str, e: rocksdb::Error) -> StreamsError {
        rocksdb_error(&self.name, &self.path, op, e)
    }
}

/// A failed RocksDB operation `op` of the store `name` at `path`.
fn rocksdb_error(name: &str, path: &Path, op: &str, e: rocksdb::Error) -> StreamsError {
    StreamsError::store(name, format!("RocksDB {op} failed at {}: {e}", path.display()))
}

/// Reads and writes take `&self` (RocksDB is thread-safe), so the same store serves a task's
/// stores and, shared between threads, the global stores.
impl RocksDbKeyValueStore {
    pub(crate) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db()?.get(key).map_err(|e| self.err("get", e))
    }

    pub(crate) fn write(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let db = self.db()?;
        let result = match value {
            Some(v) => db.put_opt(key, v, &self.write_options),
            None => db.delete_opt(key, &self.write_options),
        };
        result.map_err(|e| self.err("put", e))
    }

    pub(crate) fn scan(&self, range: &KeyRange) -> Result<BytesIter<'_>> {
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        // Bounds in the read options let RocksDB stop at the range's end (and skip the
        // tombstones beyond it) instead of the caller.
        let mut options = ReadOptions::default();
        if let Some(from) = &range.from {
            options.set_iterate_lower_bound(from.clone());
        }
        if let Some(until) = &range.until {
            options.set_iterate_upper_bound(until.clone());
        }
        // With the upper bound in the options, a reverse scan starts at the last key below it.
        let mode = match &range.from {
            _ if range.reverse => IteratorMode::End,
            Some(from) => IteratorMode::From(from, Direction::Forward),
            None => IteratorMode::Start,
        };
        let iter = self.db()?.iterator_opt(mode, options);
        Ok(Box::new(iter.map(move |item| {
            item.map(|(key, value)| (key.into_vec(), value.into_vec())).map_err(|e| self.err("iterate", e))
        })))
    }

    /// The kept iterator, refreshed and positioned at the first key at or after `from`.
    #[allow(unsafe_code)]
    fn cursor_at(&mut self, from: &[u8]) -> Result<&mut DBRawIterator<'static>> {
        let refreshed = match &mut self.cursor {
            Some(cursor) => cursor.refresh(),
            None => {
                let iterator = self.db()?.raw_iterator_opt(ReadOptions::default());
                // SAFETY: the iterator refers to the RocksDB instance, not to the `DB` value
                // owning it, so the store may move; it is dropped before the instance closes
                // (`close` and `flush` drop it first, and the field is declared before `db`).
                self.cursor = Some(unsafe { std::mem::transmute::<DBRawIterator<'_>, DBRawIterator<'static>>(iterator) });
                Ok(())
            }
        };
        if let Err(e) = refreshed {
            self.cursor = None;
            return Err(self.err("refresh an iterator", e));
        }
        let cursor = self.cursor.as_mut().expect("set above");
        cursor.seek(from);
        Ok(cursor)
    }

    /// Keys `from <= key < until` in order, read through the kept iterator.
    fn bounded(&mut self, from: &[u8], until: &[u8]) -> Result<BytesIter<'_>> {
        self.until.clear();
        self.until.extend_from_slice(until);
        self.cursor_at(from)?;
        let (name, path, until) = (&self.name, &self.path, &self.until);
        let cursor = self.cursor.as_mut().expect("positioned above");
        let mut done = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if done {
                return None;
            }
            let Some((key, value)) = cursor.item().filter(|(key, _)| *key < until.as_slice()) else {
                done = true;
                let error = cursor.status().err()?;
                return Some(Err(rocksdb_error(name, path, "iterate", error)));
            };
            let entry = (key.to_vec(), value.to_vec());
            cursor.next();
            Some(Ok(entry))
        })))
    }

    /// At most `limit` entries with `from <= key < until`, copied from the kept iterator into `out`.
    fn bounded_batch(&mut self, from: &[u8], until: &[u8], limit: usize, out: &mut RawEntries) -> Result<()> {
        let cursor = self.cursor_at(from)?;
        for _ in 0..limit {
            match cursor.item() {
                Some((key, value)) if key < until => out.push(key, value),
                _ => break,
            }
            cursor.next();
        }
        let status = cursor.status();
        status.map_err(|e| self.err("iterate", e))
    }

    /// Writes the memtables to disk and waits.
    pub(crate) fn flush_memtables(&self) -> Result<()> {
        let db = self.db()?;
        let mut options = FlushOptions::default();
        options.set_wait(true);
        db.flush_opt(&options).map_err(|e| self.err("flush", e))
    }
}

impl KeyValueBytesStore for RocksDbKeyValueStore {
    fn rocksdb_properties(&self, out: &mut Vec<(&'static str, u64)>) {
        let Some(db) = &self.db else { return };
        for name in crate::metrics::ROCKSDB_PROPERTIES {
            if let Ok(Some(value)) = db.property_int_value(&format!("rocksdb.{name}")) {
                out.push((name, value));
            }
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(key)
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.write(key, value)
    }
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        match (&range.from, &range.until) {
            (Some(from), Some(until)) if !range.reverse && from < until => self.bounded(from, until),
            _ => self.scan(range),
        }
    }
    fn read_batch(&mut self, range: &KeyRange, limit: usize, out: &mut RawEntries) -> Result<()> {
        match (&range.from, &range.until) {
            (Some(from), Some(until)) if !range.reverse && from < until => self.bounded_batch(from, until, limit, out),
            _ => out.extend_from(self.scan(range)?, limit),
        }
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        let db = self.db()?;
        Ok(db
            .property_int_value("rocksdb.estimate-num-keys")
            .map_err(|e| self.err("property", e))?
            .unwrap_or(0))
    }
    fn flush(&mut self) -> Result<()> {
        self.cursor = None;
        self.flush_memtables()
    }
    fn close(&mut self) -> Result<()> {
        if self.db.is_some() {
            self.flush()?;
            self.db = None;
        }
        Ok(())
    }
    fn persistent(&self) -> bool {
        true
    }
    fn commit_transaction(&mut self, _durable: bool) -> Result<()> {
        Ok(())
    }
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        let mut write = WriteBatch::default();
        for (key, value) in batch {
            match value {
                Some(v) => write.put(key, v),
                None => write.delete(key),
            }
        }
        self.db()?.write_opt(write, &self.write_options).map_err(|e| self.err("restore", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_key_value_store_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksDbKeyValueStore::open("s", dir.path(), &RocksDbConfig::default()).unwrap();
        super::super::check_bytes_store(&mut store);
        store.close().unwrap();
        let mut reopened = RocksDbKeyValueStore::open("s", dir.path(), &RocksDbConfig::default()).unwrap();
        assert_eq!(reopened.get(b"e").unwrap(), Some(b"5".to_vec()));
        assert!(dir.path().join("rocksdb").join("s").exists());
    }

    #[test]
    fn bounded_ranges_read_through_one_iterator_see_every_earlier_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksDbKeyValueStore::open("s", dir.path(), &RocksDbConfig::default()).unwrap();
        let keys = |store: &mut RocksDbKeyValueStore| -> Vec<Vec<u8>> {
            let range = KeyRange { from: Some(b"b".to_vec()), until: Some(b"d".to_vec()), reverse: false };
            store.range(&range).unwrap().map(|e| e.unwrap().0).collect()
        };
        store.put(b"a", Some(b"1")).unwrap();
        store.put(b"b", Some(b"2")).unwrap();
        store.put(b"d", Some(b"4")).unwrap();
        assert_eq!(keys(&mut store), [b"b".to_vec()]);
        store.put(b"c", Some(b"3")).unwrap();
        assert_eq!(keys(&mut store), [b"b".to_vec(), b"c".to_vec()]);
        store.flush().unwrap();
        store.put(b"bb", Some(b"5")).unwrap();
        store.put(b"b", None).unwrap();
        assert_eq!(keys(&mut store), [b"bb".to_vec(), b"c".to_vec()]);
        // A compaction swaps the files under a kept iterator.
        store.db().unwrap().compact_range::<&[u8], &[u8]>(None, None);
        store.put(b"c", None).unwrap();
        assert_eq!(keys(&mut store), [b"bb".to_vec()]);
        store.close().unwrap();
    }

    #[test]
    fn batches_stop_at_their_limit_and_at_the_range_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksDbKeyValueStore::open("s", dir.path(), &RocksDbConfig::default()).unwrap();
        for key in ["a", "b", "bb", "c", "d"] {
            store.put(key.as_bytes(), Some(key.to_uppercase().as_bytes())).unwrap();
        }
        let read = |store: &mut RocksDbKeyValueStore, range: &KeyRange, limit: usize, out: &mut RawEntries| {
            out.clear();
            store.read_batch(range, limit, out).unwrap();
            out.iter().map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap())).collect::<Vec<_>>()
        };
        let pair = |k: &str| (k.to_string(), k.to_uppercase());
        let mut out = RawEntries::default();
        let bounded = KeyRange::inclusive(Some(b"b"), Some(b"c"));
        assert_eq!(read(&mut store, &bounded, 10, &mut out), [pair("b"), pair("bb"), pair("c")]);
        assert_eq!(read(&mut store, &bounded, 2, &mut out), [pair("b"), pair("bb")]);
        // Through the kept iterator, a batch sees the writes before it.
        store.put(b"bc", Some(b"BC")).unwrap();
        assert_eq!(read(&mut store, &bounded.after(b"bb"), 10, &mut out), [pair("bc"), pair("c")]);
        // Unbounded and reverse ranges read through a fresh iterator.
        assert_eq!(read(&mut store, &KeyRange::inclusive(Some(b"c"), None), 10, &mut out), [pair("c"), pair("d")]);
        assert_eq!(read(&mut store, &bounded.reversed(), 2, &mut out), [pair("c"), pair("bc")]);
        store.close().unwrap();
    }

    #[test]
    fn closed_store_errors_instead_of_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksDbKeyValueStore::open("s", dir.path(), &RocksDbConfig::default()).unwrap();
        store.close().unwrap();
        assert!(store.get(b"a").is_err());
    }
}

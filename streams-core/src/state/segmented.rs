//! Time-segmented bytes stores under window and session stores.
//!
//! Keys are composite: the record key's bytes, then big-endian timestamps (see [`KeySchema`]), so
//! one key's windows sit together in time order and a range scan finds them. Entries are spread
//! over segments of `segment_interval` ms by their timestamp; when stream time passes a
//! segment's end plus the retention period, the whole segment is dropped (for RocksDB, its
//! directory is deleted), as Kafka Streams' segmented stores do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::in_memory::InMemoryKeyValueStore;
use super::rocksdb_store::RocksDbKeyValueStore;
use super::user_store::{UserKeyValueStore, UserStoreFactory};
use super::iter::merge_disjoint;
use super::{BytesIter, KeyRange, KeyValueBytesStore, RawEntries, RestoreRecord, RocksDbConfig};
use crate::error::{Result, StreamsError};
use crate::record::TaskId;

const TS: usize = 8;
const SEQ: usize = 4;

/// How a window or session store lays out its composite keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySchema {
    /// `[key][window start]`, plus a 4-byte sequence number when duplicates are retained.
    Window {
        /// Whether each put gets its own entry (stream-stream join buffers).
        retain_duplicates: bool,
    },
    /// `[key][session end][session start]`.
    Session,
}

impl KeySchema {
    fn suffix_len(self) -> usize {
        match self {
            KeySchema::Window { retain_duplicates: false } => TS,
            KeySchema::Window { retain_duplicates: true } => TS + SEQ,
            KeySchema::Session => 2 * TS,
        }
    }

    /// The record key's bytes of a composite key.
    pub(crate) fn key_of(self, bytes: &[u8]) -> Option<&[u8]> {
        bytes.len().checked_sub(self.suffix_len()).map(|n| &bytes[..n])
    }

    /// Window start (windows) or `(start, end)` of the session (sessions).
    pub(crate) fn times_of(self, bytes: &[u8]) -> Option<(i64, i64)> {
        let n = bytes.len().checked_sub(self.suffix_len())?;
        let first = read_ts(&bytes[n..n + TS]);
        match self {
            KeySchema::Window { .. } => Some((first, first)),
            KeySchema::Session => Some((read_ts(&bytes[n + TS..n + 2 * TS]), first)),
        }
    }

    /// The timestamp that places an entry in a segment: window start, or session end.
    fn segment_time(self, bytes: &[u8]) -> Option<i64> {
        let n = bytes.len().checked_sub(self.suffix_len())?;
        Some(read_ts(&bytes[n..n + TS]))
    }
}

fn read_ts(bytes: &[u8]) -> i64 {
    i64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

/// `[key][start]` (+ `[seq]`).
pub(crate) fn window_key(key: &[u8], start: i64, seq: Option<u32>) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + TS + SEQ);
    out.extend_from_slice(key);
    out.extend_from_slice(&start.to_be_bytes());
    if let Some(seq) = seq {
        out.extend_from_slice(&seq.to_be_bytes());
    }
    out
}

/// `[key][end][start]`.
pub(crate) fn session_key(key: &[u8], start: i64, end: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 * TS);
    out.extend_from_slice(key);
    out.extend_from_slice(&end.to_be_bytes());
    out.extend_from_slice(&start.to_be_bytes());
    out
}

/// Where segments live: in memory, one RocksDB instance per segment under a directory, or one
/// user store per segment.
#[derive(Clone)]
pub(crate) enum SegmentLocation {
    InMemory,
    /// Segments are RocksDB instances in this directory, opened with these options.
    RocksDb(PathBuf, RocksDbConfig),
    /// Segments are the user's stores, each given its own directory under `dir`.
    User { dir: PathBuf, factory: UserStoreFactory, task: TaskId, persistent: bool },
}

impl std::fmt::Debug for SegmentLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentLocation::InMemory => f.write_str("InMemory"),
            SegmentLocation::RocksDb(dir, _) => f.debug_tuple("RocksDb").field(dir).finish(),
            SegmentLocation::User { dir, persistent, .. } => {
                f.debug_struct("User").field("dir", dir).field("persistent", persistent).finish()
            }
        }
    }
}

impl SegmentLocation {
    /// The directory of the segments' data, if it outlives the process.
    fn dir(&self) -> Option<&Path> {
        match self {
            SegmentLocation::RocksDb(dir, _) | SegmentLocation::User { dir, persistent: true, .. } => Some(dir),
            _ => None,
        }
    }
}

/// A key-value bytes store over time segments; see the module docs.
pub(crate) struct SegmentedBytesStore {
    name: String,
    schema: KeySchema,
    retention_ms: i64,
    segment_interval_ms: i64,
    location: SegmentLocation,
    segments: BTreeMap<i64, Box<dyn KeyValueBytesStore>>,
    observed_stream_time: i64,
    expired_records: u64,
}

impl std::fmt::Debug for SegmentedBytesStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentedBytesStore")
            .field("name", &self.name)
            .field("schema", &self.schema)
            .field("segments", &self.segments.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SegmentedBytesStore {
    /// Opens the store, picking up segments already on disk.
    pub(crate) fn open(
        name: &str,
        schema: KeySchema,
        retention_ms: i64,
        location: SegmentLocation,
    ) -> Result<Self> {
        let segment_interval_ms = (retention_ms / 2).max(60_000);
        let mut store = SegmentedBytesStore {
            name: name.to_string(),
            schema,
            retention_ms,
            segment_interval_ms,
            location,
            segments: BTreeMap::new(),
            observed_stream_time: i64::MIN,
            expired_records: 0,
        };
        if let Some(dir) = store.location.dir() {
            let dir = dir.to_path_buf();
            std::fs::create_dir_all(&dir).map_err(|e| StreamsError::io(&dir, e))?;
            for entry in std::fs::read_dir(&dir).map_err(|e| StreamsError::io(&dir, e))? {
                let entry = entry.map_err(|e| StreamsError::io(&dir, e))?;
                let file_name = entry.file_name();
                let Some(id) = file_name.to_str().and_then(|n| store.segment_id_of_dir(n)) else { continue };
                let segment = store.create_segment(id)?;
                store.segments.insert(id, segment);
            }
            // Resume expiry from the newest segment's start, a lower bound of stream time (no scan
            // of its entries); the next write moves it on.
            if let Some(&newest) = store.segments.keys().next_back() {
                store.observed_stream_time = newest * store.segment_interval_ms;
            }
        }
        Ok(store)
    }

    fn segment_dir_name(&self, id: i64) -> String {
        format!("{}.{}", self.name, id * self.segment_interval_ms)
    }

    fn segment_id_of_dir(&self, dir_name: &str) -> Option<i64> {
        let start: i64 = dir_name.strip_prefix(&self.name)?.strip_prefix('.')?.parse().ok()?;
        (start % self.segment_interval_ms == 0).then_some(start / self.segment_interval_ms)
    }

    fn create_segment(&self, id: i64) -> Result<Box<dyn KeyValueBytesStore>> {
        Ok(match &self.location {
            SegmentLocation::InMemory => Box::new(InMemoryKeyValueStore::new(&self.name)),
            SegmentLocation::RocksDb(dir, config) => {
                Box::new(RocksDbKeyValueStore::open_at(&self.name, &dir.join(self.segment_dir_name(id)), config)?)
            }
            SegmentLocation::User { dir, factory, task, .. } => {
                let name = self.segment_dir_name(id);
                let inner = factory(&name, *task, &dir.join(&name))?;
                Box::new(UserKeyValueStore { name, inner })
            }
        })
    }

    fn segment_id(&self, ts: i64) -> i64 {
        ts.div_euclid(self.segment_interval_ms)
    }

    fn min_live_segment(&self) -> i64 {
        if self.observed_stream_time == i64::MIN {
            return i64::MIN;
        }
        self.segment_id(self.observed_stream_time.saturating_sub(self.retention_ms))
    }

    /// Advances stream time and drops segments that fell out of retention.
    fn observe(&mut self, ts: i64) -> Result<()> {
        if ts <= self.observed_stream_time {
            return Ok(());
        }
        self.observed_stream_time = ts;
        let min_live = self.min_live_segment();
        let expired: Vec<i64> = self.segments.range(..min_live).map(|(id, _)| *id).collect();
        for id in expired {
            let mut segment = self.segments.remove(&id).expect("listed");
            segment.close()?;
            if let Some(dir) = self.location.dir() {
                let path = dir.join(self.segment_dir_name(id));
                if path.exists() {
                    std::fs::remove_dir_all(&path).map_err(|e| StreamsError::io(&path, e))?;
                }
            }
            tracing::debug!(store = %self.name, segment = id, "dropped expired segment");
        }
        Ok(())
    }

    /// The live segment for a composite key, created if needed; `None` if it expired.
    fn segment_for(&mut self, key: &[u8]) -> Result<Option<&mut Box<dyn KeyValueBytesStore>>> {
        let ts = self.schema.segment_time(key).ok_or_else(|| {
            StreamsError::store(&self.name, format!("composite key of {} bytes is too short", key.len()))
        })?;
        self.observe(ts)?;
        let id = self.segment_id(ts);
        if id < self.min_live_segment() {
            self.expired_records += 1;
            return Ok(None);
        }
        if !self.segments.contains_key(&id) {
            let segment = self.create_segment(id)?;
            self.segments.insert(id, segment);
        }
        Ok(self.segments.get_mut(&id))
    }

    /// The times `(lo, hi)` a range spans when its bounds are one record key's composite keys
    /// (a fetch of one key's windows or sessions).
    fn times_of(&self, range: &KeyRange) -> Option<(i64, i64)> {
        let schema = self.schema;
        let (Some(f), Some(u)) = (&range.from, &range.until) else { return None };
        // An inclusive upper bound arrives as its successor (a zero byte appended).
        let u = if u.len() == f.len() + 1 { u.strip_suffix(&[0]).unwrap_or(u) } else { u };
        let one_key = u.len() == f.len() && schema.key_of(f).is_some() && schema.key_of(f) == schema.key_of(u);
        one_key.then(|| schema.segment_time(f).zip(schema.segment_time(u))).flatten().filter(|(lo, hi)| lo <= hi)
    }

    /// The oldest segment time still readable: as in Kafka Streams, entries older than
    /// retention behind observed stream time are gone for reads even while their segment lives.
    fn live_from(&self) -> i64 {
        if self.observed_stream_time == i64::MIN {
            return i64::MIN;
        }
        self.observed_stream_time.saturating_sub(self.retention_ms).saturating_add(1)
    }

    /// Writes dropped because their segment had expired.
    #[cfg(test)]
    pub(crate) fn expired_records(&self) -> u64 {
        self.expired_records
    }
}

impl KeyValueBytesStore for SegmentedBytesStore {
    fn rocksdb_properties(&self, out: &mut Vec<(&'static str, u64)>) {
        for segment in self.segments.values() {
            segment.rocksdb_properties(out);
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(ts) = self.schema.segment_time(key) else { return Ok(None) };
        if ts < self.live_from() {
            return Ok(None);
        }
        let id = self.segment_id(ts);
        match self.segments.get_mut(&id) {
            Some(segment) => segment.get(key),
            None => Ok(None),
        }
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        match self.segment_for(key)? {
            Some(segment) => segment.put(key, value),
            None => {
                tracing::debug!(store = %self.name, "skipping a write to an expired segment");
                Ok(())
            }
        }
    }
    /// Bounds that are one record key's composite keys (a fetch of one key's windows or
    /// sessions) only visit the segments of their time range.
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        let schema = self.schema;
        let ids = match self.times_of(range) {
            Some((lo, hi)) => self.segment_id(lo)..=self.segment_id(hi),
            None => i64::MIN..=i64::MAX,
        };
        let live_from = self.live_from();
        let scans = self.segments.range_mut(ids).map(|(_, s)| s.range(range)).collect::<Result<Vec<_>>>()?;
        let live = move |entry: &Result<(Vec<u8>, Vec<u8>)>| {
            entry.as_ref().map_or(true, |(k, _)| schema.segment_time(k).is_none_or(|ts| ts >= live_from))
        };
        Ok(Box::new(merge_disjoint(scans, range).filter(live)))
    }
    /// A fetch within one segment and within retention, a join's say, reads that segment's batch.
    fn read_batch(&mut self, range: &KeyRange, limit: usize, out: &mut RawEntries) -> Result<()> {
        if let Some((lo, hi)) = self.times_of(range) {
            let id = self.segment_id(lo);
            if id == self.segment_id(hi) && lo >= self.live_from() {
                return match self.segments.get_mut(&id) {
                    Some(segment) => segment.read_batch(range, limit, out),
                    None => Ok(()),
                };
            }
        }
        out.extend_from(self.range(range)?, limit)
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        let mut total = 0;
        for segment in self.segments.values_mut() {
            total += segment.approximate_num_entries()?;
        }
        Ok(total)
    }
    fn flush(&mut self) -> Result<()> {
        self.segments.values_mut().try_for_each(|s| s.flush())
    }
    fn close(&mut self) -> Result<()> {
        let result = self.segments.values_mut().try_for_each(|s| s.close());
        self.segments.clear();
        result
    }
    fn persistent(&self) -> bool {
        self.location.dir().is_some()
    }
    fn commit_transaction(&mut self, _durable: bool) -> Result<()> {
        Ok(())
    }
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        for (key, value) in batch {
            self.put(key, value.as_deref())?;
        }
        Ok(())
    }
}

/// The directory of a segmented RocksDB store: `<task dir>/rocksdb/<store>`.
pub(crate) fn segments_dir(task_dir: &Path, store: &str) -> PathBuf {
    task_dir.join("rocksdb").join(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn schema() -> KeySchema {
        KeySchema::Window { retain_duplicates: false }
    }

    #[test]
    fn composite_keys_sort_by_key_then_time() {
        let a1 = window_key(b"a", 1, None);
        let a2 = window_key(b"a", 300, None);
        let b0 = window_key(b"b", 0, None);
        assert!(a1 < a2 && a2 < b0);
        assert_eq!(schema().key_of(&a2), Some(&b"a"[..]));
        assert_eq!(schema().times_of(&a2), Some((300, 300)));
        let s = session_key(b"k", 5, 9);
        assert_eq!(KeySchema::Session.times_of(&s), Some((5, 9)));
        assert_eq!(KeySchema::Session.key_of(&s), Some(&b"k"[..]));
        assert_eq!(KeySchema::Session.key_of(b"short"), None);
    }

    #[test]
    fn a_key_range_visits_the_segments_of_its_times() {
        for schema in [schema(), KeySchema::Session] {
            let key = |k: &[u8], t: i64| match schema {
                KeySchema::Session => session_key(k, t - 5, t),
                _ => window_key(k, t, None),
            };
            let mut store = SegmentedBytesStore::open("w", schema, 10 * MIN, SegmentLocation::InMemory).unwrap();
            for t in [0, 70_000, 140_000, 300_000] {
                for k in [&b"a"[..], b"ab", b"b"] {
                    store.put(&key(k, t), Some(b"v")).unwrap();
                }
            }
            let mut times = |from: i64, to: i64| -> Vec<i64> {
                let (lo, hi) = (key(b"a", from), key(b"a", to));
                let found = store.range(&KeyRange::inclusive(Some(&lo), Some(&hi))).unwrap().map(|e| e.unwrap().0);
                found.filter(|k| schema.key_of(k) == Some(&b"a"[..])).map(|k| schema.segment_time(&k).unwrap()).collect()
            };
            assert_eq!(times(60_000, 150_000), vec![70_000, 140_000]);
            assert_eq!(times(5, 1_000_000), vec![70_000, 140_000, 300_000]);
            assert_eq!(times(0, 0), vec![0]);
            assert_eq!(store.range(&KeyRange::all()).unwrap().count(), 12);
        }
    }

    #[test]
    fn old_segments_expire_with_stream_time() {
        let mut store = SegmentedBytesStore::open("w", schema(), MIN, SegmentLocation::InMemory).unwrap();
        store.put(&window_key(b"k", 0, None), Some(b"0")).unwrap();
        store.put(&window_key(b"k", MIN - 1, None), Some(b"1")).unwrap();
        assert_eq!(store.range(&KeyRange::all()).unwrap().count(), 2);
        // Stream time 1 min: the entry at 0 is a full retention behind and no longer read, though
        // its segment lives on.
        store.put(&window_key(b"k", MIN, None), Some(b"2")).unwrap();
        assert_eq!(store.get(&window_key(b"k", 0, None)).unwrap(), None);
        assert_eq!(store.get(&window_key(b"k", MIN - 1, None)).unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.range(&KeyRange::all()).unwrap().count(), 2);
        // Stream time 3 min: segment [0, 1 min) is older than retention (1 min) and goes.
        store.put(&window_key(b"k", 3 * MIN, None), Some(b"3")).unwrap();
        assert_eq!(store.get(&window_key(b"k", 0, None)).unwrap(), None);
        // A write into an expired segment is skipped.
        store.put(&window_key(b"k", 10, None), Some(b"late")).unwrap();
        assert_eq!(store.expired_records(), 1);
        assert_eq!(store.get(&window_key(b"k", 10, None)).unwrap(), None);
        assert_eq!(store.get(&window_key(b"k", 3 * MIN, None)).unwrap(), Some(b"3".to_vec()));
    }

    #[test]
    fn rocksdb_segments_reopen_and_expired_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let location = SegmentLocation::RocksDb(segments_dir(dir.path(), "w"), RocksDbConfig::default());
        let mut store = SegmentedBytesStore::open("w", schema(), MIN, location.clone()).unwrap();
        store.put(&window_key(b"k", 0, None), Some(b"0")).unwrap();
        store.put(&window_key(b"k", MIN, None), Some(b"1")).unwrap();
        store.close().unwrap();
        let mut store = SegmentedBytesStore::open("w", schema(), MIN, location).unwrap();
        // Both segments are back; reads resume from the newest segment's start (1 min), where
        // the entry at 0 is behind retention.
        assert_eq!(store.segments.len(), 2);
        assert_eq!(store.range(&KeyRange::all()).unwrap().count(), 1);
        store.put(&window_key(b"k", 3 * MIN, None), Some(b"3")).unwrap();
        let dirs: Vec<String> = std::fs::read_dir(segments_dir(dir.path(), "w"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!dirs.contains(&"w.0".to_string()), "{dirs:?}");
        assert!(dirs.contains(&format!("w.{}", 3 * MIN)), "{dirs:?}");
    }
}

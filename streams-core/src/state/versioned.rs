//! Versioned key-value stores (Kafka Streams' `VersionedKeyValueStore`, KIP-889): every value a
//! key had, each valid from its timestamp until the next one's, queryable as of a time within
//! the store's history retention.
//!
//! The versions live in one bytes store (RocksDB or memory, under the usual logging and
//! transaction layers) keyed by `key length | key | timestamp`, so the versions of a key sit
//! side by side in time order and a point-in-time lookup is one reverse seek. Values carry a
//! marker byte: a tombstone is a version too (the key was deleted from then on). A put drops the
//! key's versions that stopped being valid before the retention horizon (observed stream time
//! minus history retention); every write goes to the changelog as the physical entry, so
//! compaction keeps exactly the versions the store keeps.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::builder::{changelog_topic, layered, metrics_scope, KeyValueBytesStoreSupplier, RegisteredStore, StoreContext};
use super::{KeyRange, KeyValueBytesStore, RestoreRecord, StateStore, StoreBuilder};
use crate::error::{Result, StreamsError};
use crate::serdes::{Serde, SerdeRef};

/// A value of a versioned store with the time range it is valid in: from `timestamp`
/// (inclusive) until `valid_to` (exclusive; `None` while it is the latest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedRecord<V> {
    /// The value.
    pub value: V,
    /// When it became valid.
    pub timestamp: i64,
    /// When the next version replaced it, if one did.
    pub valid_to: Option<i64>,
}

/// The key of the entry that holds the store's observed stream time (no user key is this
/// long, so it sorts after and apart from every version).
const STREAM_TIME_KEY: [u8; 4] = [0xff; 4];
const TOMBSTONE: u8 = 0;
const VALUE: u8 = 1;
/// A value put at the timestamp of a delete that was the latest version: deleting it at that
/// timestamp again leaves the earlier delete in place (Kafka Streams keeps such a delete apart
/// from the latest value).
const VALUE_OVER_DELETE: u8 = 2;

fn version_key(key: &[u8], timestamp: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 12);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    // Sign bit flipped: signed timestamps sort as unsigned bytes.
    out.extend_from_slice(&((timestamp as u64) ^ (1 << 63)).to_be_bytes());
    out
}

/// The user key and timestamp of a version key; `None` for the stream-time entry.
fn split_version_key(bytes: &[u8]) -> Option<(&[u8], i64)> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let key = bytes.get(4..4 + len)?;
    let ts = u64::from_be_bytes(bytes.get(4 + len..)?.try_into().ok()?);
    Some((key, (ts ^ (1 << 63)) as i64))
}

/// The versions of one key, in time order: `(timestamp, value)`, `None` a tombstone.
type Versions = Vec<(i64, Option<Vec<u8>>)>;

/// The bytes layer: versions of byte keys over a bytes store.
pub(crate) struct VersionedBytesStore {
    name: String,
    inner: Box<dyn KeyValueBytesStore>,
    history_retention_ms: i64,
    /// The highest timestamp put (or restored); -1 before any.
    observed_stream_time: i64,
    /// The stream time last written to `inner`.
    written_stream_time: i64,
}

impl VersionedBytesStore {
    fn open(mut inner: Box<dyn KeyValueBytesStore>, history_retention_ms: i64) -> Result<Self> {
        let observed = match inner.get(&STREAM_TIME_KEY)? {
            Some(bytes) => i64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| {
                StreamsError::store(inner.name(), "corrupt stream-time entry in a versioned store")
            })?),
            None => -1,
        };
        let name = inner.name().to_string();
        Ok(VersionedBytesStore { name, inner, history_retention_ms, observed_stream_time: observed, written_stream_time: observed })
    }

    /// Versions older than this are out of the history: puts are refused, queries unanswered.
    fn horizon(&self) -> i64 {
        self.observed_stream_time.saturating_sub(self.history_retention_ms)
    }

    fn versions(&mut self, key: &[u8]) -> Result<Versions> {
        Ok(self.scan(key)?.0)
    }

    /// The versions of `key`, and the marker byte of the latest.
    fn scan(&mut self, key: &[u8]) -> Result<(Versions, Option<u8>)> {
        let range = KeyRange::inclusive(Some(&version_key(key, i64::MIN)), Some(&version_key(key, i64::MAX)));
        let name = &self.name;
        let mut latest_marker = None;
        let versions = self
            .inner
            .range(&range)?
            .map(|entry| {
                let (k, v) = entry?;
                let (_, ts) = split_version_key(&k).ok_or_else(|| StreamsError::store(name, "corrupt version key"))?;
                latest_marker = v.first().copied();
                Ok((ts, (latest_marker != Some(TOMBSTONE)).then(|| v[1..].to_vec())))
            })
            .collect::<Result<_>>()?;
        Ok((versions, latest_marker))
    }

    /// The version valid at `as_of` (the latest one not after it), with its end.
    pub(crate) fn get_as_of(&mut self, key: &[u8], as_of: i64) -> Result<Option<(Vec<u8>, i64, Option<i64>)>> {
        let versions = self.versions(key)?;
        let Some(at) = versions.iter().rposition(|(ts, _)| *ts <= as_of) else { return Ok(None) };
        let valid_to = versions.get(at + 1).map(|(ts, _)| *ts);
        // Beyond the history only the latest version is known (Kafka Streams' rule).
        if as_of < self.horizon() && valid_to.is_some() {
            return Ok(None);
        }
        let (ts, value) = &versions[at];
        Ok(value.clone().map(|v| (v, *ts, valid_to)))
    }

    /// Puts a version (`None`: deleted from `timestamp` on); returns its end, -1 when it is
    /// the latest, `i64::MIN` when it is older than the history and was not put.
    pub(crate) fn put(&mut self, key: &[u8], value: Option<&[u8]>, timestamp: i64) -> Result<i64> {
        if timestamp < self.horizon() {
            return Ok(VersionedKeyValueStore::<(), ()>::PUT_RETURN_CODE_NOT_PUT);
        }
        self.observed_stream_time = self.observed_stream_time.max(timestamp);
        let (versions, latest_marker) = self.scan(key)?;
        let latest = versions.last().map(|(ts, v)| (*ts, v.is_some()));
        let replaced_latest = latest.filter(|(ts, _)| *ts == timestamp);
        // Whether the version this put replaces is a value put over a delete at its time.
        let replaces_value_over_delete = replaced_latest.is_some() && latest_marker == Some(VALUE_OVER_DELETE);
        // Kafka Streams' rule: a delete at the latest value's own timestamp removes that value
        // rather than recording a delete, unless a value precedes it (whose end stays there) or
        // it replaced a delete at that timestamp (which stays).
        if value.is_none() && replaced_latest == Some((timestamp, true)) {
            let value_before = versions.len() > 1 && versions[versions.len() - 2].1.is_some();
            if !value_before && !replaces_value_over_delete {
                self.inner.put(&version_key(key, timestamp), None)?;
                return Ok(VersionedKeyValueStore::<(), ()>::PUT_RETURN_CODE_VALID_TO_UNDEFINED);
            }
        }
        let valid_to = versions.iter().find(|(ts, _)| *ts > timestamp).map(|(ts, _)| *ts);
        let mut bytes = Vec::with_capacity(1 + value.map_or(0, <[u8]>::len));
        match value {
            Some(v) => {
                let over_delete = match replaced_latest {
                    Some((_, false)) => true,
                    Some((_, true)) => replaces_value_over_delete,
                    None => false,
                };
                bytes.push(if over_delete { VALUE_OVER_DELETE } else { VALUE });
                bytes.extend_from_slice(v);
            }
            None => bytes.push(TOMBSTONE),
        }
        self.inner.put(&version_key(key, timestamp), Some(&bytes))?;
        // Versions (tombstones too) whose validity ended before the horizon can never be read
        // again; a latest tombstone before it neither.
        let horizon = self.horizon();
        let mut all: Versions = versions.into_iter().filter(|(ts, _)| *ts != timestamp).collect();
        all.push((timestamp, value.map(<[u8]>::to_vec)));
        all.sort_by_key(|(ts, _)| *ts);
        for (i, (ts, v)) in all.iter().enumerate() {
            let end = all.get(i + 1).map(|(next, _)| *next);
            let expired = match end {
                Some(end) => end <= horizon,
                None => v.is_none() && *ts < horizon,
            };
            if expired && *ts != timestamp {
                self.inner.put(&version_key(key, *ts), None)?;
            }
        }
        Ok(valid_to.unwrap_or(VersionedKeyValueStore::<(), ()>::PUT_RETURN_CODE_VALID_TO_UNDEFINED))
    }

    fn write_stream_time(&mut self) -> Result<()> {
        if self.observed_stream_time != self.written_stream_time {
            self.inner.put(&STREAM_TIME_KEY, Some(&self.observed_stream_time.to_be_bytes()))?;
            self.written_stream_time = self.observed_stream_time;
        }
        Ok(())
    }
}

impl StateStore for VersionedBytesStore {
    fn flush_cache(&mut self) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        self.write_stream_time()?;
        self.inner.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn restore_batch(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        for (key, value) in batch {
            let time = match split_version_key(key) {
                Some((_, ts)) => Some(ts),
                None => value.as_deref().and_then(|v| <[u8; 8]>::try_from(v).ok()).map(i64::from_be_bytes),
            };
            if let Some(time) = time {
                self.observed_stream_time = self.observed_stream_time.max(time);
            }
        }
        self.inner.restore(batch)?;
        self.written_stream_time = -1;
        Ok(())
    }
    fn discard_cache(&mut self) {
        self.inner.discard_cache()
    }
    fn commit_transaction(&mut self, durable: bool) -> Result<()> {
        self.inner.commit_transaction(durable)
    }
    fn rocksdb_properties(&self) -> Vec<(&'static str, u64)> {
        let mut all = Vec::new();
        self.inner.rocksdb_properties(&mut all);
        all
    }
}

/// Serdes over the bytes layer.
struct VersionedState<K, V> {
    bytes: VersionedBytesStore,
    /// The changelog topic, which serdes are given.
    serde_topic: String,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
}

impl<K: 'static, V: 'static> VersionedState<K, V> {
    fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        self.key_serde
            .serialize(&self.serde_topic, key)
            .map_err(|e| StreamsError::serde(format!("store `{}` key", self.bytes.name), e))?
            .ok_or_else(|| StreamsError::store(&self.bytes.name, "keys must not serialize to null"))
    }

    fn value_bytes(&self, value: &V) -> Result<Option<Vec<u8>>> {
        self.value_serde.serialize(&self.serde_topic, value).map_err(|e| StreamsError::serde(format!("store `{}` value", self.bytes.name), e))
    }

    fn value(&self, bytes: &[u8]) -> Result<V> {
        self.value_serde.deserialize(&self.serde_topic, Some(bytes)).map_err(|e| StreamsError::serde(format!("store `{}` value", self.bytes.name), e))
    }
}

/// A typed versioned key-value store, as processors get it from
/// [`ProcessorContext::versioned_key_value_store`](crate::processor::ProcessorContext::versioned_key_value_store).
///
/// Cheap to clone: clones share the same store.
pub struct VersionedKeyValueStore<K, V> {
    inner: Rc<RefCell<VersionedState<K, V>>>,
}

impl<K, V> Clone for VersionedKeyValueStore<K, V> {
    fn clone(&self) -> Self {
        VersionedKeyValueStore { inner: self.inner.clone() }
    }
}

impl<K, V> fmt::Debug for VersionedKeyValueStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VersionedKeyValueStore({})", self.inner.borrow().bytes.name)
    }
}

impl<K: 'static, V: 'static> VersionedKeyValueStore<K, V> {
    /// What [`put`](Self::put) returns when the version put is the latest.
    pub const PUT_RETURN_CODE_VALID_TO_UNDEFINED: i64 = -1;
    /// What [`put`](Self::put) returns when the version is older than the history retention
    /// (relative to the store's observed stream time) and was not put.
    pub const PUT_RETURN_CODE_NOT_PUT: i64 = i64::MIN;

    /// The store name.
    pub fn name(&self) -> String {
        self.inner.borrow().bytes.name.clone()
    }

    /// Adds a version of `key` valid from `timestamp` (`None` deletes the key from then on).
    /// Returns the new version's end (the next version's timestamp),
    /// [`PUT_RETURN_CODE_VALID_TO_UNDEFINED`](Self::PUT_RETURN_CODE_VALID_TO_UNDEFINED) if it is
    /// the latest, or [`PUT_RETURN_CODE_NOT_PUT`](Self::PUT_RETURN_CODE_NOT_PUT).
    pub fn put(&self, key: &K, value: Option<&V>, timestamp: i64) -> Result<i64> {
        let mut state = self.inner.borrow_mut();
        let key = state.key_bytes(key)?;
        let value = value.map(|v| state.value_bytes(v)).transpose()?.flatten();
        state.bytes.put(&key, value.as_deref(), timestamp)
    }

    /// Deletes `key` from `timestamp` on; returns the version that was valid then (none if
    /// `timestamp` is older than the history retention: nothing is deleted).
    pub fn delete(&self, key: &K, timestamp: i64) -> Result<Option<VersionedRecord<V>>> {
        let state = self.inner.borrow();
        if timestamp < state.bytes.horizon() {
            return Ok(None);
        }
        drop(state);
        let before = self.get_as_of(key, timestamp)?;
        self.put(key, None, timestamp)?;
        Ok(before)
    }

    /// The latest version of `key`, unless it was deleted.
    pub fn get(&self, key: &K) -> Result<Option<VersionedRecord<V>>> {
        self.get_as_of(key, i64::MAX)
    }

    /// The version of `key` valid at `as_of` (inclusive): the latest one not after it. Older
    /// than the history retention, only the latest version is answered.
    pub fn get_as_of(&self, key: &K, as_of: i64) -> Result<Option<VersionedRecord<V>>> {
        let mut state = self.inner.borrow_mut();
        let key = state.key_bytes(key)?;
        let Some((bytes, timestamp, valid_to)) = state.bytes.get_as_of(&key, as_of)? else { return Ok(None) };
        Ok(Some(VersionedRecord { value: state.value(&bytes)?, timestamp, valid_to }))
    }

    fn as_state_store(&self) -> Rc<RefCell<dyn StateStore>> {
        self.inner.clone()
    }
}

impl<K: 'static, V: 'static> StateStore for VersionedState<K, V> {
    fn flush_cache(&mut self) -> Result<()> {
        self.bytes.flush_cache()
    }
    fn flush(&mut self) -> Result<()> {
        self.bytes.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.bytes.close()
    }
    fn persistent(&self) -> bool {
        self.bytes.persistent()
    }
    fn restore_batch(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        self.bytes.restore_batch(batch)
    }
    fn discard_cache(&mut self) {
        self.bytes.discard_cache()
    }
    fn commit_transaction(&mut self, durable: bool) -> Result<()> {
        self.bytes.commit_transaction(durable)
    }
    fn rocksdb_properties(&self) -> Vec<(&'static str, u64)> {
        self.bytes.rocksdb_properties()
    }
}

/// Where a versioned store keeps its versions, and for how long
/// ([`Stores::persistent_versioned_key_value_store`](super::Stores::persistent_versioned_key_value_store)).
#[derive(Debug, Clone)]
pub struct VersionedBytesStoreSupplier {
    pub(crate) bytes: KeyValueBytesStoreSupplier,
    pub(crate) history_retention_ms: i64,
}

impl VersionedBytesStoreSupplier {
    /// The store name.
    pub fn name(&self) -> &str {
        self.bytes.name()
    }

    /// How far back in time versions are kept and puts accepted.
    pub fn history_retention(&self) -> Duration {
        Duration::from_millis(self.history_retention_ms as u64)
    }
}

/// Builds [`VersionedKeyValueStore`]s for each task: logged, never cached (as in Kafka Streams).
pub struct VersionedKeyValueStoreBuilder<K, V> {
    supplier: VersionedBytesStoreSupplier,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    logging: bool,
}

impl<K, V> fmt::Debug for VersionedKeyValueStoreBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionedKeyValueStoreBuilder").field("supplier", &self.supplier).field("logging", &self.logging).finish()
    }
}

impl<K, V> VersionedKeyValueStoreBuilder<K, V> {
    /// A builder over `supplier` with these serdes.
    pub fn new(supplier: VersionedBytesStoreSupplier, key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        VersionedKeyValueStoreBuilder { supplier, key_serde, value_serde, logging: true }
    }
    /// Logs every write to `<application.id>-<store>-changelog` (the default).
    pub fn with_logging_enabled(mut self) -> Self {
        self.logging = true;
        self
    }
    /// No changelog: the store is not restored when its task moves.
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }
}

impl<K: 'static, V: 'static> StoreBuilder for VersionedKeyValueStoreBuilder<K, V> {
    fn name(&self) -> &str {
        self.supplier.name()
    }
    fn logging_enabled(&self) -> bool {
        self.logging
    }
    fn type_name(&self) -> String {
        std::any::type_name::<VersionedKeyValueStore<K, V>>().to_string()
    }
    fn build(&self, ctx: &StoreContext) -> Result<RegisteredStore> {
        let topic = changelog_topic(&ctx.application_id, self.name());
        let scope = metrics_scope(self.supplier.bytes.is_persistent(), "key-value");
        let bytes = layered(self.supplier.bytes.get(ctx)?, ctx, &topic, self.logging, false, scope);
        let state = VersionedState {
            bytes: VersionedBytesStore::open(bytes, self.supplier.history_retention_ms)?,
            serde_topic: topic.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        };
        let typed = VersionedKeyValueStore { inner: Rc::new(RefCell::new(state)) };
        Ok(RegisteredStore {
            store: typed.as_state_store(),
            type_name: self.type_name(),
            typed: Box::new(typed),
            changelog_topic: self.logging.then_some(topic),
            metrics_scope: scope,
        })
    }
}

/// A typed builder from serdes, for [`Stores::versioned_key_value_store_builder`](super::Stores::versioned_key_value_store_builder).
pub(crate) fn builder<K, V>(
    supplier: VersionedBytesStoreSupplier,
    key_serde: impl Serde<K>,
    value_serde: impl Serde<V>,
) -> VersionedKeyValueStoreBuilder<K, V> {
    VersionedKeyValueStoreBuilder::new(supplier, Arc::new(key_serde), Arc::new(value_serde))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::in_memory::InMemoryKeyValueStore;

    fn store(retention: i64) -> VersionedBytesStore {
        VersionedBytesStore::open(Box::new(InMemoryKeyValueStore::new("v")), retention).unwrap()
    }

    fn value(store: &mut VersionedBytesStore, as_of: i64) -> Option<(String, i64, Option<i64>)> {
        store.get_as_of(b"k", as_of).unwrap().map(|(v, ts, to)| (String::from_utf8(v).unwrap(), ts, to))
    }

    #[test]
    fn versions_answer_point_in_time_lookups() {
        let mut s = store(100);
        assert_eq!(s.put(b"k", Some(b"a"), 10).unwrap(), -1);
        assert_eq!(s.put(b"k", Some(b"c"), 30).unwrap(), -1);
        // Out of order: valid until the next version.
        assert_eq!(s.put(b"k", Some(b"b"), 20).unwrap(), 30);
        assert_eq!(value(&mut s, 9), None);
        assert_eq!(value(&mut s, 10), Some(("a".into(), 10, Some(20))));
        assert_eq!(value(&mut s, 25), Some(("b".into(), 20, Some(30))));
        assert_eq!(value(&mut s, i64::MAX), Some(("c".into(), 30, None)));
        // A delete is a version: nothing from then on, the history before stays.
        assert_eq!(s.put(b"k", None, 40).unwrap(), -1);
        assert_eq!(value(&mut s, 45), None);
        assert_eq!(value(&mut s, 35), Some(("c".into(), 30, Some(40))));
        // Keys that are prefixes of each other stay apart.
        s.put(b"kk", Some(b"x"), 50).unwrap();
        assert_eq!(value(&mut s, 35), Some(("c".into(), 30, Some(40))));
    }

    #[test]
    fn a_delete_at_the_latest_versions_own_time_removes_it() {
        let mut s = store(100);
        s.put(b"k", Some(b"a"), 20).unwrap();
        s.put(b"k", None, 20).unwrap();
        // No trace of the delete: an older version put later is the latest (Kafka Streams).
        s.put(b"k", Some(b"b"), 10).unwrap();
        assert_eq!(value(&mut s, 25), Some(("b".into(), 10, None)));
        // With a value before it, that value's end stays where the removed version began.
        s.put(b"k", Some(b"c"), 30).unwrap();
        s.put(b"k", None, 30).unwrap();
        assert_eq!(value(&mut s, 35), None);
        assert_eq!(value(&mut s, 15), Some(("b".into(), 10, Some(30))));
        // A value over a latest delete at the same time, deleted again: the first delete stays.
        s.put(b"j", None, 50).unwrap();
        s.put(b"j", Some(b"x"), 50).unwrap();
        s.put(b"j", None, 50).unwrap();
        assert_eq!(s.put(b"j", Some(b"y"), 40).unwrap(), 50);
    }

    #[test]
    fn the_history_retention_bounds_puts_and_lookups() {
        let mut s = store(10);
        s.put(b"k", Some(b"a"), 0).unwrap();
        s.put(b"k", Some(b"b"), 5).unwrap();
        s.put(b"other", Some(b"x"), 100).unwrap();
        // Stream time 100: the horizon is 90.
        assert_eq!(s.put(b"k", Some(b"late"), 89).unwrap(), i64::MIN, "older than the history: not put");
        assert_eq!(value(&mut s, 3), None, "a version that ended before the horizon is not answered");
        assert_eq!(value(&mut s, 7), Some(("b".into(), 5, None)), "the latest version is, however old");
        s.put(b"k", Some(b"c"), 95).unwrap();
        // `a` ended at 5 and `b` at 95: only `a` is gone.
        let versions: Vec<i64> = s.versions(b"k").unwrap().into_iter().map(|(ts, _)| ts).collect();
        assert_eq!(versions, [5, 95]);
        assert_eq!(value(&mut s, 92), Some(("b".into(), 5, Some(95))));
    }

    #[test]
    fn the_stream_time_survives_a_reopen_and_a_restore() {
        let mut s = store(10);
        s.put(b"k", Some(b"a"), 100).unwrap();
        StateStore::flush(&mut s).unwrap();
        let owned: Vec<(Vec<u8>, Vec<u8>)> = s.inner.range(&KeyRange::all()).unwrap().collect::<Result<_>>().unwrap();
        let entries: Vec<RestoreRecord<'_>> = owned.iter().map(|(k, v)| (k.as_slice(), Some(v.as_slice()))).collect();
        let mut restored = store(10);
        restored.restore_batch(&entries).unwrap();
        assert_eq!(restored.put(b"k", Some(b"late"), 80).unwrap(), i64::MIN);
        let reopened = VersionedBytesStore::open(s.inner, 10).unwrap();
        assert_eq!(reopened.observed_stream_time, 100);
    }
}

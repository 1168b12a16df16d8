//! The typed outer layer: serdes over a bytes store, and the handle processors use.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use super::key_value_iterator::{Batch, KeyValueIterator};
use super::{KeyRange, KeyValueBytesStore, RawEntries, RestoreRecord, StateStore};
use crate::error::{Result, SerdeError, StreamsError};
use crate::processor::ProcessorContext;
use crate::serdes::{Serde, SerdeRef};

/// Typed store state: serdes plus the bytes layers below.
pub(crate) struct SerdeKeyValueStore<K, V> {
    pub(crate) name: String,
    serde_topic: String,
    pub(crate) inner: Box<dyn KeyValueBytesStore>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    /// The buffer scans read their batches into, kept between batches (see [`read_batch`](Self::read_batch)).
    batch: RawEntries,
}

/// A batch buffer grown past this is let go after use rather than kept.
const KEPT_BATCH_BYTES: usize = 64 << 10;

impl<K: 'static, V: 'static> SerdeKeyValueStore<K, V> {
    pub(crate) fn new(
        inner: Box<dyn KeyValueBytesStore>,
        serde_topic: String,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> Self {
        SerdeKeyValueStore { name: inner.name().to_string(), serde_topic, inner, key_serde, value_serde, batch: RawEntries::default() }
    }

    /// Reads at most `n` entries from the start of `range` and decodes them, through the
    /// store's batch buffer: no allocation per raw entry, and none for the raw entries once the
    /// buffer has grown (the decoded items are a new list per batch).
    pub(crate) fn read_batch<T>(
        &mut self,
        range: &KeyRange,
        n: usize,
        decode: impl Fn(&Self, &[u8], &[u8]) -> Result<Option<T>>,
    ) -> Result<Batch<T>> {
        let mut raw = std::mem::take(&mut self.batch);
        raw.clear();
        let batch = self.inner.read_batch(range, n, &mut raw).and_then(|()| Batch::decoded(&raw, n, |k, v| decode(self, k, v)));
        if raw.capacity() <= KEPT_BATCH_BYTES {
            self.batch = raw;
        }
        batch
    }

    pub(crate) fn key_bytes(&self, key: &K) -> Result<Vec<u8>> {
        self.key_serde
            .serialize(&self.serde_topic, key)
            .map_err(|e| self.serde_err("key", e))?
            .ok_or_else(|| StreamsError::store(&self.name, "keys must not serialize to null"))
    }

    pub(crate) fn value_bytes(&self, value: &V) -> Result<Option<Vec<u8>>> {
        self.value_serde.serialize(&self.serde_topic, value).map_err(|e| self.serde_err("value", e))
    }

    pub(crate) fn key(&self, bytes: &[u8]) -> Result<K> {
        self.key_serde.deserialize(&self.serde_topic, Some(bytes)).map_err(|e| self.serde_err("key", e))
    }

    pub(crate) fn value(&self, bytes: Option<&[u8]>) -> Result<Option<V>> {
        bytes
            .map(|b| self.value_serde.deserialize(&self.serde_topic, Some(b)))
            .transpose()
            .map_err(|e| self.serde_err("value", e))
    }

    fn serde_err(&self, what: &str, e: SerdeError) -> StreamsError {
        StreamsError::serde(format!("store `{}` {what}", self.name), e)
    }

    /// The entries the cache wrote down since the last call, keys decoded by `key`.
    pub(crate) fn take_flushed<KK>(
        &mut self,
        key: &impl Fn(&Self, &[u8]) -> Result<KK>,
    ) -> Result<Vec<CacheFlush<KK, V>>> {
        let flushed = self.inner.take_flushed();
        flushed
            .into_iter()
            .map(|e| {
                Ok(CacheFlush {
                    key: key(self, &e.key)?,
                    new_value: self.value(e.new_value.as_deref())?,
                    old_value: self.value(e.old_value.as_deref())?,
                    timestamp: e.timestamp,
                })
            })
            .collect()
    }

    /// A raw entry as a typed pair.
    fn entry(&self, key: &[u8], value: &[u8]) -> Result<Option<(K, V)>> {
        let Some(value) = self.value(Some(value))? else { return Ok(None) };
        Ok(Some((self.key(key)?, value)))
    }
}

impl<K: 'static, V: 'static> StateStore for SerdeKeyValueStore<K, V> {
    fn flush_cache(&mut self) -> Result<()> {
        self.inner.flush_cache()
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
    fn discard_cache(&mut self) {
        self.inner.discard_cache()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn restore_batch(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        self.inner.restore(batch)
    }
    fn commit_transaction(&mut self, durable: bool) -> Result<()> {
        self.inner.commit_transaction(durable)
    }
    fn rocksdb_properties(&self) -> Vec<(&'static str, u64)> {
        let mut all = Vec::new();
        self.inner.rocksdb_properties(&mut all);
        let mut summed: Vec<(&'static str, u64)> = Vec::new();
        for (name, value) in all {
            match summed.iter_mut().find(|(n, _)| *n == name) {
                Some((_, total)) => *total = total.saturating_add(value),
                None => summed.push((name, value)),
            }
        }
        summed
    }
}

/// An entry that the store's cache wrote down: what a KTable processor forwards.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheFlush<K, V> {
    /// The key.
    pub key: K,
    /// The new value (`None` = deleted).
    pub new_value: Option<V>,
    /// The value it replaced in the underlying store.
    pub old_value: Option<V>,
    /// Timestamp of the record that last wrote the entry.
    pub timestamp: i64,
}

/// A typed key-value store, as processors get it from
/// [`ProcessorContext::key_value_store`](crate::processor::ProcessorContext::key_value_store).
///
/// Cheap to clone: clones share the same store.
pub struct KeyValueStore<K, V> {
    inner: Rc<RefCell<SerdeKeyValueStore<K, V>>>,
}

impl<K, V> Clone for KeyValueStore<K, V> {
    fn clone(&self) -> Self {
        KeyValueStore { inner: self.inner.clone() }
    }
}

impl<K, V> fmt::Debug for KeyValueStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyValueStore<{}, {}>({})", std::any::type_name::<K>(), std::any::type_name::<V>(), self.inner.borrow().name)
    }
}

impl<K: 'static, V: 'static> KeyValueStore<K, V> {
    pub(crate) fn new(inner: SerdeKeyValueStore<K, V>) -> Self {
        KeyValueStore { inner: Rc::new(RefCell::new(inner)) }
    }

    pub(crate) fn as_state_store(&self) -> Rc<RefCell<dyn StateStore>> {
        self.inner.clone()
    }

    /// The store name.
    pub fn name(&self) -> String {
        self.inner.borrow().name.clone()
    }

    /// The value for `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let mut s = self.inner.borrow_mut();
        let k = s.key_bytes(key)?;
        let raw = s.inner.get(&k)?;
        s.value(raw.as_deref())
    }

    /// Puts `value` under `key`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let mut s = self.inner.borrow_mut();
        let k = s.key_bytes(key)?;
        let v = s.value_bytes(value)?;
        s.inner.put(&k, v.as_deref())
    }

    /// Puts `value` unless `key` has one; returns the existing value.
    pub fn put_if_absent(&self, key: &K, value: &V) -> Result<Option<V>> {
        let existing = self.get(key)?;
        if existing.is_none() {
            self.put(key, value)?;
        }
        Ok(existing)
    }

    /// Deletes `key`, returning its old value.
    pub fn delete(&self, key: &K) -> Result<Option<V>> {
        let mut s = self.inner.borrow_mut();
        let k = s.key_bytes(key)?;
        let old = s.inner.get(&k)?;
        s.inner.put(&k, None)?;
        s.value(old.as_deref())
    }

    /// Entries with `from <= key <= to`, ordered by serialized key bytes.
    pub fn range(&self, from: &K, to: &K) -> Result<KeyValueIterator<K, V>> {
        let range = {
            let s = self.inner.borrow();
            KeyRange::inclusive(Some(&s.key_bytes(from)?), Some(&s.key_bytes(to)?))
        };
        self.scan(range)
    }

    /// Entries with `from <= key <= to`, in descending order of serialized key bytes.
    pub fn reverse_range(&self, from: &K, to: &K) -> Result<KeyValueIterator<K, V>> {
        let range = {
            let s = self.inner.borrow();
            KeyRange::inclusive(Some(&s.key_bytes(from)?), Some(&s.key_bytes(to)?))
        };
        self.scan(range.reversed())
    }

    /// Entries whose serialized key starts with the bytes of `prefix` serialized by
    /// `prefix_serde`, ordered by key bytes.
    pub fn prefix_scan<P: 'static>(&self, prefix: &P, prefix_serde: &dyn Serde<P>) -> Result<KeyValueIterator<K, V>> {
        let range = {
            let s = self.inner.borrow();
            let prefix = prefix_serde
                .serialize(&s.serde_topic, prefix)
                .map_err(|e| s.serde_err("prefix", e))?
                .unwrap_or_default();
            KeyRange::prefix(&prefix)
        };
        self.scan(range)
    }

    /// Entries whose serialized key starts with `prefix`.
    pub(crate) fn prefix_scan_bytes(&self, prefix: &[u8]) -> Result<KeyValueIterator<K, V>> {
        self.scan(KeyRange::prefix(prefix))
    }

    /// All entries, ordered by serialized key bytes.
    pub fn all(&self) -> Result<KeyValueIterator<K, V>> {
        self.scan(KeyRange::all())
    }

    /// All entries, in descending order of serialized key bytes.
    pub fn reverse_all(&self) -> Result<KeyValueIterator<K, V>> {
        self.scan(KeyRange::all().reversed())
    }

    fn scan(&self, range: KeyRange) -> Result<KeyValueIterator<K, V>> {
        KeyValueIterator::new(self.inner.clone(), range, |s, k, v| s.entry(k, v))
    }

    /// An estimate of the number of entries.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        self.inner.borrow_mut().inner.approximate_num_entries()
    }
}

impl<K: 'static, V: 'static> CachedStateStore<K, V> for KeyValueStore<K, V> {
    fn set_flush_listener<KO: 'static, VO: 'static>(
        &self,
        ctx: &mut ProcessorContext<'_, KO, VO>,
        listener: impl FnMut(&mut ProcessorContext<'_, KO, VO>, CacheFlush<K, V>) -> Result<()> + 'static,
    ) -> Result<bool> {
        register_flush_listener(&self.inner, |s, key| s.key(key), ctx, listener)
    }
}

/// A store whose record cache hands what it writes down to a listener, as Kafka Streams'
/// `CachedStateStore`: how KTable and windowed-aggregation processors forward their updates
/// when caching is on. The flushed key is the store's key (`Windowed<K>` for window and
/// session stores).
pub trait CachedStateStore<FK, V> {
    /// Registers, in `init`, a listener called through the processor's node with each entry
    /// the cache writes down: evictions after the record (or punctuation) that caused them,
    /// and every dirty entry at commit, after the processor's own `flush`. Returns whether the
    /// store caches; if not, nothing is registered and the processor forwards its updates.
    fn set_flush_listener<KO: 'static, VO: 'static>(
        &self,
        ctx: &mut ProcessorContext<'_, KO, VO>,
        listener: impl FnMut(&mut ProcessorContext<'_, KO, VO>, CacheFlush<FK, V>) -> Result<()> + 'static,
    ) -> Result<bool>;
}

/// Registers `listener` with the processor's node for the entries the cache of `store` writes
/// down, their keys decoded by `key`.
pub(crate) fn register_flush_listener<K: 'static, V: 'static, FK, KO: 'static, VO: 'static>(
    store: &Rc<RefCell<SerdeKeyValueStore<K, V>>>,
    key: impl Fn(&SerdeKeyValueStore<K, V>, &[u8]) -> Result<FK> + 'static,
    ctx: &mut ProcessorContext<'_, KO, VO>,
    mut listener: impl FnMut(&mut ProcessorContext<'_, KO, VO>, CacheFlush<FK, V>) -> Result<()> + 'static,
) -> Result<bool> {
    if !store.borrow_mut().inner.enable_flush_forwarding() {
        return Ok(false);
    }
    let store = store.clone();
    ctx.add_flush_listener(Box::new(move |ctx, commit| {
        let flushed = {
            let mut s = store.borrow_mut();
            if commit {
                s.inner.flush_cache()?;
            }
            s.take_flushed(&key)?
        };
        flushed.into_iter().try_for_each(|entry| listener(ctx, entry))
    }))?;
    Ok(true)
}

/// A value with the timestamp of the record that last updated it (KTable stores).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueAndTimestamp<V> {
    /// The value.
    pub value: V,
    /// Timestamp in milliseconds.
    pub timestamp: i64,
}

/// A key-value store of [`ValueAndTimestamp`]s, as KTables materialize.
pub type TimestampedKeyValueStore<K, V> = KeyValueStore<K, ValueAndTimestamp<V>>;

/// Serde for [`ValueAndTimestamp`]: 8-byte big-endian timestamp, then the value bytes.
pub struct ValueAndTimestampSerde<V>(pub SerdeRef<V>);

impl<V> fmt::Debug for ValueAndTimestampSerde<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ValueAndTimestampSerde")
    }
}

impl<V: 'static> Serde<ValueAndTimestamp<V>> for ValueAndTimestampSerde<V> {
    fn serialize(&self, topic: &str, data: &ValueAndTimestamp<V>) -> Result<Option<Vec<u8>>, SerdeError> {
        let Some(value) = self.0.serialize(topic, &data.value)? else { return Ok(None) };
        let mut out = Vec::with_capacity(8 + value.len());
        out.extend_from_slice(&data.timestamp.to_be_bytes());
        out.extend_from_slice(&value);
        Ok(Some(out))
    }
    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> Result<ValueAndTimestamp<V>, SerdeError> {
        let bytes = data.ok_or_else(|| SerdeError::null("ValueAndTimestamp"))?;
        if bytes.len() < 8 {
            return Err(SerdeError::new(format!("ValueAndTimestamp needs at least 8 bytes, got {}", bytes.len())));
        }
        let (ts, value) = bytes.split_at(8);
        let timestamp = i64::from_be_bytes(ts.try_into().expect("split at 8"));
        Ok(ValueAndTimestamp { value: self.0.deserialize(topic, Some(value))?, timestamp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serdes::Serdes;
    use crate::state::in_memory::InMemoryKeyValueStore;
    use std::sync::Arc;

    #[test]
    fn typed_operations_round_trip_through_serdes() {
        let store: KeyValueStore<String, i64> = KeyValueStore::new(SerdeKeyValueStore::new(
            Box::new(InMemoryKeyValueStore::new("s")),
            "app-s-changelog".into(),
            Arc::new(Serdes::string()),
            Arc::new(Serdes::i64()),
        ));
        store.put(&"b".into(), &2).unwrap();
        assert_eq!(store.put_if_absent(&"b".into(), &5).unwrap(), Some(2));
        assert_eq!(store.put_if_absent(&"a".into(), &1).unwrap(), None);
        store.put(&"c".into(), &3).unwrap();
        let range: Vec<(String, i64)> = store.range(&"a".into(), &"b".into()).unwrap().map(Result::unwrap).collect();
        assert_eq!(range, vec![("a".into(), 1), ("b".into(), 2)]);
        assert_eq!(store.delete(&"c".into()).unwrap(), Some(3));
        assert_eq!(store.get(&"c".into()).unwrap(), None);
        assert_eq!(store.all().unwrap().count(), 2);
        assert_eq!(store.approximate_num_entries().unwrap(), 2);
        store.put(&"ab".into(), &3).unwrap();
        store.put(&"b".into(), &4).unwrap();
        let prefixed: Vec<String> = store.prefix_scan(&"a".to_string(), &Serdes::string()).unwrap().map(|e| e.unwrap().0).collect();
        assert_eq!(prefixed, vec!["a".to_string(), "ab".to_string()]);
    }

    #[test]
    fn value_and_timestamp_layout() {
        let serde = ValueAndTimestampSerde(Arc::new(Serdes::i64()) as SerdeRef<i64>);
        let bytes = serde.serialize("t", &ValueAndTimestamp { value: 7, timestamp: 3 }).unwrap().unwrap();
        assert_eq!(bytes.len(), 16);
        assert_eq!(serde.deserialize("t", Some(&bytes)).unwrap(), ValueAndTimestamp { value: 7, timestamp: 3 });
        assert!(serde.deserialize("t", Some(&[1, 2])).is_err());
    }
}

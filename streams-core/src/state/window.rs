//! Windowed keys and the typed window and session stores.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use super::typed::{register_flush_listener, CacheFlush, CachedStateStore, SerdeKeyValueStore};
use super::segmented::{session_key, window_key, KeySchema};
use super::key_value_iterator::KeyValueIterator;
use super::{KeyRange, StateStore};
use crate::error::{Result, SerdeError, StreamsError};
use crate::processor::ProcessorContext;
use crate::serdes::{Serde, SerdeRef};

/// A time interval `[start, end)` (time windows) or `[start, end]` (sliding and session windows),
/// in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// Start, inclusive.
    pub start: i64,
    /// End: exclusive for time windows, inclusive for sliding and session windows.
    pub end: i64,
}

impl Window {
    /// The window `[start, end]`.
    pub fn new(start: i64, end: i64) -> Self {
        Window { start, end }
    }
}

/// A key and the window it was aggregated in: the key of a windowed KTable.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Windowed<K> {
    /// The record key.
    pub key: K,
    /// The window.
    pub window: Window,
}

impl<K> Windowed<K> {
    /// `key` in `window`.
    pub fn new(key: K, window: Window) -> Self {
        Windowed { key, window }
    }
}

impl<K: fmt::Display> fmt::Display for Windowed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}@{}/{}]", self.key, self.window.start, self.window.end)
    }
}

/// Serde for [`Windowed`] keys on topics.
///
/// Time windows: key bytes, then the 8-byte big-endian window start (the end is start + size).
/// Session windows: key bytes, then end and start, 8 bytes big-endian each.
pub struct WindowedSerde<K> {
    inner: SerdeRef<K>,
    /// `Some(size)` for time windows, `None` for sessions.
    window_size: Option<i64>,
}

impl<K> fmt::Debug for WindowedSerde<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowedSerde").field("window_size", &self.window_size).finish()
    }
}

impl<K> WindowedSerde<K> {
    /// For keys of time (tumbling, hopping, sliding) windows of `window_size_ms`.
    pub fn time(inner: SerdeRef<K>, window_size_ms: i64) -> Self {
        WindowedSerde { inner, window_size: Some(window_size_ms) }
    }

    /// For keys of session windows.
    pub fn session(inner: SerdeRef<K>) -> Self {
        WindowedSerde { inner, window_size: None }
    }

    fn schema(&self) -> KeySchema {
        match self.window_size {
            Some(_) => KeySchema::Window { retain_duplicates: false },
            None => KeySchema::Session,
        }
    }
}

impl<K: 'static> Serde<Windowed<K>> for WindowedSerde<K> {
    fn serialize(&self, topic: &str, data: &Windowed<K>) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        let key = self.inner.serialize(topic, &data.key)?.ok_or_else(|| SerdeError::null("windowed key"))?;
        Ok(Some(match self.window_size {
            Some(_) => window_key(&key, data.window.start, None),
            None => session_key(&key, data.window.start, data.window.end),
        }))
    }

    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> std::result::Result<Windowed<K>, SerdeError> {
        let bytes = data.ok_or_else(|| SerdeError::null("Windowed"))?;
        let schema = self.schema();
        let (key, (start, end)) = schema
            .key_of(bytes)
            .zip(schema.times_of(bytes))
            .ok_or_else(|| SerdeError::new(format!("windowed key of {} bytes is too short", bytes.len())))?;
        let end = self.window_size.map_or(end, |size| start.saturating_add(size));
        Ok(Windowed::new(self.inner.deserialize(topic, Some(key))?, Window::new(start, end)))
    }
}

/// A typed window store: values per key and window start, as windowed aggregations and
/// stream-stream joins keep them. Cheap to clone: clones share the store.
pub struct WindowStore<K, V> {
    inner: Rc<RefCell<SerdeKeyValueStore<K, V>>>,
    window_size: i64,
    retain_duplicates: bool,
    seq: Rc<Cell<u32>>,
}

impl<K, V> Clone for WindowStore<K, V> {
    fn clone(&self) -> Self {
        WindowStore {
            inner: self.inner.clone(),
            window_size: self.window_size,
            retain_duplicates: self.retain_duplicates,
            seq: self.seq.clone(),
        }
    }
}

impl<K, V> fmt::Debug for WindowStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowStore({}, size {} ms)", self.inner.borrow().name, self.window_size)
    }
}

impl<K: 'static, V: 'static> WindowStore<K, V> {
    pub(crate) fn new(inner: SerdeKeyValueStore<K, V>, window_size: i64, retain_duplicates: bool) -> Self {
        WindowStore { inner: Rc::new(RefCell::new(inner)), window_size, retain_duplicates, seq: Rc::default() }
    }

    pub(crate) fn as_state_store(&self) -> Rc<RefCell<dyn StateStore>> {
        self.inner.clone()
    }

    fn schema(&self) -> KeySchema {
        KeySchema::Window { retain_duplicates: self.retain_duplicates }
    }

    /// The store name.
    pub fn name(&self) -> String {
        self.inner.borrow().name.clone()
    }

    /// The window size the store was declared with.
    pub fn window_size(&self) -> i64 {
        self.window_size
    }

    /// Puts `value` for `key` in the window starting at `window_start`; `None` deletes it.
    /// A store that retains duplicates keeps every put (and ignores deletes).
    pub fn put(&self, key: &K, value: Option<&V>, window_start: i64) -> Result<()> {
        let mut s = self.inner.borrow_mut();
        let k = s.key_bytes(key)?;
        let seq = if self.retain_duplicates {
            if value.is_none() {
                return Ok(());
            }
            let next = self.seq.get().wrapping_add(1);
            self.seq.set(next);
            Some(next)
        } else {
            None
        };
        let v = value.map(|v| s.value_bytes(v)).transpose()?.flatten();
        s.inner.put(&window_key(&k, window_start, seq), v.as_deref())
    }

    /// The value of `key` in the window starting at `window_start`.
    pub fn fetch(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        if self.retain_duplicates {
            return Ok(self.fetch_range(key, window_start, window_start)?.next().transpose()?.map(|(_, v)| v));
        }
        let mut s = self.inner.borrow_mut();
        let k = s.key_bytes(key)?;
        let raw = s.inner.get(&window_key(&k, window_start, None))?;
        s.value(raw.as_deref())
    }

    /// `(window start, value)` of `key` for windows starting in `[from, to]`, by start time
    /// (Kafka Streams' `WindowStoreIterator`).
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Result<KeyValueIterator<i64, V>> {
        self.fetch_directed(key, from, to, false)
    }

    /// [`fetch_range`](Self::fetch_range) latest window first (Kafka Streams' `backwardFetch`).
    pub fn backward_fetch_range(&self, key: &K, from: i64, to: i64) -> Result<KeyValueIterator<i64, V>> {
        self.fetch_directed(key, from, to, true)
    }

    fn fetch_directed(&self, key: &K, from: i64, to: i64, reverse: bool) -> Result<KeyValueIterator<i64, V>> {
        // Window starts are never negative (and would not sort as numbers if they were).
        let from = from.max(0);
        let schema = self.schema();
        let k = self.inner.borrow().key_bytes(key)?;
        let seq = |n| self.retain_duplicates.then_some(n);
        let range = if from > to {
            KeyRange::empty()
        } else {
            KeyRange::inclusive(Some(&window_key(&k, from, seq(0))), Some(&window_key(&k, to, seq(u32::MAX))))
        };
        let range = if reverse { range.reversed() } else { range };
        KeyValueIterator::new(self.inner.clone(), range, move |s, bytes, value| {
            // Range bounds are bytes: a longer key with this key as prefix may fall inside.
            if schema.key_of(bytes) != Some(&k[..]) {
                return Ok(None);
            }
            let (start, _) = schema.times_of(bytes).expect("key_of checked the length");
            Ok(s.value(Some(value))?.map(|value| (start, value)))
        })
    }

    /// All entries with a window start in `[from, to]`, ordered by key bytes then start.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<KeyValueIterator<Windowed<K>, V>> {
        self.scan(move |w| w.window.start >= from && w.window.start <= to)
    }

    /// All entries, ordered by key bytes then window start.
    pub fn all(&self) -> Result<KeyValueIterator<Windowed<K>, V>> {
        self.scan(|_| true)
    }

    fn scan(&self, keep: impl Fn(&Windowed<K>) -> bool + 'static) -> Result<KeyValueIterator<Windowed<K>, V>> {
        let (schema, window_size) = (self.schema(), self.window_size);
        KeyValueIterator::new(self.inner.clone(), KeyRange::all(), move |s, bytes, value| {
            let windowed = decode_window(s, schema, window_size, bytes)?;
            if !keep(&windowed) {
                return Ok(None);
            }
            Ok(s.value(Some(value))?.map(|value| (windowed, value)))
        })
    }
}

impl<K: 'static, V: 'static> CachedStateStore<Windowed<K>, V> for WindowStore<K, V> {
    fn set_flush_listener<KO: 'static, VO: 'static>(
        &self,
        ctx: &mut ProcessorContext<'_, KO, VO>,
        listener: impl FnMut(&mut ProcessorContext<'_, KO, VO>, CacheFlush<Windowed<K>, V>) -> Result<()> + 'static,
    ) -> Result<bool> {
        let (schema, window_size) = (self.schema(), self.window_size);
        register_flush_listener(&self.inner, move |s, key| decode_window(s, schema, window_size, key), ctx, listener)
    }
}

/// The windowed key of a composite window-store key.
fn decode_window<K: 'static, V: 'static>(
    s: &SerdeKeyValueStore<K, V>,
    schema: KeySchema,
    window_size: i64,
    bytes: &[u8],
) -> Result<Windowed<K>> {
    let (key, (start, _)) = schema
        .key_of(bytes)
        .zip(schema.times_of(bytes))
        .ok_or_else(|| StreamsError::store(&s.name, "corrupt window key"))?;
    Ok(Windowed::new(s.key(key)?, Window::new(start, start.saturating_add(window_size))))
}

/// A typed session store: one aggregate per key and session `[start, end]`.
/// Cheap to clone: clones share the store.
pub struct SessionStore<K, V> {
    inner: Rc<RefCell<SerdeKeyValueStore<K, V>>>,
}

impl<K, V> Clone for SessionStore<K, V> {
    fn clone(&self) -> Self {
        SessionStore { inner: self.inner.clone() }
    }
}

impl<K, V> fmt::Debug for SessionStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionStore({})", self.inner.borrow().name)
    }
}

impl<K: 'static, V: 'static> SessionStore<K, V> {
    pub(crate) fn new(inner: SerdeKeyValueStore<K, V>) -> Self {
        SessionStore { inner: Rc::new(RefCell::new(inner)) }
    }

    pub(crate) fn as_state_store(&self) -> Rc<RefCell<dyn StateStore>> {
        self.inner.clone()
    }

    /// The store name.
    pub fn name(&self) -> String {
        self.inner.borrow().name.clone()
    }

    /// Puts the aggregate of a session; `None` removes the session.
    pub fn put(&self, session: &Windowed<K>, value: Option<&V>) -> Result<()> {
        let mut s = self.inner.borrow_mut();
        let k = s.key_bytes(&session.key)?;
        let v = value.map(|v| s.value_bytes(v)).transpose()?.flatten();
        s.inner.put(&session_key(&k, session.window.start, session.window.end), v.as_deref())
    }

    /// Removes a session.
    pub fn remove(&self, session: &Windowed<K>) -> Result<()> {
        self.put(session, None)
    }

    /// The aggregate of `key`'s session `[start, end]`, if there is one.
    pub fn fetch_session(&self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        let mut s = self.inner.borrow_mut();
        let k = s.key_bytes(key)?;
        let raw = s.inner.get(&session_key(&k, start, end))?;
        s.value(raw.as_deref())
    }

    /// Sessions of `key` that end at or after `earliest_end` and start at or before
    /// `latest_start`: the ones a record at time t with gap g merges with, for
    /// `earliest_end = t - g` and `latest_start = t + g`. Ordered by session end, then start.
    pub fn find_sessions(&self, key: &K, earliest_end: i64, latest_start: i64) -> Result<KeyValueIterator<Windowed<K>, V>> {
        let k = self.inner.borrow().key_bytes(key)?;
        let from = session_key(&k, 0, earliest_end.max(0));
        let to = session_key(&k, i64::MAX, i64::MAX);
        KeyValueIterator::new(self.inner.clone(), KeyRange::inclusive(Some(&from), Some(&to)), move |s, bytes, value| {
            if KeySchema::Session.key_of(bytes) != Some(&k[..]) {
                return Ok(None);
            }
            let (start, end) = KeySchema::Session.times_of(bytes).expect("key_of checked the length");
            if end < earliest_end || start > latest_start {
                return Ok(None);
            }
            let Some(value) = s.value(Some(value))? else { return Ok(None) };
            Ok(Some((Windowed::new(s.key(&k)?, Window::new(start, end)), value)))
        })
    }

    /// All sessions, ordered by key bytes, then end, then start.
    pub fn all(&self) -> Result<KeyValueIterator<Windowed<K>, V>> {
        KeyValueIterator::new(self.inner.clone(), KeyRange::all(), |s, bytes, value| {
            let Some(value) = s.value(Some(value))? else { return Ok(None) };
            Ok(Some((Self::decode(s, bytes)?, value)))
        })
    }

    fn decode(s: &SerdeKeyValueStore<K, V>, bytes: &[u8]) -> Result<Windowed<K>> {
        let schema = KeySchema::Session;
        let (key, (start, end)) = schema
            .key_of(bytes)
            .zip(schema.times_of(bytes))
            .ok_or_else(|| StreamsError::store(&s.name, "corrupt session key"))?;
        Ok(Windowed::new(s.key(key)?, Window::new(start, end)))
    }
}

impl<K: 'static, V: 'static> CachedStateStore<Windowed<K>, V> for SessionStore<K, V> {
    fn set_flush_listener<KO: 'static, VO: 'static>(
        &self,
        ctx: &mut ProcessorContext<'_, KO, VO>,
        listener: impl FnMut(&mut ProcessorContext<'_, KO, VO>, CacheFlush<Windowed<K>, V>) -> Result<()> + 'static,
    ) -> Result<bool> {
        register_flush_listener(&self.inner, Self::decode, ctx, listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serdes::Serdes;
    use crate::state::segmented::{SegmentLocation, SegmentedBytesStore};
    use std::sync::Arc;

    fn collect<K: 'static, V: 'static>(iter: Result<KeyValueIterator<K, V>>) -> Vec<(K, V)> {
        iter.unwrap().map(Result::unwrap).collect()
    }

    fn serde_layer(schema: KeySchema) -> SerdeKeyValueStore<String, i64> {
        let bytes = SegmentedBytesStore::open("w", schema, 1_000_000, SegmentLocation::InMemory).unwrap();
        SerdeKeyValueStore::new(Box::new(bytes), "t".into(), Arc::new(Serdes::string()), Arc::new(Serdes::i64()))
    }

    #[test]
    fn window_store_fetches_one_key_by_time_range() {
        let store = WindowStore::new(serde_layer(KeySchema::Window { retain_duplicates: false }), 10, false);
        let (a, ab) = ("a".to_string(), "ab".to_string());
        store.put(&a, Some(&1), 0).unwrap();
        store.put(&a, Some(&2), 10).unwrap();
        store.put(&a, Some(&3), 20).unwrap();
        store.put(&ab, Some(&9), 10).unwrap();
        assert_eq!(collect(store.fetch_range(&a, 5, 20)), vec![(10, 2), (20, 3)]);
        assert_eq!(collect(store.fetch_range(&a, 20, 5)), vec![]);
        assert_eq!(store.fetch(&a, 0).unwrap(), Some(1));
        store.put(&a, None, 0).unwrap();
        assert_eq!(store.fetch(&a, 0).unwrap(), None);
        let all = collect(store.fetch_all(10, 10));
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0, Windowed::new(a, Window::new(10, 20)));
    }

    #[test]
    fn duplicates_are_kept_when_asked() {
        let store = WindowStore::new(serde_layer(KeySchema::Window { retain_duplicates: true }), 0, true);
        let k = "k".to_string();
        store.put(&k, Some(&1), 5).unwrap();
        store.put(&k, Some(&2), 5).unwrap();
        store.put(&k, Some(&3), 7).unwrap();
        assert_eq!(collect(store.fetch_range(&k, 0, 10)), vec![(5, 1), (5, 2), (7, 3)]);
    }

    #[test]
    fn session_store_finds_overlapping_sessions() {
        let store = SessionStore::new(serde_layer(KeySchema::Session));
        let k = "k".to_string();
        let session = |s, e| Windowed::new(k.clone(), Window::new(s, e));
        store.put(&session(0, 10), Some(&2)).unwrap();
        store.put(&session(30, 40), Some(&3)).unwrap();
        store.put(&Windowed::new("kk".to_string(), Window::new(0, 100)), Some(&1)).unwrap();
        // A record at 15 with gap 5 touches [10, 20]: only the first session.
        assert_eq!(collect(store.find_sessions(&k, 10, 20)), vec![(session(0, 10), 2)]);
        // Gap 20 around 20: both.
        assert_eq!(collect(store.find_sessions(&k, 0, 40)).len(), 2);
        assert_eq!(store.fetch_session(&k, 30, 40).unwrap(), Some(3));
        store.remove(&session(30, 40)).unwrap();
        assert_eq!(collect(store.find_sessions(&k, 0, 40)).len(), 1);
        assert_eq!(collect(store.all()).len(), 2);
    }

    #[test]
    fn windowed_serde_round_trips_and_rejects_short_input() {
        let inner: SerdeRef<String> = Arc::new(Serdes::string());
        let time = WindowedSerde::time(inner.clone(), 5000);
        let w = Windowed::new("k".to_string(), Window::new(3000, 8000));
        let bytes = time.serialize("t", &w).unwrap().unwrap();
        assert_eq!(bytes.len(), 1 + 8);
        assert_eq!(time.deserialize("t", Some(&bytes)).unwrap(), w);
        let session = WindowedSerde::session(inner);
        let w = Windowed::new("k".to_string(), Window::new(3, 9));
        let bytes = session.serialize("t", &w).unwrap().unwrap();
        assert_eq!(session.deserialize("t", Some(&bytes)).unwrap(), w);
        assert!(session.deserialize("t", Some(b"short")).is_err());
    }
}

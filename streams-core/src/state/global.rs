//! Global stores: a full copy of a topic (every partition) in each instance, shared by all its
//! stream threads and kept up to date by the global thread. They back `GlobalKTable`s.
//!
//! The topic itself is the changelog: a global store is never logged, and on restart it reads
//! the topic from its checkpoint (persistent stores) or from the beginning (in memory).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::key_value_iterator::{Batch, KeyValueIterator};
use super::rocksdb_store::RocksDbKeyValueStore;
use super::{KeyRange, RawEntries, RocksDbConfig};
use crate::error::{Result, SerdeError, StreamsError};
use crate::serdes::SerdeRef;

/// The bytes of a global store. Safe to share between threads.
pub(crate) trait GlobalBytesStore: Send + Sync + fmt::Debug {
    /// The value bytes of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Puts `value` under `key`; `None` deletes.
    fn put(&self, key: &[u8], value: Option<&[u8]>) -> Result<()>;
    /// Appends at most `limit` entries from the start of `range` to `out`, in key order (one
    /// batch of a scan).
    fn read_batch(&self, range: &KeyRange, limit: usize, out: &mut RawEntries) -> Result<()>;
    /// Makes writes durable.
    fn flush(&self) -> Result<()>;
    /// Whether the data lives on disk (and a checkpoint may skip what it holds).
    fn persistent(&self) -> bool;
}

/// A global store held in memory.
#[derive(Debug, Default)]
pub(crate) struct InMemoryGlobalStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl GlobalBytesStore for InMemoryGlobalStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().expect("global store lock").get(key).cloned())
    }
    fn put(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let mut map = self.map.write().expect("global store lock");
        match value {
            Some(v) => map.insert(key.to_vec(), v.to_vec()),
            None => map.remove(key),
        };
        Ok(())
    }
    fn read_batch(&self, range: &KeyRange, limit: usize, out: &mut RawEntries) -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let map = self.map.read().expect("global store lock");
        map.range::<[u8], _>(range.bounds()).take(limit).for_each(|(k, v)| out.push(k, v));
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn persistent(&self) -> bool {
        false
    }
}

/// A global store in RocksDB at `<state.dir>/<application.id>/global/rocksdb/<store>`: the
/// same store as a task's, shared between threads. The topic is its log: no write-ahead log,
/// flushed before each checkpoint.
impl GlobalBytesStore for RocksDbKeyValueStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read(key)
    }
    fn put(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.write(key, value)
    }
    fn read_batch(&self, range: &KeyRange, limit: usize, out: &mut RawEntries) -> Result<()> {
        out.extend_from(self.scan(range)?, limit)
    }
    fn flush(&self) -> Result<()> {
        self.flush_memtables()
    }
    fn persistent(&self) -> bool {
        true
    }
}

/// A global store as declared in a topology: its name, topic and where it keeps its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalStoreSpec {
    /// The store name.
    pub name: String,
    /// The topic it copies.
    pub topic: String,
    /// RocksDB (true) or memory.
    pub persistent: bool,
}

impl GlobalStoreSpec {
    /// Opens the store under `global_dir` (`<state.dir>/<application.id>/global`).
    pub(crate) fn open(&self, global_dir: &Path, config: &RocksDbConfig) -> Result<Arc<dyn GlobalBytesStore>> {
        Ok(if self.persistent {
            Arc::new(RocksDbKeyValueStore::open(&self.name, global_dir, config)?)
        } else {
            Arc::new(InMemoryGlobalStore::default())
        })
    }
}

/// The global stores of an instance, by name.
pub(crate) type GlobalStores = Arc<BTreeMap<String, Arc<dyn GlobalBytesStore>>>;

/// A typed, read-only view of a global store, as processors use it. Clones share the store.
pub struct GlobalKeyValueStore<K, V> {
    name: String,
    bytes: Arc<dyn GlobalBytesStore>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
}

impl<K, V> Clone for GlobalKeyValueStore<K, V> {
    fn clone(&self) -> Self {
        GlobalKeyValueStore {
            name: self.name.clone(),
            bytes: self.bytes.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
        }
    }
}

impl<K, V> fmt::Debug for GlobalKeyValueStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GlobalKeyValueStore({})", self.name)
    }
}

impl<K: 'static, V: 'static> GlobalKeyValueStore<K, V> {
    pub(crate) fn new(name: &str, bytes: Arc<dyn GlobalBytesStore>, key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        GlobalKeyValueStore { name: name.to_string(), bytes, key_serde, value_serde }
    }

    fn serde_err(&self, what: &str, e: SerdeError) -> StreamsError {
        StreamsError::serde(format!("global store `{}` {what}", self.name), e)
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = self
            .key_serde
            .serialize(&self.name, key)
            .map_err(|e| self.serde_err("key", e))?
            .ok_or_else(|| StreamsError::store(&self.name, "keys must not serialize to null"))?;
        self.bytes
            .get(&key)?
            .map(|v| self.value_serde.deserialize(&self.name, Some(&v)))
            .transpose()
            .map_err(|e| self.serde_err("value", e))
    }

    /// Every entry, ordered by key bytes, streamed in batches (see [`KeyValueIterator`]).
    pub fn all(&self) -> Result<KeyValueIterator<K, V>> {
        let store = self.clone();
        let mut raw = RawEntries::default();
        KeyValueIterator::from_batches(KeyRange::all(), move |range, n| {
            raw.clear();
            store.bytes.read_batch(range, n, &mut raw)?;
            Batch::decoded(&raw, n, |k, v| {
                let key = store.key_serde.deserialize(&store.name, Some(k)).map_err(|e| store.serde_err("key", e))?;
                let value = store.value_serde.deserialize(&store.name, Some(v)).map_err(|e| store.serde_err("value", e))?;
                Ok(Some((key, value)))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serdes::Serdes;

    #[test]
    fn global_stores_share_their_bytes_between_handles_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        for persistent in [false, true] {
            let spec = GlobalStoreSpec { name: "g".into(), topic: "t".into(), persistent };
            let bytes = spec.open(dir.path(), &RocksDbConfig::default()).unwrap();
            let store = GlobalKeyValueStore::new("g", bytes.clone(), Arc::new(Serdes::string()), Arc::new(Serdes::i64()));
            let handle = store.clone();
            let writer = std::thread::spawn(move || bytes.put(b"k", Some(&7i64.to_be_bytes())).unwrap());
            writer.join().unwrap();
            assert_eq!(handle.get(&"k".to_string()).unwrap(), Some(7));
            assert_eq!(store.all().unwrap().map(Result::unwrap).collect::<Vec<_>>(), vec![("k".to_string(), 7)]);
        }
        let reopened = RocksDbKeyValueStore::open("g", dir.path(), &RocksDbConfig::default()).unwrap();
        assert_eq!(reopened.get(b"k").unwrap(), Some(7i64.to_be_bytes().to_vec()));
    }
}

//! Global stores: a full copy of a topic (every partition) in each instance, shared by all its
//! stream threads and kept up to date by the global thread. They back `GlobalKTable`s.
//!
//! The topic itself is the changelog: a global store is never logged, and on restart it reads
//! the topic from its checkpoint (persistent stores) or from the beginning (in memory).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rocksdb::{Options, WriteOptions, DB};

use crate::error::{Result, SerdeError, StreamsError};
use crate::serdes::SerdeRef;

/// The bytes of a global store. Safe to share between threads.
pub trait GlobalBytesStore: Send + Sync + fmt::Debug {
    /// The value bytes of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Puts `value` under `key`; `None` deletes.
    fn put(&self, key: &[u8], value: Option<&[u8]>) -> Result<()>;
    /// Every entry, ordered by key bytes.
    fn all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
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
    fn all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        Ok(self.map.read().expect("global store lock").iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn persistent(&self) -> bool {
        false
    }
}

/// A global store in RocksDB at `<state.dir>/<application.id>/global/rocksdb/<store>`.
pub(crate) struct RocksDbGlobalStore {
    name: String,
    path: PathBuf,
    db: DB,
}

impl fmt::Debug for RocksDbGlobalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksDbGlobalStore").field("name", &self.name).field("path", &self.path).finish()
    }
}

impl RocksDbGlobalStore {
    pub(crate) fn open(name: &str, global_dir: &Path) -> Result<Self> {
        let path = global_dir.join("rocksdb").join(name);
        std::fs::create_dir_all(&path).map_err(|e| StreamsError::io(&path, e))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, &path)
            .map_err(|e| StreamsError::store(name, format!("cannot open RocksDB at {}: {e}", path.display())))?;
        Ok(RocksDbGlobalStore { name: name.to_string(), path, db })
    }

    fn err(&self, op: &str, e: rocksdb::Error) -> StreamsError {
        StreamsError::store(&self.name, format!("RocksDB {op} failed at {}: {e}", self.path.display()))
    }
}

impl GlobalBytesStore for RocksDbGlobalStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(|e| self.err("get", e))
    }
    fn put(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        // The topic is the log: no write-ahead log; flushed before each checkpoint.
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        match value {
            Some(v) => self.db.put_opt(key, v, &options),
            None => self.db.delete_opt(key, &options),
        }
        .map_err(|e| self.err("put", e))
    }
    fn all(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.db
            .iterator(rocksdb::IteratorMode::Start)
            .map(|item| item.map(|(k, v)| (k.into_vec(), v.into_vec())).map_err(|e| self.err("iterate", e)))
            .collect()
    }
    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err("flush", e))
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
    pub(crate) fn open(&self, global_dir: &Path) -> Result<Arc<dyn GlobalBytesStore>> {
        Ok(if self.persistent {
            Arc::new(RocksDbGlobalStore::open(&self.name, global_dir)?)
        } else {
            Arc::new(InMemoryGlobalStore::default())
        })
    }
}

/// The global stores of an instance, by name.
pub type GlobalStores = Arc<BTreeMap<String, Arc<dyn GlobalBytesStore>>>;

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

    /// Every entry, ordered by key bytes.
    pub fn all(&self) -> Result<Vec<(K, V)>> {
        self.bytes
            .all()?
            .into_iter()
            .map(|(k, v)| {
                let key = self.key_serde.deserialize(&self.name, Some(&k)).map_err(|e| self.serde_err("key", e))?;
                let value = self.value_serde.deserialize(&self.name, Some(&v)).map_err(|e| self.serde_err("value", e))?;
                Ok((key, value))
            })
            .collect()
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
            let bytes = spec.open(dir.path()).unwrap();
            let store = GlobalKeyValueStore::new("g", bytes.clone(), Arc::new(Serdes::string()), Arc::new(Serdes::i64()));
            let handle = store.clone();
            let writer = std::thread::spawn(move || bytes.put(b"k", Some(&7i64.to_be_bytes())).unwrap());
            writer.join().unwrap();
            assert_eq!(handle.get(&"k".to_string()).unwrap(), Some(7));
            assert_eq!(store.all().unwrap(), vec![("k".to_string(), 7)]);
        }
        let reopened = RocksDbGlobalStore::open("g", dir.path()).unwrap();
        assert_eq!(reopened.get(b"k").unwrap(), Some(7i64.to_be_bytes().to_vec()));
    }
}

//! State stores, layered as in Kafka Streams:
//! [`KeyValueStore`], [`WindowStore`], [`SessionStore`] (typed, serde) > caching > change-logging >
//! RocksDB or in-memory bytes (time-segmented for window and session stores).

pub(crate) mod builder;
mod caching;
mod global;
mod in_memory;
mod iter;
mod key_value_iterator;
mod logging;
mod metered;
pub(crate) mod typed;
mod rocksdb_config;
mod rocksdb_store;
mod segmented;
mod transactional;
mod user_store;
mod versioned;
mod window;

pub use builder::{
    KeyValueBytesStoreSupplier, KeyValueStoreBuilder, SegmentedBytesStoreSupplier, StoreBuilder, Stores,
    WindowStoreBuilder,
};

pub(crate) use builder::changelog_topic;
pub(crate) use caching::ThreadCache;
pub(crate) use global::{GlobalBytesStore, GlobalStores};
pub use global::{GlobalKeyValueStore, GlobalStoreSpec};
pub(crate) use iter::{BytesIter, KeyRange, RawEntries};
pub use key_value_iterator::KeyValueIterator;
pub use rocksdb_config::{BoundedMemory, RocksDbConfigSetter};
pub use user_store::BytesKeyValueStore;
pub(crate) use rocksdb_config::RocksDbConfig;
/// The RocksDB bindings the persistent stores use, for [`RocksDbConfigSetter`]s.
pub use ::rocksdb;

pub use typed::{KeyValueStore, TimestampedKeyValueStore, ValueAndTimestamp, ValueAndTimestampSerde};
pub use versioned::{VersionedBytesStoreSupplier, VersionedKeyValueStore, VersionedKeyValueStoreBuilder, VersionedRecord};
pub use window::{SessionStore, Window, WindowStore, Windowed, WindowedSerde};

use crate::error::Result;

/// A changelog entry to restore: key bytes and value bytes (`None` = delete), borrowed from
/// the consumed record.
pub(crate) type RestoreRecord<'a> = (&'a [u8], Option<&'a [u8]>);

/// The task's view of any store: lifecycle, flush and restore.
pub(crate) trait StateStore {
    /// Writes cached entries down (to the inner store and the changelog), as every commit does.
    fn flush_cache(&mut self) -> Result<()>;
    /// Writes cached entries down and makes buffered writes durable (before a checkpoint).
    fn flush(&mut self) -> Result<()>;
    /// Flushes and releases resources.
    fn close(&mut self) -> Result<()>;
    /// Whether the store keeps its data on disk.
    fn persistent(&self) -> bool;
    /// Applies changelog records directly to the innermost store, bypassing cache and logging.
    fn restore_batch(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()>;
    /// Drops cached writes without writing them down (before a dirty close: they may belong
    /// to an aborted transaction, or to records that will be processed again).
    fn discard_cache(&mut self);
    /// Under exactly-once, after the Kafka transaction committed: writes the store's buffered
    /// writes down; with `durable`, also makes them durable (before a checkpoint).
    fn commit_transaction(&mut self, durable: bool) -> Result<()>;
    /// The RocksDB properties of the store, summed over its databases (segments).
    fn rocksdb_properties(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// A key-value store of bytes; implemented by each inner layer.
pub(crate) trait KeyValueBytesStore {
    /// The store name.
    fn name(&self) -> &str;
    /// The value for `key`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Puts `value` under `key`; `None` deletes.
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()>;
    /// The entries in `range`, in byte order, streamed from the layers below.
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>>;
    /// Appends at most `limit` entries from the start of `range` to `out`: one batch of a
    /// typed scan. Layers that can lend their entries (RocksDB's iterator) copy them straight
    /// into the batch instead of allocating each.
    fn read_batch(&mut self, range: &KeyRange, limit: usize, out: &mut RawEntries) -> Result<()> {
        out.extend_from(self.range(range)?, limit)
    }
    /// An estimate of the number of entries.
    fn approximate_num_entries(&mut self) -> Result<u64>;
    /// Makes writes durable (and writes cached entries down).
    fn flush(&mut self) -> Result<()>;
    /// Closes the store.
    fn close(&mut self) -> Result<()>;
    /// Whether the data lives on disk.
    fn persistent(&self) -> bool;
    /// Applies changelog records to the innermost store.
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()>;
    /// See [`StateStore::commit_transaction`]; only the transaction buffer has work to do.
    fn commit_transaction(&mut self, durable: bool) -> Result<()>;
    /// Asks a caching layer to keep what it flushes for [`take_flushed`](Self::take_flushed);
    /// returns whether this store caches.
    fn enable_flush_forwarding(&mut self) -> bool {
        false
    }
    /// Writes cached dirty entries down without flushing the inner store.
    fn flush_cache(&mut self) -> Result<()> {
        Ok(())
    }
    /// Drops cached entries without writing them down.
    fn discard_cache(&mut self) {}
    /// Entries written down by the cache since the last call (evictions and flushes).
    fn take_flushed(&mut self) -> Vec<FlushedEntry> {
        Vec::new()
    }
    /// Appends the RocksDB properties of the databases below (none for in-memory stores).
    fn rocksdb_properties(&self, _out: &mut Vec<(&'static str, u64)>) {}
}

/// An entry the cache wrote to the inner store, with the value it replaced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlushedEntry {
    /// Key bytes.
    pub(crate) key: Vec<u8>,
    /// The new value bytes (`None` = deleted).
    pub(crate) new_value: Option<Vec<u8>>,
    /// The value it replaced.
    pub(crate) old_value: Option<Vec<u8>>,
    /// Timestamp of the record that last wrote the entry.
    pub(crate) timestamp: i64,
}

/// Shared unit tests that every bytes store must pass.
#[cfg(test)]
pub(crate) fn check_bytes_store(store: &mut dyn KeyValueBytesStore) {
    assert_eq!(store.get(b"a").unwrap(), None);
    store.put(b"b", Some(b"2")).unwrap();
    store.put(b"a", Some(b"1")).unwrap();
    store.put(b"c", Some(b"3")).unwrap();
    store.put(b"d", Some(b"4")).unwrap();
    store.put(b"c", None).unwrap();
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get(b"c").unwrap(), None);
    let range: Vec<_> = store.range(&KeyRange::inclusive(Some(b"b"), Some(b"d"))).unwrap().map(Result::unwrap).collect();
    assert_eq!(range, vec![(b"b".to_vec(), b"2".to_vec()), (b"d".to_vec(), b"4".to_vec())]);
    assert_eq!(store.range(&KeyRange::all()).unwrap().count(), 3);
    assert_eq!(store.range(&KeyRange::inclusive(Some(b"d"), Some(b"b"))).unwrap().count(), 0);
    let after: Vec<_> = store.range(&KeyRange::all().after(b"b")).unwrap().map(|e| e.unwrap().0).collect();
    assert_eq!(after, vec![b"d".to_vec()]);
    let keys = |range: KeyRange, store: &mut dyn KeyValueBytesStore| -> Vec<Vec<u8>> {
        store.range(&range).unwrap().map(|e| e.unwrap().0).collect()
    };
    assert_eq!(keys(KeyRange::all().reversed(), store), vec![b"d".to_vec(), b"b".to_vec(), b"a".to_vec()]);
    assert_eq!(keys(KeyRange::inclusive(Some(b"a"), Some(b"c")).reversed(), store), vec![b"b".to_vec(), b"a".to_vec()]);
    assert_eq!(keys(KeyRange::all().reversed().past(b"d"), store), vec![b"b".to_vec(), b"a".to_vec()]);
    store.flush().unwrap();
    store.restore(&[(b"e", Some(b"5")), (b"a", None)]).unwrap();
    assert_eq!(store.get(b"e").unwrap(), Some(b"5".to_vec()));
    assert_eq!(store.get(b"a").unwrap(), None);
    assert!(store.approximate_num_entries().unwrap() >= 1);
}

//! RocksDB options of the persistent stores: a per-store setter (Kafka Streams'
//! `rocksdb.config.setter`) and [`BoundedMemory`], one memory budget for all stores of a client.

use std::sync::Arc;

use rocksdb::{BlockBasedOptions, Cache, Options, WriteBufferManager};

/// Adjusts the options each RocksDB instance opens with: every task's store, every window or
/// session segment, every global store. Set it with
/// [`StreamsConfig::set_rocksdb_config_setter`](crate::StreamsConfig::set_rocksdb_config_setter).
///
/// Closures `Fn(&str, &mut rocksdb::Options)` are setters:
///
/// ```
/// use streams_core::state::rocksdb::Options;
/// use streams_core::StreamsConfig;
///
/// let mut config = StreamsConfig::new();
/// config.set_rocksdb_config_setter(|store: &str, options: &mut Options| {
///     if store == "big-table" {
///         options.set_write_buffer_size(64 << 20);
///     }
/// });
/// ```
pub trait RocksDbConfigSetter: Send + Sync + 'static {
    /// Changes `options` of store `store_name` before it opens (the library's defaults are
    /// already set: create if missing, LZ4, two background jobs).
    fn set_config(&self, store_name: &str, options: &mut Options);
}

impl<F> RocksDbConfigSetter for F
where
    F: Fn(&str, &mut Options) + Send + Sync + 'static,
{
    fn set_config(&self, store_name: &str, options: &mut Options) {
        self(store_name, options)
    }
}

/// All RocksDB stores of a client under one memory bound, as Kafka Streams' bounded-memory
/// recipe: a shared LRU block cache of `total_bytes`, which also accounts the memtables (a
/// write-buffer manager of `write_buffer_bytes` within the same budget) and holds the index and
/// filter blocks. Without it each RocksDB instance has its own block cache and memtables, and
/// memory grows with tasks x stores x segments.
///
/// It is a [`RocksDbConfigSetter`]; a setter of your own calls [`configure`](Self::configure)
/// and changes what else it needs (after it: the block-based table options are replaced).
///
/// ```
/// use streams_core::state::BoundedMemory;
/// use streams_core::StreamsConfig;
///
/// let mut config = StreamsConfig::new();
/// config.set_rocksdb_config_setter(BoundedMemory::new(64 << 20, 16 << 20));
/// ```
#[derive(Clone)]
pub struct BoundedMemory {
    inner: Arc<Shared>,
}

struct Shared {
    cache: Cache,
    write_buffer_manager: WriteBufferManager,
    total_bytes: usize,
    write_buffer_bytes: usize,
}

impl std::fmt::Debug for BoundedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedMemory")
            .field("total_bytes", &self.inner.total_bytes)
            .field("write_buffer_bytes", &self.inner.write_buffer_bytes)
            .finish()
    }
}

impl BoundedMemory {
    /// A budget of `total_bytes` (block cache, memtables, index and filter blocks), of which
    /// memtables may take `write_buffer_bytes` before they are flushed.
    pub fn new(total_bytes: usize, write_buffer_bytes: usize) -> Self {
        let cache = Cache::new_lru_cache(total_bytes);
        let write_buffer_manager =
            WriteBufferManager::new_write_buffer_manager_with_cache(write_buffer_bytes.min(total_bytes), false, cache.clone());
        BoundedMemory { inner: Arc::new(Shared { cache, write_buffer_manager, total_bytes, write_buffer_bytes }) }
    }

    /// Puts a store's options under this budget.
    pub fn configure(&self, options: &mut Options) {
        // Small memtables in small arena blocks, so that the memtables of many stores (each
        // store has one as soon as it is written) fit the write-buffer budget; the manager
        // flushes the store being written when all of them together reach it.
        options.set_write_buffer_size((self.inner.write_buffer_bytes / 8).clamp(256 << 10, 8 << 20));
        options.set_arena_block_size(64 << 10);
        options.set_max_write_buffer_number(2);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.inner.cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_pin_top_level_index_and_filter(true);
        options.set_block_based_table_factory(&table);
        options.set_write_buffer_manager(&self.inner.write_buffer_manager);
    }

    /// What the shared cache holds now (blocks and the memtables charged to it), in bytes.
    pub fn usage(&self) -> usize {
        self.inner.cache.get_usage()
    }

    /// What the memtables of all stores hold now, in bytes.
    pub fn write_buffer_usage(&self) -> usize {
        self.inner.write_buffer_manager.get_usage()
    }
}

impl RocksDbConfigSetter for BoundedMemory {
    fn set_config(&self, _store_name: &str, options: &mut Options) {
        self.configure(options);
    }
}

/// The setter a client's stores open with, if any.
#[derive(Clone, Default)]
pub(crate) struct RocksDbConfig(Option<Arc<dyn RocksDbConfigSetter>>);

impl std::fmt::Debug for RocksDbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "RocksDbConfig(setter)" } else { "RocksDbConfig(defaults)" })
    }
}

impl RocksDbConfig {
    pub(crate) fn new(setter: impl RocksDbConfigSetter) -> Self {
        RocksDbConfig(Some(Arc::new(setter)))
    }

    /// The options store `name` opens with.
    pub(crate) fn options(&self, name: &str) -> Options {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_max_background_jobs(2);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        if let Some(setter) = &self.0 {
            setter.set_config(name, &mut options);
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::state::rocksdb_store::RocksDbKeyValueStore;
    use crate::state::KeyValueBytesStore;

    fn property(store: &RocksDbKeyValueStore, name: &str) -> u64 {
        let mut out = Vec::new();
        store.rocksdb_properties(&mut out);
        out.into_iter().find(|(n, _)| *n == name).map(|(_, v)| v).unwrap_or_else(|| panic!("no {name}"))
    }

    #[test]
    fn stores_under_bounded_memory_share_one_cache() {
        let dir = tempfile::tempdir().unwrap();
        let memory = BoundedMemory::new(8 << 20, 2 << 20);
        let config = RocksDbConfig::new(memory.clone());
        let mut a = RocksDbKeyValueStore::open("a", dir.path(), &config).unwrap();
        let b = RocksDbKeyValueStore::open("b", dir.path(), &config).unwrap();
        assert_eq!(property(&a, "block-cache-capacity"), 8 << 20);
        assert_eq!(property(&b, "block-cache-capacity"), 8 << 20);
        for i in 0..10_000u32 {
            a.put(&i.to_be_bytes(), Some(&[7u8; 100])).unwrap();
        }
        // The memtable is charged to the shared cache, which both stores report.
        assert!(memory.write_buffer_usage() > 0);
        assert!(memory.usage() >= memory.write_buffer_usage());
        assert_eq!(property(&a, "block-cache-usage"), property(&b, "block-cache-usage"));
        let defaults = RocksDbKeyValueStore::open("c", dir.path(), &RocksDbConfig::default()).unwrap();
        assert_ne!(property(&defaults, "block-cache-capacity"), 8 << 20);
    }

    #[test]
    fn a_setter_sees_each_store_and_its_options_take_effect() {
        let dir = tempfile::tempdir().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let config = RocksDbConfig::new(move |store: &str, options: &mut Options| {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&Cache::new_lru_cache(if store == "big" { 32 << 20 } else { 1 << 20 }));
            options.set_block_based_table_factory(&table);
        });
        let big = RocksDbKeyValueStore::open("big", dir.path(), &config).unwrap();
        let small = RocksDbKeyValueStore::open("small", dir.path(), &config).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(property(&big, "block-cache-capacity"), 32 << 20);
        assert_eq!(property(&small, "block-cache-capacity"), 1 << 20);
    }
}

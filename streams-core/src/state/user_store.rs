//! Key-value stores users plug in: [`BytesKeyValueStore`] behind
//! [`Stores::key_value_store_supplier`](crate::Stores::key_value_store_supplier). The library
//! puts its metering, change-logging and caching layers on top, as on its own stores.

use super::{BytesIter, KeyRange, KeyValueBytesStore, RestoreRecord};
use crate::error::Result;
use crate::record::TaskId;

/// A key-value store of bytes (Kafka Streams' `KeyValueStore<Bytes, byte[]>` behind a
/// `KeyValueBytesStoreSupplier`): one instance per task, used from the task's thread only.
///
/// A store that says it is [`persistent`](Self::persistent) must keep what it holds across a
/// close and reopen of the same task directory: the task then restores only the changelog
/// records after its checkpoint. An in-memory one is restored from the whole changelog.
pub trait BytesKeyValueStore: Send + 'static {
    /// The value of `key`.
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Puts `value` under `key`; `None` deletes.
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()>;
    /// The entries with `from <= key < until` (`None`: open), in byte order of their keys.
    fn range(&mut self, from: Option<&[u8]>, until: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// An estimate of the number of entries.
    fn approximate_num_entries(&mut self) -> Result<u64> {
        Ok(self.range(None, None)?.len() as u64)
    }
    /// Makes the writes so far durable (before each checkpoint, and when the task closes).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Releases the store (the task closes).
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
    /// Whether it keeps its data across restarts (default: no).
    fn persistent(&self) -> bool {
        false
    }
}

/// Where a user's store comes from: for the store's name, its task and the task's directory.
pub(crate) type UserStoreFactory =
    std::sync::Arc<dyn Fn(&str, TaskId, &std::path::Path) -> Result<Box<dyn BytesKeyValueStore>> + Send + Sync>;

/// A user's store as an inner layer of the library's store stack.
pub(crate) struct UserKeyValueStore {
    pub(crate) name: String,
    pub(crate) inner: Box<dyn BytesKeyValueStore>,
}

impl KeyValueBytesStore for UserKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.inner.put(key, value)
    }
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        let mut entries = self.inner.range(range.from.as_deref(), range.until.as_deref())?;
        if range.reverse {
            entries.reverse();
        }
        Ok(Box::new(entries.into_iter().map(Ok)))
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        self.inner.approximate_num_entries()
    }
    fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }
    fn close(&mut self) -> Result<()> {
        self.inner.close()
    }
    fn persistent(&self) -> bool {
        self.inner.persistent()
    }
    fn restore(&mut self, batch: &[RestoreRecord<'_>]) -> Result<()> {
        batch.iter().try_for_each(|(key, value)| self.inner.put(key, value.as_deref()))
    }
    fn commit_transaction(&mut self, _durable: bool) -> Result<()> {
        Ok(())
    }
}

//! The in-memory bytes store: an ordered map.

use std::collections::BTreeMap;

use super::iter::directed;
use super::{BytesIter, KeyRange, KeyValueBytesStore, RestoreRecord};
use crate::error::Result;

/// A key-value store held in a `BTreeMap`, ordered by key bytes.
#[derive(Debug)]
pub(crate) struct InMemoryKeyValueStore {
    name: String,
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl InMemoryKeyValueStore {
    pub(crate) fn new(name: &str) -> Self {
        InMemoryKeyValueStore { name: name.to_string(), map: BTreeMap::new() }
    }
}

impl KeyValueBytesStore for InMemoryKeyValueStore {
    fn name(&self) -> &str {
        &self.name
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        match value {
            Some(v) => self.map.insert(key.to_vec(), v.to_vec()),
            None => self.map.remove(key),
        };
        Ok(())
    }
    fn range(&mut self, range: &KeyRange) -> Result<BytesIter<'_>> {
        if range.is_empty() {
            return Ok(Box::new(std::iter::empty()));
        }
        Ok(directed(self.map.range::<[u8], _>(range.bounds()).map(|(k, v)| Ok((k.clone(), v.clone()))), range))
    }
    fn approximate_num_entries(&mut self) -> Result<u64> {
        Ok(self.map.len() as u64)
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
    fn persistent(&self) -> bool {
        false
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

#[cfg(test)]
mod tests {
    #[test]
    fn behaves_as_a_key_value_store() {
        super::super::check_bytes_store(&mut super::InMemoryKeyValueStore::new("s"));
    }
}

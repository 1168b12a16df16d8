//! The in-memory bytes store: an ordered map.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{KeyValueBytesStore, RestoreRecord};
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

pub(crate) fn bounds<'a>(from: Option<&'a [u8]>, to: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (from.map_or(Bound::Unbounded, Bound::Included), to.map_or(Bound::Unbounded, Bound::Included))
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
    fn range(&mut self, from: Option<&[u8]>, to: Option<&[u8]>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Ok(Vec::new());
            }
        }
        Ok(self
            .map
            .range::<[u8], _>(bounds(from, to))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
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
    fn restore(&mut self, batch: &[RestoreRecord]) -> Result<()> {
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

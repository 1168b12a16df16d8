//! `Change<V>`: what flows between KTable nodes — the new value and the one it replaced.

use streams_core::{Serde, SerdeError, SerdeRef};

/// An update of a KTable row: `None` means absent (a delete, or no previous value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<V> {
    /// The value after the update.
    pub new_value: Option<V>,
    /// The value before the update.
    pub old_value: Option<V>,
    /// Whether the update is the row's latest: false for an out-of-order update of a
    /// versioned table (an older version filled in), which table-table joins skip (KIP-914).
    pub is_latest: bool,
}

impl<V> Change<V> {
    /// A change from `old_value` to `new_value`, the row's latest.
    pub fn new(new_value: Option<V>, old_value: Option<V>) -> Self {
        Change { new_value, old_value, is_latest: true }
    }

    /// The same update with other values (a filter's or a mapper's), as latest as this one.
    pub(crate) fn derive<V2>(&self, new_value: Option<V2>, old_value: Option<V2>) -> Change<V2> {
        Change { new_value, old_value, is_latest: self.is_latest }
    }

    /// Neither value: the delete of a row that was not there.
    pub(crate) fn is_noop(&self) -> bool {
        self.new_value.is_none() && self.old_value.is_none()
    }
}

/// Serde for a [`Change`] on repartition topics: a flags byte (bit 0 new, bit 1 old), then the
/// new value as 4-byte big-endian length + bytes, then the old value's bytes.
pub struct ChangeSerde<V>(pub SerdeRef<V>);

impl<V> std::fmt::Debug for ChangeSerde<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeSerde")
    }
}

impl<V: 'static> Serde<Change<V>> for ChangeSerde<V> {
    fn serialize(&self, topic: &str, data: &Change<V>) -> Result<Option<Vec<u8>>, SerdeError> {
        let new = data.new_value.as_ref().map(|v| self.0.serialize(topic, v)).transpose()?.flatten();
        let old = data.old_value.as_ref().map(|v| self.0.serialize(topic, v)).transpose()?.flatten();
        let mut out = vec![u8::from(new.is_some()) | (u8::from(old.is_some()) << 1)];
        if let Some(new) = new {
            let len = u32::try_from(new.len()).map_err(|_| SerdeError::new("value larger than 4 GiB"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&new);
        }
        if let Some(old) = old {
            out.extend_from_slice(&old);
        }
        Ok(Some(out))
    }

    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> Result<Change<V>, SerdeError> {
        let bytes = data.ok_or_else(|| SerdeError::null("Change"))?;
        let (&flags, mut rest) = bytes.split_first().ok_or_else(|| SerdeError::new("empty Change"))?;
        if flags > 3 {
            return Err(SerdeError::new(format!("bad Change flags {flags}")));
        }
        let mut new_value = None;
        if flags & 1 != 0 {
            if rest.len() < 4 {
                return Err(SerdeError::new("truncated Change"));
            }
            let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            let body = rest.get(4..4 + len).ok_or_else(|| SerdeError::new("truncated Change value"))?;
            new_value = Some(self.0.deserialize(topic, Some(body))?);
            rest = &rest[4 + len..];
        }
        let old_value = if flags & 2 != 0 {
            Some(self.0.deserialize(topic, Some(rest))?)
        } else if rest.is_empty() {
            None
        } else {
            return Err(SerdeError::new("trailing bytes after Change"));
        };
        Ok(Change::new(new_value, old_value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use streams_core::Serdes;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let serde = ChangeSerde::<String>(Arc::new(Serdes::string()));
        for change in [
            Change::new(Some("new".to_string()), Some("old".to_string())),
            Change::new(None, Some("old".to_string())),
            Change::new(Some(String::new()), None),
            Change::new(None, None),
        ] {
            let bytes = serde.serialize("t", &change).unwrap();
            assert_eq!(serde.deserialize("t", bytes.as_deref()).unwrap(), change);
        }
        for garbage in [&[][..], &[9], &[1, 0, 0], &[1, 0, 0, 0, 9, b'x'], &[0, 1]] {
            assert!(serde.deserialize("t", Some(garbage)).is_err());
        }
    }
}

//! `KTABLE-SUPPRESS`: holds back updates until a window closes or a time limit passes.
//!
//! The buffer keeps the latest update per key in a change-logged store, so held-back results
//! survive a restart or a task move and are emitted exactly once by whichever instance owns the
//! task when its time comes.

use std::collections::BTreeMap;
use std::sync::Arc;

use streams_core::{Processor, ProcessorContext, Record, Result, Serde, SerdeError, SerdeRef, StreamsError};

use crate::change::{Change, ChangeSerde};
use super::Stateful;
use crate::suppress::{BufferConfig, Suppressed, Until};

/// A buffered update: the change (first old value, latest new value), the latest record's
/// timestamp, and the time that decides its emission.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Buffered<V> {
    change: Change<V>,
    timestamp: i64,
    buffer_time: i64,
}

/// Serde of [`Buffered`]: buffer time and timestamp (8 bytes big-endian each), then the change.
pub(crate) struct BufferedSerde<V>(pub(crate) ChangeSerde<V>);

impl<V: 'static> Serde<Buffered<V>> for BufferedSerde<V> {
    fn serialize(&self, topic: &str, data: &Buffered<V>) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        let change = self.0.serialize(topic, &data.change)?.unwrap_or_default();
        let mut out = Vec::with_capacity(16 + change.len());
        out.extend_from_slice(&data.buffer_time.to_be_bytes());
        out.extend_from_slice(&data.timestamp.to_be_bytes());
        out.extend_from_slice(&change);
        Ok(Some(out))
    }

    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> std::result::Result<Buffered<V>, SerdeError> {
        let bytes = data.ok_or_else(|| SerdeError::null("suppression buffer entry"))?;
        if bytes.len() < 16 {
            return Err(SerdeError::new(format!("suppression buffer entry of {} bytes", bytes.len())));
        }
        let int = |i: usize| i64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        Ok(Buffered {
            buffer_time: int(0),
            timestamp: int(8),
            change: self.0.deserialize(topic, Some(&bytes[16..]))?,
        })
    }
}

/// The time a buffered key waits for (its window's end, or its first update's timestamp), given
/// the key and that update's timestamp.
pub(crate) type BufferTime<K> = Arc<dyn Fn(&K, i64) -> i64 + Send + Sync>;

/// The order of keys due at one time, before their bytes (a session's start, under emit-final).
pub(crate) type TieBreak<K> = Arc<dyn Fn(&K) -> i64 + Send + Sync>;

/// A key's place in the emission order: buffer time, tie-break, key bytes.
type Slot = (i64, i64, Vec<u8>);

/// `KTABLE-SUPPRESS`: buffers changes per key and forwards each when
/// `buffer_time <= stream time - delay`, where stream time is the largest timestamp the
/// processor has seen. Due entries go out by buffer time, then key bytes; a key updated while
/// buffered keeps its place. Final results (until a window closes) drop tombstones.
pub(crate) struct SuppressProcessor<K, V> {
    store_name: String,
    key_serde: SerdeRef<K>,
    buffer_time: BufferTime<K>,
    delay_ms: i64,
    final_results: bool,
    buffer: BufferConfig,
    store: streams_core::KeyValueStore<K, Buffered<V>>,
    entry_serde: BufferedSerde<V>,
    /// (buffer time, key bytes) -> (key, its size in the buffer): the emission order.
    index: BTreeMap<Slot, (K, usize)>,
    tie_break: Option<TieBreak<K>>,
    /// The buffer's size: serialized keys and entries.
    bytes: usize,
    stream_time: i64,
}

impl<K: Clone + 'static, V: Clone + 'static> SuppressProcessor<K, V> {
    pub(crate) fn processor(
        store_name: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        suppressed: &Suppressed,
        buffer_time: BufferTime<K>,
        tie_break: Option<TieBreak<K>>,
        grace_ms: i64,
    ) -> impl Processor<K, Change<V>, K, Change<V>> {
        let final_results = waits_for_windows(suppressed);
        let delay_ms = match suppressed.until {
            Until::WindowCloses => grace_ms,
            Until::WindowClosed => grace_ms + 1,
            Until::TimeLimit(limit) => limit,
        };
        let (store_name, buffer) = (store_name.to_string(), suppressed.buffer);
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Change<V>>| {
            Ok(SuppressProcessor {
                store: ctx.key_value_store(&store_name)?,
                store_name: store_name.clone(),
                key_serde: key_serde.clone(),
                buffer_time: buffer_time.clone(),
                delay_ms,
                final_results,
                buffer,
                entry_serde: BufferedSerde(ChangeSerde(value_serde.clone())),
                index: BTreeMap::new(),
                tie_break: tie_break.clone(),
                bytes: 0,
                stream_time: i64::MIN,
            })
        })
    }

    fn slot(&self, key: &K, buffer_time: i64) -> Result<Slot> {
        let bytes = self.key_serde.serialize(&self.store_name, key).map_err(|e| StreamsError::serde(&self.store_name, e))?;
        let tie = self.tie_break.as_ref().map_or(0, |f| f(key));
        Ok((buffer_time, tie, bytes.unwrap_or_default()))
    }

    /// Indexes `key`'s `entry` at `slot`, replacing its previous place there.
    fn index(&mut self, slot: Slot, key: K, entry: &Buffered<V>) -> Result<()> {
        let size = match self.buffer.max_bytes {
            Some(_) => {
                let bytes = self.entry_serde.serialize(&self.store_name, entry).map_err(|e| StreamsError::serde(&self.store_name, e))?;
                slot.2.len() + bytes.map_or(0, |b| b.len())
            }
            None => 0,
        };
        self.bytes += size;
        if let Some((_, previous)) = self.index.insert(slot, (key, size)) {
            self.bytes -= previous;
        }
        Ok(())
    }

    /// Whether the buffer holds more than its config allows.
    fn over_full(&self) -> bool {
        self.buffer.max_records.is_some_and(|max| self.index.len() > max)
            || self.buffer.max_bytes.is_some_and(|max| self.bytes > max)
    }

    fn emit(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>, slot: Slot) -> Result<()> {
        let (key, size) = self.index.remove(&slot).expect("indexed");
        self.bytes -= size;
        let Some(entry) = self.store.delete(&key)? else { return Ok(()) };
        let tombstone = entry.change.new_value.is_none();
        if tombstone && (self.final_results || entry.change.old_value.is_none()) {
            return Ok(());
        }
        ctx.forward(Record::new(key, entry.change, entry.timestamp))
    }
}

/// Whether windows due at one time go out by start before key (emit-final, as Kafka Streams'
/// time-ordered stores return them).
pub(crate) fn orders_by_window_start(suppressed: &Suppressed) -> bool {
    suppressed.until == Until::WindowClosed
}

/// Whether the suppression waits for window ends (and needs a windowed table).
pub(crate) fn waits_for_windows(suppressed: &Suppressed) -> bool {
    matches!(suppressed.until, Until::WindowCloses | Until::WindowClosed)
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>, K, Change<V>> for SuppressProcessor<K, V> {
    fn init(&mut self, _ctx: &mut ProcessorContext<'_, K, Change<V>>) -> Result<()> {
        // Rebuild the emission order from the (restored) buffer.
        for entry in self.store.all()? {
            let (key, entry) = entry?;
            let slot = self.slot(&key, entry.buffer_time)?;
            self.index(slot, key, &entry)?;
        }
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>, record: Record<K, Change<V>>) -> Result<()> {
        let store = &self.store;
        // A key keeps its first update's place and old value; the new value is the latest.
        let (buffer_time, old_value) = match store.get(&record.key)? {
            Some(prev) => (prev.buffer_time, prev.change.old_value),
            None => ((self.buffer_time)(&record.key, record.timestamp), record.value.old_value),
        };
        let entry = Buffered { change: Change::new(record.value.new_value, old_value), timestamp: record.timestamp, buffer_time };
        store.put(&record.key, &entry)?;
        let slot = self.slot(&record.key, buffer_time)?;
        self.index(slot, record.key, &entry)?;
        // Emit what is due, then what does not fit.
        self.stream_time = self.stream_time.max(record.timestamp);
        let due = self.stream_time - self.delay_ms;
        while let Some((slot, _)) = self.index.first_key_value() {
            if slot.0 > due {
                break;
            }
            let slot = slot.clone();
            self.emit(ctx, slot)?;
        }
        while self.over_full() {
            if !self.buffer.emit_early_when_full {
                let (records, bytes) = (self.index.len(), self.bytes);
                return Err(StreamsError::store(
                    &self.store_name,
                    format!(
                        "suppression buffer is full ({records} records, {bytes} bytes; limits {:?} records, {:?} bytes) and configured to shut down when full",
                        self.buffer.max_records, self.buffer.max_bytes
                    ),
                ));
            }
            let slot = self.index.first_key_value().expect("non-empty").0.clone();
            self.emit(ctx, slot)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams_core::{SerdeRef, Serdes};

    #[test]
    fn buffered_entries_round_trip() {
        let serde = BufferedSerde(ChangeSerde::<i64>(Arc::new(Serdes::i64()) as SerdeRef<i64>));
        let entry = Buffered { change: Change::new(Some(3), Some(1)), timestamp: 7, buffer_time: 9 };
        let bytes = serde.serialize("t", &entry).unwrap();
        assert_eq!(serde.deserialize("t", bytes.as_deref()).unwrap(), entry);
        assert!(serde.deserialize("t", Some(&[0; 10])).is_err());
    }
}

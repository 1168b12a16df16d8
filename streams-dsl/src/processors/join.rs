//! Join processors: stream-stream (windowed), stream-table and table-table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use streams_core::state::{GlobalKeyValueStore, VersionedKeyValueStore, WindowStore};
use streams_core::{
    Headers, KeyValueStore, Processor, ProcessorContext, Record, Result, Serde, SerdeError, SerdeRef, StreamsError, TaskId,
    TimestampedKeyValueStore,
};

use super::Stateful;
use crate::change::Change;
use crate::windows::JoinWindows;

/// The joiner of a join, on (left, right) with `None` for a missing side.
pub(crate) type Joiner<K, V1, V2, VOut> = Arc<dyn Fn(&K, Option<&V1>, Option<&V2>) -> VOut + Send + Sync>;

/// Derives a global table's key from a stream record.
pub(crate) type KeySelector<K, V, GK> = Arc<dyn Fn(&K, &V) -> GK + Send + Sync>;

/// The buffer of unmatched records of left and outer stream-stream joins.
type OuterBuffer<K, V1, V2> = KeyValueStore<OuterKey<K>, (Option<V1>, Option<V2>)>;

/// Puts a processor's (this, other) values in (left, right) order.
pub(crate) type Arrange<VT, VO, V1, V2> = fn(Option<VT>, Option<VO>) -> (Option<V1>, Option<V2>);

/// `Arrange` for the left side.
pub(crate) fn as_left<A, B>(this: Option<A>, other: Option<B>) -> (Option<A>, Option<B>) {
    (this, other)
}

/// `Arrange` for the right side.
pub(crate) fn as_right<A, B>(this: Option<A>, other: Option<B>) -> (Option<B>, Option<A>) {
    (other, this)
}

/// A key in the buffer of not-yet-joined records of left and outer joins, ordered as Kafka
/// Streams orders it: by timestamp, then side (right before left), then key; records of one
/// key, side and time keep their arrival order (`seq`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OuterKey<K> {
    timestamp: i64,
    /// 0 = left, 1 = right.
    side: u8,
    key: Option<K>,
    seq: u64,
}

/// Serde of [`OuterKey`]: timestamp (8 bytes big-endian), side (right 0, left 1), key bytes,
/// sequence (8 bytes).
pub(crate) struct OuterKeySerde<K>(pub(crate) SerdeRef<K>);

/// The side byte of an [`OuterKey`], as Kafka Streams' `TimestampedKeyAndJoinSide` writes it.
fn side_byte(side: u8) -> u8 {
    1 - side
}

impl<K: 'static> Serde<OuterKey<K>> for OuterKeySerde<K> {
    fn serialize(&self, topic: &str, data: &OuterKey<K>) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        let mut out = Vec::with_capacity(17 + 16);
        out.extend_from_slice(&data.timestamp.to_be_bytes());
        out.push(side_byte(data.side));
        if let Some(key) = &data.key {
            out.extend(self.0.serialize(topic, key)?.ok_or_else(|| SerdeError::null("join key"))?);
        }
        out.extend_from_slice(&data.seq.to_be_bytes());
        Ok(Some(out))
    }

    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> std::result::Result<OuterKey<K>, SerdeError> {
        let bytes = data.ok_or_else(|| SerdeError::null("outer join key"))?;
        if bytes.len() < 17 {
            return Err(SerdeError::new(format!("outer join key of {} bytes", bytes.len())));
        }
        let seq_at = bytes.len() - 8;
        if bytes[8] > 1 {
            return Err(SerdeError::new(format!("outer join key with side byte {}", bytes[8])));
        }
        Ok(OuterKey {
            timestamp: i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            side: side_byte(bytes[8]),
            key: Some(self.0.deserialize(topic, Some(&bytes[9..seq_at]))?),
            seq: u64::from_be_bytes(bytes[seq_at..].try_into().expect("8 bytes")),
        })
    }
}

/// Serde of a buffered left or right value: a tag byte (0 left, 1 right), then the value.
pub(crate) struct LeftOrRightSerde<V1, V2>(pub(crate) SerdeRef<V1>, pub(crate) SerdeRef<V2>);

impl<V1: 'static, V2: 'static> Serde<(Option<V1>, Option<V2>)> for LeftOrRightSerde<V1, V2> {
    fn serialize(&self, topic: &str, data: &(Option<V1>, Option<V2>)) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        let (tag, bytes) = match data {
            (Some(l), None) => (0u8, self.0.serialize(topic, l)?),
            (None, Some(r)) => (1u8, self.1.serialize(topic, r)?),
            _ => return Err(SerdeError::new("a buffered join value has exactly one side")),
        };
        let mut out = vec![tag];
        out.extend(bytes.unwrap_or_default());
        Ok(Some(out))
    }

    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> std::result::Result<(Option<V1>, Option<V2>), SerdeError> {
        match data.and_then(<[u8]>::split_first) {
            Some((0, rest)) => Ok((Some(self.0.deserialize(topic, Some(rest))?), None)),
            Some((1, rest)) => Ok((None, Some(self.1.deserialize(topic, Some(rest))?))),
            _ => Err(SerdeError::new("bad buffered join value")),
        }
    }
}

/// Store names and settings of one side of a stream-stream join.
#[derive(Debug, Clone)]
pub(crate) struct StreamJoinSpec {
    pub(crate) this_store: String,
    pub(crate) other_store: String,
    /// The buffer of unmatched records (left and outer joins).
    pub(crate) outer_store: Option<String>,
    /// The window from this side's point of view.
    pub(crate) windows: JoinWindows,
    /// 0 = left, 1 = right.
    pub(crate) side: u8,
    /// Whether unmatched records of this side are emitted (left side of left joins, both of outer).
    pub(crate) this_unmatched: bool,
    /// The times both sides of one join share, per task.
    pub(crate) trackers: TimeTrackers,
}

/// What both processors of a stream-stream join share in a task: the join's stream time (the
/// largest timestamp either side has seen) and a lower bound of the unmatched buffer's times.
#[derive(Debug)]
pub(crate) struct TimeTracker {
    stream_time: i64,
    min_time: i64,
}

/// The time trackers of a join, by task.
pub(crate) type TimeTrackers = Arc<Mutex<HashMap<TaskId, Arc<Mutex<TimeTracker>>>>>;

/// `KSTREAM-JOINTHIS` / `KSTREAM-JOINOTHER`: one side of a windowed stream-stream join, with
/// Kafka Streams' semantics: a record joins every record of the other side's buffer within the
/// window (a late record too: it is only not kept, when its own store has dropped its time);
/// an unmatched record of a left/outer side waits in the unmatched buffer until the join's
/// stream time passes `ts + window + grace`, unless its window already ended (then it is
/// emitted at once). Expired unmatched records are emitted, in buffer order (time, right
/// before left, key), before the joins of a record that advances stream time.
pub(crate) struct StreamStreamJoin<K, VT, VO, V1, V2, VOut> {
    spec: StreamJoinSpec,
    arrange: Arrange<VT, VO, V1, V2>,
    joiner: Joiner<K, V1, V2, VOut>,
    /// The same joiner taking this side's value first, so a match passes both values borrowed.
    join: Joiner<K, VT, VO, VOut>,
    this: WindowStore<K, VT>,
    other: WindowStore<K, VO>,
    /// Unmatched records waiting for their window to close (left and outer joins).
    outer: Option<OuterBuffer<K, V1, V2>>,
    tracker: Arc<Mutex<TimeTracker>>,
    task: TaskId,
    next_seq: u64,
}

impl<K, VT, VO, V1, V2, VOut> StreamStreamJoin<K, VT, VO, V1, V2, VOut>
where
    K: Clone + PartialEq + 'static,
    VT: Clone + 'static,
    VO: Clone + 'static,
    V1: Clone + 'static,
    V2: Clone + 'static,
    VOut: Clone + 'static,
{
    pub(crate) fn processor(
        spec: StreamJoinSpec,
        arrange: Arrange<VT, VO, V1, V2>,
        joiner: Joiner<K, V1, V2, VOut>,
        join: Joiner<K, VT, VO, VOut>,
    ) -> impl Processor<K, VT, K, VOut> {
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, VOut>| {
            let mut next_seq = 0;
            let mut min_time = i64::MAX;
            let outer = match &spec.outer_store {
                Some(name) => {
                    let outer: OuterBuffer<K, V1, V2> = ctx.key_value_store(name)?;
                    for entry in outer.all()? {
                        let key = entry?.0;
                        next_seq = next_seq.max(key.seq + 1);
                        min_time = min_time.min(key.timestamp);
                    }
                    Some(outer)
                }
                None => None,
            };
            let task = ctx.task_id();
            let tracker = spec
                .trackers
                .lock()
                .expect("join time trackers")
                .entry(task)
                .or_insert_with(|| Arc::new(Mutex::new(TimeTracker { stream_time: i64::MIN, min_time })))
                .clone();
            Ok(StreamStreamJoin {
                this: ctx.window_store(&spec.this_store)?,
                other: ctx.window_store(&spec.other_store)?,
                spec: spec.clone(),
                arrange,
                joiner: joiner.clone(),
                join: join.clone(),
                outer,
                tracker,
                task,
                next_seq,
            })
        })
    }
}

impl<K, VT, VO, V1, V2, VOut> StreamStreamJoin<K, VT, VO, V1, V2, VOut>
where
    K: Clone + PartialEq + 'static,
    VT: Clone + 'static,
    VO: Clone + 'static,
    V1: Clone + 'static,
    V2: Clone + 'static,
    VOut: Clone + 'static,
{
    /// Forgets the buffered unmatched records of the other side at `timestamp` for `key`.
    fn matched(&self, key: &K, timestamp: i64) -> Result<()> {
        let Some(outer) = &self.outer else { return Ok(()) };
        let side = 1 - self.spec.side;
        let first = OuterKey { timestamp, side, key: Some(key.clone()), seq: 0 };
        let last = OuterKey { timestamp, side, key: Some(key.clone()), seq: u64::MAX };
        for entry in outer.range(&first, &last)? {
            let (k, _) = entry?;
            if k.key.as_ref() == Some(key) {
                outer.delete(&k)?;
            }
        }
        Ok(())
    }

    /// Emits buffered unmatched records whose join window has closed, in buffer order.
    fn emit_closed(&self, ctx: &mut ProcessorContext<'_, K, VOut>, record: &Record<K, VT>) -> Result<()> {
        let Some(outer) = &self.outer else { return Ok(()) };
        let w = self.spec.windows;
        let mut tracker = self.tracker.lock().expect("join time tracker");
        let stream_time = tracker.stream_time;
        // Nothing can be due yet (the bound is Kafka Streams' own, with this side's window).
        if tracker.min_time.saturating_add(w.after_ms).saturating_add(w.grace_ms) >= stream_time {
            return Ok(());
        }
        // Left records wait for the original window's `after`, right ones for its `before`.
        let (left_wait, right_wait) = if self.spec.side == 0 { (w.after_ms, w.before_ms) } else { (w.before_ms, w.after_ms) };
        tracker.min_time = i64::MAX;
        // Kafka Streams' scan: skip records still waiting, and stop once one of each side waits
        // (the bound then is the time of the record it stopped at).
        let (mut left_waits, mut right_waits) = (false, false);
        for entry in outer.all()? {
            let (k, (left, right)) = entry?;
            tracker.min_time = k.timestamp;
            if left_waits && right_waits {
                break;
            }
            let wait = if k.side == 0 { left_wait } else { right_wait };
            if k.timestamp.saturating_add(wait).saturating_add(w.grace_ms) >= stream_time {
                if k.side == 0 {
                    left_waits = true;
                } else {
                    right_waits = true;
                }
                continue;
            }
            outer.delete(&k)?;
            let key = k.key.expect("stored keys are present");
            let value = (self.joiner)(&key, left.as_ref(), right.as_ref());
            ctx.forward(Record { key, value, timestamp: k.timestamp, headers: record.headers.clone() })?;
        }
        Ok(())
    }
}

impl<K, VT, VO, V1, V2, VOut> Processor<K, VT, K, VOut> for StreamStreamJoin<K, VT, VO, V1, V2, VOut>
where
    K: Clone + PartialEq + 'static,
    VT: Clone + 'static,
    VO: Clone + 'static,
    V1: Clone + 'static,
    V2: Clone + 'static,
    VOut: Clone + 'static,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>, record: Record<K, VT>) -> Result<()> {
        let w = self.spec.windows;
        let t = record.timestamp;
        // This side's store keeps the record unless its time is already out of retention.
        self.this.put(&record.key, Some(&record.value), t)?;
        let stream_time = {
            let mut tracker = self.tracker.lock().expect("join time tracker");
            tracker.stream_time = tracker.stream_time.max(t);
            tracker.stream_time
        };
        if t == stream_time {
            self.emit_closed(ctx, &record)?;
        }
        let (from, to) = ((t - w.before_ms).max(0), (t + w.after_ms).max(0));
        let mut matched = false;
        for entry in self.other.fetch_range(&record.key, from, to)? {
            let (other_ts, other) = entry?;
            matched = true;
            self.matched(&record.key, other_ts)?;
            let value = (self.join)(&record.key, Some(&record.value), Some(&other));
            ctx.forward(Record { key: record.key.clone(), value, timestamp: t.max(other_ts), headers: record.headers.clone() })?;
        }
        if matched || !self.spec.this_unmatched {
            return Ok(());
        }
        if to < stream_time {
            // Its window has ended: no record still to come can join it.
            let value = (self.join)(&record.key, Some(&record.value), None);
            return ctx.forward(record.with_value(value));
        }
        {
            let mut tracker = self.tracker.lock().expect("join time tracker");
            tracker.min_time = tracker.min_time.min(t);
        }
        let outer = self.outer.as_ref().expect("left and outer joins have a buffer");
        let key = OuterKey { timestamp: t, side: self.spec.side, key: Some(record.key.clone()), seq: self.next_seq };
        self.next_seq += 1;
        outer.put(&key, &(self.arrange)(Some(record.value), None))
    }

    fn close(&mut self) -> Result<()> {
        self.spec.trackers.lock().expect("join time trackers").remove(&self.task);
        Ok(())
    }
}

/// `KSTREAM-LEFTJOIN` / `KSTREAM-JOIN` with a table: each stream record looks up the table's
/// current value for its key; the output keeps the stream record's timestamp.
pub(crate) struct StreamTableJoin<K, V1, V2, VOut> {
    left: bool,
    joiner: Joiner<K, V1, V2, VOut>,
    table: TableLookup<K, V2>,
    buffer: Option<GraceBuffer<K, V1>>,
}

/// The buffer, grace (ms) and serdes of a stream-table join with a grace period.
pub(crate) type GraceSpec<K, V> = (String, i64, (SerdeRef<K>, SerdeRef<V>));

/// Stream records waiting out a stream-table join's grace period (Kafka Streams' time-ordered
/// buffer): in a change-logged store keyed by timestamp, key and a sequence number, so they
/// leave in timestamp order, then key bytes, then arrival, and survive a restart.
struct GraceBuffer<K, V> {
    store: KeyValueStore<Vec<u8>, Vec<u8>>,
    name: String,
    grace_ms: i64,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    /// The largest timestamp seen (after a restart: the largest buffered).
    stream_time: i64,
    seq: u32,
}

impl<K: 'static, V: 'static> GraceBuffer<K, V> {
    fn open(store: KeyValueStore<Vec<u8>, Vec<u8>>, spec: &GraceSpec<K, V>) -> Result<Self> {
        let (name, grace_ms, (key_serde, value_serde)) = spec.clone();
        let newest = store.reverse_all()?.next().transpose()?;
        let stream_time = newest.map_or(-1, |(key, _)| buffer_time(&key));
        Ok(GraceBuffer { store, name, grace_ms, key_serde, value_serde, stream_time, seq: 0 })
    }

    fn serde_error(&self, e: SerdeError) -> StreamsError {
        StreamsError::serde(format!("store `{}`", self.name), e)
    }

    /// Buffers `record` unless it is already older than stream time minus the grace period
    /// (then it is handed back, to be joined at once).
    fn put(&mut self, record: Record<K, V>) -> Result<Option<Record<K, V>>> {
        self.stream_time = self.stream_time.max(record.timestamp);
        if self.stream_time - self.grace_ms > record.timestamp {
            return Ok(Some(record));
        }
        let key = self.key_serde.serialize(&self.name, &record.key).map_err(|e| self.serde_error(e))?.unwrap_or_default();
        let value = self.value_serde.serialize(&self.name, &record.value).map_err(|e| self.serde_error(e))?.unwrap_or_default();
        self.seq = self.seq.wrapping_add(1) & 0x7fff_ffff;
        let mut slot = Vec::with_capacity(12 + key.len());
        slot.extend_from_slice(&((record.timestamp as u64) ^ (1 << 63)).to_be_bytes());
        slot.extend_from_slice(&key);
        slot.extend_from_slice(&self.seq.to_be_bytes());
        self.store.put(&slot, &encode_entry(key.len(), &value, &record.headers))?;
        Ok(None)
    }

    /// Removes and returns the records whose time is at most stream time minus the grace period.
    fn evict(&mut self) -> Result<Vec<Record<K, V>>> {
        let due = self.stream_time - self.grace_ms;
        let mut out = Vec::new();
        let mut slots = Vec::new();
        for entry in self.store.all()? {
            let (slot, entry) = entry?;
            let timestamp = buffer_time(&slot);
            if timestamp > due {
                break;
            }
            let (key_len, value, headers) = decode_entry(&entry).ok_or_else(|| StreamsError::store(&self.name, "corrupt buffer entry"))?;
            let key_bytes = &slot[8..8 + key_len];
            let key = self.key_serde.deserialize(&self.name, Some(key_bytes)).map_err(|e| self.serde_error(e))?;
            let value = self.value_serde.deserialize(&self.name, Some(value)).map_err(|e| self.serde_error(e))?;
            out.push(Record { key, value, timestamp, headers });
            slots.push(slot);
        }
        for slot in slots {
            self.store.delete(&slot)?;
        }
        Ok(out)
    }
}

/// The timestamp at the front of a buffer slot.
fn buffer_time(slot: &[u8]) -> i64 {
    let bytes: [u8; 8] = slot.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]);
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// A buffered record: the key's length (the key is in the slot), the headers, then the value.
fn encode_entry(key_len: usize, value: &[u8], headers: &Headers) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&(key_len as u32).to_be_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        match value {
            Some(v) => {
                out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    out.extend_from_slice(value);
    out
}

fn decode_entry(bytes: &[u8]) -> Option<(usize, &[u8], Headers)> {
    let mut at = 0;
    let int = |at: &mut usize| -> Option<i32> {
        let v = i32::from_be_bytes(bytes.get(*at..*at + 4)?.try_into().ok()?);
        *at += 4;
        Some(v)
    };
    let key_len = int(&mut at)? as usize;
    let count = int(&mut at)?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let len = int(&mut at)? as usize;
        let name = String::from_utf8(bytes.get(at..at + len)?.to_vec()).ok()?;
        at += len;
        let value = match int(&mut at)? {
            -1 => None,
            len => {
                let v = bytes.get(at..at + len as usize)?.to_vec();
                at += len as usize;
                Some(v)
            }
        };
        headers.push((name, value));
    }
    Some((key_len, bytes.get(at..)?, headers))
}

/// How a stream-table join reads the table: its current row, or (a versioned table) the row as
/// of the stream record's timestamp (KIP-914).
enum TableLookup<K, V> {
    Latest(TimestampedKeyValueStore<K, V>),
    AsOf(VersionedKeyValueStore<K, V>),
}

impl<K: 'static, V: 'static> TableLookup<K, V> {
    fn get(&self, key: &K, timestamp: i64) -> Result<Option<V>> {
        Ok(match self {
            TableLookup::Latest(store) => store.get(key)?.map(|v| v.value),
            TableLookup::AsOf(store) => store.get_as_of(key, timestamp)?.map(|v| v.value),
        })
    }
}

impl<K, V1, V2, VOut> StreamTableJoin<K, V1, V2, VOut>
where
    K: Clone + 'static,
    V1: 'static,
    V2: Clone + 'static,
    VOut: Clone + 'static,
{
    /// A join with the table in `table_store`; `versioned` if that is a versioned store, and
    /// with a grace period, its buffer.
    pub(crate) fn processor(
        table_store: &str,
        versioned: bool,
        buffer: Option<GraceSpec<K, V1>>,
        left: bool,
        joiner: Joiner<K, V1, V2, VOut>,
    ) -> impl Processor<K, V1, K, VOut> {
        let table_store = table_store.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, VOut>| {
            let table = match versioned {
                true => TableLookup::AsOf(ctx.versioned_key_value_store(&table_store)?),
                false => TableLookup::Latest(ctx.key_value_store(&table_store)?),
            };
            let buffer = match &buffer {
                Some(spec) => Some(GraceBuffer::open(ctx.key_value_store(&spec.0)?, spec)?),
                None => None,
            };
            Ok(StreamTableJoin { left, joiner: joiner.clone(), table, buffer })
        })
    }

    fn join(&self, ctx: &mut ProcessorContext<'_, K, VOut>, record: Record<K, V1>) -> Result<()> {
        let other = self.table.get(&record.key, record.timestamp)?;
        if other.is_none() && !self.left {
            return Ok(());
        }
        let value = (self.joiner)(&record.key, Some(&record.value), other.as_ref());
        ctx.forward(record.with_value(value))
    }
}

impl<K, V1, V2, VOut> Processor<K, V1, K, VOut> for StreamTableJoin<K, V1, V2, VOut>
where
    K: Clone + 'static,
    V1: 'static,
    V2: Clone + 'static,
    VOut: Clone + 'static,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>, record: Record<K, V1>) -> Result<()> {
        let Some(buffer) = &mut self.buffer else { return self.join(ctx, record) };
        let late = buffer.put(record)?;
        let due = buffer.evict()?;
        if let Some(record) = late {
            self.join(ctx, record)?;
        }
        for record in due {
            self.join(ctx, record)?;
        }
        Ok(())
    }
}

/// `KSTREAM-JOIN` with a global table: looks up the key `key_selector` derives from each record.
pub(crate) struct StreamGlobalJoin<K, V1, GK, GV, VOut> {
    key_selector: KeySelector<K, V1, GK>,
    left: bool,
    joiner: Joiner<K, V1, GV, VOut>,
    table: GlobalKeyValueStore<GK, GV>,
}

impl<K, V1, GK, GV, VOut> StreamGlobalJoin<K, V1, GK, GV, VOut>
where
    K: Clone + 'static,
    V1: 'static,
    GK: 'static,
    GV: 'static,
    VOut: Clone + 'static,
{
    pub(crate) fn processor(
        store: &str,
        serdes: (SerdeRef<GK>, SerdeRef<GV>),
        key_selector: KeySelector<K, V1, GK>,
        left: bool,
        joiner: Joiner<K, V1, GV, VOut>,
    ) -> impl Processor<K, V1, K, VOut> {
        let store = store.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, VOut>| {
            let table = ctx.global_store(&store, serdes.0.clone(), serdes.1.clone())?;
            Ok(StreamGlobalJoin { key_selector: key_selector.clone(), left, joiner: joiner.clone(), table })
        })
    }
}

impl<K, V1, GK, GV, VOut> Processor<K, V1, K, VOut> for StreamGlobalJoin<K, V1, GK, GV, VOut>
where
    K: Clone + 'static,
    GK: 'static,
    GV: 'static,
    VOut: Clone + 'static,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>, record: Record<K, V1>) -> Result<()> {
        let key = (self.key_selector)(&record.key, &record.value);
        let other = self.table.get(&key)?;
        if other.is_none() && !self.left {
            return Ok(());
        }
        let value = (self.joiner)(&record.key, Some(&record.value), other.as_ref());
        ctx.forward(record.with_value(value))
    }
}

/// One side of a table-table join: on each change of this table, joins the old and the new
/// value with the other table's current value and forwards the change of the result.
pub(crate) struct TableTableJoin<K, VT, VO, V1, V2, VOut> {
    arrange: Arrange<VT, VO, V1, V2>,
    /// Whether a result exists for (left present?, right present?).
    emits: fn(bool, bool) -> bool,
    /// Whether this side is a versioned table, whose deletes of absent rows reach the join
    /// (a cached table's never do) and pass on while the other side has a row, as in Kafka Streams.
    versioned: bool,
    joiner: Joiner<K, V1, V2, VOut>,
    other: TimestampedKeyValueStore<K, VO>,
}

impl<K, VT, VO, V1, V2, VOut> TableTableJoin<K, VT, VO, V1, V2, VOut>
where
    K: Clone + 'static,
    VT: Clone + 'static,
    VO: Clone + 'static,
    V1: 'static,
    V2: 'static,
    VOut: Clone + 'static,
{
    pub(crate) fn processor(
        other_store: &str,
        arrange: Arrange<VT, VO, V1, V2>,
        emits: fn(bool, bool) -> bool,
        versioned: bool,
        joiner: Joiner<K, V1, V2, VOut>,
    ) -> impl Processor<K, Change<VT>, K, Change<VOut>> {
        let other_store = other_store.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Change<VOut>>| {
            Ok(TableTableJoin { arrange, emits, versioned, joiner: joiner.clone(), other: ctx.key_value_store(&other_store)? })
        })
    }
}

impl<K, VT, VO, V1, V2, VOut> Processor<K, Change<VT>, K, Change<VOut>> for TableTableJoin<K, VT, VO, V1, V2, VOut>
where
    K: Clone + 'static,
    VT: Clone + 'static,
    VO: Clone + 'static,
    V1: 'static,
    V2: 'static,
    VOut: Clone + 'static,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VOut>>, record: Record<K, Change<VT>>) -> Result<()> {
        if !record.value.is_latest {
            return Ok(()); // an out-of-order update of a versioned table (KIP-914)
        }
        if record.value.is_noop() && !self.versioned {
            return Ok(()); // the delete of an absent row changes no result
        }
        let other = self.other.get(&record.key)?;
        let timestamp = other.as_ref().map_or(record.timestamp, |o| o.timestamp.max(record.timestamp));
        let other = other.map(|o| o.value);
        let result = |this: Option<VT>| {
            let (left, right) = (self.arrange)(this, other.clone());
            (self.emits)(left.is_some(), right.is_some()).then(|| (self.joiner)(&record.key, left.as_ref(), right.as_ref()))
        };
        let change = Change::new(result(record.value.new_value.clone()), result(record.value.old_value.clone()));
        // No result before or after: nothing to say without the other side; with it, the
        // delete of an absent row of a versioned table passes on as an empty change.
        if change.is_noop() && !(record.value.is_noop() && other.is_some()) {
            return Ok(());
        }
        ctx.forward(Record { key: record.key, value: change, timestamp, headers: record.headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams_core::Serdes;

    #[test]
    fn outer_keys_sort_by_time_and_round_trip() {
        let serde = OuterKeySerde::<String>(Arc::new(Serdes::string()));
        let key = |ts, seq| OuterKey { timestamp: ts, side: 0, key: Some("k".to_string()), seq };
        let a = serde.serialize("t", &key(5, 9)).unwrap().unwrap();
        let b = serde.serialize("t", &key(6, 0)).unwrap().unwrap();
        assert!(a < b);
        assert_eq!(serde.deserialize("t", Some(&a)).unwrap(), key(5, 9));
        assert!(serde.deserialize("t", Some(&a[..5])).is_err());
        let values = LeftOrRightSerde::<String, i64>(Arc::new(Serdes::string()), Arc::new(Serdes::i64()));
        let bytes = values.serialize("t", &(None, Some(3))).unwrap();
        assert_eq!(values.deserialize("t", bytes.as_deref()).unwrap(), (None, Some(3)));
        assert!(values.serialize("t", &(None, None)).is_err());
    }
}

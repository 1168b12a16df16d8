//! KTable processors: source, filter, map-values, process-values, to-stream, group-by selection, and the
//! forwarding of materialized updates through the record cache.

use std::marker::PhantomData;

use streams_core::internals::{CacheFlush, CachedStateStore, ValueCapture};
use streams_core::state::VersionedKeyValueStore;
use streams_core::{
    FixedKeyProcessor, FixedKeyRecord, Processor, ProcessorContext, Punctuation, Record, Result, TimestampedKeyValueStore,
    ValueAndTimestamp,
};

use super::Stateful;
use crate::change::Change;

/// Writes KTable updates to a timestamped store and forwards `Change`s: at once without a
/// cache; with one, the store's flush listener forwards them when the cache writes them down
/// (eviction or commit).
pub(crate) struct TableForwarder<K, V> {
    store: TimestampedKeyValueStore<K, V>,
    caching: bool,
    /// Deletes of absent rows are dropped (by the cache, in Kafka Streams).
    drop_noop_deletes: bool,
}

impl<K: Clone + 'static, V: Clone + 'static> TableForwarder<K, V> {
    /// Passes every delete of an absent row on.
    pub(crate) fn init(ctx: &mut ProcessorContext<'_, K, Change<V>>, store: &str) -> Result<Self> {
        Self::init_with(ctx, store, false)
    }

    /// As `init`; with `cache_drops_noop_deletes`, a cached store drops deletes of absent rows
    /// as Kafka Streams' cache does where it applies: an aggregation's, and a table source's
    /// (or table processor's) once a downstream operator asked for old values.
    pub(crate) fn init_with(ctx: &mut ProcessorContext<'_, K, Change<V>>, store: &str, cache_drops_noop_deletes: bool) -> Result<Self> {
        let store: TimestampedKeyValueStore<K, V> = ctx.key_value_store(store)?;
        let caching = store.set_flush_listener(ctx, |ctx, flushed| forward_flush(ctx, timestamped(flushed)))?;
        Ok(TableForwarder { store, caching, drop_noop_deletes: caching && cache_drops_noop_deletes })
    }

    pub(crate) fn get(&self, key: &K) -> Result<Option<ValueAndTimestamp<V>>> {
        self.store.get(key)
    }

    /// Stores `new_value` (`None` deletes) and forwards the change from `old_value`, unless
    /// the cache will; a delete of an absent row is forwarded at once.
    pub(crate) fn update(
        &self,
        ctx: &mut ProcessorContext<'_, K, Change<V>>,
        record: Record<K, ()>,
        new_value: Option<V>,
        old_value: Option<V>,
    ) -> Result<()> {
        if new_value.is_none() && old_value.is_none() {
            // Deleting an absent row changes nothing, but Kafka Streams passes the tombstone on
            // unless its cache drops it.
            if self.drop_noop_deletes {
                return Ok(());
            }
            return ctx.forward(record.with_value(Change::new(None, None)));
        }
        match &new_value {
            Some(v) => self.store.put(&record.key, &ValueAndTimestamp { value: v.clone(), timestamp: record.timestamp })?,
            None => {
                self.store.delete(&record.key)?;
            }
        }
        if self.caching {
            return Ok(());
        }
        ctx.forward(record.with_value(Change::new(new_value, old_value)))
    }
}

/// Forwards an entry a store's cache wrote down as a table change.
pub(crate) fn forward_flush<K: Clone, V: Clone>(
    ctx: &mut ProcessorContext<'_, K, Change<V>>,
    entry: CacheFlush<K, V>,
) -> Result<()> {
    ctx.forward(Record::new(entry.key, Change::new(entry.new_value, entry.old_value), entry.timestamp))
}

/// A flushed entry of a timestamped store, without the timestamps in its values. It carries
/// the new value's own timestamp (an aggregate's is the latest of its inputs', not that of the
/// record that last wrote the entry); a delete carries the deleting record's.
pub(crate) fn timestamped<K, V>(f: CacheFlush<K, ValueAndTimestamp<V>>) -> CacheFlush<K, V> {
    CacheFlush {
        timestamp: f.new_value.as_ref().map_or(f.timestamp, |v| v.timestamp),
        key: f.key,
        new_value: f.new_value.map(|v| v.value),
        old_value: f.old_value.map(|v| v.value),
    }
}

/// `KTABLE-SOURCE` (and `KSTREAM-TOTABLE`): materializes a changelog stream; `None` values delete.
pub(crate) struct TableSource<K, V, VIn> {
    forwarder: TableForwarder<K, V>,
    /// The new row a record's value stands for.
    row: fn(VIn) -> Option<V>,
}

impl<K: Clone + 'static, V: Clone + 'static> TableSource<K, V, Option<V>> {
    /// Over nullable values: `None` deletes. `send_old`: downstream operators asked for old values.
    pub(crate) fn processor(store_name: &str, send_old: bool) -> impl Processor<K, Option<V>, K, Change<V>> {
        Self::with_rows(store_name, |v| v, send_old)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> TableSource<K, V, V> {
    /// Over values: each upserts its key.
    pub(crate) fn upserts(store_name: &str, send_old: bool) -> impl Processor<K, V, K, Change<V>> {
        Self::with_rows(store_name, Some, send_old)
    }
}

impl<K: Clone + 'static, V: Clone + 'static, VIn: Clone + 'static> TableSource<K, V, VIn> {
    fn with_rows(store_name: &str, row: fn(VIn) -> Option<V>, send_old: bool) -> impl Processor<K, VIn, K, Change<V>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Change<V>>| {
            Ok(TableSource { forwarder: TableForwarder::init_with(ctx, &store_name, send_old)?, row })
        })
    }
}

impl<K: Clone + 'static, V: Clone + 'static, VIn> Processor<K, VIn, K, Change<V>> for TableSource<K, V, VIn> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>, record: Record<K, VIn>) -> Result<()> {
        let forwarder = &self.forwarder;
        let old = forwarder.get(&record.key)?.map(|v| v.value);
        let Record { key, value, timestamp, headers } = record;
        forwarder.update(ctx, Record { key, value: (), timestamp, headers }, (self.row)(value), old)
    }
}

/// `KTABLE-SOURCE` over a versioned store: each record is a version of its key at its
/// timestamp. A version older than the latest (out of order) is stored and passed on marked
/// not latest; one older than the history retention is dropped (Kafka Streams' rules).
pub(crate) struct VersionedTableSource<K, V> {
    store: VersionedKeyValueStore<K, V>,
}

impl<K: Clone + 'static, V: Clone + 'static> VersionedTableSource<K, V> {
    pub(crate) fn processor(store_name: &str) -> impl Processor<K, Option<V>, K, Change<V>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Change<V>>| {
            Ok(VersionedTableSource { store: ctx.versioned_key_value_store(&store_name)? })
        })
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Option<V>, K, Change<V>> for VersionedTableSource<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>, record: Record<K, Option<V>>) -> Result<()> {
        let old_value = self.store.get(&record.key)?.map(|r| r.value);
        let put = self.store.put(&record.key, record.value.as_ref(), record.timestamp)?;
        if put == VersionedKeyValueStore::<K, V>::PUT_RETURN_CODE_NOT_PUT {
            return Ok(());
        }
        let is_latest = put == VersionedKeyValueStore::<K, V>::PUT_RETURN_CODE_VALID_TO_UNDEFINED;
        let new_value = record.value.clone();
        ctx.forward(record.with_value(Change { new_value, old_value, is_latest }))
    }
}

/// `KTABLE-MATERIALIZE`: writes a table's changes into a store (for joins) and passes them on.
pub(crate) struct TableMaterialize<K, V> {
    forwarder: TableForwarder<K, V>,
}

impl<K: Clone + 'static, V: Clone + 'static> TableMaterialize<K, V> {
    pub(crate) fn processor(store_name: &str) -> impl Processor<K, Change<V>, K, Change<V>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Change<V>>| {
            Ok(TableMaterialize { forwarder: TableForwarder::init(ctx, &store_name)? })
        })
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Processor<K, Change<V>, K, Change<V>> for TableMaterialize<K, V> {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V>>, record: Record<K, Change<V>>) -> Result<()> {
        // It feeds joins, which skip a versioned table's out-of-order updates (KIP-914).
        if !record.value.is_latest {
            return Ok(());
        }
        // Its parent sends old values: only a non-materialized `process_values` leaves them out,
        // and a table out of one has no value serde to materialize with.
        let Change { new_value, old_value, .. } = record.value.clone();
        self.forwarder.update(ctx, record.with_value(()), new_value, old_value)
    }
}

/// A stateless operator from `Record<K, Change<V>>` to `Change<V2>` records keyed by `K2`.
pub(crate) type ChangeMapper<K, V, K2, V2> =
    dyn Fn(&mut ProcessorContext<'_, K2, Change<V2>>, Record<K, Change<V>>) -> Result<()> + Send + Sync;

/// `KTABLE-SELECT`: re-keys table rows for `group_by`. The old row is retracted from its group
/// and the new one added to its own; when both land on one key they travel as one change.
pub(crate) fn repartition_map<K, V, K2, V2, F>(
    selector: F,
) -> Box<ChangeMapper<K, V, K2, V2>>
where
    K: 'static,
    V: 'static,
    K2: Clone + PartialEq + 'static,
    V2: Clone + 'static,
    F: Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
{
    Box::new(move |ctx, record| {
        let new = record.value.new_value.as_ref().map(|v| selector(&record.key, v));
        let old = record.value.old_value.as_ref().map(|v| selector(&record.key, v));
        let (ts, headers) = (record.timestamp, record.headers);
        let emit = |ctx: &mut ProcessorContext<'_, K2, Change<V2>>, key: K2, change: Change<V2>| {
            ctx.forward(Record { key, value: change, timestamp: ts, headers: headers.clone() })
        };
        match (new, old) {
            (Some((nk, nv)), Some((ok, ov))) if nk == ok => emit(ctx, nk, Change::new(Some(nv), Some(ov))),
            (new, old) => {
                if let Some((ok, ov)) = old {
                    emit(ctx, ok, Change::new(None, Some(ov)))?;
                }
                if let Some((nk, nv)) = new {
                    emit(ctx, nk, Change::new(Some(nv), None))?;
                }
                Ok(())
            }
        }
    })
}

/// `KTABLE-AGGREGATE` / `KTABLE-REDUCE`: folds changes into a per-key aggregate; `combine`
/// subtracts the old value and adds the new one, and may delete the row by returning `None`.
pub(crate) struct TableAggregate<K, V, VA, F> {
    combine: std::sync::Arc<F>,
    forwarder: TableForwarder<K, VA>,
    _types: PhantomData<fn(V)>,
}

impl<K, V, VA, F> TableAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, Change<V>, Option<VA>) -> Option<VA>,
{
    pub(crate) fn processor(store_name: &str, combine: std::sync::Arc<F>) -> impl Processor<K, Change<V>, K, Change<VA>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Change<VA>>| {
            let forwarder = TableForwarder::init_with(ctx, &store_name, true)?;
            Ok(TableAggregate { combine: combine.clone(), forwarder, _types: PhantomData })
        })
    }
}

impl<K, V, VA, F> Processor<K, Change<V>, K, Change<VA>> for TableAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, Change<V>, Option<VA>) -> Option<VA>,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>, record: Record<K, Change<V>>) -> Result<()> {
        if record.value.is_noop() {
            return Ok(());
        }
        let forwarder = &self.forwarder;
        let old = forwarder.get(&record.key)?;
        let timestamp = old.as_ref().map_or(record.timestamp, |o| o.timestamp.max(record.timestamp));
        let old = old.map(|o| o.value);
        let Record { key, value, headers, .. } = record;
        let new = (self.combine)(&key, value, old.clone());
        forwarder.update(ctx, Record { key, value: (), timestamp, headers }, new, old)
    }
}

/// `KTABLE-PROCESSVALUES`: a fixed-key processor over table rows (Kafka Streams' `KTable`
/// `processValues` / `transformValues`). The value it forwards last for a row's new value is
/// the new row; `None`, or nothing forwarded, deletes it.
///
/// Materialized, the old row is read from the store. Otherwise the processor runs again on
/// the old value, and only when a downstream operator asked for old values (`send_old`, set
/// while the topology was built), as Kafka Streams does.
pub(crate) struct TableProcessValues<K, V, V2> {
    capture: ValueCapture<K, Option<V>, Option<V2>>,
    store: Option<String>,
    forwarder: Option<TableForwarder<K, V2>>,
    send_old: bool,
}

impl<K: Clone + 'static, V: Clone + 'static, V2: Clone + 'static> TableProcessValues<K, V, V2> {
    pub(crate) fn new(processor: Box<dyn FixedKeyProcessor<K, Option<V>, Option<V2>>>, store: Option<String>, send_old: bool) -> Self {
        TableProcessValues { capture: ValueCapture::new(processor), store, forwarder: None, send_old }
    }

    fn apply(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V2>>, record: &Record<K, ()>, value: Option<V>) -> Result<Option<V2>> {
        let input = Record { key: record.key.clone(), value, timestamp: record.timestamp, headers: record.headers.clone() };
        Ok(self.capture.apply(ctx, FixedKeyRecord::from(input))?.flatten())
    }
}

impl<K: Clone + 'static, V: Clone + 'static, V2: Clone + 'static> Processor<K, Change<V>, K, Change<V2>> for TableProcessValues<K, V, V2> {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V2>>) -> Result<()> {
        self.capture.init(ctx)?;
        if let Some(store) = &self.store {
            self.forwarder = Some(TableForwarder::init_with(ctx, store, self.send_old)?);
        }
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V2>>, record: Record<K, Change<V>>) -> Result<()> {
        let Change { new_value, old_value, is_latest } = record.value;
        let record = Record { key: record.key, value: (), timestamp: record.timestamp, headers: record.headers };
        let new_value = self.apply(ctx, &record, new_value)?;
        if let Some(forwarder) = &self.forwarder {
            let old = forwarder.get(&record.key)?.map(|v| v.value);
            return forwarder.update(ctx, record, new_value, old);
        }
        let old_value = if self.send_old { self.apply(ctx, &record, old_value)? } else { None };
        ctx.forward(record.with_value(Change { new_value, old_value, is_latest }))
    }

    fn punctuate(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V2>>, punctuation: Punctuation) -> Result<()> {
        self.capture.punctuate(ctx, punctuation)
    }

    fn flush(&mut self, ctx: &mut ProcessorContext<'_, K, Change<V2>>) -> Result<()> {
        self.capture.flush(ctx)
    }

    fn close(&mut self) -> Result<()> {
        self.capture.close()
    }
}

//! `KTable<K, V>`: a changelog stream seen as a table of the latest value per key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use streams_core::{FixedKeyProcessorSupplier, Record, SerdeRef, Serdes};

use streams_core::state::{KeyValueStoreBuilder, Windowed};
use streams_core::{StreamsError, Stores};

use crate::builder::{require_serde, Shared};
use crate::change::ChangeSerde;
use crate::processors::suppress::{self, Buffered, BufferedSerde, BufferTime, SuppressProcessor, TieBreak};
use crate::suppress::Suppressed;
use crate::change::Change;
use crate::grouped::KGroupedTable;
use crate::kstream::KStream;
use crate::options::Grouped;
use crate::processors::stateless;
use crate::builder::table_store;
use crate::options::Materialized;
use crate::processors::table::{repartition_map, TableProcessValues};

/// A table: updates of a key replace its value; `None` deletes it.
///
/// Between nodes it flows as `Record<K, Change<V>>`, carrying the replaced value too.
pub struct KTable<K, V> {
    pub(crate) state: Shared,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) store_name: Option<String>,
    /// Set on windowed tables: when a key's window closes.
    pub(crate) windowing: Option<Windowing<K>>,
    /// Set when `store_name` is a versioned store (a source table's): its history retention, ms.
    pub(crate) versioned: Option<i64>,
    /// The upstream operators a request for old values reaches.
    pub(crate) old_values: OldValues,
}

/// Set when a downstream operator asks an upstream one for old values (Kafka Streams'
/// `enableSendingOldValues`): operators ask while the topology is built, processors read the
/// switch when their task creates them.
#[derive(Clone, Default)]
pub(crate) struct OldValuesSwitch(Arc<AtomicBool>);

impl OldValuesSwitch {
    /// Whether old values were asked for.
    pub(crate) fn is_on(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The upstream operators a request for old values reaches, through filters and mappers.
#[derive(Clone, Default)]
pub(crate) struct OldValues(Vec<OldValuesSwitch>);

impl OldValues {
    /// One operator's.
    pub(crate) fn of(switch: &OldValuesSwitch) -> OldValues {
        OldValues(vec![switch.clone()])
    }

    /// Asks every upstream operator for old values.
    pub(crate) fn request(&self) {
        for switch in &self.0 {
            switch.0.store(true, Ordering::Relaxed);
        }
    }

    /// These operators and `other`'s.
    pub(crate) fn and(&self, other: &OldValues) -> OldValues {
        OldValues(self.0.iter().chain(&other.0).cloned().collect())
    }
}

/// How a windowed table's windows close: at the key's window end plus the grace period.
pub(crate) struct Windowing<K> {
    grace_ms: i64,
    start: Arc<dyn Fn(&K) -> i64 + Send + Sync>,
    end: Arc<dyn Fn(&K) -> i64 + Send + Sync>,
}

impl<K> Clone for Windowing<K> {
    fn clone(&self) -> Self {
        Windowing { grace_ms: self.grace_ms, start: self.start.clone(), end: self.end.clone() }
    }
}

impl<K, V> std::fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KTable").field("node", &self.node).field("store", &self.store_name).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    pub(crate) fn new(
        state: Shared,
        node: String,
        key_serde: Option<SerdeRef<K>>,
        value_serde: Option<SerdeRef<V>>,
        store_name: Option<String>,
    ) -> Self {
        KTable { state, node, key_serde, value_serde, store_name, windowing: None, versioned: None, old_values: OldValues::default() }
    }

    /// The name of the store that materializes this table, if any (for interactive queries and tests).
    pub fn queryable_store_name(&self) -> Option<&str> {
        self.store_name.as_deref()
    }

    /// The name of the node this table comes out of.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    fn add<V2: Clone + 'static>(
        &self,
        prefix: &str,
        f: impl Fn(&mut streams_core::ProcessorContext<'_, K, Change<V2>>, Record<K, Change<V>>) -> streams_core::Result<()>
            + Send
            + Sync
            + 'static,
        value_serde: Option<SerdeRef<V2>>,
    ) -> KTable<K, V2> {
        let mut state = self.state.borrow_mut();
        let name = state.new_name(prefix);
        state.apply(|t| t.add_processor(&name, stateless(f), &[&self.node]).map(drop));
        drop(state);
        let mut table = KTable::new(self.state.clone(), name, self.key_serde.clone(), value_serde, None);
        table.old_values = self.old_values.clone();
        table
    }

    /// The stream of updates: each new value, or `None` for a delete.
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let mut state = self.state.borrow_mut();
        let name = state.new_name("KTABLE-TOSTREAM-");
        let supplier = stateless(|ctx, r: Record<K, Change<V>>| {
            let value = r.value.new_value;
            ctx.forward(Record { key: r.key, value, timestamp: r.timestamp, headers: r.headers })
        });
        state.apply(|t| t.add_processor(&name, supplier, &[&self.node]).map(drop));
        drop(state);
        let value_serde = self.value_serde.clone().map(|s| Arc::new(Serdes::nullable(s)) as SerdeRef<Option<V>>);
        KStream::new(self.state.clone(), name, self.key_serde.clone(), value_serde, false)
    }

    /// Keeps rows for which `predicate` holds; rows that stop matching are deleted downstream.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        self.add(
            "KTABLE-FILTER-",
            move |ctx, r: Record<K, Change<V>>| {
                let keep = |v: Option<V>| v.filter(|v| predicate(&r.key, v));
                // A row that neither matched nor matches is still a (no-op) delete downstream,
                // as in Kafka Streams; consumers that keep state ignore it.
                let change = r.value.derive(keep(r.value.new_value.clone()), keep(r.value.old_value.clone()));
                ctx.forward(r.with_value(change))
            },
            self.value_serde.clone(),
        )
    }

    /// Drops rows for which `predicate` holds.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KTable<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Maps each value.
    pub fn map_values<V2: Clone + 'static>(&self, mapper: impl Fn(V) -> V2 + Send + Sync + 'static) -> KTable<K, V2> {
        self.add(
            "KTABLE-MAPVALUES-",
            move |ctx, r: Record<K, Change<V>>| {
                let change = r.value.clone();
                let change = r.value.derive(change.new_value.map(&mapper), change.old_value.map(&mapper));
                ctx.forward(r.with_value(change))
            },
            None,
        )
    }

    /// Runs a fixed-key processor over the table's rows (Kafka Streams' `processValues`, which
    /// follows `transformValues`): for each update it gets the key and the new value (`None`
    /// for a delete), and the value it forwards last is the new row (`None`, or nothing
    /// forwarded, deletes it). It reaches the named stores and the record's metadata through
    /// its context; what it forwards from a punctuation goes nowhere.
    ///
    /// Where a downstream operator needs old values (`group_by`, also through filters), the
    /// processor also runs on each update's old value, right after the new one, as in Kafka
    /// Streams: a stateful processor then sees every update twice. The result has no value
    /// serde: joins and `suppress`, which store rows, take a table from
    /// [`process_values_with`](Self::process_values_with), which keeps its results in a store
    /// and reads old values from there.
    pub fn process_values<V2: Clone + 'static>(
        &self,
        supplier: impl FixedKeyProcessorSupplier<K, Option<V>, Option<V2>>,
        stores: &[&str],
    ) -> KTable<K, V2> {
        self.processed_values(supplier, None, stores)
    }

    /// As [`process_values`](Self::process_values), with the results materialized as
    /// `materialized` says (its value serde, or a store of the user's): queryable by the
    /// store's name, and the source of old values, so the processor runs once per update.
    pub fn process_values_with<V2: Clone + 'static>(
        &self,
        supplier: impl FixedKeyProcessorSupplier<K, Option<V>, Option<V2>>,
        materialized: Materialized<K, V2>,
        stores: &[&str],
    ) -> KTable<K, V2> {
        self.processed_values(supplier, Some(materialized), stores)
    }

    fn processed_values<V2: Clone + 'static>(
        &self,
        supplier: impl FixedKeyProcessorSupplier<K, Option<V>, Option<V2>>,
        materialized: Option<Materialized<K, V2>>,
        stores: &[&str],
    ) -> KTable<K, V2> {
        let (name, store) = {
            let mut state = self.state.borrow_mut();
            let name = state.new_name("KTABLE-PROCESSVALUES-");
            let store = materialized
                .as_ref()
                .map(|m| m.store_name.clone().unwrap_or_else(|| state.new_name("KTABLE-PROCESSVALUES-STATE-STORE-")));
            (name, store)
        };
        let builder = match (&materialized, &store) {
            (Some(m), Some(store)) => match table_store(&self.state, m, store, self.key_serde.clone(), None) {
                Some(builder) => Some(builder),
                None => return KTable::new(self.state.clone(), self.node.clone(), None, None, None),
            },
            _ => None,
        };
        let send_old = OldValuesSwitch::default();
        let (switch, store_name) = (send_old.clone(), store.clone());
        self.state.borrow_mut().apply(|t| {
            let processor = move || TableProcessValues::<K, V, V2>::new(supplier.get(), store_name.clone(), switch.is_on());
            t.add_processor(&name, processor, &[&self.node])?;
            if let Some(builder) = builder {
                t.add_state_store(builder, &[&name])?;
            }
            for store in stores {
                t.connect_processor_and_state_store(&name, store)?;
            }
            Ok(())
        });
        let value_serde = materialized.and_then(|m| m.value_serde);
        let mut table = KTable::new(self.state.clone(), name, self.key_serde.clone(), value_serde, store.clone());
        table.old_values = OldValues::of(&send_old);
        if store.is_none() {
            // Without a store to read them from, it asks its parent for old values too.
            table.old_values = table.old_values.and(&self.old_values);
        }
        table
    }

    /// Holds updates back and emits them later: each window's final result when it closes, or
    /// the latest update of a key after a time limit. The buffer is change-logged.
    pub fn suppress(&self, suppressed: Suppressed) -> KTable<K, V> {
        self.old_values.request();
        let waits_for_windows = suppress::waits_for_windows(&suppressed);
        let mut tie_break: Option<TieBreak<K>> = None;
        let (buffer_time, grace_ms): (BufferTime<K>, i64) = match (&self.windowing, waits_for_windows) {
            (Some(w), true) => {
                let end = w.end.clone();
                if suppress::orders_by_window_start(&suppressed) {
                    tie_break = Some(w.start.clone());
                }
                (Arc::new(move |k: &K, _| end(k)), w.grace_ms)
            }
            (None, true) => {
                self.state.borrow_mut().fail(StreamsError::Topology(format!(
                    "suppress(until_window_closes) after `{}`, which is not a windowed aggregation",
                    self.node
                )));
                return KTable::new(self.state.clone(), self.node.clone(), None, None, None);
            }
            (_, false) => (Arc::new(|_: &K, ts| ts), 0),
        };
        let name = {
            let mut state = self.state.borrow_mut();
            suppressed.name.clone().unwrap_or_else(|| state.new_name("KTABLE-SUPPRESS-"))
        };
        let store = format!("{name}-store");
        let what = format!("suppression buffer `{store}`");
        let key_serde = require_serde(&self.state, self.key_serde.clone(), &what);
        let value_serde = require_serde(&self.state, self.value_serde.clone(), &what);
        if let (Some(ks), Some(vs)) = (key_serde, value_serde) {
            let builder = KeyValueStoreBuilder::new(
                Stores::in_memory_key_value_store(&store),
                ks.clone(),
                Arc::new(BufferedSerde(ChangeSerde(vs.clone()))) as SerdeRef<Buffered<V>>,
            );
            let store_name = store.clone();
            let buffer_keys = ks.clone();
            self.state.borrow_mut().apply(|t| {
                let supplier = move || {
                    let (keys, values, time) = (buffer_keys.clone(), vs.clone(), buffer_time.clone());
                    SuppressProcessor::<K, V>::processor(&store_name, keys, values, &suppressed, time, tie_break.clone(), grace_ms)
                };
                t.add_processor(&name, supplier, &[&self.node])?;
                t.add_state_store(builder, &[&name])?;
                Ok(())
            });
        }
        let mut table = KTable::new(self.state.clone(), name, self.key_serde.clone(), self.value_serde.clone(), None);
        table.windowing = self.windowing.clone();
        table
    }

    /// Re-groups rows by a new key and value, for aggregation (always through a repartition topic).
    pub fn group_by<K2: Clone + PartialEq + 'static, V2: Clone + 'static>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2> {
        // The old row is retracted from its group.
        self.old_values.request();
        let mut state = self.state.borrow_mut();
        let name = state.new_name("KTABLE-SELECT-");
        state.apply(|t| t.add_processor(&name, stateless(repartition_map(selector)), &[&self.node]).map(drop));
        drop(state);
        KGroupedTable::new(self.state.clone(), name, grouped)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<Windowed<K>, V> {
    /// Marks the table as the result of a windowed aggregation with this grace period.
    pub(crate) fn with_window_grace(mut self, grace_ms: i64) -> Self {
        self.windowing = Some(Windowing {
            grace_ms,
            start: Arc::new(|k: &Windowed<K>| k.window.start),
            end: Arc::new(|k: &Windowed<K>| k.window.end),
        });
        self
    }
}

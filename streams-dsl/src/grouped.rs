//! Grouped streams and tables: the aggregations that build KTables.

use std::sync::Arc;

use streams_core::internals::InternalTopologyBuilder;
use streams_core::{ProcessorSupplier, SerdeRef, Serdes, StoreBuilder};

use crate::builder::{repartition, table_store, Shared};
use crate::change::{Change, ChangeSerde};
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::options::{Grouped, Materialized};
use crate::processors::aggregate::StreamAggregate;
use crate::processors::table::TableAggregate;
use crate::windowed::{SessionWindowedKStream, TimeWindowedKStream};
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows};

/// Where a grouping reads from: a node, whether it must repartition first, and its serdes.
pub(crate) struct Grouping<K, V> {
    pub(crate) state: Shared,
    node: String,
    name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    repartition_required: bool,
}

impl<K, V> Clone for Grouping<K, V> {
    fn clone(&self) -> Self {
        Grouping {
            state: self.state.clone(),
            node: self.node.clone(),
            name: self.name.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            repartition_required: self.repartition_required,
        }
    }
}

impl<K: Clone + 'static, V: Clone + 'static> Grouping<K, V> {
    /// Adds an aggregating processor and its store after the grouped records (through a
    /// repartition topic first if the key changed). Returns the processor's and the store's names.
    pub(crate) fn add_aggregate<VIn: Clone + 'static, KOut: 'static, VOut: 'static, B: StoreBuilder>(
        &self,
        prefix: &str,
        store_name: Option<String>,
        input_serde: Option<SerdeRef<VIn>>,
        store: impl FnOnce(&str) -> Option<B>,
        processor: impl FnOnce(&str) -> Box<dyn ProcessorSupplier<K, VIn, KOut, VOut>>,
    ) -> (String, String) {
        let (name, store_name) = {
            let mut state = self.state.borrow_mut();
            let name = state.new_name(prefix);
            let store = store_name.unwrap_or_else(|| state.new_name(&format!("{prefix}STATE-STORE-")));
            (name, store)
        };
        let builder = store(&store_name);
        let parent = if self.repartition_required {
            let base = self.name.clone().unwrap_or_else(|| store_name.clone());
            repartition(&self.state, &self.node, &base, self.key_serde.clone(), input_serde)
        } else {
            self.node.clone()
        };
        let supplier = processor(&store_name);
        self.state.borrow_mut().apply(|t| {
            t.add_processor_node(&name, Arc::from(supplier), &[&parent])?;
            if let Some(builder) = builder {
                t.add_state_store(builder, &[&name])?;
            }
            Ok(())
        });
        (name, store_name)
    }

    /// Adds the aggregating processor (and its store, and a repartition topic if needed).
    fn aggregate<VIn: Clone + 'static, VA: Clone + 'static>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        value_serde: Option<SerdeRef<VIn>>,
        processor: impl Fn(&str) -> Box<dyn streams_core::ProcessorSupplier<K, VIn, K, Change<VA>>>,
    ) -> KTable<K, VA> {
        let value_serde_for_store = materialized.value_serde.clone().or(default_value_serde);
        let (name, store) = self.add_aggregate(
            prefix,
            materialized.store_name.clone(),
            value_serde,
            |store| table_store(&self.state, &materialized, store, self.key_serde.clone(), value_serde_for_store.clone()),
            processor,
        );
        KTable::new(self.state.clone(), name, self.key_serde.clone(), value_serde_for_store, Some(store))
    }
}

/// A stream grouped by key, ready to aggregate into a [`KTable`].
pub struct KGroupedStream<K, V> {
    pub(crate) grouping: Grouping<K, V>,
}

impl<K, V> std::fmt::Debug for KGroupedStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedStream").field("node", &self.grouping.node).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    pub(crate) fn new(stream: &KStream<K, V>, grouped: Grouped<K, V>, repartition_required: bool) -> Self {
        KGroupedStream {
            grouping: Grouping {
                state: stream.state.clone(),
                node: stream.node.clone(),
                name: grouped.name,
                key_serde: grouped.key_serde.or(stream.key_serde.clone()),
                value_serde: grouped.value_serde.or(stream.value_serde.clone()),
                repartition_required,
            },
        }
    }

    /// A `KSTREAM-AGGREGATE`/`-REDUCE` node folding each record into its key's aggregate.
    fn stream_aggregate<VA: Clone + 'static>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        combine: impl Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
    ) -> KTable<K, VA> {
        let combine = Arc::new(combine);
        let input_serde = self.grouping.value_serde.clone();
        self.grouping.aggregate(prefix, materialized, default_value_serde, input_serde, move |store| {
            let combine = combine.clone();
            let store = store.to_string();
            Box::new(move || StreamAggregate::processor(&store, combine.clone()))
        })
    }

    /// Aggregates per key and time window (tumbling or hopping).
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream::new(self.grouping.clone(), windows)
    }

    /// Aggregates per key and sliding window.
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream::sliding(self.grouping.clone(), windows)
    }

    /// Aggregates per key and session.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream::new(self.grouping.clone(), windows)
    }

    /// Counts records per key.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let serde: SerdeRef<i64> = Arc::new(Serdes::i64());
        let combine = |_: &K, _: V, count: Option<i64>| count.unwrap_or(0) + 1;
        self.stream_aggregate("KSTREAM-AGGREGATE-", materialized, Some(serde), combine)
    }

    /// Combines the values of each key with `reducer(aggregate, value)`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let combine = move |_: &K, value: V, agg: Option<V>| match agg {
            Some(agg) => reducer(agg, value),
            None => value,
        };
        self.stream_aggregate("KSTREAM-REDUCE-", materialized, self.grouping.value_serde.clone(), combine)
    }

    /// Folds the values of each key into an aggregate, starting from `initializer()`.
    pub fn aggregate<VA: Clone + 'static>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        let combine = move |key: &K, value: V, agg: Option<VA>| aggregator(key, value, agg.unwrap_or_else(&initializer));
        self.stream_aggregate("KSTREAM-AGGREGATE-", materialized, None, combine)
    }
}

/// A table re-grouped by a new key: aggregations add new rows and subtract replaced ones.
pub struct KGroupedTable<K, V> {
    grouping: Grouping<K, V>,
}

impl<K, V> std::fmt::Debug for KGroupedTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KGroupedTable").field("node", &self.grouping.node).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedTable<K, V> {
    pub(crate) fn new(state: Shared, node: String, grouped: Grouped<K, V>) -> Self {
        KGroupedTable {
            grouping: Grouping {
                state,
                node,
                name: grouped.name,
                key_serde: grouped.key_serde,
                value_serde: grouped.value_serde,
                repartition_required: true,
            },
        }
    }

    fn change_serde(&self) -> Option<SerdeRef<Change<V>>> {
        self.grouping.value_serde.clone().map(|s| Arc::new(ChangeSerde(s)) as SerdeRef<Change<V>>)
    }

    fn table_aggregate<VA: Clone + 'static>(
        &self,
        prefix: &str,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        combine: impl Fn(&K, Change<V>, Option<VA>) -> Option<VA> + Send + Sync + 'static,
    ) -> KTable<K, VA> {
        let combine = Arc::new(combine);
        self.grouping.aggregate(prefix, materialized, default_value_serde, self.change_serde(), move |store| {
            let combine = combine.clone();
            let store = store.to_string();
            Box::new(move || TableAggregate::processor(&store, combine.clone()))
        })
    }

    /// Counts rows per key.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<K, i64> {
        let serde: SerdeRef<i64> = Arc::new(Serdes::i64());
        // Kafka Streams' rule for every table aggregation: the old row is subtracted only from
        // an aggregate that exists, the initial value is taken only to add a new row.
        self.table_aggregate("KTABLE-AGGREGATE-", materialized, Some(serde), |_, change, count| {
            let count = match (count, change.old_value) {
                (Some(count), Some(_)) => Some(count - 1),
                (count, _) => count,
            };
            match change.new_value {
                Some(_) => Some(count.unwrap_or(0) + 1),
                None => count,
            }
        })
    }

    /// Combines values with `adder(aggregate, new)` and retracts with `subtractor(aggregate, old)`.
    pub fn reduce(
        &self,
        adder: impl Fn(V, V) -> V + Send + Sync + 'static,
        subtractor: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let serde = self.grouping.value_serde.clone();
        self.table_aggregate("KTABLE-REDUCE-", materialized, serde, move |_, change, agg| {
            let agg = match (agg, change.old_value) {
                (Some(agg), Some(old)) => Some(subtractor(agg, old)),
                (agg, _) => agg,
            };
            match (agg, change.new_value) {
                (Some(agg), Some(new)) => Some(adder(agg, new)),
                (None, new) => new,
                (agg, None) => agg,
            }
        })
    }

    /// Folds rows into an aggregate per key: `adder` for new rows, `subtractor` for replaced ones.
    pub fn aggregate<VA: Clone + 'static>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        adder: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        subtractor: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        self.table_aggregate("KTABLE-AGGREGATE-", materialized, None, move |key, change, agg| {
            let agg = match (agg, change.old_value) {
                (Some(agg), Some(old)) => Some(subtractor(key, old, agg)),
                (agg, _) => agg,
            };
            match change.new_value {
                Some(new) => Some(adder(key, new, agg.unwrap_or_else(&initializer))),
                None => agg,
            }
        })
    }
}

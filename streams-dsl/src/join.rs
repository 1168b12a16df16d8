//! Joins: `KStream` with `KStream` (windowed), `KStream` with `KTable`, `KTable` with `KTable`.
//!
//! Both inputs of a join must be co-partitioned (checked when the application starts); a stream
//! whose key was changed upstream goes through a repartition topic first.

use std::sync::Arc;

use streams_core::state::KeyValueStoreBuilder;
use streams_core::{SerdeRef, Stores, TopicName};

use crate::builder::{repartition, require_serde, table_store, Shared};
use crate::change::Change;
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::options::Materialized;
use crate::processors::join::{
    as_left, as_right, Joiner, LeftOrRightSerde, OuterKeySerde, StreamJoinSpec, StreamStreamJoin, StreamTableJoin,
    TableTableJoin,
};
use crate::processors::stateless;
use crate::processors::table::TableMaterialize;
use crate::windows::JoinWindows;

/// Serdes and store settings of a stream-stream join's window stores.
pub struct StreamJoined<K, V1, V2> {
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V1>>,
    other_value_serde: Option<SerdeRef<V2>>,
    in_memory: bool,
    logging: bool,
}

impl<K, V1, V2> std::fmt::Debug for StreamJoined<K, V1, V2> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamJoined").field("in_memory", &self.in_memory).field("logging", &self.logging).finish()
    }
}

impl<K, V1, V2> Default for StreamJoined<K, V1, V2> {
    fn default() -> Self {
        StreamJoined { key_serde: None, value_serde: None, other_value_serde: None, in_memory: false, logging: true }
    }
}

impl<K, V1, V2> StreamJoined<K, V1, V2> {
    /// The streams' own serdes, RocksDB stores, change-logged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serdes for the key and both values.
    pub fn with(
        key: impl streams_core::Serde<K>,
        value: impl streams_core::Serde<V1>,
        other_value: impl streams_core::Serde<V2>,
    ) -> Self {
        StreamJoined {
            key_serde: Some(Arc::new(key)),
            value_serde: Some(Arc::new(value)),
            other_value_serde: Some(Arc::new(other_value)),
            ..Self::default()
        }
    }

    /// Keeps the join buffers in memory.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// No changelogs for the join buffers.
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    Inner,
    Left,
    Outer,
}

/// Declares that the source topics behind `nodes` must be co-partitioned.
fn copartition(state: &Shared, nodes: &[&str]) {
    let mut state = state.borrow_mut();
    state.apply(|t| {
        let mut topics: Vec<TopicName> = Vec::new();
        for node in nodes {
            topics.extend(t.source_topics_of(node)?);
        }
        t.add_copartition_group(&topics);
        Ok(())
    });
}

impl<K: Clone + PartialEq + 'static, V1: Clone + 'static> KStream<K, V1> {
    /// This stream, through a repartition topic if its key was changed upstream.
    fn repartitioned_for_join(&self, what: &str, key_serde: Option<SerdeRef<K>>, value_serde: Option<SerdeRef<V1>>) -> String {
        if !self.repartition_required {
            return self.node.clone();
        }
        let base = self.state.borrow_mut().new_name(&format!("{what}-"));
        let key_serde = key_serde.or(self.key_serde.clone());
        repartition(&self.state, &self.node, &base, key_serde, value_serde.or(self.value_serde.clone()))
    }

    fn window_join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KStream<K, V2>,
        kind: JoinKind,
        joiner: Joiner<K, V1, V2, VOut>,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VOut> {
        let key_serde = joined.key_serde.or(self.key_serde.clone()).or(other.key_serde.clone());
        let left = self.repartitioned_for_join("KSTREAM-JOINTHIS", key_serde.clone(), joined.value_serde.clone());
        let right = other.repartitioned_for_join("KSTREAM-JOINOTHER", key_serde.clone(), joined.other_value_serde.clone());
        let (this_name, other_name, merge) = {
            let mut state = self.state.borrow_mut();
            let prefix = match kind {
                JoinKind::Inner => "KSTREAM-JOIN",
                JoinKind::Left => "KSTREAM-LEFTJOIN",
                JoinKind::Outer => "KSTREAM-OUTERJOIN",
            };
            (state.new_name(&format!("{prefix}THIS-")), state.new_name(&format!("{prefix}OTHER-")), state.new_name("KSTREAM-MERGE-"))
        };
        let (this_store, other_store) = (format!("{this_name}-store"), format!("{other_name}-store"));
        let outer_store = (kind != JoinKind::Inner).then(|| format!("{this_name}-outer-store"));
        let what = format!("join `{this_name}`");
        let key_serde = require_serde(&self.state, key_serde, &what);
        let v1 = require_serde(&self.state, joined.value_serde.or(self.value_serde.clone()), &what);
        let v2 = require_serde(&self.state, joined.other_value_serde.or(other.value_serde.clone()), &what);
        let (Some(key_serde), Some(v1), Some(v2)) = (key_serde, v1, v2) else {
            return KStream::new(self.state.clone(), merge, None, None, false);
        };
        let retention = windows.size_ms() + windows.grace_ms;
        let window_store = |name: &str| {
            if joined.in_memory {
                Stores::in_memory_window_store(name, retention, windows.size_ms(), true)
            } else {
                Stores::persistent_window_store(name, retention, windows.size_ms(), true)
            }
        };
        let this_builder =
            Stores::window_store_builder(window_store(&this_store), key_serde.clone(), v1.clone()).with_logging(joined.logging);
        let other_builder =
            Stores::window_store_builder(window_store(&other_store), key_serde.clone(), v2.clone()).with_logging(joined.logging);
        let outer_builder = outer_store.as_ref().map(|name| {
            let supplier = if joined.in_memory {
                Stores::in_memory_key_value_store(name)
            } else {
                Stores::persistent_key_value_store(name)
            };
            let mut b = KeyValueStoreBuilder::new(
                supplier,
                Arc::new(OuterKeySerde(key_serde.clone())),
                Arc::new(LeftOrRightSerde(v1.clone(), v2.clone())),
            );
            if !joined.logging {
                b = b.with_logging_disabled();
            }
            b
        });
        let spec = |side: u8| StreamJoinSpec {
            this_store: if side == 0 { this_store.clone() } else { other_store.clone() },
            other_store: if side == 0 { other_store.clone() } else { this_store.clone() },
            outer_store: outer_store.clone(),
            windows: if side == 0 { windows } else { windows.reversed() },
            side,
            this_unmatched: kind == JoinKind::Outer || (kind == JoinKind::Left && side == 0),
            other_unmatched: kind == JoinKind::Outer || (kind == JoinKind::Left && side == 1),
        };
        let (left_spec, right_spec) = (spec(0), spec(1));
        let (j1, j2) = (joiner.clone(), joiner);
        let stores: Vec<&str> =
            [this_store.as_str(), other_store.as_str()].into_iter().chain(outer_store.as_deref()).collect();
        self.state.borrow_mut().apply(|t| {
            t.add_processor(
                &this_name,
                move || StreamStreamJoin::<K, V1, V2, V1, V2, VOut>::new(left_spec.clone(), as_left, j1.clone()),
                &[&left],
            )?;
            t.add_processor(
                &other_name,
                move || StreamStreamJoin::<K, V2, V1, V1, V2, VOut>::new(right_spec.clone(), as_right, j2.clone()),
                &[&right],
            )?;
            t.add_state_store(this_builder, &[])?;
            t.add_state_store(other_builder, &[])?;
            if let Some(b) = outer_builder {
                t.add_state_store(b, &[])?;
            }
            for node in [&this_name, &other_name] {
                for store in &stores {
                    t.connect_processor_and_state_store(node, store)?;
                }
            }
            t.add_processor(&merge, stateless(|ctx, r: streams_core::Record<K, VOut>| ctx.forward(r)), &[&this_name, &other_name])?;
            Ok(())
        });
        copartition(&self.state, &[&this_name, &other_name]);
        KStream::new(self.state.clone(), merge, Some(key_serde), None, false)
    }

    /// Inner join with another stream: each pair of records with one key at most the window
    /// apart gives `joiner(left, right)`, at the later of their timestamps.
    pub fn join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V1, &V2) -> VOut + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VOut> {
        let joiner: Joiner<K, V1, V2, VOut> =
            Arc::new(move |_, l, r| joiner(l.expect("inner join has a left value"), r.expect("and a right value")));
        self.window_join(other, JoinKind::Inner, joiner, windows, joined)
    }

    /// Left join with another stream: as [`join`](Self::join), and a left record that joined
    /// nothing gives `joiner(left, None)` once its window has closed.
    pub fn left_join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V1, Option<&V2>) -> VOut + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VOut> {
        let joiner: Joiner<K, V1, V2, VOut> = Arc::new(move |_, l, r| joiner(l.expect("left join has a left value"), r));
        self.window_join(other, JoinKind::Left, joiner, windows, joined)
    }

    /// Outer join with another stream: as [`left_join`](Self::left_join), for both sides.
    pub fn outer_join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(Option<&V1>, Option<&V2>) -> VOut + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VOut> {
        let joiner: Joiner<K, V1, V2, VOut> = Arc::new(move |_, l, r| joiner(l, r));
        self.window_join(other, JoinKind::Outer, joiner, windows, joined)
    }

    fn table_join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        left: bool,
        joiner: Joiner<K, V1, V2, VOut>,
    ) -> KStream<K, VOut> {
        let stream = self.repartitioned_for_join("KSTREAM-JOIN", table.key_serde.clone(), None);
        let Some((table_node, store)) = table.materialized() else {
            return KStream::new(self.state.clone(), stream, None, None, false);
        };
        let name = self.state.borrow_mut().new_name(if left { "KSTREAM-LEFTJOIN-" } else { "KSTREAM-JOIN-" });
        let store_name = store.clone();
        self.state.borrow_mut().apply(|t| {
            let supplier = move || StreamTableJoin::new(&store_name, left, joiner.clone());
            t.add_processor(&name, supplier, &[&stream])?;
            t.connect_processor_and_state_store(&name, &store)?;
            Ok(())
        });
        copartition(&self.state, &[&stream, &table_node]);
        KStream::new(self.state.clone(), name, self.key_serde.clone(), None, false)
    }

    /// Joins each record with the table's current value for its key; records without one are
    /// dropped. The output keeps the stream record's timestamp.
    pub fn join_table<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&V1, &V2) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        self.table_join(table, false, Arc::new(move |_, l, r| joiner(l.expect("stream value"), r.expect("inner join"))))
    }

    /// As [`join_table`](Self::join_table), but records without a table value give
    /// `joiner(value, None)`.
    pub fn left_join_table<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&V1, Option<&V2>) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        self.table_join(table, true, Arc::new(move |_, l, r| joiner(l.expect("stream value"), r)))
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// The node whose output is this table and the store that holds its current values,
    /// materializing the table if it is not.
    pub(crate) fn materialized(&self) -> Option<(String, String)> {
        if let Some(store) = &self.store_name {
            return Some((self.node.clone(), store.clone()));
        }
        let (name, store) = {
            let mut state = self.state.borrow_mut();
            let name = state.new_name("KTABLE-MATERIALIZE-");
            let store = format!("{name}-store");
            (name, store)
        };
        let materialized = Materialized::<K, V>::new().with_caching_disabled();
        let builder = table_store(&self.state, &materialized, &store, self.key_serde.clone(), self.value_serde.clone())?;
        let store_name = store.clone();
        self.state.borrow_mut().apply(|t| {
            t.add_processor(&name, move || TableMaterialize::<K, V>::new(&store_name), &[&self.node])?;
            t.add_state_store(builder, &[&name])?;
            Ok(())
        });
        Some((name, store))
    }

    fn table_table_join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KTable<K, V2>,
        kind: JoinKind,
        joiner: Joiner<K, V, V2, VOut>,
    ) -> KTable<K, VOut> {
        let (Some((this_node, this_store)), Some((other_node, other_store))) = (self.materialized(), other.materialized())
        else {
            return KTable::new(self.state.clone(), self.node.clone(), None, None, None);
        };
        let (this_name, other_name, merge) = {
            let mut state = self.state.borrow_mut();
            let prefix = match kind {
                JoinKind::Inner => "KTABLE-JOIN",
                JoinKind::Left => "KTABLE-LEFTJOIN",
                JoinKind::Outer => "KTABLE-OUTERJOIN",
            };
            (state.new_name(&format!("{prefix}THIS-")), state.new_name(&format!("{prefix}OTHER-")), state.new_name("KTABLE-MERGE-"))
        };
        let emits: fn(bool, bool) -> bool = match kind {
            JoinKind::Inner => |l, r| l && r,
            JoinKind::Left => |l, _| l,
            JoinKind::Outer => |l, r| l || r,
        };
        let (j1, j2) = (joiner.clone(), joiner);
        let (s1, s2) = (other_store.clone(), this_store.clone());
        self.state.borrow_mut().apply(|t| {
            t.add_processor(
                &this_name,
                move || TableTableJoin::<K, V, V2, V, V2, VOut>::new(&s1, as_left, emits, j1.clone()),
                &[&this_node],
            )?;
            t.add_processor(
                &other_name,
                move || TableTableJoin::<K, V2, V, V, V2, VOut>::new(&s2, as_right, emits, j2.clone()),
                &[&other_node],
            )?;
            t.connect_processor_and_state_store(&this_name, &other_store)?;
            t.connect_processor_and_state_store(&other_name, &this_store)?;
            t.add_processor(&merge, stateless(|ctx, r: streams_core::Record<K, Change<VOut>>| ctx.forward(r)), &[
                &this_name,
                &other_name,
            ])?;
            Ok(())
        });
        copartition(&self.state, &[&this_name, &other_name]);
        KTable::new(self.state.clone(), merge, self.key_serde.clone(), None, None)
    }

    /// Inner join with another table: a row exists while both tables have the key.
    pub fn join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, &V2) -> VOut + Send + Sync + 'static,
    ) -> KTable<K, VOut> {
        let joiner: Joiner<K, V, V2, VOut> = Arc::new(move |_, l, r| joiner(l.expect("left"), r.expect("right")));
        self.table_table_join(other, JoinKind::Inner, joiner)
    }

    /// Left join with another table: a row exists while this table has the key.
    pub fn left_join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VOut + Send + Sync + 'static,
    ) -> KTable<K, VOut> {
        let joiner: Joiner<K, V, V2, VOut> = Arc::new(move |_, l, r| joiner(l.expect("left"), r));
        self.table_table_join(other, JoinKind::Left, joiner)
    }

    /// Outer join with another table: a row exists while either table has the key.
    pub fn outer_join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VOut + Send + Sync + 'static,
    ) -> KTable<K, VOut> {
        let joiner: Joiner<K, V, V2, VOut> = Arc::new(move |_, l, r| joiner(l, r));
        self.table_table_join(other, JoinKind::Outer, joiner)
    }
}


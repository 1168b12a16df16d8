//! Joins: `KStream` with `KStream` (windowed), `KStream` with `KTable`, `KTable` with `KTable`.
//!
//! Both inputs of a join must be co-partitioned (checked when the application starts); a stream
//! whose key was changed upstream goes through a repartition topic first.

use std::sync::Arc;

use streams_core::state::KeyValueStoreBuilder;
use streams_core::internals::{InternalTopologyBuilder, TopicName};
use streams_core::{SerdeRef, Serdes, Stores, StreamsError};

use crate::builder::{repartition, require_serde, table_store, GlobalKTable, Shared};
use crate::change::Change;
use crate::kstream::KStream;
use crate::ktable::KTable;
use crate::options::{Joined, Materialized};
use crate::processors::fk_join::{
    CombinedKey, CombinedKeySerde, FkJoiner, Response, ResponseJoin, ResponseSerde, RightChange, Subscription,
    SubscriptionReceive, SubscriptionSend, SubscriptionSerde,
};
use crate::processors::join::{
    as_left, as_right, Joiner, KeySelector, LeftOrRightSerde, OuterKeySerde, StreamGlobalJoin, StreamJoinSpec, StreamStreamJoin,
    StreamTableJoin, TableTableJoin, TimeTrackers,
};
use crate::processors::stateless;
use crate::processors::table::TableMaterialize;
use crate::windows::{millis, JoinWindows};

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
    state.apply(|t| t.add_copartition_group(nodes).map(|_| ()));
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
                Stores::in_memory_window_store(name, millis(retention), millis(windows.size_ms()), true)
            } else {
                Stores::persistent_window_store(name, millis(retention), millis(windows.size_ms()), true)
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
        let trackers = TimeTrackers::default();
        let spec = |side: u8| StreamJoinSpec {
            this_store: if side == 0 { this_store.clone() } else { other_store.clone() },
            other_store: if side == 0 { other_store.clone() } else { this_store.clone() },
            outer_store: outer_store.clone(),
            windows: if side == 0 { windows } else { windows.reversed() },
            side,
            this_unmatched: kind == JoinKind::Outer || (kind == JoinKind::Left && side == 0),
            trackers: trackers.clone(),
        };
        let (left_spec, right_spec) = (spec(0), spec(1));
        let (j1, j2) = (joiner.clone(), joiner.clone());
        // The right side calls the joiner with its own value first.
        let right_first: Joiner<K, V2, V1, VOut> = Arc::new(move |k, this, other| joiner(k, other, this));
        let stores: Vec<&str> =
            [this_store.as_str(), other_store.as_str()].into_iter().chain(outer_store.as_deref()).collect();
        self.state.borrow_mut().apply(|t| {
            t.add_processor(
                &this_name,
                move || StreamStreamJoin::<K, V1, V2, V1, V2, VOut>::processor(left_spec.clone(), as_left, j1.clone(), j1.clone()),
                &[&left],
            )?;
            t.add_processor(
                &other_name,
                move || StreamStreamJoin::<K, V2, V1, V1, V2, VOut>::processor(right_spec.clone(), as_right, j2.clone(), right_first.clone()),
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
        self.join_with_key(other, move |_, l, r| joiner(l, r), windows, joined)
    }

    /// As [`join`](Self::join), with a joiner that also reads the key (`ValueJoinerWithKey`).
    pub fn join_with_key<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&K, &V1, &V2) -> VOut + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VOut> {
        let joiner: Joiner<K, V1, V2, VOut> =
            Arc::new(move |k, l, r| joiner(k, l.expect("inner join has a left value"), r.expect("and a right value")));
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
        self.left_join_with_key(other, move |_, l, r| joiner(l, r), windows, joined)
    }

    /// As [`left_join`](Self::left_join), with a joiner that also reads the key.
    pub fn left_join_with_key<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&K, &V1, Option<&V2>) -> VOut + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VOut> {
        let joiner: Joiner<K, V1, V2, VOut> = Arc::new(move |k, l, r| joiner(k, l.expect("left join has a left value"), r));
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
        self.outer_join_with_key(other, move |_, l, r| joiner(l, r), windows, joined)
    }

    /// As [`outer_join`](Self::outer_join), with a joiner that also reads the key.
    pub fn outer_join_with_key<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&K, Option<&V1>, Option<&V2>) -> VOut + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V1, V2>,
    ) -> KStream<K, VOut> {
        self.window_join(other, JoinKind::Outer, Arc::new(joiner), windows, joined)
    }

    fn table_join<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        left: bool,
        joiner: Joiner<K, V1, V2, VOut>,
        joined: Joined<K, V1>,
    ) -> KStream<K, VOut> {
        let stream = self.repartitioned_for_join("KSTREAM-JOIN", table.key_serde.clone(), None);
        // A versioned table is read as of each stream record's time, in its own store.
        let versioned = table.versioned.is_some();
        let materialized = match (versioned, &table.store_name) {
            (true, Some(store)) => Some((table.node.clone(), store.clone())),
            _ => table.materialized(),
        };
        let Some((table_node, store)) = materialized else {
            return KStream::new(self.state.clone(), stream, None, None, false);
        };
        let name = match &joined.name {
            Some(name) => name.clone(),
            None => self.state.borrow_mut().new_name(if left { "KSTREAM-LEFTJOIN-" } else { "KSTREAM-JOIN-" }),
        };
        let buffer = match joined.grace {
            Some(grace) => match self.grace_buffer(&name, table.versioned, grace, &joined) {
                Some(buffer) => Some(buffer),
                None => return KStream::new(self.state.clone(), stream, None, None, false),
            },
            None => None,
        };
        let store_name = store.clone();
        self.state.borrow_mut().apply(|t| {
            let spec = buffer.as_ref().map(|(store, grace, serdes, _)| (store.clone(), *grace, serdes.clone()));
            let supplier = move || StreamTableJoin::processor(&store_name, versioned, spec.clone(), left, joiner.clone());
            t.add_processor(&name, supplier, &[&stream])?;
            t.connect_processor_and_state_store(&name, &store)?;
            if let Some((_, _, _, builder)) = buffer {
                t.add_state_store(builder, &[&name])?;
            }
            Ok(())
        });
        copartition(&self.state, &[&stream, &table_node]);
        KStream::new(self.state.clone(), name, self.key_serde.clone(), None, false)
    }

    /// The buffer of a stream-table join with a grace period: its store name and builder, the
    /// grace in ms and the serdes of the records it holds; `None` (and a build error) unless the
    /// table is versioned with at least that much history and the stream's serdes are known.
    #[allow(clippy::type_complexity)]
    fn grace_buffer(
        &self,
        name: &str,
        history_ms: Option<i64>,
        grace: std::time::Duration,
        joined: &Joined<K, V1>,
    ) -> Option<(String, i64, (SerdeRef<K>, SerdeRef<V1>), KeyValueStoreBuilder<Vec<u8>, Vec<u8>>)> {
        let grace_ms = grace.as_millis().min(i64::MAX as u128) as i64;
        let error = match history_ms {
            None => Some(format!("join `{name}`: a grace period needs a versioned table (Materialized::as_versioned)")),
            Some(history) if history < grace_ms => {
                Some(format!("join `{name}`: the table's history retention ({history} ms) must be at least the grace period ({grace_ms} ms)"))
            }
            Some(_) => None,
        };
        if let Some(message) = error {
            self.state.borrow_mut().fail(StreamsError::Topology(message));
            return None;
        }
        let store = format!("{name}-Buffer");
        let what = format!("store `{store}`");
        let key_serde = require_serde(&self.state, joined.key_serde.clone().or(self.key_serde.clone()), &what)?;
        let value_serde = require_serde(&self.state, joined.value_serde.clone().or(self.value_serde.clone()), &what)?;
        let builder = Stores::key_value_store_builder(Stores::persistent_key_value_store(&store), Serdes::bytes(), Serdes::bytes());
        Some((store, grace_ms, (key_serde, value_serde), builder))
    }

    fn global_join<GK: 'static, GV: 'static, VOut: Clone + 'static>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_selector: impl Fn(&K, &V1) -> GK + Send + Sync + 'static,
        left: bool,
        joiner: Joiner<K, V1, GV, VOut>,
    ) -> KStream<K, VOut> {
        let name = self.state.borrow_mut().new_name(if left { "KSTREAM-LEFTJOIN-" } else { "KSTREAM-JOIN-" });
        let key_selector: KeySelector<K, V1, GK> = Arc::new(key_selector);
        let (store, serdes) = (table.store.clone(), (table.key_serde.clone(), table.value_serde.clone()));
        self.state.borrow_mut().apply(|t| {
            let supplier =
                move || StreamGlobalJoin::processor(&store, serdes.clone(), key_selector.clone(), left, joiner.clone());
            t.add_processor(&name, supplier, &[&self.node])?;
            Ok(())
        });
        KStream::new(self.state.clone(), name, self.key_serde.clone(), None, self.repartition_required)
    }

    /// Joins each record with the global table's row for the key `key_selector` derives from it;
    /// records without one are dropped. The output keeps the stream record's key and timestamp.
    pub fn join_global<GK: 'static, GV: 'static, VOut: Clone + 'static>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_selector: impl Fn(&K, &V1) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V1, &GV) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        self.join_global_with_key(table, key_selector, move |_, l, r| joiner(l, r))
    }

    /// As [`join_global`](Self::join_global), with a joiner that also reads the stream record's key.
    pub fn join_global_with_key<GK: 'static, GV: 'static, VOut: Clone + 'static>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_selector: impl Fn(&K, &V1) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&K, &V1, &GV) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        let joiner: Joiner<K, V1, GV, VOut> =
            Arc::new(move |k, l, r| joiner(k, l.expect("stream value"), r.expect("inner join")));
        self.global_join(table, key_selector, false, joiner)
    }

    /// As [`join_global`](Self::join_global), but records without a row give `joiner(value, None)`.
    pub fn left_join_global<GK: 'static, GV: 'static, VOut: Clone + 'static>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_selector: impl Fn(&K, &V1) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&V1, Option<&GV>) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        self.left_join_global_with_key(table, key_selector, move |_, l, r| joiner(l, r))
    }

    /// As [`left_join_global`](Self::left_join_global), with a joiner that also reads the stream
    /// record's key.
    pub fn left_join_global_with_key<GK: 'static, GV: 'static, VOut: Clone + 'static>(
        &self,
        table: &GlobalKTable<GK, GV>,
        key_selector: impl Fn(&K, &V1) -> GK + Send + Sync + 'static,
        joiner: impl Fn(&K, &V1, Option<&GV>) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        let joiner: Joiner<K, V1, GV, VOut> = Arc::new(move |k, l, r| joiner(k, l.expect("stream value"), r));
        self.global_join(table, key_selector, true, joiner)
    }

    /// Joins each record with the table's current value for its key; records without one are
    /// dropped. The output keeps the stream record's timestamp.
    pub fn join_table<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&V1, &V2) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        self.join_table_with_key(table, move |_, l, r| joiner(l, r))
    }

    /// As [`join_table`](Self::join_table), with a joiner that also reads the key.
    pub fn join_table_with_key<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&K, &V1, &V2) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        self.table_join(table, false, Arc::new(move |k, l, r| joiner(k, l.expect("stream value"), r.expect("inner join"))), Joined::new())
    }

    /// As [`join_table`](Self::join_table), with the options of `joined`: a name, and a grace
    /// period (over a versioned table) for which each stream record waits for late table
    /// updates before it is joined, in timestamp order.
    pub fn join_table_with<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&V1, &V2) -> VOut + Send + Sync + 'static,
        joined: Joined<K, V1>,
    ) -> KStream<K, VOut> {
        self.table_join(table, false, Arc::new(move |_, l, r| joiner(l.expect("stream value"), r.expect("inner join"))), joined)
    }

    /// As [`join_table`](Self::join_table), but records without a table value give
    /// `joiner(value, None)`.
    pub fn left_join_table<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&V1, Option<&V2>) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        self.left_join_table_with_key(table, move |_, l, r| joiner(l, r))
    }

    /// As [`left_join_table`](Self::left_join_table), with a joiner that also reads the key.
    pub fn left_join_table_with_key<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&K, &V1, Option<&V2>) -> VOut + Send + Sync + 'static,
    ) -> KStream<K, VOut> {
        self.table_join(table, true, Arc::new(move |k, l, r| joiner(k, l.expect("stream value"), r)), Joined::new())
    }

    /// As [`left_join_table`](Self::left_join_table), with the options of `joined` (see
    /// [`join_table_with`](Self::join_table_with)).
    pub fn left_join_table_with<V2: Clone + 'static, VOut: Clone + 'static>(
        &self,
        table: &KTable<K, V2>,
        joiner: impl Fn(&V1, Option<&V2>) -> VOut + Send + Sync + 'static,
        joined: Joined<K, V1>,
    ) -> KStream<K, VOut> {
        self.table_join(table, true, Arc::new(move |_, l, r| joiner(l.expect("stream value"), r)), joined)
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    /// The node whose output is this table and the store that holds its current values,
    /// materializing the table if it is not.
    /// A versioned table gets a copy of its latest rows (table-table joins read those).
    pub(crate) fn materialized(&self) -> Option<(String, String)> {
        if let Some(store) = self.store_name.as_ref().filter(|_| self.versioned.is_none()) {
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
            t.add_processor(&name, move || TableMaterialize::<K, V>::processor(&store_name), &[&self.node])?;
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
        // Kafka Streams asks the outer sides for old values.
        if matches!(kind, JoinKind::Left | JoinKind::Outer) {
            self.old_values.request();
        }
        if matches!(kind, JoinKind::Outer) {
            other.old_values.request();
        }
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
        let (v1, v2) = (self.versioned.is_some(), other.versioned.is_some());
        self.state.borrow_mut().apply(|t| {
            t.add_processor(
                &this_name,
                move || TableTableJoin::<K, V, V2, V, V2, VOut>::processor(&s1, as_left, emits, v1, j1.clone()),
                &[&this_node],
            )?;
            t.add_processor(
                &other_name,
                move || TableTableJoin::<K, V2, V, V, V2, VOut>::processor(&s2, as_right, emits, v2, j2.clone()),
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
        let mut joined = KTable::new(self.state.clone(), merge, self.key_serde.clone(), None, None);
        // Asked for old values, the join asks both sides.
        joined.old_values = self.old_values.and(&other.old_values);
        joined
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


impl<K: Clone + 'static, V: Clone + 'static> KTable<K, V> {
    fn foreign_key_join<KO: Clone + PartialEq + 'static, VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KTable<KO, VO>,
        extractor: Arc<dyn Fn(&V) -> KO + Send + Sync>,
        joiner: FkJoiner<V, VO, VR>,
        left_join: bool,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        // Old values tell a subscription to move when the foreign key changes, and spare
        // lookups when a right row did not change (Kafka Streams asks both sides).
        self.old_values.request();
        other.old_values.request();
        let base = self.state.borrow_mut().new_name("KTABLE-FK-JOIN-");
        let what = format!("foreign-key join `{base}`");
        let serdes = (
            require_serde(&self.state, self.key_serde.clone(), &what),
            require_serde(&self.state, self.value_serde.clone(), &what),
            require_serde(&self.state, other.key_serde.clone(), &what),
            require_serde(&self.state, other.value_serde.clone(), &what),
        );
        let (Some(k), Some(v), Some(ko), Some(vo)) = serdes else {
            return KTable::new(self.state.clone(), self.node.clone(), None, None, None);
        };
        let (Some((left_node, left_store)), Some((right_node, right_store))) = (self.materialized(), other.materialized())
        else {
            return KTable::new(self.state.clone(), self.node.clone(), None, None, None);
        };
        let name = |suffix: &str| format!("{base}-{suffix}");
        let (send, receive, right_change, response_sink, response_source, response_join) = (
            name("SUBSCRIPTION-SEND"),
            name("SUBSCRIPTION-RECEIVE"),
            name("RIGHT-CHANGE"),
            name("SUBSCRIPTION-RESPONSE-SINK"),
            name("SUBSCRIPTION-RESPONSE-SOURCE"),
            name("RESPONSE-JOIN"),
        );
        let subscriptions = name("SUBSCRIPTION-STATE-STORE");
        let results = materialized.store_name.clone().unwrap_or_else(|| name("STATE-STORE"));
        let subscription_serde: SerdeRef<Subscription<K>> = Arc::new(SubscriptionSerde(k.clone()));
        let response_serde: SerdeRef<Response<VO>> = Arc::new(ResponseSerde(vo.clone()));
        let response_topic = TopicName::internal(format!("{}-repartition", name("SUBSCRIPTION-RESPONSE")));
        let subscriptions_builder = KeyValueStoreBuilder::new(
            Stores::persistent_key_value_store(&subscriptions),
            Arc::new(CombinedKeySerde(ko.clone(), k.clone())) as SerdeRef<CombinedKey<KO, K>>,
            Arc::new(Serdes::u64()) as SerdeRef<u64>,
        );
        let results_builder = table_store(&self.state, &materialized, &results, Some(k.clone()), None);
        // Subscriptions travel to the right side keyed by foreign key.
        self.state.borrow_mut().apply(|t| {
            let (v, extractor) = (v.clone(), extractor.clone());
            t.add_processor(&send, move || SubscriptionSend::<K, V, KO>::new(extractor.clone(), v.clone(), left_join), &[&left_node])?;
            Ok(())
        });
        let subscription_source =
            repartition(&self.state, &send, &name("SUBSCRIPTION-REGISTRATION"), Some(ko.clone()), Some(subscription_serde));
        let (v2, s1, s2, r1) = (v.clone(), subscriptions.clone(), subscriptions.clone(), right_store.clone());
        let (l1, res1) = (left_store.clone(), results.clone());
        let ko2 = ko.clone();
        self.state.borrow_mut().apply(|t| {
            t.add_processor(&receive, move || SubscriptionReceive::<KO, K, VO>::processor(&s1, &r1), &[&subscription_source])?;
            t.add_processor::<KO, Change<VO>, K, Response<VO>>(
                &right_change,
                move || RightChange::<KO, K>::processor(&s2, ko2.clone()),
                &[&right_node],
            )?;
            t.add_state_store(subscriptions_builder, &[&receive, &right_change])?;
            t.connect_processor_and_state_store(&receive, &right_store)?;
            // Answers travel back keyed by the left key.
            t.add_sink_node(&response_sink, response_topic.clone(), k.clone(), response_serde.clone(), None, &[&receive, &right_change])?;
            t.add_source_node(&response_source, vec![response_topic], k.clone(), response_serde, false, None)?;
            t.add_processor(
                &response_join,
                move || ResponseJoin::<K, V, VO, VR>::processor(&l1, &res1, v2.clone(), joiner.clone()),
                &[&response_source],
            )?;
            t.connect_processor_and_state_store(&response_join, &left_store)?;
            if let Some(builder) = results_builder {
                t.add_state_store(builder, &[&response_join])?;
            }
            Ok(())
        });
        copartition(&self.state, &[&receive, &right_change]);
        copartition(&self.state, &[&response_join, &left_node]);
        KTable::new(self.state.clone(), response_join, self.key_serde.clone(), materialized.value_serde, Some(results))
    }

    /// Foreign-key join: each row joins the row of `other` whose key `extractor` takes from its
    /// value; rows without one have no result. The tables need not be co-partitioned. The
    /// result is materialized (`materialized` gives its value serde).
    pub fn join_foreign_key<KO: Clone + PartialEq + 'static, VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KTable<KO, VO>,
        extractor: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let joiner = Arc::new(move |v: &V, vo: Option<&VO>| vo.map(|vo| joiner(v, vo)));
        self.foreign_key_join(other, Arc::new(extractor), joiner, false, materialized)
    }

    /// Left foreign-key join: as [`join_foreign_key`](Self::join_foreign_key), and rows without
    /// a right row give `joiner(value, None)`.
    pub fn left_join_foreign_key<KO: Clone + PartialEq + 'static, VO: Clone + 'static, VR: Clone + 'static>(
        &self,
        other: &KTable<KO, VO>,
        extractor: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        materialized: Materialized<K, VR>,
    ) -> KTable<K, VR> {
        let joiner = Arc::new(move |v: &V, vo: Option<&VO>| Some(joiner(v, vo)));
        self.foreign_key_join(other, Arc::new(extractor), joiner, true, materialized)
    }
}

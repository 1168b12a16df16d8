//! Windowed grouped streams: aggregations per key and time window or session.

use std::sync::Arc;

use streams_core::state::{SegmentedBytesStoreSupplier, ValueAndTimestampSerde, WindowStoreBuilder, Windowed, WindowedSerde};
use streams_core::{SerdeRef, Serdes, Stores, ValueAndTimestamp};

use crate::builder::{require_serde, Shared};
use streams_core::StreamsError;
use crate::grouped::Grouping;
use crate::ktable::KTable;
use crate::options::Materialized;
use crate::processors::window::{SessionFunctions, SessionWindowAggregate, SlidingWindowAggregate, TimeWindowAggregate};
use crate::suppress::Suppressed;
use crate::windows::{millis, SessionWindows, SlidingWindows, TimeWindows};

/// When a windowed aggregation emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EmitStrategy {
    /// Every update of a window (subject to the record cache), the default.
    #[default]
    OnWindowUpdate,
    /// Once per window, its final result, when the window closes (end + grace).
    OnWindowClose,
}

/// A windowed aggregation's table as `emit` has it emit: every update, or each window's final
/// result once it closes (through a change-logged buffer of the open windows' latest results).
/// Windows with inclusive ends (sliding, session) close once stream time is past end + grace.
fn emitting<K: Clone + 'static, VA: Clone + 'static>(
    table: KTable<Windowed<K>, VA>,
    emit: EmitStrategy,
    inclusive_end: bool,
) -> KTable<Windowed<K>, VA> {
    match (emit, inclusive_end) {
        (EmitStrategy::OnWindowUpdate, _) => table,
        (EmitStrategy::OnWindowClose, false) => table.suppress(Suppressed::until_window_closes()),
        (EmitStrategy::OnWindowClose, true) => table.suppress(Suppressed::after_window_closed()),
    }
}

/// A store builder for a windowed aggregation, or `None` (and a build error) without serdes.
pub(crate) fn window_store<K: 'static, VS: 'static>(
    state: &Shared,
    key_serde: Option<SerdeRef<K>>,
    materialized: &Materialized<K, impl Sized>,
    supplier: SegmentedBytesStoreSupplier,
    value_serde: Option<SerdeRef<VS>>,
    sessions: bool,
) -> Option<WindowStoreBuilder<K, VS>> {
    let what = format!("store `{}`", supplier.name());
    if materialized.versioned.is_some() {
        state.borrow_mut().fail(StreamsError::Topology(format!("{what}: a versioned store cannot hold windows")));
        return None;
    }
    if sessions != supplier.is_session_store() {
        let (given, needed) = if supplier.is_session_store() { ("session", "window") } else { ("window", "session") };
        state.borrow_mut().fail(StreamsError::Topology(format!("{what}: a {given} store supplier where a {needed} store is needed")));
        return None;
    }
    let key_serde = require_serde(state, materialized.key_serde.clone().or(key_serde), &what)?;
    let value_serde = require_serde(state, value_serde, &what)?;
    Some(
        Stores::window_store_builder(supplier, key_serde, value_serde)
            .with_caching(materialized.caching)
            .with_logging(materialized.logging),
    )
}

/// Time windows of either kind.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AnyTimeWindows {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

impl AnyTimeWindows {
    fn size_ms(self) -> i64 {
        match self {
            AnyTimeWindows::Time(w) => w.size_ms,
            AnyTimeWindows::Sliding(w) => w.time_difference_ms,
        }
    }
    pub(crate) fn grace_ms(self) -> i64 {
        match self {
            AnyTimeWindows::Time(w) => w.grace_ms,
            AnyTimeWindows::Sliding(w) => w.grace_ms,
        }
    }

    /// The store of an aggregation over these windows, `name`d, with the materialized
    /// retention or the one the windows need: a sliding window's aggregate is read back while
    /// records up to twice the difference later arrive (as Kafka Streams keeps them).
    pub(crate) fn store_supplier(self, name: &str, materialized: &Materialized<impl Sized, impl Sized>) -> SegmentedBytesStoreSupplier {
        if let Some(supplier) = &materialized.window_supplier {
            return supplier.clone();
        }
        let (size, grace) = (self.size_ms(), self.grace_ms());
        let default_retention = if let AnyTimeWindows::Sliding(_) = self { 2 * size + grace } else { size + grace };
        let retention = materialized.retention_ms.unwrap_or(default_retention);
        if materialized.in_memory {
            Stores::in_memory_window_store(name, millis(retention), millis(size), false)
        } else {
            Stores::persistent_window_store(name, millis(retention), millis(size), false)
        }
    }

    /// The key serde of the aggregation's table.
    pub(crate) fn key_serde<K: 'static>(self, key_serde: Option<SerdeRef<K>>) -> Option<SerdeRef<Windowed<K>>> {
        let size = self.size_ms();
        key_serde.map(|s| Arc::new(WindowedSerde::time(s, size)) as SerdeRef<Windowed<K>>)
    }
}

/// The store of a session aggregation, `name`d, with the materialized retention or gap + grace.
pub(crate) fn session_store_supplier(
    windows: SessionWindows,
    name: &str,
    materialized: &Materialized<impl Sized, impl Sized>,
    ) -> SegmentedBytesStoreSupplier {
    if let Some(supplier) = &materialized.window_supplier {
        // A window supplier here is refused by `window_store`.
        return supplier.clone();
    }
    let retention = materialized.retention_ms.unwrap_or(windows.gap_ms + windows.grace_ms);
    if materialized.in_memory {
        Stores::in_memory_session_store(name, millis(retention))
    } else {
        Stores::persistent_session_store(name, millis(retention))
    }
}

/// A grouped stream cut into time windows (tumbling, hopping or sliding).
pub struct TimeWindowedKStream<K, V> {
    grouping: Grouping<K, V>,
    windows: AnyTimeWindows,
    emit: EmitStrategy,
}

impl<K, V> std::fmt::Debug for TimeWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeWindowedKStream").field("windows", &self.windows).field("emit", &self.emit).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> TimeWindowedKStream<K, V> {
    pub(crate) fn new(grouping: Grouping<K, V>, windows: TimeWindows) -> Self {
        TimeWindowedKStream { grouping, windows: AnyTimeWindows::Time(windows), emit: EmitStrategy::default() }
    }

    pub(crate) fn sliding(grouping: Grouping<K, V>, windows: SlidingWindows) -> Self {
        TimeWindowedKStream { grouping, windows: AnyTimeWindows::Sliding(windows), emit: EmitStrategy::default() }
    }

    /// Emits every update (the default) or only each window's final result.
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    fn aggregate_with<VA: Clone + 'static>(
        &self,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        combine: impl Fn(&K, V, Option<VA>) -> VA + Send + Sync + 'static,
    ) -> KTable<Windowed<K>, VA> {
        let windows = self.windows;
        let combine = Arc::new(combine);
        let value_serde = materialized.value_serde.clone().or(default_value_serde);
        let (name, store) = self.grouping.add_aggregate(
            "KSTREAM-AGGREGATE-",
            materialized.store_name.clone(),
            self.grouping.value_serde.clone(),
            |store| {
                let serde = value_serde.clone().map(|s| Arc::new(ValueAndTimestampSerde(s)) as SerdeRef<ValueAndTimestamp<VA>>);
                let supplier = windows.store_supplier(store, &materialized);
                window_store(&self.grouping.state, self.grouping.key_serde.clone(), &materialized, supplier, serde, false)
            },
            |store| {
                let store = store.to_string();
                match windows {
                    AnyTimeWindows::Time(w) => Box::new(move || TimeWindowAggregate::processor(&store, w, combine.clone())),
                    AnyTimeWindows::Sliding(w) => Box::new(move || SlidingWindowAggregate::processor(&store, w, combine.clone())),
                }
            },
        );
        let key_serde = windows.key_serde(materialized.key_serde.clone().or(self.grouping.key_serde.clone()));
        let table = KTable::new(self.grouping.state.clone(), name, key_serde, value_serde, Some(store))
            .with_window_grace(windows.grace_ms());
        emitting(table, self.emit, matches!(windows, AnyTimeWindows::Sliding(_)))
    }

    /// Counts records per key and window.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let serde: SerdeRef<i64> = Arc::new(Serdes::i64());
        self.aggregate_with(materialized, Some(serde), |_, _, count| count.unwrap_or(0) + 1)
    }

    /// Combines the values of each key and window with `reducer(aggregate, value)`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let serde = self.grouping.value_serde.clone();
        self.aggregate_with(materialized, serde, move |_, value, agg| match agg {
            Some(agg) => reducer(agg, value),
            None => value,
        })
    }

    /// Folds the values of each key and window into an aggregate starting at `initializer()`.
    pub fn aggregate<VA: Clone + 'static>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        self.aggregate_with(materialized, None, move |key, value, agg| {
            aggregator(key, value, agg.unwrap_or_else(&initializer))
        })
    }
}

/// A grouped stream cut into sessions of activity.
pub struct SessionWindowedKStream<K, V> {
    grouping: Grouping<K, V>,
    windows: SessionWindows,
    emit: EmitStrategy,
}

impl<K, V> std::fmt::Debug for SessionWindowedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowedKStream").field("windows", &self.windows).field("emit", &self.emit).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> SessionWindowedKStream<K, V> {
    pub(crate) fn new(grouping: Grouping<K, V>, windows: SessionWindows) -> Self {
        SessionWindowedKStream { grouping, windows, emit: EmitStrategy::default() }
    }

    /// Emits every update of a session (the default) or only each session's final result,
    /// once it can no longer grow or merge (its end + gap + grace).
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    fn aggregate_with<VA: Clone + 'static>(
        &self,
        materialized: Materialized<K, VA>,
        default_value_serde: Option<SerdeRef<VA>>,
        functions: SessionFunctions<K, V, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let windows = self.windows;
        let functions = Arc::new(functions);
        let value_serde = materialized.value_serde.clone().or(default_value_serde);
        let retention = materialized.retention_ms.unwrap_or(windows.gap_ms + windows.grace_ms);
        let time_ordered = (self.emit == EmitStrategy::OnWindowClose).then_some(retention);
        let (name, store) = self.grouping.add_aggregate(
            "KSTREAM-AGGREGATE-",
            materialized.store_name.clone(),
            self.grouping.value_serde.clone(),
            |store| {
                let supplier = session_store_supplier(windows, store, &materialized);
                window_store(&self.grouping.state, self.grouping.key_serde.clone(), &materialized, supplier, value_serde.clone(), true)
            },
            |store| {
                let store = store.to_string();
                Box::new(move || SessionWindowAggregate::processor(&store, windows, functions.clone(), time_ordered))
            },
        );
        let key_serde = materialized.key_serde.clone().or(self.grouping.key_serde.clone());
        let key_serde = key_serde.map(|s| Arc::new(WindowedSerde::session(s)) as SerdeRef<Windowed<K>>);
        // A session may still grow until its end plus the gap plus grace: that is when it closes.
        let table = KTable::new(self.grouping.state.clone(), name, key_serde, value_serde, Some(store))
            .with_window_grace(windows.grace_ms + windows.gap_ms);
        emitting(table, self.emit, true)
    }

    /// Counts records per key and session.
    pub fn count(&self, materialized: Materialized<K, i64>) -> KTable<Windowed<K>, i64> {
        let serde: SerdeRef<i64> = Arc::new(Serdes::i64());
        let functions = SessionFunctions {
            aggregator: Box::new(|_, _, count: Option<i64>| count.unwrap_or(0) + 1),
            merger: Box::new(|_, a: Option<i64>, b| a.unwrap_or(0) + b),
        };
        self.aggregate_with(materialized, Some(serde), functions)
    }

    /// Combines the values of each session with `reducer(aggregate, value)`; merged sessions
    /// combine their aggregates with it too.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<K, V>,
    ) -> KTable<Windowed<K>, V> {
        let reducer = Arc::new(reducer);
        let r = reducer.clone();
        let functions = SessionFunctions {
            aggregator: Box::new(move |_, value, agg| match agg {
                Some(agg) => r(agg, value),
                None => value,
            }),
            merger: Box::new(move |_, a, b| match a {
                Some(a) => reducer(a, b),
                None => b,
            }),
        };
        let serde = self.grouping.value_serde.clone();
        self.aggregate_with(materialized, serde, functions)
    }

    /// Folds the values of each session into an aggregate starting at `initializer()`;
    /// `merger` combines the aggregates of sessions a record joins together.
    pub fn aggregate<VA: Clone + 'static>(
        &self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let initializer = Arc::new(initializer);
        let init = initializer.clone();
        let functions = SessionFunctions {
            aggregator: Box::new(move |key: &K, value, agg: Option<VA>| aggregator(key, value, agg.unwrap_or_else(|| init()))),
            merger: Box::new(move |key, a: Option<VA>, b| merger(key, a.unwrap_or_else(|| initializer()), b)),
        };
        self.aggregate_with(materialized, None, functions)
    }
}

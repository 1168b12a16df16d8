//! Cogrouped streams (Kafka Streams' `cogroup`): several grouped streams folded into one
//! aggregate per key, or per key and time window, sliding window or session, with one aggregator
//! per input, one shared store and no intermediate tables.

use std::sync::Arc;

use streams_core::state::{KeyValueStoreBuilder, ValueAndTimestampSerde, Windowed, WindowedSerde};
use streams_core::internals::InternalTopologyBuilder;
use streams_core::{SerdeRef, StoreBuilder, ValueAndTimestamp};

use crate::builder::{table_store, Shared};
use crate::change::Change;
use crate::grouped::KGroupedStream;
use crate::ktable::KTable;
use crate::options::Materialized;
use crate::processors::aggregate::StreamAggregate;
use crate::processors::stateless;
use crate::processors::window::{SessionFunctions, SessionWindowAggregate, SlidingWindowAggregate, TimeWindowAggregate};
use crate::windowed::{session_store_supplier, window_store, AnyTimeWindows};
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows};

type Initializer<VA> = Arc<dyn Fn() -> VA + Send + Sync>;
type Merger<K, VA> = Arc<dyn Fn(&K, VA, VA) -> VA + Send + Sync>;

/// What a cogroup aggregates over.
enum Over<K, VA> {
    Keys,
    Windows(AnyTimeWindows),
    Sessions(SessionWindows, Merger<K, VA>),
}

/// Adds one input's aggregating processor for the shared store; returns the processor's name.
type CogroupInput<K, VA> = Box<dyn FnOnce(&str, &Initializer<VA>, &Over<K, VA>) -> String>;

/// Several grouped streams folded into one table with one aggregator each.
pub struct CogroupedKStream<K, VA> {
    state: Shared,
    key_serde: Option<SerdeRef<K>>,
    inputs: Vec<CogroupInput<K, VA>>,
}

impl<K, VA> std::fmt::Debug for CogroupedKStream<K, VA> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CogroupedKStream").field("inputs", &self.inputs.len()).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KGroupedStream<K, V> {
    /// Starts a cogroup: this stream folded into the aggregate with `aggregator`.
    pub fn cogroup<VA: Clone + 'static>(
        &self,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    ) -> CogroupedKStream<K, VA> {
        let cogrouped = CogroupedKStream { state: self.grouping.state.clone(), key_serde: self.grouping.key_serde.clone(), inputs: Vec::new() };
        cogrouped.cogroup(self, aggregator)
    }
}

impl<K: Clone + 'static, VA: Clone + 'static> CogroupedKStream<K, VA> {
    /// Adds another grouped stream (of any value type) with its own aggregator.
    pub fn cogroup<V: Clone + 'static>(
        mut self,
        grouped: &KGroupedStream<K, V>,
        aggregator: impl Fn(&K, V, VA) -> VA + Send + Sync + 'static,
    ) -> Self {
        let grouping = grouped.grouping.clone();
        self.key_serde = self.key_serde.or(grouping.key_serde.clone());
        let aggregator = Arc::new(aggregator);
        self.inputs.push(Box::new(move |store, initializer, over| {
            let init = initializer.clone();
            let combine = Arc::new(move |key: &K, value: V, agg: Option<VA>| aggregator(key, value, agg.unwrap_or_else(|| init())));
            let prefix = "COGROUPKSTREAM-AGGREGATE-";
            let (store, input_serde) = (Some(store.to_string()), grouping.value_serde.clone());
            // The shared store is added once, for all inputs.
            let no_store = |_: &str| None::<KeyValueStoreBuilder<K, ValueAndTimestamp<VA>>>;
            let (node, _) = match over {
                Over::Keys => grouping.add_aggregate(prefix, store, input_serde, no_store, |store| {
                    let store = store.to_string();
                    Box::new(move || StreamAggregate::processor(&store, combine.clone()))
                }),
                Over::Windows(AnyTimeWindows::Time(w)) => {
                    let w = *w;
                    grouping.add_aggregate(prefix, store, input_serde, no_store, |store| {
                        let store = store.to_string();
                        Box::new(move || TimeWindowAggregate::processor(&store, w, combine.clone()))
                    })
                }
                Over::Windows(AnyTimeWindows::Sliding(w)) => {
                    let w = *w;
                    grouping.add_aggregate(prefix, store, input_serde, no_store, |store| {
                        let store = store.to_string();
                        Box::new(move || SlidingWindowAggregate::processor(&store, w, combine.clone()))
                    })
                }
                Over::Sessions(w, merger) => {
                    let (w, merger, init) = (*w, merger.clone(), initializer.clone());
                    let functions = Arc::new(SessionFunctions {
                        aggregator: Box::new(move |key: &K, value, agg| combine(key, value, agg)),
                        merger: Box::new(move |key: &K, a: Option<VA>, b| merger(key, a.unwrap_or_else(|| init()), b)),
                    });
                    grouping.add_aggregate(prefix, store, input_serde, no_store, |store| {
                        let store = store.to_string();
                        Box::new(move || SessionWindowAggregate::processor(&store, w, functions.clone(), None))
                    })
                }
            };
            node
        }));
        self
    }

    /// Folds every input into one aggregate per key, starting at `initializer()`.
    pub fn aggregate(
        self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<K, VA> {
        let (state, key_serde, value_serde) = (self.state.clone(), self.key_serde.clone(), materialized.value_serde.clone());
        let (merge, store) = self.build::<K, _>(Arc::new(initializer), &materialized, Over::Keys, |store| {
            table_store(&state, &materialized, store, key_serde.clone(), value_serde.clone())
        });
        KTable::new(state, merge, key_serde, value_serde, Some(store))
    }

    /// Aggregates per key and time window (tumbling or hopping).
    pub fn windowed_by(self, windows: TimeWindows) -> TimeWindowedCogroupedKStream<K, VA> {
        TimeWindowedCogroupedKStream { cogrouped: self, windows: AnyTimeWindows::Time(windows) }
    }

    /// Aggregates per key and sliding window.
    pub fn windowed_by_sliding(self, windows: SlidingWindows) -> TimeWindowedCogroupedKStream<K, VA> {
        TimeWindowedCogroupedKStream { cogrouped: self, windows: AnyTimeWindows::Sliding(windows) }
    }

    /// Aggregates per key and session.
    pub fn windowed_by_session(self, windows: SessionWindows) -> SessionWindowedCogroupedKStream<K, VA> {
        SessionWindowedCogroupedKStream { cogrouped: self, windows }
    }

    /// Adds every input's processor, the shared store (`store(name)`), a merge node after them
    /// (forwarding `KOut` keys) and their co-partition group; returns the merge node's and the
    /// store's names.
    fn build<KOut: Clone + 'static, B: StoreBuilder>(
        self,
        initializer: Initializer<VA>,
        materialized: &Materialized<K, VA>,
        over: Over<K, VA>,
        store: impl FnOnce(&str) -> Option<B>,
    ) -> (String, String) {
        let (store_name, merge) = {
            let mut state = self.state.borrow_mut();
            let store = materialized
                .store_name
                .clone()
                .unwrap_or_else(|| state.new_name("COGROUPKSTREAM-AGGREGATE-STATE-STORE-"));
            (store, state.new_name("COGROUPKSTREAM-MERGE-"))
        };
        let nodes: Vec<String> = self.inputs.into_iter().map(|input| input(&store_name, &initializer, &over)).collect();
        let builder = store(&store_name);
        self.state.borrow_mut().apply(|t| {
            let parents: Vec<&str> = nodes.iter().map(String::as_str).collect();
            if let Some(builder) = builder {
                t.add_state_store(builder, &parents)?;
            }
            t.add_processor(&merge, pass_through::<KOut, VA>(), &parents)?;
            t.add_copartition_group(&parents)?;
            Ok(())
        });
        (merge, store_name)
    }
}

/// The merge node: forwards every input's updates.
fn pass_through<K: Clone + 'static, VA: Clone + 'static>() -> impl streams_core::ProcessorSupplier<K, Change<VA>, K, Change<VA>> {
    stateless(|ctx, r: streams_core::Record<K, Change<VA>>| ctx.forward(r))
}

/// A cogroup cut into time windows (tumbling, hopping or sliding).
pub struct TimeWindowedCogroupedKStream<K, VA> {
    cogrouped: CogroupedKStream<K, VA>,
    windows: AnyTimeWindows,
}

impl<K, VA> std::fmt::Debug for TimeWindowedCogroupedKStream<K, VA> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeWindowedCogroupedKStream").field("windows", &self.windows).finish()
    }
}

impl<K: Clone + 'static, VA: Clone + 'static> TimeWindowedCogroupedKStream<K, VA> {
    /// Folds every input into one aggregate per key and window, starting at `initializer()`.
    pub fn aggregate(
        self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let windows = self.windows;
        let (state, key_serde) = (self.cogrouped.state.clone(), self.cogrouped.key_serde.clone());
        let value_serde = materialized.value_serde.clone();
        let (merge, store) = self.cogrouped.build::<Windowed<K>, _>(Arc::new(initializer), &materialized, Over::Windows(windows), |store| {
            let serde = value_serde.clone().map(|s| Arc::new(ValueAndTimestampSerde(s)) as SerdeRef<ValueAndTimestamp<VA>>);
            window_store(&state, key_serde.clone(), &materialized, windows.store_supplier(store, &materialized), serde, false)
        });
        let key_serde = windows.key_serde(materialized.key_serde.clone().or(key_serde));
        KTable::new(state, merge, key_serde, value_serde, Some(store)).with_window_grace(windows.grace_ms())
    }
}

/// A cogroup cut into sessions of activity.
pub struct SessionWindowedCogroupedKStream<K, VA> {
    cogrouped: CogroupedKStream<K, VA>,
    windows: SessionWindows,
}

impl<K, VA> std::fmt::Debug for SessionWindowedCogroupedKStream<K, VA> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWindowedCogroupedKStream").field("windows", &self.windows).finish()
    }
}

impl<K: Clone + 'static, VA: Clone + 'static> SessionWindowedCogroupedKStream<K, VA> {
    /// Folds every input into one aggregate per key and session, starting at `initializer()`;
    /// `merger` combines the aggregates of sessions a record joins together.
    pub fn aggregate(
        self,
        initializer: impl Fn() -> VA + Send + Sync + 'static,
        merger: impl Fn(&K, VA, VA) -> VA + Send + Sync + 'static,
        materialized: Materialized<K, VA>,
    ) -> KTable<Windowed<K>, VA> {
        let windows = self.windows;
        let (state, key_serde) = (self.cogrouped.state.clone(), self.cogrouped.key_serde.clone());
        let value_serde = materialized.value_serde.clone();
        let over = Over::Sessions(windows, Arc::new(merger));
        let (merge, store) = self.cogrouped.build::<Windowed<K>, _>(Arc::new(initializer), &materialized, over, |store| {
            let supplier = session_store_supplier(windows, store, &materialized);
            window_store(&state, key_serde.clone(), &materialized, supplier, value_serde.clone(), true)
        });
        let key_serde = materialized.key_serde.clone().or(key_serde);
        let key_serde = key_serde.map(|s| Arc::new(WindowedSerde::session(s)) as SerdeRef<Windowed<K>>);
        // A session may still grow until its end plus the gap plus grace: that is when it closes.
        KTable::new(state, merge, key_serde, value_serde, Some(store)).with_window_grace(windows.grace_ms + windows.gap_ms)
    }
}

//! `StreamsBuilder`: the entry point of the DSL.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use streams_core::state::{
    GlobalStoreSpec, KeyValueBytesStoreSupplier, KeyValueStoreBuilder, ValueAndTimestampSerde, VersionedKeyValueStoreBuilder,
};
use streams_core::internals::{InternalTopologyBuilder, TopicName};
use streams_core::{
    BoxError, BuiltinTimestampExtractor, ConsumedRecord, Result, SerdeRef, Serdes, StoreBuilder, StreamsError,
    StreamPartitioner, TimestampExtractor, Topology, ValueAndTimestamp,
};

use crate::kstream::KStream;
use crate::ktable::{KTable, OldValues, OldValuesSwitch};
use crate::options::{Consumed, Materialized};
use crate::processors::table::{TableSource, VersionedTableSource};

/// Shared state of one builder: the topology being written and the name counter.
pub(crate) struct BuilderState {
    topology: Topology,
    index: u32,
    error: Option<StreamsError>,
}

pub(crate) type Shared = Rc<RefCell<BuilderState>>;

impl BuilderState {
    /// A generated name, `<PREFIX><10-digit counter>`, e.g. `KSTREAM-FILTER-0000000003`.
    pub(crate) fn new_name(&mut self, prefix: &str) -> String {
        let name = format!("{prefix}{:010}", self.index);
        self.index += 1;
        name
    }

    /// Applies a change to the topology, keeping the first error for `build()`.
    pub(crate) fn apply(&mut self, change: impl FnOnce(&mut Topology) -> Result<()>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = change(&mut self.topology) {
            self.error = Some(e);
        }
    }

    /// Records an error found while building.
    pub(crate) fn fail(&mut self, error: StreamsError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }
}

/// A serde from the first source that has one, or a build error saying where to give one.
pub(crate) fn require_serde<T>(
    state: &Shared,
    serde: Option<SerdeRef<T>>,
    what: &str,
) -> Option<SerdeRef<T>> {
    if serde.is_none() {
        state.borrow_mut().fail(StreamsError::Topology(format!(
            "{what} has no serde for {}: pass one with Consumed, Grouped or Materialized",
            std::any::type_name::<T>()
        )));
    }
    serde
}

/// A store builder for a KTable: values with timestamps, caching and logging as configured.
pub(crate) fn table_store<K: 'static, V: 'static>(
    state: &Shared,
    materialized: &Materialized<K, V>,
    name: &str,
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V>>,
) -> Option<KeyValueStoreBuilder<K, ValueAndTimestamp<V>>> {
    if materialized.versioned.is_some() {
        let message = format!("store `{name}`: only source tables (StreamsBuilder::table) are materialized in a versioned store");
        state.borrow_mut().fail(StreamsError::Topology(message));
        return None;
    }
    let key_serde = require_serde(state, materialized.key_serde.clone().or(key_serde), &format!("store `{name}`"))?;
    let value_serde =
        require_serde(state, materialized.value_serde.clone().or(value_serde), &format!("store `{name}`"))?;
    let supplier: KeyValueBytesStoreSupplier = match &materialized.supplier {
        Some(supplier) => supplier.clone(),
        None if materialized.in_memory => streams_core::Stores::in_memory_key_value_store(name),
        None => streams_core::Stores::persistent_key_value_store(name),
    };
    let mut builder = KeyValueStoreBuilder::new(supplier, key_serde, Arc::new(ValueAndTimestampSerde(value_serde)));
    builder = if materialized.caching { builder.with_caching_enabled() } else { builder.with_caching_disabled() };
    builder = if materialized.logging { builder.with_logging_enabled() } else { builder.with_logging_disabled() };
    Some(builder)
}

/// A table source's extractor, over nullable values: a tombstone carries no value to read a
/// time from, so it keeps its record's timestamp (`FailOnInvalidTimestamp` rules).
fn table_extractor<K: 'static, V: 'static>(
    extractor: Arc<dyn TimestampExtractor<K, V>>,
) -> Arc<dyn TimestampExtractor<K, Option<V>>> {
    struct TableExtractor<K, V>(Arc<dyn TimestampExtractor<K, V>>);
    impl<K: 'static, V: 'static> TimestampExtractor<K, Option<V>> for TableExtractor<K, V> {
        fn extract(&self, record: &ConsumedRecord<'_, K, Option<V>>, partition_time: i64) -> Result<i64, BoxError> {
            match record.value {
                Some(value) => self.0.extract(&record.with_value(value), partition_time),
                None => BuiltinTimestampExtractor::FailOnInvalid.extract(record, partition_time),
            }
        }
    }
    Arc::new(TableExtractor(extractor))
}

/// A table copied in full into every instance (see [`StreamsBuilder::global_table`]).
pub struct GlobalKTable<K, V> {
    pub(crate) store: String,
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
}

impl<K, V> std::fmt::Debug for GlobalKTable<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalKTable").field("store", &self.store).finish()
    }
}

impl<K, V> GlobalKTable<K, V> {
    /// The name of the store holding the table.
    pub fn queryable_store_name(&self) -> &str {
        &self.store
    }
}

/// Builds a topology with the DSL. Operators write into it as they are called; `build` returns
/// it, or the first error an operator met.
pub struct StreamsBuilder {
    state: Shared,
}

impl std::fmt::Debug for StreamsBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsBuilder").finish()
    }
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder { state: Rc::new(RefCell::new(BuilderState { topology: Topology::new(), index: 0, error: None })) }
    }

    /// A stream of the records of `topic`.
    pub fn stream<K: Clone + 'static, V: Clone + 'static>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V> {
        self.stream_from(&[topic], consumed)
    }

    /// A stream of the records of several topics.
    pub fn stream_from<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topics: &[&str],
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let topics: Vec<TopicName> = topics.iter().map(|t| TopicName::external(*t)).collect();
        self.source_stream(consumed, |t, name, ks, vs, extractor| t.add_source_node(name, topics, ks, vs, false, extractor).map(|_| ()))
    }

    /// A stream of the records of every topic whose whole name matches `pattern` (a regex), as
    /// Kafka Streams' `stream(Pattern)`. The pattern is matched against the cluster's topics
    /// when the application starts (none matching is an error); topics created later are not
    /// picked up. The application's own internal topics and broker topics (`__` prefix) are
    /// never matched.
    pub fn stream_pattern<K: Clone + 'static, V: Clone + 'static>(&self, pattern: &str, consumed: Consumed<K, V>) -> KStream<K, V> {
        self.source_stream(consumed, |t, name, ks, vs, extractor| t.add_pattern_source_node(name, pattern, ks, vs, extractor).map(|_| ()))
    }

    /// A stream from the source node `add` adds with the serdes, extractor and offset reset of
    /// `consumed`.
    fn source_stream<K: Clone + 'static, V: Clone + 'static>(
        &self,
        consumed: Consumed<K, V>,
        add: impl FnOnce(&mut Topology, &str, SerdeRef<K>, SerdeRef<V>, Option<Arc<dyn TimestampExtractor<K, V>>>) -> Result<()>,
    ) -> KStream<K, V> {
        let mut state = self.state.borrow_mut();
        let name = consumed.name.clone().unwrap_or_else(|| state.new_name("KSTREAM-SOURCE-"));
        let (ks, vs) = (consumed.key_serde.clone(), consumed.value_serde.clone());
        let extractor = consumed.timestamp_extractor.clone();
        state.apply(|t| {
            add(t, &name, ks, vs, extractor)?;
            if let Some(reset) = consumed.offset_reset {
                t.set_offset_reset(&name, reset)?;
            }
            Ok(())
        });
        drop(state);
        KStream::new(self.state.clone(), name, Some(consumed.key_serde), Some(consumed.value_serde), false)
    }

    /// A changelog stream read as a table: a null value deletes its key; records without a key are
    /// dropped. The table is materialized (a store named by `materialized` or generated).
    pub fn table<K: Clone + 'static, V: Clone + 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> KTable<K, V> {
        let mut state = self.state.borrow_mut();
        let source = consumed.name.clone().unwrap_or_else(|| state.new_name("KSTREAM-SOURCE-"));
        let processor = state.new_name("KTABLE-SOURCE-");
        let store = match &materialized.store_name {
            Some(name) => name.clone(),
            None => state.new_name(&format!("{topic}-STATE-STORE-")),
        };
        drop(state);
        let versioned = materialized.versioned.clone();
        let builder: Option<Box<dyn FnOnce(&mut Topology, &str) -> Result<()>>> = match versioned.clone() {
            Some(supplier) => {
                let key_serde = materialized.key_serde.clone().unwrap_or_else(|| consumed.key_serde.clone());
                let value_serde = materialized.value_serde.clone().unwrap_or_else(|| consumed.value_serde.clone());
                let builder = VersionedKeyValueStoreBuilder::new(supplier, key_serde, value_serde);
                let builder = if materialized.logging { builder.with_logging_enabled() } else { builder.with_logging_disabled() };
                Some(Box::new(move |t, processor| t.add_state_store(builder, &[processor]).map(drop)))
            }
            None => table_store(&self.state, &materialized, &store, Some(consumed.key_serde.clone()), Some(consumed.value_serde.clone()))
                .map(|builder| Box::new(move |t: &mut Topology, processor: &str| t.add_state_store(builder, &[processor]).map(drop)) as _),
        };
        let value_serde: SerdeRef<Option<V>> = Arc::new(Serdes::nullable(consumed.value_serde.clone()));
        let topics = vec![TopicName::external(topic)];
        let key_serde = consumed.key_serde.clone();
        let extractor = consumed.timestamp_extractor.clone().map(table_extractor);
        let store_name = store.clone();
        let send_old = OldValuesSwitch::default();
        let switch = send_old.clone();
        let mut state = self.state.borrow_mut();
        state.apply(|t| {
            t.add_source_node(&source, topics, key_serde, value_serde, true, extractor)?;
            if let Some(reset) = consumed.offset_reset {
                t.set_offset_reset(&source, reset)?;
            }
            match versioned {
                Some(_) => t.add_processor(&processor, move || VersionedTableSource::<K, V>::processor(&store_name), &[&source])?,
                None => t.add_processor(
                    &processor,
                    move || TableSource::<K, V, Option<V>>::processor(&store_name, switch.is_on()),
                    &[&source],
                )?,
            };
            if let Some(add_store) = builder {
                add_store(t, &processor)?;
            }
            Ok(())
        });
        drop(state);
        let mut table = KTable::new(
            self.state.clone(),
            processor,
            Some(consumed.key_serde),
            Some(consumed.value_serde),
            Some(store),
        );
        table.versioned = materialized.versioned.as_ref().map(|s| s.history_retention().as_millis().min(i64::MAX as u128) as i64);
        table.old_values = OldValues::of(&send_old);
        table
    }

    /// A table of every partition of `topic`, copied in full into each instance and filled before
    /// any record is processed; streams join it by any key they derive, with no co-partitioning.
    pub fn global_table<K: 'static, V: 'static>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<K, V>,
    ) -> GlobalKTable<K, V> {
        let mut state = self.state.borrow_mut();
        let store = match &materialized.store_name {
            Some(name) => name.clone(),
            None => state.new_name(&format!("{topic}-STATE-STORE-")),
        };
        let spec = GlobalStoreSpec { name: store.clone(), topic: topic.to_string(), persistent: !materialized.in_memory };
        state.apply(|t| t.add_global_store(spec).map(drop));
        GlobalKTable { store, key_serde: consumed.key_serde, value_serde: consumed.value_serde }
    }

    /// Adds a store for processors added with [`KStream::process`].
    pub fn add_state_store(&self, builder: impl StoreBuilder) -> &Self {
        self.state.borrow_mut().apply(|t| t.add_state_store(builder, &[]).map(drop));
        self
    }

    /// The topology, or the first error met while building it.
    pub fn build(self) -> Result<Topology> {
        let mut state = self.state.borrow_mut();
        if let Some(error) = state.error.take() {
            return Err(error);
        }
        state.topology.validate()?;
        Ok(std::mem::take(&mut state.topology))
    }
}

/// Adds a repartition topic after `parent`: a sink to `<base>-repartition` and a source reading
/// it back, so records are re-distributed by their (new) key. Returns the source's name.
pub(crate) fn repartition<K: Clone + 'static, V: Clone + 'static>(
    state: &Shared,
    parent: &str,
    base: &str,
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V>>,
) -> String {
    repartition_with(state, parent, base, key_serde, value_serde, None, None)
}

/// [`repartition`] with a partitioner for the sink and a partition count for the topic.
pub(crate) fn repartition_with<K: Clone + 'static, V: Clone + 'static>(
    state: &Shared,
    parent: &str,
    base: &str,
    key_serde: Option<SerdeRef<K>>,
    value_serde: Option<SerdeRef<V>>,
    partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
    partitions: Option<i32>,
) -> String {
    let what = format!("repartition topic `{base}-repartition`");
    let key_serde = require_serde(state, key_serde, &what);
    let value_serde = require_serde(state, value_serde, &what);
    let mut state = state.borrow_mut();
    let sink = state.new_name("KSTREAM-SINK-");
    let source = state.new_name("KSTREAM-SOURCE-");
    if let (Some(ks), Some(vs)) = (key_serde, value_serde) {
        let topic = TopicName::internal(format!("{base}-repartition"));
        state.apply(|t| {
            t.add_sink_node(&sink, topic.clone(), ks.clone(), vs.clone(), partitioner, &[parent])?;
            t.add_source_node(&source, vec![topic.clone()], ks, vs, false, None)?;
            if let Some(n) = partitions {
                t.set_partition_count(&topic, n);
            }
            Ok(())
        });
    }
    source
}

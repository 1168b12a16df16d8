//! `KStream<K, V>`: a record stream and its stateless operators.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use streams_core::internals::InternalTopologyBuilder;
use streams_core::{
    fixed_key_supplier, FixedKeyProcessorSupplier, Processor, ProcessorSupplier, Record, SerdeRef, Serdes, StreamsError,
    TopicNameExtractor,
};

use crate::builder::{repartition, repartition_with, table_store, Shared};
use crate::change::Change;
use crate::grouped::KGroupedStream;
use crate::ktable::{KTable, OldValues, OldValuesSwitch};
use crate::options::{BranchChain, Branched, Grouped, Materialized, Named, PrintTarget, Printed, Produced, Repartitioned};
use crate::processors::table::TableSource;
use crate::processors::stateless;

type Predicate<K, V> = Arc<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// An unbounded stream of `Record<K, V>`: each record is an independent event.
///
/// Operators that change the key (`map`, `flat_map`, `select_key`, `group_by`) mark the stream
/// for repartitioning; a later aggregation then goes through a `-repartition` topic.
pub struct KStream<K, V> {
    pub(crate) state: Shared,
    pub(crate) node: String,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) repartition_required: bool,
}

impl<K, V> Clone for KStream<K, V> {
    fn clone(&self) -> Self {
        KStream {
            state: self.state.clone(),
            node: self.node.clone(),
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            repartition_required: self.repartition_required,
        }
    }
}

impl<K, V> std::fmt::Debug for KStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KStream").field("node", &self.node).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, V> {
    pub(crate) fn new(
        state: Shared,
        node: String,
        key_serde: Option<SerdeRef<K>>,
        value_serde: Option<SerdeRef<V>>,
        repartition_required: bool,
    ) -> Self {
        KStream { state, node, key_serde, value_serde, repartition_required }
    }

    /// The name of the node this stream comes out of.
    pub fn node_name(&self) -> &str {
        &self.node
    }

    fn add<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        prefix: &str,
        supplier: impl ProcessorSupplier<K, V, K2, V2>,
        key_serde: Option<SerdeRef<K2>>,
        value_serde: Option<SerdeRef<V2>>,
        repartition_required: bool,
    ) -> KStream<K2, V2> {
        let mut state = self.state.borrow_mut();
        let name = state.new_name(prefix);
        state.apply(|t| t.add_processor(&name, supplier, &[&self.node]).map(drop));
        drop(state);
        KStream::new(self.state.clone(), name, key_serde, value_serde, repartition_required)
    }

    /// Renames the node that produced this stream (Kafka Streams' `Named`).
    pub fn named(self, name: impl Into<Named>) -> Self {
        let name = name.into().0;
        let old = self.node.clone();
        self.state.borrow_mut().apply(|t| t.rename_node(&old, &name));
        KStream { node: name, ..self }
    }

    /// Keeps records for which `predicate` holds.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        let supplier = stateless(move |ctx, r: Record<K, V>| {
            if predicate(&r.key, &r.value) {
                ctx.forward(r)
            } else {
                Ok(())
            }
        });
        self.add("KSTREAM-FILTER-", supplier, self.key_serde.clone(), self.value_serde.clone(), self.repartition_required)
    }

    /// Drops records for which `predicate` holds.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> KStream<K, V> {
        self.filter(move |k, v| !predicate(k, v))
    }

    /// Maps each record to a new key and value (marks the stream for repartitioning).
    pub fn map<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        mapper: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let supplier = stateless(move |ctx, r: Record<K, V>| {
            let (k, v) = mapper(r.key, r.value);
            ctx.forward(Record { key: k, value: v, timestamp: r.timestamp, headers: r.headers })
        });
        self.add("KSTREAM-MAP-", supplier, None, None, true)
    }

    /// Maps each value, keeping the key.
    pub fn map_values<V2: Clone + 'static>(&self, mapper: impl Fn(V) -> V2 + Send + Sync + 'static) -> KStream<K, V2> {
        let supplier = stateless(move |ctx, r: Record<K, V>| {
            let value = mapper(r.value);
            ctx.forward(Record { key: r.key, value, timestamp: r.timestamp, headers: r.headers })
        });
        self.add("KSTREAM-MAPVALUES-", supplier, self.key_serde.clone(), None, self.repartition_required)
    }

    /// Maps each record to any number of records (marks the stream for repartitioning).
    pub fn flat_map<K2: Clone + 'static, V2: Clone + 'static, I>(
        &self,
        mapper: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        let supplier = stateless(move |ctx, r: Record<K, V>| {
            for (key, value) in mapper(r.key, r.value) {
                ctx.forward(Record { key, value, timestamp: r.timestamp, headers: r.headers.clone() })?;
            }
            Ok(())
        });
        self.add("KSTREAM-FLATMAP-", supplier, None, None, true)
    }

    /// Maps each value to any number of values, keeping the key.
    pub fn flat_map_values<V2: Clone + 'static, I>(
        &self,
        mapper: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        let supplier = stateless(move |ctx, r: Record<K, V>| {
            for value in mapper(r.value) {
                ctx.forward(Record { key: r.key.clone(), value, timestamp: r.timestamp, headers: r.headers.clone() })?;
            }
            Ok(())
        });
        self.add("KSTREAM-FLATMAPVALUES-", supplier, self.key_serde.clone(), None, self.repartition_required)
    }

    /// Sets a new key computed from each record (marks the stream for repartitioning).
    pub fn select_key<K2: Clone + 'static>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        let supplier = stateless(move |ctx, r: Record<K, V>| {
            let key = selector(&r.key, &r.value);
            ctx.forward(r.with_key(key))
        });
        self.add("KSTREAM-KEY-SELECT-", supplier, None, self.value_serde.clone(), true)
    }

    /// Calls `action` on each record and passes it on.
    pub fn peek(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) -> KStream<K, V> {
        let supplier = stateless(move |ctx, r: Record<K, V>| {
            action(&r.key, &r.value);
            ctx.forward(r)
        });
        self.add("KSTREAM-PEEK-", supplier, self.key_serde.clone(), self.value_serde.clone(), self.repartition_required)
    }

    /// Calls `action` on each record (a terminal operation).
    pub fn foreach(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) {
        let supplier = stateless(move |_: &mut streams_core::ProcessorContext<'_, K, V>, r: Record<K, V>| {
            action(&r.key, &r.value);
            Ok(())
        });
        self.add::<K, V>("KSTREAM-FOREACH-", supplier, None, None, false);
    }

    /// Splits the stream by predicates: each record goes to the first branch that matches.
    pub fn split(&self) -> BranchedKStream<K, V> {
        let name = self.state.borrow_mut().new_name("KSTREAM-BRANCH-");
        BranchedKStream { stream: self.clone(), prefix: format!("{name}-"), name, branches: Vec::new() }
    }

    /// [`split`](Self::split) with a name, which is also the prefix of the branch names.
    pub fn split_named(&self, named: impl Into<Named>) -> BranchedKStream<K, V> {
        let name = named.into().0;
        BranchedKStream { stream: self.clone(), prefix: name.clone(), name, branches: Vec::new() }
    }

    /// Prints each record (Kafka Streams' `print`), to standard output or a file.
    pub fn print(&self, printed: Printed<K, V>) {
        let name = self.state.borrow_mut().new_name("KSTREAM-PRINTER-");
        let label = printed.label.clone().unwrap_or_else(|| name.clone());
        let out: Arc<Mutex<Box<dyn Write + Send>>> = match &printed.target {
            PrintTarget::Stdout => Arc::new(Mutex::new(Box::new(std::io::stdout()))),
            PrintTarget::File(path) => match std::fs::File::create(path) {
                Ok(file) => Arc::new(Mutex::new(Box::new(std::io::LineWriter::new(file)))),
                Err(e) => {
                    let error = StreamsError::io(path, e);
                    self.state.borrow_mut().fail(error);
                    return;
                }
            },
        };
        let mapper = printed.mapper;
        let supplier = stateless(move |_ctx: &mut streams_core::ProcessorContext<'_, K, V>, r: Record<K, V>| {
            let line = format!("[{label}]: {}", mapper(&r.key, &r.value));
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            writeln!(out, "{line}").map_err(StreamsError::user)
        });
        self.state.borrow_mut().apply(|t| t.add_processor(&name, supplier, &[&self.node]).map(drop));
    }

    /// Merges another stream of the same types into this one.
    pub fn merge(&self, other: &KStream<K, V>) -> KStream<K, V> {
        let mut state = self.state.borrow_mut();
        let name = state.new_name("KSTREAM-MERGE-");
        let supplier = stateless(|ctx, r: Record<K, V>| ctx.forward(r));
        state.apply(|t| t.add_processor(&name, supplier, &[&self.node, &other.node]).map(drop));
        drop(state);
        KStream::new(
            self.state.clone(),
            name,
            self.key_serde.clone().or(other.key_serde.clone()),
            self.value_serde.clone().or(other.value_serde.clone()),
            self.repartition_required || other.repartition_required,
        )
    }

    /// Writes the stream to `topic`.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let mut state = self.state.borrow_mut();
        let name = produced.name.clone().unwrap_or_else(|| state.new_name("KSTREAM-SINK-"));
        let topic = streams_core::internals::TopicName::external(topic);
        state.apply(|t| {
            t.add_sink_node(&name, topic, produced.key_serde, produced.value_serde, produced.partitioner, &[&self.node])
                .map(drop)
        });
    }

    /// Writes each record to the topic `extractor` names for it (Kafka Streams' `to` with a
    /// `TopicNameExtractor`); the topics must exist.
    pub fn to_extracted_topic(&self, extractor: impl TopicNameExtractor<K, V>, produced: Produced<K, V>) {
        let mut state = self.state.borrow_mut();
        let name = produced.name.clone().unwrap_or_else(|| state.new_name("KSTREAM-SINK-"));
        let extractor = Arc::new(extractor);
        state.apply(|t| {
            t.add_extracted_sink_node(&name, extractor, produced.key_serde, produced.value_serde, produced.partitioner, &[&self.node])
                .map(drop)
        });
    }

    /// Writes the stream through a repartition topic and reads it back (Kafka Streams'
    /// `repartition`): records are spread by key, or by `repartitioned`'s partitioner, over its
    /// partitions (the input's count unless set), and what follows runs in their tasks.
    pub fn repartition(&self, repartitioned: Repartitioned<K, V>) -> KStream<K, V> {
        let name = repartitioned.name.clone().unwrap_or_else(|| self.state.borrow_mut().new_name("KSTREAM-REPARTITION-"));
        let key_serde = repartitioned.key_serde.clone().or(self.key_serde.clone());
        let value_serde = repartitioned.value_serde.clone().or(self.value_serde.clone());
        let source = repartition_with(
            &self.state,
            &self.node,
            &name,
            key_serde.clone(),
            value_serde.clone(),
            repartitioned.partitioner,
            repartitioned.partitions,
        );
        KStream::new(self.state.clone(), source, key_serde, value_serde, false)
    }

    /// Runs a Processor API processor on the stream, with access to the named stores
    /// (add them with [`StreamsBuilder::add_state_store`](crate::StreamsBuilder::add_state_store)).
    pub fn process<K2: Clone + 'static, V2: Clone + 'static>(
        &self,
        supplier: impl ProcessorSupplier<K, V, K2, V2>,
        stores: &[&str],
    ) -> KStream<K2, V2> {
        let stream = self.add("KSTREAM-PROCESSOR-", supplier, None, None, true);
        stream.connect_stores(stores);
        stream
    }

    /// Runs a fixed-key processor on the stream (Kafka Streams' `processValues`): it may change
    /// values, timestamps and headers but not keys, so the stream is not marked for
    /// repartitioning and keeps its key serde. The processor reaches the named stores and the
    /// record's metadata through its context.
    pub fn process_values<V2: Clone + 'static>(
        &self,
        supplier: impl FixedKeyProcessorSupplier<K, V, V2>,
        stores: &[&str],
    ) -> KStream<K, V2> {
        let supplier = fixed_key_supplier(supplier);
        let stream = self.add("KSTREAM-PROCESSVALUES-", supplier, self.key_serde.clone(), None, self.repartition_required);
        stream.connect_stores(stores);
        stream
    }

    /// Gives the processor this stream comes out of access to `stores`.
    fn connect_stores(&self, stores: &[&str]) {
        let mut state = self.state.borrow_mut();
        for store in stores {
            state.apply(|t| t.connect_processor_and_state_store(&self.node, store).map(drop));
        }
    }

    /// The stream as a table (Kafka Streams' `toTable`): each record upserts its key in a store
    /// built as `materialized` says. A stream whose key changed is repartitioned first.
    pub fn to_table(&self, named: Option<Named>, materialized: Materialized<K, V>) -> KTable<K, V> {
        let materialized = materialized.with_default_serdes(self.key_serde.clone(), self.value_serde.clone());
        let value_serde = self.value_serde.clone().or(materialized.value_serde.clone());
        to_table(self, named, materialized, value_serde, TableSource::<K, V, V>::upserts)
    }

    /// Groups by the current key, for aggregation.
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        KGroupedStream::new(self, grouped, self.repartition_required)
    }

    /// Groups by a new key (aggregations then read through a repartition topic).
    pub fn group_by<K2: Clone + 'static>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        let keyed = self.select_key(selector);
        KGroupedStream::new(&keyed, grouped, true)
    }
}

/// The builder returned by [`KStream::split`].
pub struct BranchedKStream<K, V> {
    stream: KStream<K, V>,
    name: String,
    prefix: String,
    branches: Vec<(String, Predicate<K, V>, Option<BranchChain<K, V>>)>,
}

impl<K, V> std::fmt::Debug for BranchedKStream<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BranchedKStream").field("name", &self.name).finish()
    }
}

impl<K: Clone + 'static, V: Clone + 'static> BranchedKStream<K, V> {
    /// Adds a branch taking the records that match `predicate` and no earlier branch.
    pub fn branch(mut self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static, branched: Branched<K, V>) -> Self {
        let label = branched.name.unwrap_or_else(|| (self.branches.len() + 1).to_string());
        self.branches.push((format!("{}{label}", self.prefix), Arc::new(predicate), branched.chain));
        self
    }

    /// Ends the split with a branch for records no predicate matched.
    pub fn default_branch(self, branched: Branched<K, V>) -> HashMap<String, KStream<K, V>> {
        let label = branched.name.unwrap_or_else(|| "0".to_string());
        let default = format!("{}{label}", self.prefix);
        self.finish(Some((default, branched.chain)))
    }

    /// Ends the split; records no predicate matched are dropped.
    pub fn no_default_branch(self) -> HashMap<String, KStream<K, V>> {
        self.finish(None)
    }

    /// Adds the splitting processor and a pass-through child per branch, then runs each
    /// branch's chain in order; the result holds the streams no consumer took.
    fn finish(self, default: Option<(String, Option<BranchChain<K, V>>)>) -> HashMap<String, KStream<K, V>> {
        let routes: Vec<(String, Predicate<K, V>)> = self.branches.iter().map(|(n, p, _)| (n.clone(), p.clone())).collect();
        let fallback = default.as_ref().map(|(n, _)| n.clone());
        let supplier = stateless(move |ctx, r: Record<K, V>| {
            for (child, predicate) in &routes {
                if predicate(&r.key, &r.value) {
                    return ctx.forward_to(child, r);
                }
            }
            match &fallback {
                Some(child) => ctx.forward_to(child, r),
                None => Ok(()),
            }
        });
        let state = self.stream.state.clone();
        state.borrow_mut().apply(|t| t.add_processor(&self.name, supplier, &[&self.stream.node]).map(drop));
        let mut out = HashMap::new();
        let branches = self.branches.into_iter().map(|(n, _, chain)| (n, chain)).chain(default);
        for (name, chain) in branches {
            let pass = stateless(|ctx, r: Record<K, V>| ctx.forward(r));
            state.borrow_mut().apply(|t| t.add_processor(&name, pass, &[&self.name]).map(drop));
            let branch = KStream::new(
                state.clone(),
                name.clone(),
                self.stream.key_serde.clone(),
                self.stream.value_serde.clone(),
                self.stream.repartition_required,
            );
            match chain {
                None => drop(out.insert(name, branch)),
                Some(BranchChain::Function(f)) => drop(out.insert(name, f(branch))),
                Some(BranchChain::Consumer(f)) => f(branch),
            }
        }
        out
    }
}

impl<K: Clone + 'static, V: Clone + 'static> KStream<K, Option<V>> {
    /// The stream as a table where `None` deletes its key (Kafka Streams' `toTable` of a stream
    /// with null values), as [`to_table`](KStream::to_table) otherwise.
    pub fn to_table_with_deletes(&self, named: Option<Named>, materialized: Materialized<K, V>) -> KTable<K, V> {
        let materialized = materialized.with_default_serdes(self.key_serde.clone(), None);
        let nullable = |s: SerdeRef<V>| Arc::new(Serdes::nullable(s)) as SerdeRef<Option<V>>;
        let value_serde = self.value_serde.clone().or(materialized.value_serde.clone().map(nullable));
        to_table(self, named, materialized, value_serde, TableSource::<K, V, Option<V>>::processor)
    }
}

/// A `KSTREAM-TOTABLE` processor and its store after `stream` (through a repartition topic
/// first if its key changed); `source` builds the processor for the store's name.
fn to_table<K: Clone + 'static, V: Clone + 'static, VIn: Clone + 'static, P: Processor<K, VIn, K, Change<V>> + 'static>(
    stream: &KStream<K, VIn>,
    named: Option<Named>,
    materialized: Materialized<K, V>,
    value_serde: Option<SerdeRef<VIn>>,
    source: fn(&str, bool) -> P,
) -> KTable<K, V> {
    let (name, store) = {
        let mut state = stream.state.borrow_mut();
        let name = named.map_or_else(|| state.new_name("KSTREAM-TOTABLE-"), |n| n.0);
        let store = materialized.store_name.clone().unwrap_or_else(|| state.new_name("KSTREAM-TOTABLE-STATE-STORE-"));
        (name, store)
    };
    let parent = if stream.repartition_required {
        repartition(&stream.state, &stream.node, &name, materialized.key_serde.clone(), value_serde)
    } else {
        stream.node.clone()
    };
    let builder = table_store(&stream.state, &materialized, &store, None, None);
    let store_name = store.clone();
    let send_old = OldValuesSwitch::default();
    let switch = send_old.clone();
    stream.state.borrow_mut().apply(|t| {
        t.add_processor(&name, move || source(&store_name, switch.is_on()), &[&parent])?;
        if let Some(builder) = builder {
            t.add_state_store(builder, &[&name])?;
        }
        Ok(())
    });
    let mut table = KTable::new(stream.state.clone(), name, materialized.key_serde.clone(), materialized.value_serde.clone(), Some(store));
    table.old_values = OldValues::of(&send_old);
    table
}

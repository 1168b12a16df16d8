//! Operator options, named as in Kafka Streams: `Consumed`, `Produced`, `Grouped`,
//! `Materialized`, `Named`, `Branched`, `Repartitioned`.

use std::fmt;
use std::sync::Arc;

use streams_core::state::{KeyValueBytesStoreSupplier, SegmentedBytesStoreSupplier, VersionedBytesStoreSupplier};
use streams_core::{AutoOffsetReset, Serde, SerdeRef, StreamPartitioner, TimestampExtractor};

use crate::kstream::KStream;

/// How a topic is read: key and value serdes, and optionally the source's name and its
/// timestamp extractor.
pub struct Consumed<K, V> {
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
    pub(crate) name: Option<String>,
    pub(crate) timestamp_extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    pub(crate) offset_reset: Option<AutoOffsetReset>,
}

impl<K, V> Consumed<K, V> {
    /// Reads with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Consumed { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde), name: None, timestamp_extractor: None, offset_reset: None }
    }

    /// Names the source node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Takes each record's event time from `extractor` (e.g. from a field of the payload)
    /// instead of `default.timestamp.extractor`. At a table source, tombstones keep their
    /// record's timestamp.
    pub fn with_timestamp_extractor(mut self, extractor: impl TimestampExtractor<K, V>) -> Self {
        self.timestamp_extractor = Some(Arc::new(extractor));
        self
    }

    /// Where partitions without a committed offset start, instead of the consumer's
    /// `auto.offset.reset` (stream and table sources; global tables always read everything).
    pub fn with_offset_reset_policy(mut self, reset: AutoOffsetReset) -> Self {
        self.offset_reset = Some(reset);
        self
    }
}

impl<K, V> fmt::Debug for Consumed<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumed").field("name", &self.name).finish()
    }
}

/// How a stream is written: key and value serdes, and optionally the sink's name and its
/// partitioner.
pub struct Produced<K, V> {
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
    pub(crate) name: Option<String>,
    pub(crate) partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
}

impl<K, V> Produced<K, V> {
    /// Writes with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Produced { key_serde: Arc::new(key_serde), value_serde: Arc::new(value_serde), name: None, partitioner: None }
    }

    /// Names the sink node.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Writes each record to the partition `partitioner` chooses (default: murmur2 of the
    /// serialized key).
    pub fn with_stream_partitioner(mut self, partitioner: impl StreamPartitioner<K, V>) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }
}

/// How [`KStream::repartition`](crate::KStream::repartition) writes its topic: name, serdes,
/// partition count and partitioner, each optional.
pub struct Repartitioned<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) partitions: Option<i32>,
    pub(crate) partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
}

impl<K, V> Default for Repartitioned<K, V> {
    fn default() -> Self {
        Repartitioned { name: None, key_serde: None, value_serde: None, partitions: None, partitioner: None }
    }
}

impl<K, V> Repartitioned<K, V> {
    /// Defaults: a generated name, the stream's serdes, the partition count of the input.
    pub fn new() -> Self {
        Self::default()
    }

    /// The topic is `<application.id>-<name>-repartition`.
    pub fn as_(name: impl Into<String>) -> Self {
        Repartitioned { name: Some(name.into()), ..Self::default() }
    }

    /// Writes with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Repartitioned { key_serde: Some(Arc::new(key_serde)), value_serde: Some(Arc::new(value_serde)), ..Self::default() }
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the key serde.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// Sets the value serde.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// Creates the topic with `partitions` partitions (and as many tasks downstream) instead
    /// of the input's count.
    pub fn with_number_of_partitions(mut self, partitions: u32) -> Self {
        self.partitions = Some(i32::try_from(partitions).unwrap_or(i32::MAX));
        self
    }

    /// Writes each record to the partition `partitioner` chooses.
    pub fn with_stream_partitioner(mut self, partitioner: impl StreamPartitioner<K, V>) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }
}

impl<K, V> fmt::Debug for Repartitioned<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repartitioned").field("name", &self.name).field("partitions", &self.partitions).finish()
    }
}

impl<K, V> fmt::Debug for Produced<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Produced").field("name", &self.name).finish()
    }
}

/// Serdes (and a name, used for the repartition topic) for grouping.
pub struct Grouped<K, V> {
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) name: Option<String>,
}

impl<K, V> Default for Grouped<K, V> {
    fn default() -> Self {
        Grouped { key_serde: None, value_serde: None, name: None }
    }
}

impl<K, V> Grouped<K, V> {
    /// Groups with these serdes (needed when the key or value type changed upstream).
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Grouped { key_serde: Some(Arc::new(key_serde)), value_serde: Some(Arc::new(value_serde)), name: None }
    }

    /// Names the grouping: the repartition topic becomes `<application.id>-<name>-repartition`.
    pub fn as_(name: impl Into<String>) -> Self {
        Grouped { name: Some(name.into()), ..Self::default() }
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the key serde.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// Sets the value serde.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }
}

impl<K, V> fmt::Debug for Grouped<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grouped").field("name", &self.name).finish()
    }
}

/// How a KTable's state store is built: name, serdes, caching, logging, RocksDB or in-memory.
///
/// Defaults as in Kafka Streams: a generated name, RocksDB, caching on, logging on.
pub struct Materialized<K, V> {
    pub(crate) store_name: Option<String>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
    pub(crate) caching: bool,
    pub(crate) logging: bool,
    pub(crate) in_memory: bool,
    pub(crate) retention_ms: Option<i64>,
    /// A key-value store of the user's (`as_supplier`).
    pub(crate) supplier: Option<KeyValueBytesStoreSupplier>,
    /// A window or session store of the user's (`as_window_supplier`).
    pub(crate) window_supplier: Option<SegmentedBytesStoreSupplier>,
    /// A versioned store (`as_versioned`).
    pub(crate) versioned: Option<VersionedBytesStoreSupplier>,
}

impl<K, V> Default for Materialized<K, V> {
    fn default() -> Self {
        Materialized {
            store_name: None,
            key_serde: None,
            value_serde: None,
            caching: true,
            logging: true,
            in_memory: false,
            retention_ms: None,
            supplier: None,
            window_supplier: None,
            versioned: None,
        }
    }
}

impl<K, V> Materialized<K, V> {
    /// Defaults: a generated store name.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store with this name (queryable, and named in the changelog topic).
    pub fn as_(store_name: impl Into<String>) -> Self {
        Materialized { store_name: Some(store_name.into()), ..Self::default() }
    }

    /// A key-value store from `supplier` (a user's store, or one of [`Stores`](streams_core::Stores)'),
    /// named after it (Kafka Streams' `Materialized.as(KeyValueBytesStoreSupplier)`).
    pub fn as_supplier(supplier: KeyValueBytesStoreSupplier) -> Self {
        Materialized { store_name: Some(supplier.name().to_string()), supplier: Some(supplier), ..Self::default() }
    }

    /// A window or session store from `supplier` (one of [`Stores`](streams_core::Stores)', or
    /// with the user's segments), named after it and keeping its retention (Kafka Streams'
    /// `Materialized.as(WindowBytesStoreSupplier)` and `as(SessionBytesStoreSupplier)`).
    pub fn as_window_supplier(supplier: SegmentedBytesStoreSupplier) -> Self {
        Materialized { store_name: Some(supplier.name().to_string()), window_supplier: Some(supplier), ..Self::default() }
    }

    /// A versioned store from `supplier` (Kafka Streams' `Materialized.as(VersionedBytesStoreSupplier)`):
    /// a source table keeps each key's versions over the supplier's history retention, and a
    /// stream joined with it reads the row as of each stream record's time. Versioned stores
    /// are not cached. Only source tables ([`StreamsBuilder::table`](crate::StreamsBuilder::table))
    /// take one here.
    pub fn as_versioned(supplier: VersionedBytesStoreSupplier) -> Self {
        Materialized { store_name: Some(supplier.name().to_string()), versioned: Some(supplier), caching: false, ..Self::default() }
    }

    /// A store with these serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Materialized { key_serde: Some(Arc::new(key_serde)), value_serde: Some(Arc::new(value_serde)), ..Self::default() }
    }

    /// Sets the key serde.
    pub fn with_key_serde(mut self, serde: impl Serde<K>) -> Self {
        self.key_serde = Some(Arc::new(serde));
        self
    }

    /// Sets the value serde.
    pub fn with_value_serde(mut self, serde: impl Serde<V>) -> Self {
        self.value_serde = Some(Arc::new(serde));
        self
    }

    /// Sets the store name.
    pub fn with_store_name(mut self, name: impl Into<String>) -> Self {
        self.store_name = Some(name.into());
        self
    }

    /// Turns the record cache on (the default): updates of a key between commits emit once.
    pub fn with_caching_enabled(mut self) -> Self {
        self.caching = true;
        self
    }

    /// Turns the record cache off: every update is emitted.
    pub fn with_caching_disabled(mut self) -> Self {
        self.caching = false;
        self
    }

    /// Logs the store to `<application.id>-<store>-changelog` (the default).
    pub fn with_logging_enabled(mut self) -> Self {
        self.logging = true;
        self
    }

    /// No changelog.
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }

    /// Keeps the store in memory instead of RocksDB.
    pub fn in_memory(mut self) -> Self {
        self.in_memory = true;
        self
    }

    /// How long a window or session store keeps windows, in stream time (default: window size
    /// plus grace); at least that, so interactive queries can read older windows.
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention_ms = Some(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        self
    }
}

impl<K, V> Materialized<K, V> {
    /// Takes these serdes where none is set.
    pub(crate) fn with_default_serdes(mut self, key_serde: Option<SerdeRef<K>>, value_serde: Option<SerdeRef<V>>) -> Self {
        self.key_serde = self.key_serde.or(key_serde);
        self.value_serde = self.value_serde.or(value_serde);
        self
    }
}

impl<K, V> fmt::Debug for Materialized<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Materialized")
            .field("store_name", &self.store_name)
            .field("caching", &self.caching)
            .field("logging", &self.logging)
            .field("in_memory", &self.in_memory)
            .finish()
    }
}

/// Options of a stream-table join (Kafka Streams' `Joined`): the join's name, and a grace
/// period for which stream records wait, in a change-logged buffer, so that table updates up to
/// that much older than the newest stream record still reach them (KIP-923; the table must be
/// versioned, with a history retention of at least the grace period). The serdes are the
/// buffer's, where the stream has none.
pub struct Joined<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) grace: Option<std::time::Duration>,
    pub(crate) key_serde: Option<SerdeRef<K>>,
    pub(crate) value_serde: Option<SerdeRef<V>>,
}

impl<K, V> Default for Joined<K, V> {
    fn default() -> Self {
        Joined { name: None, grace: None, key_serde: None, value_serde: None }
    }
}

impl<K, V> fmt::Debug for Joined<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Joined").field("name", &self.name).field("grace", &self.grace).finish()
    }
}

impl<K, V> Joined<K, V> {
    /// Defaults: a generated name, no grace period.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stream's key and value serdes.
    pub fn with(key_serde: impl Serde<K>, value_serde: impl Serde<V>) -> Self {
        Joined { key_serde: Some(Arc::new(key_serde)), value_serde: Some(Arc::new(value_serde)), ..Self::default() }
    }

    /// A join named `name` (its buffer is `<name>-Buffer`).
    pub fn as_(name: impl Into<String>) -> Self {
        Joined { name: Some(name.into()), ..Self::default() }
    }

    /// Stream records wait until stream time passes their timestamp plus `grace`; records
    /// older than that on arrival are joined at once.
    pub fn with_grace_period(mut self, grace: std::time::Duration) -> Self {
        self.grace = Some(grace);
        self
    }
}

/// A processor name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named(pub(crate) String);

impl Named {
    /// The name `name`.
    pub fn as_(name: impl Into<String>) -> Self {
        Named(name.into())
    }
}

impl From<&str> for Named {
    fn from(name: &str) -> Self {
        Named(name.to_string())
    }
}

impl From<String> for Named {
    fn from(name: String) -> Self {
        Named(name)
    }
}

/// One branch of [`KStream::split`](crate::KStream::split): its name, and optionally what is
/// done with its stream (Kafka Streams' `Branched`).
///
/// A chain's closure names its stream's type, as the compiler cannot infer it from the split:
/// `Branched::with_function(|s: KStream<String, i64>| s.map_values(|v| v * 2))`.
pub struct Branched<K, V> {
    pub(crate) name: Option<String>,
    pub(crate) chain: Option<BranchChain<K, V>>,
}

/// What a branch's stream goes through before it is put in the split's result.
pub(crate) enum BranchChain<K, V> {
    /// The result holds what the function returns.
    Function(Box<dyn FnOnce(KStream<K, V>) -> KStream<K, V>>),
    /// The consumer takes the stream; the result leaves the branch out.
    Consumer(Box<dyn FnOnce(KStream<K, V>)>),
}

impl<K, V> Branched<K, V> {
    /// A branch named `name`; its stream is keyed `<split prefix><name>` in the result.
    pub fn as_(name: impl Into<String>) -> Self {
        Branched { name: Some(name.into()), chain: None }
    }

    /// A branch named by its position.
    pub fn new() -> Self {
        Branched { name: None, chain: None }
    }

    /// A branch whose stream goes through `chain`; the result holds the stream `chain` returns.
    pub fn with_function(chain: impl FnOnce(KStream<K, V>) -> KStream<K, V> + 'static) -> Self {
        Branched { name: None, chain: Some(BranchChain::Function(Box::new(chain))) }
    }

    /// A branch whose stream is handed to `consumer` (to end in a sink, say); the result leaves
    /// it out.
    pub fn with_consumer(consumer: impl FnOnce(KStream<K, V>) + 'static) -> Self {
        Branched { name: None, chain: Some(BranchChain::Consumer(Box::new(consumer))) }
    }

    /// Names the branch `name`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<K, V> Default for Branched<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> fmt::Debug for Branched<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let chain = match self.chain {
            None => "none",
            Some(BranchChain::Function(_)) => "function",
            Some(BranchChain::Consumer(_)) => "consumer",
        };
        f.debug_struct("Branched").field("name", &self.name).field("chain", &chain).finish()
    }
}

/// Where and how [`KStream::print`](crate::KStream::print) writes records (Kafka Streams'
/// `Printed`): one line per record, `[<label>]: <key>, <value>`, the label defaulting to the
/// print node's name.
pub struct Printed<K, V> {
    pub(crate) target: PrintTarget,
    pub(crate) label: Option<String>,
    pub(crate) mapper: Arc<dyn Fn(&K, &V) -> String + Send + Sync>,
}

/// Standard output or a file.
#[derive(Debug, Clone)]
pub(crate) enum PrintTarget {
    Stdout,
    File(std::path::PathBuf),
}

impl<K: fmt::Debug, V: fmt::Debug> Printed<K, V> {
    /// Prints to standard output, keys and values as `Debug` shows them.
    pub fn to_sys_out() -> Self {
        Printed { target: PrintTarget::Stdout, label: None, mapper: Arc::new(|k, v| format!("{k:?}, {v:?}")) }
    }

    /// Writes to the file at `path` (created or truncated when the topology is built).
    pub fn to_file(path: impl Into<std::path::PathBuf>) -> Self {
        Printed { target: PrintTarget::File(path.into()), ..Self::to_sys_out() }
    }
}

impl<K, V> Printed<K, V> {
    /// The label in front of each line.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// How a record becomes the text after the label.
    pub fn with_key_value_mapper(mut self, mapper: impl Fn(&K, &V) -> String + Send + Sync + 'static) -> Self {
        self.mapper = Arc::new(mapper);
        self
    }
}

impl<K, V> fmt::Debug for Printed<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Printed").field("target", &self.target).field("label", &self.label).finish()
    }
}

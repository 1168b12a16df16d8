//! Store suppliers and builders: how a topology declares its stores and how tasks create them.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::caching::{CachingKeyValueStore, ThreadCache};
use super::in_memory::InMemoryKeyValueStore;
use super::logging::ChangeLoggingKeyValueStore;
use super::metered::MeteredKeyValueStore;
use super::typed::{KeyValueStore, SerdeKeyValueStore};
use super::rocksdb_store::RocksDbKeyValueStore;
use super::segmented::{segments_dir, KeySchema, SegmentLocation, SegmentedBytesStore};
use super::transactional::TransactionalBytesStore;
use super::versioned::{VersionedBytesStoreSupplier, VersionedKeyValueStoreBuilder};
use super::window::{SessionStore, WindowStore};
use super::user_store::{BytesKeyValueStore, UserKeyValueStore, UserStoreFactory};
use super::{KeyValueBytesStore, RocksDbConfig, StateStore};
use crate::collector::RecordCollector;
use crate::error::Result;
use crate::metrics::{MetricsRegistry, StoreKey, StoreSensors};
use crate::record::{RecordContext, TaskId};
use crate::serdes::{Serde, SerdeRef};

/// What a task gives a store builder (opaque).
pub struct StoreContext {
    pub(crate) application_id: String,
    pub(crate) task_id: TaskId,
    pub(crate) task_dir: PathBuf,
    pub(crate) collector: Rc<RefCell<dyn RecordCollector>>,
    pub(crate) record_context: Rc<RefCell<RecordContext>>,
    pub(crate) thread_cache: Rc<RefCell<ThreadCache>>,
    /// Under `exactly_once_v2`, persistent stores buffer the open transaction's writes.
    pub(crate) exactly_once: bool,
    /// Where the task's store metrics go (none in the test driver).
    pub(crate) metrics: Option<StoreMetricsContext>,
    /// The options RocksDB stores open with.
    pub(crate) rocksdb_config: RocksDbConfig,
}

/// The registry and thread a task's stores report metrics to.
#[derive(Clone)]
pub(crate) struct StoreMetricsContext {
    pub(crate) registry: Arc<MetricsRegistry>,
    pub(crate) thread: String,
}

impl StoreContext {
    /// The sensors of store `name` of this task, `scope` its kind (`rocksdb-state-id`, ...).
    pub(crate) fn sensors(&self, name: &str, scope: &'static str) -> Option<Arc<StoreSensors>> {
        let m = self.metrics.as_ref()?;
        Some(m.registry.store(StoreKey { thread: m.thread.clone(), task: self.task_id, scope, name: name.to_string() }))
    }
}

/// A store's `<type>-state-id` metrics tag, as Kafka Streams names its store types.
pub(crate) fn metrics_scope(persistent: bool, kind: &str) -> &'static str {
    match (persistent, kind) {
        (true, "window") => "rocksdb-window-state-id",
        (true, "session") => "rocksdb-session-state-id",
        (true, _) => "rocksdb-state-id",
        (false, "window") => "in-memory-window-state-id",
        (false, "session") => "in-memory-session-state-id",
        (false, _) => "in-memory-state-id",
    }
}

/// A store created for a task: an erased handle for the task, a typed one for processors (opaque).
pub struct RegisteredStore {
    pub(crate) store: Rc<RefCell<dyn StateStore>>,
    pub(crate) typed: Box<dyn Any>,
    pub(crate) type_name: String,
    pub(crate) changelog_topic: Option<String>,
    /// The store's `<type>-state-id` metrics tag.
    pub(crate) metrics_scope: &'static str,
}

impl fmt::Debug for StoreContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreContext").field("task_id", &self.task_id).field("task_dir", &self.task_dir).finish()
    }
}

impl fmt::Debug for RegisteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredStore").field("type", &self.type_name).finish()
    }
}

/// The changelog topic of a store: `<application.id>-<store>-changelog`.
pub(crate) fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// Declares a store in a [`Topology`](crate::topology::Topology); each task builds its own instance.
pub trait StoreBuilder: Send + Sync + 'static {
    /// The store name, unique in the topology.
    fn name(&self) -> &str;
    /// Whether writes go to a changelog topic.
    fn logging_enabled(&self) -> bool;
    /// The typed handle's type, for error messages.
    fn type_name(&self) -> String;
    /// Creates the store for one task.
    #[doc(hidden)]
    fn build(&self, ctx: &StoreContext) -> Result<RegisteredStore>;
    /// Topic configs of the changelog (compacted by default).
    fn changelog_config(&self) -> Vec<(String, String)> {
        vec![("cleanup.policy".into(), "compact".into())]
    }
}

/// Where a key-value store keeps its bytes: RocksDB, memory, or a user's store.
#[derive(Clone)]
pub struct KeyValueBytesStoreSupplier {
    name: String,
    persistent: bool,
    user: Option<UserStoreFactory>,
}

impl fmt::Debug for KeyValueBytesStoreSupplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValueBytesStoreSupplier")
            .field("name", &self.name)
            .field("persistent", &self.persistent)
            .field("user", &self.user.is_some())
            .finish()
    }
}

impl KeyValueBytesStoreSupplier {
    /// The store name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether its stores keep their data on disk.
    pub(crate) fn is_persistent(&self) -> bool {
        self.persistent
    }

    pub(crate) fn get(&self, ctx: &StoreContext) -> Result<Box<dyn KeyValueBytesStore>> {
        Ok(match &self.user {
            Some(factory) => {
                Box::new(UserKeyValueStore { name: self.name.clone(), inner: factory(&self.name, ctx.task_id, &ctx.task_dir)? })
            }
            None if self.persistent => Box::new(RocksDbKeyValueStore::open(&self.name, &ctx.task_dir, &ctx.rocksdb_config)?),
            None => Box::new(InMemoryKeyValueStore::new(&self.name)),
        })
    }
}

/// Factory functions for stores, as in Kafka Streams' `Stores`.
#[derive(Debug, Clone, Copy)]
pub struct Stores;

impl Stores {
    /// A RocksDB store at `<state.dir>/<application.id>/<task>/rocksdb/<name>`.
    pub fn persistent_key_value_store(name: impl Into<String>) -> KeyValueBytesStoreSupplier {
        KeyValueBytesStoreSupplier { name: name.into(), persistent: true, user: None }
    }

    /// A store held in memory (restored from its changelog after a restart).
    pub fn in_memory_key_value_store(name: impl Into<String>) -> KeyValueBytesStoreSupplier {
        KeyValueBytesStoreSupplier { name: name.into(), persistent: false, user: None }
    }

    /// A store of your own: `factory` makes one per task, given the store's name, the task and
    /// the task's directory (Kafka Streams' custom `KeyValueBytesStoreSupplier`). `persistent`
    /// says whether its stores keep their data across restarts (see [`BytesKeyValueStore`]).
    pub fn key_value_store_supplier<S: BytesKeyValueStore>(
        name: impl Into<String>,
        persistent: bool,
        factory: impl Fn(&str, TaskId, &std::path::Path) -> Result<S> + Send + Sync + 'static,
    ) -> KeyValueBytesStoreSupplier {
        KeyValueBytesStoreSupplier { name: name.into(), persistent, user: Some(user_factory(factory)) }
    }

    /// A versioned RocksDB store ([`VersionedKeyValueStore`](super::VersionedKeyValueStore)): the
    /// values each key had over the last `history_retention` of stream time (Kafka Streams'
    /// `persistentVersionedKeyValueStore`). Puts older than that are refused.
    pub fn persistent_versioned_key_value_store(name: impl Into<String>, history_retention: Duration) -> VersionedBytesStoreSupplier {
        VersionedBytesStoreSupplier {
            bytes: Self::persistent_key_value_store(name),
            history_retention_ms: history_retention.as_millis().min(i64::MAX as u128) as i64,
        }
    }

    /// A typed versioned store builder: logging on; versioned stores are never cached.
    pub fn versioned_key_value_store_builder<K, V>(
        supplier: VersionedBytesStoreSupplier,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> VersionedKeyValueStoreBuilder<K, V> {
        super::versioned::builder(supplier, key_serde, value_serde)
    }

    /// A typed key-value store builder: logging on, caching off, as in Kafka Streams.
    pub fn key_value_store_builder<K, V>(
        supplier: KeyValueBytesStoreSupplier,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> KeyValueStoreBuilder<K, V> {
        KeyValueStoreBuilder {
            supplier,
            key_serde: Arc::new(key_serde),
            value_serde: Arc::new(value_serde),
            caching: false,
            logging: true,
        }
    }
}

/// Builds [`KeyValueStore`]s for each task.
pub struct KeyValueStoreBuilder<K, V> {
    supplier: KeyValueBytesStoreSupplier,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    caching: bool,
    logging: bool,
}

impl<K, V> fmt::Debug for KeyValueStoreBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValueStoreBuilder")
            .field("supplier", &self.supplier)
            .field("caching", &self.caching)
            .field("logging", &self.logging)
            .finish()
    }
}

impl<K, V> KeyValueStoreBuilder<K, V> {
    /// From shared serdes.
    pub fn new(supplier: KeyValueBytesStoreSupplier, key_serde: SerdeRef<K>, value_serde: SerdeRef<V>) -> Self {
        KeyValueStoreBuilder { supplier, key_serde, value_serde, caching: false, logging: true }
    }
    /// Turns on the record cache (`statestore.cache.max.bytes`).
    pub fn with_caching_enabled(mut self) -> Self {
        self.caching = true;
        self
    }
    /// Turns off the record cache.
    pub fn with_caching_disabled(mut self) -> Self {
        self.caching = false;
        self
    }
    /// Logs every write to `<application.id>-<store>-changelog` (the default).
    pub fn with_logging_enabled(mut self) -> Self {
        self.logging = true;
        self
    }
    /// No changelog: the store is not restored when its task moves.
    pub fn with_logging_disabled(mut self) -> Self {
        self.logging = false;
        self
    }
}

impl<K: 'static, V: 'static> StoreBuilder for KeyValueStoreBuilder<K, V> {
    fn name(&self) -> &str {
        &self.supplier.name
    }
    fn logging_enabled(&self) -> bool {
        self.logging
    }
    fn type_name(&self) -> String {
        std::any::type_name::<KeyValueStore<K, V>>().to_string()
    }
    fn build(&self, ctx: &StoreContext) -> Result<RegisteredStore> {
        let topic = changelog_topic(&ctx.application_id, &self.supplier.name);
        let scope = metrics_scope(self.supplier.persistent, "key-value");
        let bytes = layered(self.supplier.get(ctx)?, ctx, &topic, self.logging, self.caching, scope);
        let typed = KeyValueStore::new(SerdeKeyValueStore::new(
            bytes,
            topic.clone(),
            self.key_serde.clone(),
            self.value_serde.clone(),
        ));
        Ok(RegisteredStore {
            store: typed.as_state_store(),
            type_name: self.type_name(),
            typed: Box::new(typed),
            changelog_topic: self.logging.then_some(topic),
            metrics_scope: scope,
        })
    }
}

/// Wraps a bytes store in change-logging and caching, as configured.
pub(super) fn layered(
    mut bytes: Box<dyn KeyValueBytesStore>,
    ctx: &StoreContext,
    topic: &str,
    logging: bool,
    caching: bool,
    scope: &'static str,
) -> Box<dyn KeyValueBytesStore> {
    let sensors = ctx.sensors(bytes.name(), scope).filter(|s| s.debug);
    if ctx.exactly_once && bytes.persistent() {
        bytes = Box::new(TransactionalBytesStore::new(bytes));
    }
    if logging {
        bytes = Box::new(ChangeLoggingKeyValueStore::new(
            bytes,
            topic.to_string().into(),
            ctx.task_id.partition,
            ctx.collector.clone(),
            ctx.record_context.clone(),
        ));
    }
    if caching {
        bytes = Box::new(
            CachingKeyValueStore::new(bytes, ctx.thread_cache.clone(), ctx.record_context.clone()).with_sensors(sensors.clone()),
        );
    }
    if let Some(sensors) = sensors {
        bytes = Box::new(MeteredKeyValueStore::new(bytes, sensors));
    }
    bytes
}

/// A user's store factory, type-erased.
fn user_factory<S: BytesKeyValueStore>(
    factory: impl Fn(&str, TaskId, &std::path::Path) -> Result<S> + Send + Sync + 'static,
) -> UserStoreFactory {
    Arc::new(move |name, task, dir| factory(name, task, dir).map(|s| Box::new(s) as Box<dyn BytesKeyValueStore>))
}

/// Extra retention of window and session changelogs beyond the store's own, as Kafka
/// Streams' `windowstore.changelog.additional.retention.ms` default (one day).
const CHANGELOG_ADDITIONAL_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// Where a window or session store keeps its bytes, and for how long.
#[derive(Clone)]
pub struct SegmentedBytesStoreSupplier {
    name: String,
    persistent: bool,
    retention_ms: i64,
    window_size_ms: i64,
    schema: KeySchema,
    /// The user's store for each segment.
    user: Option<UserStoreFactory>,
}

impl fmt::Debug for SegmentedBytesStoreSupplier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentedBytesStoreSupplier")
            .field("name", &self.name)
            .field("persistent", &self.persistent)
            .field("retention_ms", &self.retention_ms)
            .field("window_size_ms", &self.window_size_ms)
            .field("schema", &self.schema)
            .field("user", &self.user.is_some())
            .finish()
    }
}

impl SegmentedBytesStoreSupplier {
    /// The store name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How long entries are kept, in ms of stream time.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// The window size (0 for a session store).
    pub fn window_size_ms(&self) -> i64 {
        self.window_size_ms
    }

    /// Whether it holds sessions rather than time windows.
    pub fn is_session_store(&self) -> bool {
        self.schema == KeySchema::Session
    }

    fn get(&self, ctx: &StoreContext) -> Result<Box<dyn KeyValueBytesStore>> {
        let dir = segments_dir(&ctx.task_dir, &self.name);
        let location = match &self.user {
            Some(factory) => SegmentLocation::User { dir, factory: factory.clone(), task: ctx.task_id, persistent: self.persistent },
            None if self.persistent => SegmentLocation::RocksDb(dir, ctx.rocksdb_config.clone()),
            None => SegmentLocation::InMemory,
        };
        Ok(Box::new(SegmentedBytesStore::open(&self.name, self.schema, self.retention_ms, location)?))
    }

    fn changelog_config(&self) -> Vec<(String, String)> {
        vec![
            ("cleanup.policy".into(), "compact,delete".into()),
            ("retention.ms".into(), (self.retention_ms + CHANGELOG_ADDITIONAL_RETENTION_MS).to_string()),
        ]
    }
}

/// A duration in milliseconds of stream time, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Stores {
    /// A RocksDB window store: windows of `window_size` kept for `retention` of stream time;
    /// `retain_duplicates` keeps every put (join buffers).
    pub fn persistent_window_store(
        name: impl Into<String>,
        retention: Duration,
        window_size: Duration,
        retain_duplicates: bool,
    ) -> SegmentedBytesStoreSupplier {
        SegmentedBytesStoreSupplier {
            name: name.into(),
            persistent: true,
            retention_ms: millis(retention),
            window_size_ms: millis(window_size),
            schema: KeySchema::Window { retain_duplicates },
            user: None,
        }
    }

    /// A window store held in memory.
    pub fn in_memory_window_store(
        name: impl Into<String>,
        retention: Duration,
        window_size: Duration,
        retain_duplicates: bool,
    ) -> SegmentedBytesStoreSupplier {
        SegmentedBytesStoreSupplier { persistent: false, ..Self::persistent_window_store(name, retention, window_size, retain_duplicates) }
    }

    /// A RocksDB session store keeping sessions for `retention` of stream time after they end.
    pub fn persistent_session_store(name: impl Into<String>, retention: Duration) -> SegmentedBytesStoreSupplier {
        SegmentedBytesStoreSupplier {
            name: name.into(),
            persistent: true,
            retention_ms: millis(retention),
            window_size_ms: 0,
            schema: KeySchema::Session,
            user: None,
        }
    }

    /// A session store held in memory.
    pub fn in_memory_session_store(name: impl Into<String>, retention: Duration) -> SegmentedBytesStoreSupplier {
        SegmentedBytesStoreSupplier { persistent: false, ..Self::persistent_session_store(name, retention) }
    }

    /// A window store whose time segments are the user's key-value stores: `factory` makes one
    /// per segment, from the segment's name, its task and a directory of its own (where a
    /// `persistent` store keeps its data, so a reopened task finds its segments; an expired
    /// segment's store is closed and its directory removed). The library keeps the window
    /// layout, retention and segments, and its metering, logging and caching layers on top.
    pub fn window_store_supplier<S: BytesKeyValueStore>(
        name: impl Into<String>,
        retention: Duration,
        window_size: Duration,
        retain_duplicates: bool,
        persistent: bool,
        factory: impl Fn(&str, TaskId, &std::path::Path) -> Result<S> + Send + Sync + 'static,
    ) -> SegmentedBytesStoreSupplier {
        SegmentedBytesStoreSupplier {
            persistent,
            user: Some(user_factory(factory)),
            ..Self::persistent_window_store(name, retention, window_size, retain_duplicates)
        }
    }

    /// A session store whose time segments are the user's key-value stores (see
    /// [`window_store_supplier`](Self::window_store_supplier)).
    pub fn session_store_supplier<S: BytesKeyValueStore>(
        name: impl Into<String>,
        retention: Duration,
        persistent: bool,
        factory: impl Fn(&str, TaskId, &std::path::Path) -> Result<S> + Send + Sync + 'static,
    ) -> SegmentedBytesStoreSupplier {
        SegmentedBytesStoreSupplier { persistent, user: Some(user_factory(factory)), ..Self::persistent_session_store(name, retention) }
    }

    /// A typed window store builder (logging on, caching off).
    pub fn window_store_builder<K, V>(
        supplier: SegmentedBytesStoreSupplier,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> WindowStoreBuilder<K, V> {
        WindowStoreBuilder { supplier, key_serde, value_serde, caching: false, logging: true }
    }

    /// A typed session store builder (logging on, caching off).
    pub fn session_store_builder<K, V>(
        supplier: SegmentedBytesStoreSupplier,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
    ) -> WindowStoreBuilder<K, V> {
        Self::window_store_builder(supplier, key_serde, value_serde)
    }
}

/// Builds [`WindowStore`]s (from a window supplier) or [`SessionStore`]s (from a session
/// supplier) for each task.
pub struct WindowStoreBuilder<K, V> {
    supplier: SegmentedBytesStoreSupplier,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    caching: bool,
    logging: bool,
}

impl<K, V> fmt::Debug for WindowStoreBuilder<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowStoreBuilder")
            .field("supplier", &self.supplier)
            .field("caching", &self.caching)
            .field("logging", &self.logging)
            .finish()
    }
}

impl<K, V> WindowStoreBuilder<K, V> {
    /// Turns the record cache on or off.
    pub fn with_caching(mut self, enabled: bool) -> Self {
        self.caching = enabled;
        self
    }
    /// Turns the changelog on (the default) or off.
    pub fn with_logging(mut self, enabled: bool) -> Self {
        self.logging = enabled;
        self
    }
}

impl<K: 'static, V: 'static> StoreBuilder for WindowStoreBuilder<K, V> {
    fn name(&self) -> &str {
        &self.supplier.name
    }
    fn logging_enabled(&self) -> bool {
        self.logging
    }
    fn changelog_config(&self) -> Vec<(String, String)> {
        self.supplier.changelog_config()
    }
    fn type_name(&self) -> String {
        match self.supplier.schema {
            KeySchema::Session => std::any::type_name::<SessionStore<K, V>>().to_string(),
            KeySchema::Window { .. } => std::any::type_name::<WindowStore<K, V>>().to_string(),
        }
    }
    fn build(&self, ctx: &StoreContext) -> Result<RegisteredStore> {
        let topic = changelog_topic(&ctx.application_id, &self.supplier.name);
        let kind = if matches!(self.supplier.schema, KeySchema::Session) { "session" } else { "window" };
        let scope = metrics_scope(self.supplier.persistent, kind);
        let bytes = layered(self.supplier.get(ctx)?, ctx, &topic, self.logging, self.caching, scope);
        let serde_layer = SerdeKeyValueStore::new(bytes, topic.clone(), self.key_serde.clone(), self.value_serde.clone());
        let (store, typed): (_, Box<dyn Any>) = match self.supplier.schema {
            KeySchema::Session => {
                let typed = SessionStore::new(serde_layer);
                (typed.as_state_store(), Box::new(typed))
            }
            KeySchema::Window { retain_duplicates } => {
                let typed = WindowStore::new(serde_layer, self.supplier.window_size_ms, retain_duplicates);
                (typed.as_state_store(), Box::new(typed))
            }
        };
        Ok(RegisteredStore {
            store,
            typed,
            type_name: self.type_name(),
            changelog_topic: self.logging.then_some(topic),
            metrics_scope: scope,
        })
    }
}

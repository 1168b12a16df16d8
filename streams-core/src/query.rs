//! Interactive queries: read a running application's state stores from outside its topology,
//! as Kafka Streams' `KafkaStreams#store`.
//!
//! ```no_run
//! # use streams_core::{KafkaStreams, Result};
//! use streams_core::query::{QueryableStoreTypes, StoreQueryParameters};
//! # fn f(streams: &KafkaStreams) -> Result<()> {
//! let counts = streams.store(StoreQueryParameters::from_name_and_type(
//!     "counts",
//!     QueryableStoreTypes::key_value::<String, i64>(),
//! ))?;
//! println!("kafka: {:?}", counts.get(&"kafka".to_string())?);
//! for entry in counts.range(&"a".to_string(), &"m".to_string())? {
//!     let (word, count) = entry?;
//!     println!("{word}: {count}");
//! }
//! # Ok(()) }
//! ```
//!
//! A view covers every task of this instance that holds the store (or one partition's, with
//! [`StoreQueryParameters::with_partition`]). Each read runs on the stream thread that owns the
//! task, through the same layers its processors use (record cache, open transaction), between
//! that thread's polls; scans come back a page at a time, so a scan of any size holds one page.
//! Iterators over several tasks yield one task's entries after the other's, as Kafka Streams'
//! composite stores do.
//!
//! Reads fail with [`StreamsError::InvalidStateStore`]; [`StreamsError::is_retriable`] tells a
//! store that is migrating, restoring or not started yet (ask again, or ask its new owner: see
//! [`KafkaStreams::query_metadata_for_key`](crate::KafkaStreams::query_metadata_for_key)) from
//! one that will not come back (unknown store, client stopped). Restoring tasks are read only
//! with [`StoreQueryParameters::enable_stale_stores`].

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{InvalidStateStoreReason, Result, StreamsError};
use crate::record::TaskId;
use crate::runtime::{ClientShared, State};
use crate::serdes::Serde;
use crate::state::{KeyRange, KeyValueIterator, KeyValueStore, SessionStore, ValueAndTimestamp, WindowStore, Windowed};
use crate::task::StreamTask;

pub use metadata::{HostInfo, KeyQueryMetadata, StreamsMetadata};

mod metadata;

/// Entries per page of a scan: what a query holds at a time per task.
const PAGE: usize = 4096;

/// How long a read waits for the owning thread by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which store to query and how (Kafka Streams' `StoreQueryParameters`).
#[derive(Debug, Clone)]
pub struct StoreQueryParameters<T> {
    store_name: String,
    store_type: T,
    partition: Option<i32>,
    stale_stores: bool,
    timeout: Duration,
}

impl<T: QueryableStoreType> StoreQueryParameters<T> {
    /// Store `name`, read as `store_type` (one of [`QueryableStoreTypes`]).
    pub fn from_name_and_type(name: impl Into<String>, store_type: T) -> Self {
        StoreQueryParameters { store_name: name.into(), store_type, partition: None, stale_stores: false, timeout: DEFAULT_TIMEOUT }
    }

    /// Only the task of this input partition.
    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Also read tasks that are still restoring (their state may lag the changelog).
    pub fn enable_stale_stores(mut self) -> Self {
        self.stale_stores = true;
        self
    }

    /// How long one read waits for the thread that owns a task (default 10 s) before it fails
    /// with a retriable [`InvalidStateStoreReason::Busy`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The store name.
    pub fn store_name(&self) -> &str {
        &self.store_name
    }

    /// The partition asked for, if any.
    pub fn partition(&self) -> Option<i32> {
        self.partition
    }

    /// Whether restoring tasks are read.
    pub fn stale_stores_enabled(&self) -> bool {
        self.stale_stores
    }

    pub(crate) fn store_type(&self) -> &T {
        &self.store_type
    }
}

/// The store types a query can ask for (Kafka Streams' `QueryableStoreTypes`).
#[derive(Debug, Clone, Copy)]
pub struct QueryableStoreTypes;

impl QueryableStoreTypes {
    /// A key-value store; a timestamped one (a KTable's, an aggregation's) is read without the
    /// timestamps.
    pub fn key_value<K, V>() -> KeyValueStoreType<K, V> {
        KeyValueStoreType(PhantomData)
    }

    /// A timestamped key-value store, values with their timestamps.
    pub fn timestamped_key_value<K, V>() -> KeyValueStoreType<K, ValueAndTimestamp<V>> {
        KeyValueStoreType(PhantomData)
    }

    /// A window store; a timestamped one (a windowed aggregation's) is read without the timestamps.
    pub fn window<K, V>() -> WindowStoreType<K, V> {
        WindowStoreType(PhantomData)
    }

    /// A timestamped window store, values with their timestamps.
    pub fn timestamped_window<K, V>() -> WindowStoreType<K, ValueAndTimestamp<V>> {
        WindowStoreType(PhantomData)
    }

    /// A session store.
    pub fn session<K, V>() -> SessionStoreType<K, V> {
        SessionStoreType(PhantomData)
    }
}

/// A kind of store a query reads; see [`QueryableStoreTypes`].
pub trait QueryableStoreType: sealed::StoreType {}

pub(crate) mod sealed {
    use super::*;

    /// What [`KafkaStreams::store`](crate::KafkaStreams::store) needs of a store type.
    pub trait StoreType: Send + fmt::Debug + 'static {
        /// The read-only view.
        type Store;
        /// Whether a store declared with this typed handle can be read as this type.
        fn accepts(&self, type_name: &str) -> bool;
        /// The view over the store's local tasks.
        fn create(&self, handle: StoreHandle) -> Self::Store;
    }

    /// One store of one client, as a query reaches it.
    #[derive(Clone)]
    pub struct StoreHandle {
        pub(crate) name: String,
        pub(crate) serde_topic: String,
        pub(crate) subtopology: u32,
        pub(crate) partition: Option<i32>,
        pub(crate) stale: bool,
        pub(crate) timeout: Duration,
        pub(crate) shared: Arc<ClientShared>,
    }
}

use sealed::StoreHandle;

impl fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("name", &self.name).field("partition", &self.partition).field("stale", &self.stale).finish()
    }
}

impl StoreHandle {
    pub(crate) fn new<T>(params: &StoreQueryParameters<T>, serde_topic: String, subtopology: u32, shared: Arc<ClientShared>) -> Self {
        StoreHandle {
            name: params.store_name.clone(),
            serde_topic,
            subtopology,
            partition: params.partition,
            stale: params.stale_stores,
            timeout: params.timeout,
            shared,
        }
    }

    /// Fails as a read would if no local task can be read now.
    pub(crate) fn check(&self) -> Result<()> {
        self.tasks().map(drop)
    }

    /// The local tasks to read, or why there are none.
    fn tasks(&self) -> Result<Vec<TaskId>> {
        let state = self.shared.state();
        let reason = match state {
            State::Created => Some(InvalidStateStoreReason::NotStarted),
            State::Running | State::Rebalancing => None,
            _ => Some(InvalidStateStoreReason::NotRunning),
        };
        if let Some(reason) = reason {
            return Err(StreamsError::invalid_store(&self.name, reason, format!("the client is {state:?}")));
        }
        let tasks = self.shared.router.tasks(self.subtopology, self.partition, self.stale);
        if tasks.is_empty() {
            let which = self.partition.map_or_else(|| "no task".to_string(), |p| format!("no task of partition {p}"));
            return Err(StreamsError::invalid_store(
                &self.name,
                InvalidStateStoreReason::Migrated,
                format!("{which} of the store is queryable on this instance (client {state:?}): it may have migrated to another instance, or be restoring"),
            ));
        }
        Ok(tasks)
    }

    fn query<R: Send + 'static>(&self, task: TaskId, f: impl FnOnce(&StreamTask) -> Result<R> + Send + 'static) -> Result<R> {
        self.shared.router.query(&self.name, task, self.stale, self.timeout, f)
    }

    /// The first `Some` any local task answers.
    fn first<R: Send + 'static>(&self, f: impl Fn(&StreamTask, &str) -> Result<Option<R>> + Clone + Send + 'static) -> Result<Option<R>> {
        for task in self.tasks()? {
            let (f, name) = (f.clone(), self.name.clone());
            if let Some(found) = self.query(task, move |t| f(t, &name))? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// A scan of every local task, one page at a time: `page(task, name, rest)` opens the scan
    /// on the owning thread, starting at `rest` when it continues one.
    fn scan<T: Send + 'static>(
        &self,
        page: impl Fn(&StreamTask, &str, Option<KeyRange>) -> Result<Page<T>> + Clone + Send + 'static,
    ) -> Result<QueryIterator<T>> {
        let tasks = self.tasks()?.into();
        let handle = self.clone();
        let fetch = move |task: TaskId, rest: Option<KeyRange>| {
            let (page, name) = (page.clone(), handle.name.clone());
            handle.query(task, move |t| page(t, &name, rest))
        };
        QueryIterator::new(tasks, Box::new(fetch))
    }
}

/// A page of a scan and what is left of it.
type Page<T> = (Vec<T>, Option<KeyRange>);

fn page_of<K: 'static, V: 'static, T>(
    mut iter: KeyValueIterator<K, V>,
    rest: Option<KeyRange>,
    map: impl Fn((K, V)) -> T,
) -> Result<Page<T>> {
    if let Some(rest) = rest {
        iter.restart_at(rest)?;
    }
    let (items, rest) = iter.take_batch(PAGE)?;
    Ok((items.into_iter().map(map).collect(), rest))
}

/// Entries of a query's scan: one task's after the other's, a page at a time (Kafka Streams'
/// `KeyValueIterator` over a composite store). Each item is a `Result`: a task can move away
/// mid-scan, and the iterator then yields a retriable error and ends.
pub struct QueryIterator<T> {
    tasks: VecDeque<TaskId>,
    /// The task being read and what is left of its scan.
    current: Option<(TaskId, KeyRange)>,
    buffer: VecDeque<T>,
    fetch: Box<dyn FnMut(TaskId, Option<KeyRange>) -> Result<Page<T>> + Send>,
    done: bool,
}

impl<T> fmt::Debug for QueryIterator<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryIterator").field("tasks_left", &self.tasks.len()).field("buffered", &self.buffer.len()).finish()
    }
}

impl<T> QueryIterator<T> {
    fn new(
        tasks: VecDeque<TaskId>,
        fetch: Box<dyn FnMut(TaskId, Option<KeyRange>) -> Result<Page<T>> + Send>,
    ) -> Result<Self> {
        let mut iter = QueryIterator { tasks, current: None, buffer: VecDeque::new(), fetch, done: false };
        // The first page now: a store that cannot be read fails here, not mid-iteration.
        iter.fill()?;
        Ok(iter)
    }

    /// Reads pages until one has entries or every task is read.
    fn fill(&mut self) -> Result<()> {
        while self.buffer.is_empty() && !self.done {
            let (task, rest) = match self.current.take() {
                Some((task, rest)) => (task, Some(rest)),
                None => match self.tasks.pop_front() {
                    Some(task) => (task, None),
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            match (self.fetch)(task, rest) {
                Ok((items, rest)) => {
                    self.buffer.extend(items);
                    self.current = rest.map(|rest| (task, rest));
                }
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl<T> QueryIterator<T> {
    /// Entries read from the store and not returned yet: at most one page.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

impl<T> Iterator for QueryIterator<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl<T> std::iter::FusedIterator for QueryIterator<T> {}

/// Reads a store of key-value pairs: [`QueryableStoreTypes::key_value`].
pub struct KeyValueStoreType<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> fmt::Debug for KeyValueStoreType<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyValueStoreType<{}, {}>", std::any::type_name::<K>(), std::any::type_name::<V>())
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> sealed::StoreType for KeyValueStoreType<K, V> {
    type Store = ReadOnlyKeyValueStore<K, V>;
    fn accepts(&self, type_name: &str) -> bool {
        type_name == std::any::type_name::<KeyValueStore<K, V>>()
            || type_name == std::any::type_name::<KeyValueStore<K, ValueAndTimestamp<V>>>()
    }
    fn create(&self, handle: StoreHandle) -> Self::Store {
        ReadOnlyKeyValueStore { handle, _types: PhantomData }
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> QueryableStoreType for KeyValueStoreType<K, V> {}

/// The typed store of a task, plain or with timestamps to drop.
enum KvStore<K, V> {
    Plain(KeyValueStore<K, V>),
    Timestamped(KeyValueStore<K, ValueAndTimestamp<V>>),
}

impl<K: 'static, V: 'static> KvStore<K, V> {
    fn open(task: &StreamTask, name: &str) -> Result<Self> {
        task.typed_store::<KeyValueStore<K, V>>(name)
            .map(KvStore::Plain)
            .or_else(|e| task.typed_store::<KeyValueStore<K, ValueAndTimestamp<V>>>(name).map(KvStore::Timestamped).map_err(|_| e))
    }
}

/// What a key-value scan reads.
#[derive(Clone)]
enum KvScan<K> {
    Range(K, K),
    ReverseRange(K, K),
    All,
    ReverseAll,
    Prefix(Vec<u8>),
}

impl<K: Clone + 'static> KvScan<K> {
    fn open<V: 'static>(&self, store: &KeyValueStore<K, V>) -> Result<KeyValueIterator<K, V>> {
        match self {
            KvScan::Range(from, to) => store.range(from, to),
            KvScan::ReverseRange(from, to) => store.reverse_range(from, to),
            KvScan::All => store.all(),
            KvScan::ReverseAll => store.reverse_all(),
            KvScan::Prefix(prefix) => store.prefix_scan_bytes(prefix),
        }
    }
}

/// A read-only view of a key-value store over this instance's tasks (Kafka Streams'
/// `ReadOnlyKeyValueStore`). Cheap to clone, `Send` and `Sync`: share it with request handlers.
pub struct ReadOnlyKeyValueStore<K, V> {
    handle: StoreHandle,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for ReadOnlyKeyValueStore<K, V> {
    fn clone(&self) -> Self {
        ReadOnlyKeyValueStore { handle: self.handle.clone(), _types: PhantomData }
    }
}

impl<K, V> fmt::Debug for ReadOnlyKeyValueStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadOnlyKeyValueStore").field(&self.handle).finish()
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> ReadOnlyKeyValueStore<K, V> {
    /// The store name.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    /// The value of `key`, from whichever local task holds it.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = key.clone();
        self.handle.first(move |task, name| match KvStore::<K, V>::open(task, name)? {
            KvStore::Plain(s) => s.get(&key),
            KvStore::Timestamped(s) => Ok(s.get(&key)?.map(|v| v.value)),
        })
    }

    /// Entries with `from <= key <= to`, in serialized-key order within each task.
    pub fn range(&self, from: &K, to: &K) -> Result<QueryIterator<(K, V)>> {
        self.scan(KvScan::Range(from.clone(), to.clone()))
    }

    /// Entries with `from <= key <= to`, in descending serialized-key order within each task.
    pub fn reverse_range(&self, from: &K, to: &K) -> Result<QueryIterator<(K, V)>> {
        self.scan(KvScan::ReverseRange(from.clone(), to.clone()))
    }

    /// Every entry, in serialized-key order within each task.
    pub fn all(&self) -> Result<QueryIterator<(K, V)>> {
        self.scan(KvScan::All)
    }

    /// Every entry, in descending serialized-key order within each task.
    pub fn reverse_all(&self) -> Result<QueryIterator<(K, V)>> {
        self.scan(KvScan::ReverseAll)
    }

    /// Entries whose serialized key starts with `prefix` serialized by `prefix_serde`.
    pub fn prefix_scan<P: 'static>(&self, prefix: &P, prefix_serde: &dyn Serde<P>) -> Result<QueryIterator<(K, V)>> {
        let bytes = prefix_serde
            .serialize(&self.handle.serde_topic, prefix)
            .map_err(|e| StreamsError::serde(format!("the prefix of a scan of store `{}`", self.handle.name), e))?
            .unwrap_or_default();
        self.scan(KvScan::Prefix(bytes))
    }

    /// An estimate of the number of entries over the local tasks.
    pub fn approximate_num_entries(&self) -> Result<u64> {
        let mut total = 0u64;
        for task in self.handle.tasks()? {
            let name = self.handle.name.clone();
            total = total.saturating_add(self.handle.query(task, move |t| match KvStore::<K, V>::open(t, &name)? {
                KvStore::Plain(s) => s.approximate_num_entries(),
                KvStore::Timestamped(s) => s.approximate_num_entries(),
            })?);
        }
        Ok(total)
    }

    fn scan(&self, scan: KvScan<K>) -> Result<QueryIterator<(K, V)>> {
        self.handle.scan(move |task, name, rest| match KvStore::<K, V>::open(task, name)? {
            KvStore::Plain(s) => page_of(scan.open(&s)?, rest, |e| e),
            KvStore::Timestamped(s) => page_of(scan.open(&s)?, rest, |(k, v)| (k, v.value)),
        })
    }
}

/// Reads a window store: [`QueryableStoreTypes::window`].
pub struct WindowStoreType<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> fmt::Debug for WindowStoreType<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WindowStoreType<{}, {}>", std::any::type_name::<K>(), std::any::type_name::<V>())
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> sealed::StoreType for WindowStoreType<K, V> {
    type Store = ReadOnlyWindowStore<K, V>;
    fn accepts(&self, type_name: &str) -> bool {
        type_name == std::any::type_name::<WindowStore<K, V>>()
            || type_name == std::any::type_name::<WindowStore<K, ValueAndTimestamp<V>>>()
    }
    fn create(&self, handle: StoreHandle) -> Self::Store {
        ReadOnlyWindowStore { handle, _types: PhantomData }
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> QueryableStoreType for WindowStoreType<K, V> {}

enum Windows<K, V> {
    Plain(WindowStore<K, V>),
    Timestamped(WindowStore<K, ValueAndTimestamp<V>>),
}

impl<K: 'static, V: 'static> Windows<K, V> {
    fn open(task: &StreamTask, name: &str) -> Result<Self> {
        task.typed_store::<WindowStore<K, V>>(name)
            .map(Windows::Plain)
            .or_else(|e| task.typed_store::<WindowStore<K, ValueAndTimestamp<V>>>(name).map(Windows::Timestamped).map_err(|_| e))
    }
}

/// A read-only view of a window store over this instance's tasks (Kafka Streams'
/// `ReadOnlyWindowStore`); times are epoch milliseconds. Cheap to clone, `Send` and `Sync`.
pub struct ReadOnlyWindowStore<K, V> {
    handle: StoreHandle,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for ReadOnlyWindowStore<K, V> {
    fn clone(&self) -> Self {
        ReadOnlyWindowStore { handle: self.handle.clone(), _types: PhantomData }
    }
}

impl<K, V> fmt::Debug for ReadOnlyWindowStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadOnlyWindowStore").field(&self.handle).finish()
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> ReadOnlyWindowStore<K, V> {
    /// The store name.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    /// The value of `key` in the window starting at `window_start`.
    pub fn fetch(&self, key: &K, window_start: i64) -> Result<Option<V>> {
        let key = key.clone();
        self.handle.first(move |task, name| match Windows::<K, V>::open(task, name)? {
            Windows::Plain(s) => s.fetch(&key, window_start),
            Windows::Timestamped(s) => Ok(s.fetch(&key, window_start)?.map(|v| v.value)),
        })
    }

    /// `(window start, value)` of `key` for the windows starting in `[from, to]`, earliest first.
    pub fn fetch_range(&self, key: &K, from: i64, to: i64) -> Result<QueryIterator<(i64, V)>> {
        self.fetch_directed(key, from, to, false)
    }

    /// [`fetch_range`](Self::fetch_range), latest window first (Kafka Streams' `backwardFetch`).
    pub fn backward_fetch_range(&self, key: &K, from: i64, to: i64) -> Result<QueryIterator<(i64, V)>> {
        self.fetch_directed(key, from, to, true)
    }

    fn fetch_directed(&self, key: &K, from: i64, to: i64, backward: bool) -> Result<QueryIterator<(i64, V)>> {
        let key = key.clone();
        self.handle.scan(move |task, name, rest| match Windows::<K, V>::open(task, name)? {
            Windows::Plain(s) => page_of(open_window(&s, &key, from, to, backward)?, rest, |e| e),
            Windows::Timestamped(s) => page_of(open_window(&s, &key, from, to, backward)?, rest, |(t, v)| (t, v.value)),
        })
    }

    /// Every entry with a window start in `[from, to]`, by key then window start within each task.
    pub fn fetch_all(&self, from: i64, to: i64) -> Result<QueryIterator<(Windowed<K>, V)>> {
        self.handle.scan(move |task, name, rest| match Windows::<K, V>::open(task, name)? {
            Windows::Plain(s) => page_of(s.fetch_all(from, to)?, rest, |e| e),
            Windows::Timestamped(s) => page_of(s.fetch_all(from, to)?, rest, |(w, v)| (w, v.value)),
        })
    }

    /// Every entry, by key then window start within each task.
    pub fn all(&self) -> Result<QueryIterator<(Windowed<K>, V)>> {
        self.handle.scan(move |task, name, rest| match Windows::<K, V>::open(task, name)? {
            Windows::Plain(s) => page_of(s.all()?, rest, |e| e),
            Windows::Timestamped(s) => page_of(s.all()?, rest, |(w, v)| (w, v.value)),
        })
    }
}

fn open_window<K: 'static, V: 'static>(
    store: &WindowStore<K, V>,
    key: &K,
    from: i64,
    to: i64,
    backward: bool,
) -> Result<KeyValueIterator<i64, V>> {
    if backward {
        store.backward_fetch_range(key, from, to)
    } else {
        store.fetch_range(key, from, to)
    }
}

/// Reads a session store: [`QueryableStoreTypes::session`].
pub struct SessionStoreType<K, V>(PhantomData<fn() -> (K, V)>);

impl<K, V> fmt::Debug for SessionStoreType<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionStoreType<{}, {}>", std::any::type_name::<K>(), std::any::type_name::<V>())
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> sealed::StoreType for SessionStoreType<K, V> {
    type Store = ReadOnlySessionStore<K, V>;
    fn accepts(&self, type_name: &str) -> bool {
        type_name == std::any::type_name::<SessionStore<K, V>>()
    }
    fn create(&self, handle: StoreHandle) -> Self::Store {
        ReadOnlySessionStore { handle, _types: PhantomData }
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> QueryableStoreType for SessionStoreType<K, V> {}

/// A read-only view of a session store over this instance's tasks (Kafka Streams'
/// `ReadOnlySessionStore`). Cheap to clone, `Send` and `Sync`.
pub struct ReadOnlySessionStore<K, V> {
    handle: StoreHandle,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for ReadOnlySessionStore<K, V> {
    fn clone(&self) -> Self {
        ReadOnlySessionStore { handle: self.handle.clone(), _types: PhantomData }
    }
}

impl<K, V> fmt::Debug for ReadOnlySessionStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadOnlySessionStore").field(&self.handle).finish()
    }
}

impl<K: Clone + Send + Sync + 'static, V: Send + 'static> ReadOnlySessionStore<K, V> {
    /// The store name.
    pub fn name(&self) -> &str {
        &self.handle.name
    }

    /// Every session of `key`, by end then start.
    pub fn fetch(&self, key: &K) -> Result<QueryIterator<(Windowed<K>, V)>> {
        self.find_sessions(key, 0, i64::MAX)
    }

    /// Sessions of `key` ending at or after `earliest_end` and starting at or before
    /// `latest_start`, by end then start.
    pub fn find_sessions(&self, key: &K, earliest_end: i64, latest_start: i64) -> Result<QueryIterator<(Windowed<K>, V)>> {
        let key = key.clone();
        self.handle.scan(move |task, name, rest| {
            let store = task.typed_store::<SessionStore<K, V>>(name)?;
            page_of(store.find_sessions(&key, earliest_end, latest_start)?, rest, |e| e)
        })
    }

    /// The aggregate of `key`'s session `[start, end]`, if there is one.
    pub fn fetch_session(&self, key: &K, start: i64, end: i64) -> Result<Option<V>> {
        let key = key.clone();
        self.handle.first(move |task, name| task.typed_store::<SessionStore<K, V>>(name)?.fetch_session(&key, start, end))
    }
}

//! The Processor API: [`Processor`], [`ProcessorSupplier`] and [`ProcessorContext`].

pub(crate) mod context;
pub(crate) mod node;
mod fixed_key;
mod partitioner;
mod timestamp;

pub use fixed_key::{
    fixed_key_supplier, AnyKey, FixedKey, FixedKeyProcessor, FixedKeyProcessorContext, FixedKeyProcessorSupplier, FixedKeyRecord,
};
pub use fixed_key::ValueCapture;
pub use partitioner::{StreamPartitioner, TopicNameExtractor};
pub use timestamp::{BuiltinTimestampExtractor, ConsumedRecord, TimestampExtractor};

use std::time::Duration;

use crate::error::{Result, StreamsError};
use crate::record::{Record, RecordContext, TaskId};
use crate::serdes::SerdeRef;
use crate::state::{GlobalKeyValueStore, KeyValueStore, SessionStore, VersionedKeyValueStore, WindowStore};
use context::{Schedule, TaskContext};
use node::{Child, NodeMeta};

/// A record-at-a-time operator. `KIn`/`VIn` in, `KOut`/`VOut` forwarded to the children.
///
/// One instance per task, created by a [`ProcessorSupplier`]; it is never shared between tasks.
pub trait Processor<KIn, VIn, KOut = KIn, VOut = VIn> {
    /// Called once when the task is created: look up stores and schedule punctuations here.
    fn init(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record, forwarding any number of records through `ctx`.
    fn process(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>, record: Record<KIn, VIn>) -> Result<()>;

    /// Called for each punctuation scheduled with [`ProcessorContext::schedule`].
    fn punctuate(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>, punctuation: Punctuation) -> Result<()> {
        let _ = (ctx, punctuation);
        Ok(())
    }

    /// Called at each commit, in topological order, before the task's stores are flushed:
    /// forward what was held back (for example by a store's cache).
    fn flush(&mut self, ctx: &mut ProcessorContext<'_, KOut, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called when the task closes.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Creates a fresh [`Processor`] for each task. Closures `Fn() -> P` are suppliers.
pub trait ProcessorSupplier<KIn, VIn, KOut, VOut>: Send + Sync + 'static {
    /// A new processor instance.
    fn get(&self) -> Box<dyn Processor<KIn, VIn, KOut, VOut>>;
}

impl<KIn, VIn, KOut, VOut, F, P> ProcessorSupplier<KIn, VIn, KOut, VOut> for F
where
    F: Fn() -> P + Send + Sync + 'static,
    P: Processor<KIn, VIn, KOut, VOut> + 'static,
{
    fn get(&self) -> Box<dyn Processor<KIn, VIn, KOut, VOut>> {
        Box::new(self())
    }
}

/// Which clock drives a punctuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PunctuationType {
    /// Fires as stream time (the largest record timestamp seen by the task) advances.
    StreamTime,
    /// Fires as the system clock advances.
    WallClockTime,
}

/// Identifies a scheduled punctuation, to tell several apart and to cancel one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScheduleId(pub(crate) u64);

/// A punctuation being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Punctuation {
    /// Which schedule fired.
    pub id: ScheduleId,
    /// Its clock.
    pub kind: PunctuationType,
    /// The stream time or system time at which it fired.
    pub timestamp: i64,
}

/// What a processor sees of its task: forwarding, stores, time and punctuation.
///
/// `F` says what it forwards: any [`Record`] (the default), or a
/// [`FixedKeyRecord`] in a [`FixedKeyProcessorContext`].
pub struct ProcessorContext<'a, K, V, F = AnyKey> {
    pub(crate) task: &'a mut TaskContext,
    pub(crate) node: &'a NodeMeta,
    pub(crate) children: &'a [Child<K, V>],
    /// In `init`: where the node keeps the cache flush listeners registered with it.
    pub(crate) flush_listeners: Option<&'a mut Vec<FlushListener<K, V>>>,
    pub(crate) forwarding: std::marker::PhantomData<F>,
}

/// Forwards what a store's cache wrote down through the node that registered it; called with
/// `true` at commit, when the cache must write all its dirty entries down first.
pub(crate) type FlushListener<K, V> = Box<dyn for<'c> FnMut(&mut ProcessorContext<'c, K, V>, bool) -> Result<()>>;

impl<K, V, F> std::fmt::Debug for ProcessorContext<'_, K, V, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorContext").field("task", &self.task.task_id).field("node", &self.node.name).finish()
    }
}

impl<K: Clone, V: Clone> ProcessorContext<'_, K, V> {
    /// Sends `record` to every child.
    pub fn forward(&mut self, record: Record<K, V>) -> Result<()> {
        let Some((last, rest)) = self.children.split_last() else { return Ok(()) };
        for child in rest {
            child.node.borrow_mut().process(self.task, record.clone())?;
        }
        last.node.borrow_mut().process(self.task, record)
    }

    /// Sends `record` to the child named `child` only.
    pub fn forward_to(&mut self, child: &str, record: Record<K, V>) -> Result<()> {
        let target = self.children.iter().find(|c| c.name == child).ok_or_else(|| {
            StreamsError::Topology(format!("node `{}` has no child named `{child}`", self.node.name))
        })?;
        target.node.borrow_mut().process(self.task, record)
    }
}

impl<K, V, F> ProcessorContext<'_, K, V, F> {
    /// Registers a cache flush listener with this node (in `init` only).
    pub(crate) fn add_flush_listener(&mut self, listener: FlushListener<K, V>) -> Result<()> {
        match &mut self.flush_listeners {
            Some(listeners) => {
                listeners.push(listener);
                Ok(())
            }
            None => Err(StreamsError::IllegalState(format!(
                "node `{}`: cache flush listeners are registered in init",
                self.node.name
            ))),
        }
    }

    /// The typed key-value store `name`; the processor must be connected to it in the topology.
    ///
    /// A wrong name or type is an error (found in `init`, when the task is built).
    pub fn key_value_store<SK: 'static, SV: 'static>(&self, name: &str) -> Result<KeyValueStore<SK, SV>> {
        self.state_store(name)
    }

    /// The typed versioned key-value store `name`.
    pub fn versioned_key_value_store<SK: 'static, SV: 'static>(&self, name: &str) -> Result<VersionedKeyValueStore<SK, SV>> {
        self.state_store(name)
    }

    /// The typed window store `name`.
    pub fn window_store<SK: 'static, SV: 'static>(&self, name: &str) -> Result<WindowStore<SK, SV>> {
        self.state_store(name)
    }

    /// The typed session store `name`.
    pub fn session_store<SK: 'static, SV: 'static>(&self, name: &str) -> Result<SessionStore<SK, SV>> {
        self.state_store(name)
    }

    /// The typed handle of store `name`: a [`KeyValueStore`], [`WindowStore`] or [`SessionStore`].
    pub fn state_store<S: Clone + 'static>(&self, name: &str) -> Result<S> {
        if !self.node.stores.iter().any(|s| s == name) {
            return Err(StreamsError::Topology(format!(
                "processor `{}` has no access to state store `{name}`; connect it when adding the processor \
                 (connected stores: {:?})",
                self.node.name, self.node.stores
            )));
        }
        self.task.state_store(name)
    }

    /// The global store `name` (a full copy of its topic), read with these serdes.
    pub fn global_store<SK: 'static, SV: 'static>(
        &self,
        name: &str,
        key_serde: SerdeRef<SK>,
        value_serde: SerdeRef<SV>,
    ) -> Result<GlobalKeyValueStore<SK, SV>> {
        let bytes = self.task.global_stores.get(name).ok_or_else(|| {
            StreamsError::Topology(format!("no global store named `{name}` (add it with Topology::add_global_store)"))
        })?;
        Ok(GlobalKeyValueStore::new(name, bytes.clone(), key_serde, value_serde))
    }

    /// Schedules [`Processor::punctuate`] every `interval` on the given clock.
    pub fn schedule(&mut self, interval: Duration, kind: PunctuationType) -> Result<ScheduleId> {
        let interval_ms = interval.as_millis() as i64;
        if interval_ms < 1 {
            return Err(StreamsError::user("punctuation interval must be at least 1 ms"));
        }
        // As in Kafka Streams: stream-time schedules align to 0 and fire on the first record;
        // wall-clock schedules fire one interval from now.
        let next = match kind {
            PunctuationType::StreamTime => 0,
            PunctuationType::WallClockTime => self.task.wall_clock_ms + interval_ms,
        };
        let id = ScheduleId(self.task.next_schedule_id);
        self.task.next_schedule_id += 1;
        self.task.schedules.push(Schedule {
            id,
            node: self.node.index,
            kind,
            interval_ms,
            next,
        });
        Ok(id)
    }

    /// Cancels a punctuation.
    pub fn cancel(&mut self, id: ScheduleId) {
        self.task.schedules.retain(|s| s.id != id);
    }

    /// The task's stream time: the largest record timestamp it has processed.
    pub fn stream_time(&self) -> i64 {
        self.task.stream_time
    }

    /// The system time in milliseconds (mocked by the test driver).
    pub fn current_system_time_ms(&self) -> i64 {
        self.task.wall_clock_ms
    }

    /// Topic, partition, offset and timestamp of the record being processed.
    pub fn record_context(&self) -> RecordContext {
        self.task.record_context.borrow().clone()
    }

    /// The task this processor runs in.
    pub fn task_id(&self) -> TaskId {
        self.task.task_id
    }

    /// The application id.
    pub fn application_id(&self) -> &str {
        &self.task.application_id
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.node.name
    }

    /// Counts a record the processor dropped (late, or without a usable key) in the task's
    /// `dropped_records` metric.
    pub fn record_dropped(&mut self) {
        self.task.metrics.dropped_records += 1;
    }

    /// Asks for a commit as soon as possible.
    pub fn commit(&mut self) {
        self.task.commit_requested = true;
    }
}

//! Fixed-key processors (Kafka Streams' `FixedKeyProcessor`): Processor-API steps that may
//! change values, timestamps and headers but never the key, so a stream needs no repartition
//! after them.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;

use super::context::TaskContext;
use super::node::{Child, Node, NodeRef};
use super::{Processor, ProcessorContext, ProcessorSupplier, Punctuation};
use crate::error::Result;
use crate::record::{Headers, Record};

/// Forwarding marker of a [`ProcessorContext`] that forwards any [`Record`].
#[derive(Debug)]
pub enum AnyKey {}

/// Forwarding marker of a [`FixedKeyProcessorContext`]: it forwards [`FixedKeyRecord`]s only.
#[derive(Debug)]
pub enum FixedKey {}

/// What a [`FixedKeyProcessor`] sees of its task: everything a [`ProcessorContext`] offers,
/// but [`forward`](ProcessorContext::forward) takes a [`FixedKeyRecord`], whose key the
/// processor cannot change.
pub type FixedKeyProcessorContext<'a, K, V> = ProcessorContext<'a, K, V, FixedKey>;

/// A record whose key is fixed: a [`FixedKeyProcessor`] gets one and forwards it with another
/// value, timestamp or headers.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedKeyRecord<K, V> {
    key: K,
    /// The value.
    pub value: V,
    /// Event time in milliseconds since the epoch.
    pub timestamp: i64,
    /// Headers carried from input to output.
    pub headers: Headers,
}

impl<K, V> FixedKeyRecord<K, V> {
    /// The key.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The same record with another value.
    pub fn with_value<V2>(self, value: V2) -> FixedKeyRecord<K, V2> {
        FixedKeyRecord { key: self.key, value, timestamp: self.timestamp, headers: self.headers }
    }

    /// The same record with another timestamp.
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The same record with other headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// The record, as any processor may forward it.
    pub fn into_record(self) -> Record<K, V> {
        Record { key: self.key, value: self.value, timestamp: self.timestamp, headers: self.headers }
    }
}

impl<K, V> From<Record<K, V>> for FixedKeyRecord<K, V> {
    fn from(record: Record<K, V>) -> Self {
        FixedKeyRecord { key: record.key, value: record.value, timestamp: record.timestamp, headers: record.headers }
    }
}

impl<K: Clone, V: Clone> FixedKeyProcessorContext<'_, K, V> {
    /// Sends `record` to every child.
    pub fn forward(&mut self, record: FixedKeyRecord<K, V>) -> Result<()> {
        self.forwarding::<AnyKey>().forward(record.into_record())
    }

    /// Sends `record` to the child named `child` only.
    pub fn forward_to(&mut self, child: &str, record: FixedKeyRecord<K, V>) -> Result<()> {
        self.forwarding::<AnyKey>().forward_to(child, record.into_record())
    }
}

impl<K, V, F> ProcessorContext<'_, K, V, F> {
    /// The same context, forwarding as `G` says.
    fn forwarding<G>(&mut self) -> ProcessorContext<'_, K, V, G> {
        ProcessorContext {
            task: &mut *self.task,
            node: self.node,
            children: self.children,
            flush_listeners: self.flush_listeners.as_deref_mut(),
            forwarding: PhantomData,
        }
    }
}

/// A record-at-a-time operator that keeps each record's key (`process_values` in the DSL).
pub trait FixedKeyProcessor<K, VIn, VOut = VIn> {
    /// Called once when the task is created: look up stores and schedule punctuations here.
    fn init(&mut self, ctx: &mut FixedKeyProcessorContext<'_, K, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Processes one record, forwarding any number of records with its key through `ctx`.
    fn process(&mut self, ctx: &mut FixedKeyProcessorContext<'_, K, VOut>, record: FixedKeyRecord<K, VIn>) -> Result<()>;

    /// Called for each punctuation scheduled with [`ProcessorContext::schedule`].
    fn punctuate(&mut self, ctx: &mut FixedKeyProcessorContext<'_, K, VOut>, punctuation: Punctuation) -> Result<()> {
        let _ = (ctx, punctuation);
        Ok(())
    }

    /// Called at each commit, before the task's stores are flushed.
    fn flush(&mut self, ctx: &mut FixedKeyProcessorContext<'_, K, VOut>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called when the task closes.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Creates a fresh [`FixedKeyProcessor`] for each task. Closures `Fn() -> P` are suppliers.
pub trait FixedKeyProcessorSupplier<K, VIn, VOut>: Send + Sync + 'static {
    /// A new processor instance.
    fn get(&self) -> Box<dyn FixedKeyProcessor<K, VIn, VOut>>;
}

impl<K, VIn, VOut, F, P> FixedKeyProcessorSupplier<K, VIn, VOut> for F
where
    F: Fn() -> P + Send + Sync + 'static,
    P: FixedKeyProcessor<K, VIn, VOut> + 'static,
{
    fn get(&self) -> Box<dyn FixedKeyProcessor<K, VIn, VOut>> {
        Box::new(self())
    }
}

/// A fixed-key supplier as a processor supplier, for [`Topology::add_processor`](crate::Topology::add_processor).
pub fn fixed_key_supplier<K: 'static, VIn: 'static, VOut: 'static>(
    supplier: impl FixedKeyProcessorSupplier<K, VIn, VOut>,
) -> impl ProcessorSupplier<K, VIn, K, VOut> {
    FixedKeySupplier(supplier, PhantomData)
}

struct FixedKeySupplier<S, K, VIn, VOut>(S, PhantomData<fn() -> (K, VIn, VOut)>);

impl<S, K, VIn, VOut> ProcessorSupplier<K, VIn, K, VOut> for FixedKeySupplier<S, K, VIn, VOut>
where
    S: FixedKeyProcessorSupplier<K, VIn, VOut>,
    K: 'static,
    VIn: 'static,
    VOut: 'static,
{
    fn get(&self) -> Box<dyn Processor<K, VIn, K, VOut>> {
        Box::new(FixedKeyAdapter(self.0.get()))
    }
}

/// Runs a fixed-key processor as a processor whose forwards keep the key.
struct FixedKeyAdapter<K, VIn, VOut>(Box<dyn FixedKeyProcessor<K, VIn, VOut>>);

impl<K, VIn, VOut> Processor<K, VIn, K, VOut> for FixedKeyAdapter<K, VIn, VOut> {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) -> Result<()> {
        self.0.init(&mut ctx.forwarding::<FixedKey>())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>, record: Record<K, VIn>) -> Result<()> {
        self.0.process(&mut ctx.forwarding::<FixedKey>(), record.into())
    }
    fn punctuate(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>, punctuation: Punctuation) -> Result<()> {
        self.0.punctuate(&mut ctx.forwarding::<FixedKey>(), punctuation)
    }
    fn flush(&mut self, ctx: &mut ProcessorContext<'_, K, VOut>) -> Result<()> {
        self.0.flush(&mut ctx.forwarding::<FixedKey>())
    }
    fn close(&mut self) -> Result<()> {
        self.0.close()
    }
}

/// Runs a fixed-key processor as a function of one record: the value it forwarded last is
/// the result (`None` when it forwarded nothing), and nothing reaches the node's children.
/// The DSL's `KTable::process_values` is built on it, as Kafka Streams captures a table
/// processor's forwards.
pub struct ValueCapture<K, VIn, VOut> {
    processor: Box<dyn FixedKeyProcessor<K, VIn, VOut>>,
    captured: Rc<RefCell<Option<VOut>>>,
    sink: [Child<K, VOut>; 1],
}

impl<K, VIn, VOut> std::fmt::Debug for ValueCapture<K, VIn, VOut> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValueCapture")
    }
}

/// The one child of a [`ValueCapture`]: it keeps the last value forwarded to it.
struct Captured<V>(Rc<RefCell<Option<V>>>);

impl<K, V> Node<K, V> for Captured<V> {
    fn process(&mut self, _task: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        *self.0.borrow_mut() = Some(record.value);
        Ok(())
    }
}

impl<K: Clone + 'static, VIn: 'static, VOut: Clone + 'static> ValueCapture<K, VIn, VOut> {
    /// Captures what `processor` forwards.
    pub fn new(processor: Box<dyn FixedKeyProcessor<K, VIn, VOut>>) -> Self {
        let captured = Rc::new(RefCell::new(None));
        let node: NodeRef<K, VOut> = Rc::new(RefCell::new(Captured(captured.clone())));
        ValueCapture { processor, captured, sink: [Child { name: "captured".into(), node }] }
    }

    /// Initializes the processor within the node that runs it.
    pub fn init<K2, V2, F>(&mut self, ctx: &mut ProcessorContext<'_, K2, V2, F>) -> Result<()> {
        let mut inner = capture_context(&self.sink, ctx);
        self.processor.init(&mut inner)
    }

    /// Processes `record`; returns the value the processor forwarded last, if any.
    pub fn apply<K2, V2, F>(&mut self, ctx: &mut ProcessorContext<'_, K2, V2, F>, record: FixedKeyRecord<K, VIn>) -> Result<Option<VOut>> {
        self.captured.borrow_mut().take();
        let mut inner = capture_context(&self.sink, ctx);
        self.processor.process(&mut inner, record)?;
        Ok(self.captured.borrow_mut().take())
    }

    /// Delivers a punctuation; what the processor forwards from it goes nowhere.
    pub fn punctuate<K2, V2, F>(&mut self, ctx: &mut ProcessorContext<'_, K2, V2, F>, punctuation: Punctuation) -> Result<()> {
        let mut inner = capture_context(&self.sink, ctx);
        self.processor.punctuate(&mut inner, punctuation)?;
        self.captured.borrow_mut().take();
        Ok(())
    }

    /// Flushes the processor at a commit.
    pub fn flush<K2, V2, F>(&mut self, ctx: &mut ProcessorContext<'_, K2, V2, F>) -> Result<()> {
        let mut inner = capture_context(&self.sink, ctx);
        self.processor.flush(&mut inner)?;
        self.captured.borrow_mut().take();
        Ok(())
    }

    /// Closes the processor.
    pub fn close(&mut self) -> Result<()> {
        self.processor.close()
    }
}

/// A context for a captured processor: the node's task, name and stores, forwarding to `sink`.
fn capture_context<'c, K, V, K2, V2, F>(
    sink: &'c [Child<K, V>],
    ctx: &'c mut ProcessorContext<'_, K2, V2, F>,
) -> FixedKeyProcessorContext<'c, K, V> {
    ProcessorContext { task: &mut *ctx.task, node: ctx.node, children: sink, flush_listeners: None, forwarding: PhantomData }
}

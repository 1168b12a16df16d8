//! Processor nodes inside a task, and the factories that build them.
//!
//! The data path is typed: a node holding `Record<K, V>` children calls them directly.
//! Type erasure happens only in [`NodeFactory::build`], where each parent downcasts its
//! children's inputs once, when the task is created.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::context::TaskContext;
use super::{
    ConsumedRecord, FlushListener, Processor, ProcessorContext, ProcessorSupplier, Punctuation, StreamPartitioner,
    TimestampExtractor, TopicNameExtractor,
};
use crate::error::{Result, StreamsError};
use crate::handlers::ErrorHandlerContext;
use crate::record::{ConsumerRecord, ProducerRecord, Record, RecordContext};
use crate::serdes::SerdeRef;
use crate::topology::TopicName;

/// A node's identity within the topology.
#[derive(Debug, Clone)]
pub(crate) struct NodeMeta {
    pub(crate) name: String,
    /// Position in the topology (topological order), used to route punctuations.
    pub(crate) index: usize,
    /// Stores the node may access.
    pub(crate) stores: Vec<String>,
}

/// A typed input of a node.
pub(crate) trait Node<K, V> {
    fn process(&mut self, task: &mut TaskContext, record: Record<K, V>) -> Result<()>;
}

pub(crate) type NodeRef<K, V> = Rc<RefCell<dyn Node<K, V>>>;

/// A named child edge.
pub(crate) struct Child<K, V> {
    pub(crate) name: String,
    pub(crate) node: NodeRef<K, V>,
}

/// A node's lifecycle, without its types. Sources and sinks keep the no-op defaults.
pub(crate) trait TaskNode {
    fn init(&mut self, _task: &mut TaskContext) -> Result<()> {
        Ok(())
    }
    fn punctuate(&mut self, _task: &mut TaskContext, _punctuation: Punctuation) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self, _task: &mut TaskContext) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
    /// The node's name and the records it has processed (processor and source nodes).
    fn processed(&self) -> Option<(&str, u64)> {
        None
    }
}

/// The entry of raw records into a task: each record is decoded when it reaches the head of its
/// partition's queue (its event time decides which partition goes next), then processed.
pub(crate) trait SourceNode {
    /// Deserializes a raw record and extracts its event time; `None` if it is dropped (a null
    /// key at a table source, or a deserialization error the handler skips).
    fn decode(&mut self, task: &mut TaskContext, raw: &ConsumerRecord, partition_time: i64) -> Result<Option<Decoded>>;
    /// Forwards a record `decode` returned to the source's children.
    fn process(&mut self, task: &mut TaskContext, decoded: Decoded) -> Result<()>;
}

/// An input record decoded by its source: its event time and the typed record.
pub(crate) struct Decoded {
    pub(crate) timestamp: i64,
    record: Box<dyn Any>,
}

/// The key and value types on one side of a node, for checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TypeInfo {
    id: TypeId,
    key: &'static str,
    value: &'static str,
}

impl TypeInfo {
    pub(crate) fn of<K: 'static, V: 'static>() -> Self {
        TypeInfo { id: TypeId::of::<(K, V)>(), key: std::any::type_name::<K>(), value: std::any::type_name::<V>() }
    }
}

impl std::fmt::Display for TypeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Record<{}, {}>", self.key, self.value)
    }
}

/// What building one node yields.
pub(crate) struct BuiltNode {
    /// `NodeRef<K, V>` of the node's input, for its parents (none for sources).
    pub(crate) input: Option<Rc<dyn Any>>,
    pub(crate) lifecycle: Rc<RefCell<dyn TaskNode>>,
    pub(crate) source: Option<Rc<RefCell<dyn SourceNode>>>,
}

/// Builds one node for a task: the only place types are erased and recovered.
pub(crate) trait NodeFactory: Send + Sync {
    fn input_type(&self) -> Option<TypeInfo>;
    fn output_type(&self) -> Option<TypeInfo>;
    fn build(&self, meta: NodeMeta, children: Vec<(String, Rc<dyn Any>)>, application_id: &str)
        -> Result<BuiltNode>;
}

fn typed_children<K: 'static, V: 'static>(
    parent: &str,
    children: Vec<(String, Rc<dyn Any>)>,
) -> Result<Vec<Child<K, V>>> {
    children
        .into_iter()
        .map(|(name, input)| match input.downcast_ref::<NodeRef<K, V>>() {
            Some(node) => Ok(Child { name, node: node.clone() }),
            None => Err(StreamsError::Topology(format!(
                "node `{parent}` forwards {} but its child `{name}` takes another record type",
                TypeInfo::of::<K, V>()
            ))),
        })
        .collect()
}

fn wrap_user_error(err: StreamsError, task: &TaskContext, node: &NodeMeta) -> StreamsError {
    match err {
        StreamsError::User(source) => StreamsError::Processing { task: task.task_id, node: node.name.clone(), source },
        other => other,
    }
}

// ---------------------------------------------------------------------------------------------
// Processor nodes

struct ProcessorNode<KIn, VIn, KOut, VOut> {
    meta: NodeMeta,
    processor: Box<dyn Processor<KIn, VIn, KOut, VOut>>,
    children: Vec<Child<KOut, VOut>>,
    /// What the caches of the processor's stores write down goes through these.
    flush_listeners: Vec<FlushListener<KOut, VOut>>,
    processed: u64,
}

/// A processor's context outside `init`.
fn context<'a, K, V>(node: &'a NodeMeta, children: &'a [Child<K, V>], task: &'a mut TaskContext) -> ProcessorContext<'a, K, V> {
    ProcessorContext { task, node, children, flush_listeners: None, forwarding: std::marker::PhantomData }
}

impl<KIn, VIn, KOut, VOut> ProcessorNode<KIn, VIn, KOut, VOut> {
    /// Pushes what the stores' caches wrote down (all dirty entries at `commit`) to the
    /// listeners registered in `init`.
    fn forward_cache_flushes(&mut self, task: &mut TaskContext, commit: bool) -> Result<()> {
        let mut ctx = context(&self.meta, &self.children, task);
        self.flush_listeners.iter_mut().try_for_each(|listener| listener(&mut ctx, commit))
    }
}

impl<KIn, VIn, KOut, VOut> Node<KIn, VIn> for ProcessorNode<KIn, VIn, KOut, VOut> {
    fn process(&mut self, task: &mut TaskContext, record: Record<KIn, VIn>) -> Result<()> {
        self.processed += 1;
        task.record_context.borrow_mut().timestamp = record.timestamp;
        let processed = self.processor.process(&mut context(&self.meta, &self.children, task), record);
        let Err(error) = processed.and_then(|()| self.forward_cache_flushes(task, false)) else { return Ok(()) };
        let error = wrap_user_error(error, task, &self.meta);
        // A failure of the record itself (user code, a value a serde rejects) may be skipped;
        // a broken store or client never is.
        let record_failure = matches!(error, StreamsError::Processing { .. } | StreamsError::Serde { .. });
        if record_failure && task.handle_processing_error(&self.meta.name, &error) {
            return Ok(());
        }
        Err(error)
    }
}

impl<KIn, VIn, KOut, VOut> TaskNode for ProcessorNode<KIn, VIn, KOut, VOut> {
    fn processed(&self) -> Option<(&str, u64)> {
        Some((&self.meta.name, self.processed))
    }
    fn init(&mut self, task: &mut TaskContext) -> Result<()> {
        let mut ctx = ProcessorContext {
            task: &mut *task,
            node: &self.meta,
            children: &self.children,
            flush_listeners: Some(&mut self.flush_listeners),
            forwarding: std::marker::PhantomData,
        };
        self.processor.init(&mut ctx).map_err(|e| wrap_user_error(e, task, &self.meta))
    }
    fn punctuate(&mut self, task: &mut TaskContext, punctuation: Punctuation) -> Result<()> {
        *task.record_context.borrow_mut() =
            RecordContext { topic: String::new(), partition: -1, offset: -1, timestamp: punctuation.timestamp };
        let punctuated = self.processor.punctuate(&mut context(&self.meta, &self.children, task), punctuation);
        punctuated.and_then(|()| self.forward_cache_flushes(task, false)).map_err(|e| wrap_user_error(e, task, &self.meta))
    }
    /// The processor's own flush, then its stores' caches, in topological order with the
    /// other nodes, so what a cache forwards reaches downstream caches before they flush.
    fn flush(&mut self, task: &mut TaskContext) -> Result<()> {
        let flushed = self.processor.flush(&mut context(&self.meta, &self.children, task));
        flushed.and_then(|()| self.forward_cache_flushes(task, true)).map_err(|e| wrap_user_error(e, task, &self.meta))
    }
    fn close(&mut self) -> Result<()> {
        self.processor.close()
    }
}

/// Builds processor nodes from a user's (or the DSL's) supplier.
pub(crate) struct ProcessorFactory<KIn, VIn, KOut, VOut> {
    pub(crate) supplier: Arc<dyn ProcessorSupplier<KIn, VIn, KOut, VOut>>,
}

impl<KIn: 'static, VIn: 'static, KOut: 'static, VOut: 'static> NodeFactory for ProcessorFactory<KIn, VIn, KOut, VOut> {
    fn input_type(&self) -> Option<TypeInfo> {
        Some(TypeInfo::of::<KIn, VIn>())
    }
    fn output_type(&self) -> Option<TypeInfo> {
        Some(TypeInfo::of::<KOut, VOut>())
    }
    fn build(&self, meta: NodeMeta, children: Vec<(String, Rc<dyn Any>)>, _: &str) -> Result<BuiltNode> {
        let children = typed_children::<KOut, VOut>(&meta.name, children)?;
        let node =
            Rc::new(RefCell::new(ProcessorNode { meta, processor: self.supplier.get(), children, flush_listeners: Vec::new(), processed: 0 }));
        let input: NodeRef<KIn, VIn> = node.clone();
        Ok(BuiltNode { input: Some(Rc::new(input)), lifecycle: node, source: None })
    }
}

// ---------------------------------------------------------------------------------------------
// Source nodes

struct SourceNodeImpl<K, V> {
    meta: NodeMeta,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    skip_null_keys: bool,
    timestamp_extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    children: Vec<Child<K, V>>,
    processed: u64,
}

impl<K: Clone + 'static, V: Clone + 'static> SourceNode for SourceNodeImpl<K, V> {
    fn decode(&mut self, task: &mut TaskContext, raw: &ConsumerRecord, partition_time: i64) -> Result<Option<Decoded>> {
        self.processed += 1;
        if self.skip_null_keys && raw.key.is_none() {
            tracing::warn!(
                node = %self.meta.name, topic = %raw.topic, partition = raw.partition, offset = raw.offset,
                "skipping record with null key"
            );
            task.metrics.dropped_records += 1;
            return Ok(None);
        }
        let decoded = self
            .key_serde
            .deserialize_with_headers(&raw.topic, &raw.headers, raw.key.as_deref())
            .and_then(|k| Ok((k, self.value_serde.deserialize_with_headers(&raw.topic, &raw.headers, raw.value.as_deref())?)));
        let (key, value) = match decoded {
            Ok(kv) => kv,
            Err(source) => {
                let ctx = ErrorHandlerContext::of_source(raw, &self.meta.name, task.task_id);
                let response = task.deserialization_handler.handle(&ctx, &source);
                if task.resumes(response) {
                    return Ok(None);
                }
                let (topic, partition, offset) = (raw.topic.clone(), raw.partition, raw.offset);
                return Err(StreamsError::Deserialization { topic: topic.to_string(), partition, offset, source });
            }
        };
        let consumed = ConsumedRecord {
            key: &key,
            value: &value,
            topic: &raw.topic,
            partition: raw.partition,
            offset: raw.offset,
            timestamp: raw.timestamp,
            headers: &raw.headers,
        };
        let extracted = match &self.timestamp_extractor {
            Some(extractor) => extractor.extract(&consumed, partition_time),
            None => task.timestamp_extractor.extract(&consumed, partition_time),
        };
        let timestamp = extracted.map_err(|source| StreamsError::TimestampExtraction {
            topic: raw.topic.to_string(),
            partition: raw.partition,
            offset: raw.offset,
            source,
        })?;
        let record = Record { key, value, timestamp, headers: raw.headers.clone() };
        Ok(Some(Decoded { timestamp, record: Box::new(record) }))
    }

    fn process(&mut self, task: &mut TaskContext, decoded: Decoded) -> Result<()> {
        let record = *decoded.record.downcast::<Record<K, V>>().expect("decoded by this source");
        let Some((last, rest)) = self.children.split_last() else { return Ok(()) };
        for child in rest {
            child.node.borrow_mut().process(task, record.clone())?;
        }
        last.node.borrow_mut().process(task, record)
    }
}

impl<K, V> TaskNode for SourceNodeImpl<K, V> {
    fn processed(&self) -> Option<(&str, u64)> {
        Some((&self.meta.name, self.processed))
    }
}

/// Builds source nodes: raw bytes in, `Record<K, V>` out.
pub(crate) struct SourceFactory<K, V> {
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
    pub(crate) skip_null_keys: bool,
    /// The source's own extractor; `None`: `default.timestamp.extractor`.
    pub(crate) timestamp_extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
}

impl<K: Clone + 'static, V: Clone + 'static> NodeFactory for SourceFactory<K, V> {
    fn input_type(&self) -> Option<TypeInfo> {
        None
    }
    fn output_type(&self) -> Option<TypeInfo> {
        Some(TypeInfo::of::<K, V>())
    }
    fn build(&self, meta: NodeMeta, children: Vec<(String, Rc<dyn Any>)>, _: &str) -> Result<BuiltNode> {
        let children = typed_children::<K, V>(&meta.name, children)?;
        let node = Rc::new(RefCell::new(SourceNodeImpl {
            meta,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            skip_null_keys: self.skip_null_keys,
            timestamp_extractor: self.timestamp_extractor.clone(),
            children,
            processed: 0,
        }));
        Ok(BuiltNode { input: None, lifecycle: node.clone(), source: Some(node) })
    }
}

// ---------------------------------------------------------------------------------------------
// Sink nodes

/// The topic a sink writes to: one (`T`: as the topology names it, then resolved), or one per
/// record.
pub(crate) enum SinkTopic<T, K, V> {
    Fixed(T),
    Extracted(Arc<dyn TopicNameExtractor<K, V>>),
}

impl<K, V> SinkTopic<TopicName, K, V> {
    /// The topic on the broker, for an application.
    fn resolve(&self, application_id: &str) -> SinkTopic<Arc<str>, K, V> {
        match self {
            SinkTopic::Fixed(topic) => SinkTopic::Fixed(topic.resolve(application_id).into()),
            SinkTopic::Extracted(extractor) => SinkTopic::Extracted(extractor.clone()),
        }
    }
}

struct SinkNode<K, V> {
    meta: NodeMeta,
    topic: SinkTopic<Arc<str>, K, V>,
    key_serde: SerdeRef<K>,
    value_serde: SerdeRef<V>,
    partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
}

impl<K: 'static, V: 'static> Node<K, V> for SinkNode<K, V> {
    fn process(&mut self, task: &mut TaskContext, record: Record<K, V>) -> Result<()> {
        let topic = match &self.topic {
            SinkTopic::Fixed(topic) => topic.clone(),
            SinkTopic::Extracted(extractor) => extractor.extract(&record.key, &record.value, &task.record_context.borrow()).into(),
        };
        let partition = match &self.partitioner {
            Some(partitioner) => {
                let partitions = task.collector.borrow_mut().partitions(&topic)?;
                let partition = partitioner.partition(&topic, &record.key, &record.value, partitions);
                if let Some(p) = partition.filter(|p| !(0..partitions).contains(p)) {
                    return Err(StreamsError::Topology(format!(
                        "the partitioner of sink `{}` chose partition {p} of topic `{topic}`, which has {partitions}",
                        self.meta.name
                    )));
                }
                partition
            }
            None => None,
        };
        let context = |e| StreamsError::serde(format!("sink `{}` to topic `{topic}`", self.meta.name), e);
        let mut headers = record.headers;
        let key = self.key_serde.serialize_with_headers(&topic, &mut headers, &record.key).map_err(context)?;
        let value = self.value_serde.serialize_with_headers(&topic, &mut headers, &record.value).map_err(context)?;
        task.collector.borrow_mut().send(ProducerRecord { topic, partition, timestamp: record.timestamp, key, value, headers })
    }
}

impl<K, V> TaskNode for SinkNode<K, V> {}

/// Builds sink nodes: `Record<K, V>` in, bytes to a topic.
pub(crate) struct SinkFactory<K, V> {
    pub(crate) topic: SinkTopic<TopicName, K, V>,
    pub(crate) key_serde: SerdeRef<K>,
    pub(crate) value_serde: SerdeRef<V>,
    pub(crate) partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
}

impl<K: 'static, V: 'static> NodeFactory for SinkFactory<K, V> {
    fn input_type(&self) -> Option<TypeInfo> {
        Some(TypeInfo::of::<K, V>())
    }
    fn output_type(&self) -> Option<TypeInfo> {
        None
    }
    fn build(&self, meta: NodeMeta, _: Vec<(String, Rc<dyn Any>)>, application_id: &str) -> Result<BuiltNode> {
        let topic = self.topic.resolve(application_id);
        let node = Rc::new(RefCell::new(SinkNode {
            meta,
            topic,
            key_serde: self.key_serde.clone(),
            value_serde: self.value_serde.clone(),
            partitioner: self.partitioner.clone(),
        }));
        let input: NodeRef<K, V> = node.clone();
        Ok(BuiltNode { input: Some(Rc::new(input)), lifecycle: node, source: None })
    }
}

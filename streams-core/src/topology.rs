//! `Topology`: sources, processors, sinks and stores, split into sub-topologies.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::error::{Result, StreamsError};
use crate::processor::node::{NodeFactory, ProcessorFactory, SinkFactory, SinkTopic, SourceFactory};
use crate::processor::{BuiltinTimestampExtractor, ProcessorSupplier, StreamPartitioner, TimestampExtractor, TopicNameExtractor};
use crate::serdes::{Serde, SerdeRef};
use crate::state::{GlobalStoreSpec, StoreBuilder};
pub(crate) use crate::topic::TopicName;

#[derive(Clone)]
pub(crate) enum NodeKind {
    Source { topics: Vec<TopicName> },
    Processor,
    /// `None`: a topic per record, from a `TopicNameExtractor`.
    Sink { topic: Option<TopicName> },
}

#[derive(Clone)]
pub(crate) struct NodeDef {
    pub(crate) name: String,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) stores: Vec<String>,
    pub(crate) factory: Arc<dyn NodeFactory>,
}

/// One connected part of the topology; each input partition of it is a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subtopology {
    /// Its index, the first half of task ids.
    pub id: u32,
    /// Node indices in topological order.
    pub(crate) nodes: Vec<usize>,
    /// Topics read by its sources.
    pub source_topics: Vec<TopicName>,
    /// Topics written by its sinks.
    pub sink_topics: Vec<TopicName>,
    /// Stores used by its processors.
    pub stores: Vec<String>,
}

/// A processing graph. Build one with the DSL (`StreamsBuilder`) or by hand with the Processor API.
///
/// Nodes are added parents first, so insertion order is a topological order.
#[derive(Clone, Default)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeDef>,
    pub(crate) stores: BTreeMap<String, Arc<dyn StoreBuilder>>,
    /// Sources whose inputs must be co-partitioned (a join's), as sets of source node indices:
    /// their topics are known only once pattern sources are resolved.
    copartition_groups: Vec<BTreeSet<usize>>,
    /// Sources that subscribe by pattern, by node index.
    source_patterns: BTreeMap<usize, SourcePattern>,
    global_stores: Vec<GlobalStoreSpec>,
    /// Repartition topics created with a partition count of their own (`Repartitioned`).
    fixed_partitions: BTreeMap<TopicName, i32>,
    /// Sources with an offset reset policy of their own, by node name.
    offset_resets: BTreeMap<String, AutoOffsetReset>,
}

/// Where a source partition without a committed offset starts reading (Kafka Streams'
/// `AutoOffsetReset`, per source through `Consumed` or [`Topology::set_offset_reset`]; the
/// consumer's `auto.offset.reset`, `earliest` by default, for the other sources).
/// Internal topics are always read from the earliest offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoOffsetReset {
    /// From the first offset the partition holds.
    Earliest,
    /// From the end: only records written after the partition was first assigned.
    Latest,
    /// From the first record whose timestamp is at most this long before the assignment
    /// (from the end if there is none).
    ByDuration(std::time::Duration),
    /// Fail the stream thread (Kafka Streams' `none()`).
    Fail,
}

impl AutoOffsetReset {
    /// The policy a consumer's `auto.offset.reset` value names (librdkafka's names and
    /// synonyms), if it names one.
    pub(crate) fn from_config(value: &str) -> Option<Self> {
        match value {
            "earliest" | "smallest" | "beginning" => Some(AutoOffsetReset::Earliest),
            "latest" | "largest" | "end" => Some(AutoOffsetReset::Latest),
            "error" | "none" => Some(AutoOffsetReset::Fail),
            _ => None,
        }
    }
}

/// Whether `topic` is neither a broker topic (`__` prefix) nor one of `application_id`'s
/// internal topics: the topics a pattern source may match, global stores' aside.
pub(crate) fn neither_broker_nor_internal(application_id: &str, topic: &str) -> bool {
    !topic.starts_with("__") && !topic.starts_with(&format!("{application_id}-"))
}

/// A source's topic pattern: the regex as written and compiled to match whole names, as
/// Java's `Pattern.matcher(topic).matches()` does.
#[derive(Clone)]
pub(crate) struct SourcePattern {
    text: String,
    regex: regex::Regex,
}

impl fmt::Display for SourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl SourcePattern {
    fn new(text: &str) -> Result<Self> {
        let regex = regex::Regex::new(&format!("^(?:{text})$"))
            .map_err(|e| StreamsError::Topology(format!("invalid topic pattern `{text}`: {e}")))?;
        Ok(SourcePattern { text: text.to_string(), regex })
    }

    pub(crate) fn matches(&self, topic: &str) -> bool {
        self.regex.is_match(topic)
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe())
    }
}

impl Topology {
    /// An empty topology.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source reading `topics` with the given serdes.
    pub fn add_source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: &[&str],
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Result<&mut Self> {
        let topics = topics.iter().map(|t| TopicName::external(*t)).collect();
        self.add_source_node(name, topics, Arc::new(key_serde), Arc::new(value_serde), false, None)
    }

    /// Adds a source whose records get their event time from `extractor` instead of
    /// `default.timestamp.extractor`.
    pub fn add_source_with_timestamp_extractor<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: &[&str],
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        extractor: impl TimestampExtractor<K, V>,
    ) -> Result<&mut Self> {
        let topics = topics.iter().map(|t| TopicName::external(*t)).collect();
        self.add_source_node(name, topics, Arc::new(key_serde), Arc::new(value_serde), false, Some(Arc::new(extractor)))
    }

    /// Adds a source reading every topic whose whole name matches `pattern` (a regex), as
    /// Kafka Streams' `addSource(name, Pattern)`. The pattern is matched against the cluster's
    /// topics when the application starts; topics created later are not picked up.
    pub fn add_source_pattern<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        pattern: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
    ) -> Result<&mut Self> {
        self.add_pattern_source_node(name, pattern, Arc::new(key_serde), Arc::new(value_serde), None)
    }

    /// Gives source `source` its own offset reset policy.
    pub fn set_offset_reset(&mut self, source: &str, reset: AutoOffsetReset) -> Result<&mut Self> {
        let node = &self.nodes[self.index_of(source)?];
        match &node.kind {
            NodeKind::Source { topics } if topics.iter().any(TopicName::is_internal) => Err(StreamsError::Topology(format!(
                "source `{source}` reads an internal topic, which is always read from the earliest offset"
            ))),
            NodeKind::Source { .. } => {
                self.offset_resets.insert(source.to_string(), reset);
                Ok(self)
            }
            _ => Err(StreamsError::Topology(format!("`{source}` is not a source node"))),
        }
    }

    /// The offset reset policy of each source topic that has one (by its name on the broker):
    /// its source's own, and `Earliest` for internal topics.
    pub(crate) fn offset_resets(&self, application_id: &str) -> BTreeMap<String, AutoOffsetReset> {
        let mut resets = BTreeMap::new();
        for node in &self.nodes {
            if let NodeKind::Source { topics } = &node.kind {
                for topic in topics {
                    let reset = match topic.is_internal() {
                        true => Some(AutoOffsetReset::Earliest),
                        false => self.offset_resets.get(&node.name).copied(),
                    };
                    if let Some(reset) = reset {
                        resets.insert(topic.resolve(application_id), reset);
                    }
                }
            }
        }
        resets
    }

    /// Adds a processor fed by `parents`. Its input types must match the parents' output types.
    pub fn add_processor<KIn: 'static, VIn: 'static, KOut: 'static, VOut: 'static>(
        &mut self,
        name: &str,
        supplier: impl ProcessorSupplier<KIn, VIn, KOut, VOut>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        self.add_processor_node(name, Arc::new(supplier), parents)
    }

    /// Adds a sink writing to `topic`.
    pub fn add_sink<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        self.add_sink_node(name, TopicName::external(topic), Arc::new(key_serde), Arc::new(value_serde), None, parents)
    }

    /// Adds a sink writing to `topic` the partition `partitioner` chooses for each record.
    pub fn add_sink_with_partitioner<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: &str,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        partitioner: impl StreamPartitioner<K, V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        let (topic, partitioner) = (TopicName::external(topic), Some(Arc::new(partitioner) as _));
        self.add_sink_node(name, topic, Arc::new(key_serde), Arc::new(value_serde), partitioner, parents)
    }

    /// Adds a sink writing each record to the topic `extractor` names for it.
    pub fn add_sink_with_topic_extractor<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        extractor: impl TopicNameExtractor<K, V>,
        key_serde: impl Serde<K>,
        value_serde: impl Serde<V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        self.add_extracted_sink_node(name, Arc::new(extractor), Arc::new(key_serde), Arc::new(value_serde), None, parents)
    }

    /// Adds a store and connects it to `processors`.
    pub fn add_state_store(&mut self, builder: impl StoreBuilder, processors: &[&str]) -> Result<&mut Self> {
        let name = builder.name().to_string();
        if self.stores.contains_key(&name) {
            return Err(StreamsError::Topology(format!("state store `{name}` is already added")));
        }
        self.stores.insert(name.clone(), Arc::new(builder));
        for processor in processors {
            self.connect_processor_and_state_store(processor, &name)?;
        }
        Ok(self)
    }

    /// Gives `processor` access to the store `store`.
    pub fn connect_processor_and_state_store(&mut self, processor: &str, store: &str) -> Result<&mut Self> {
        if !self.stores.contains_key(store) {
            return Err(StreamsError::Topology(format!("state store `{store}` is not added to the topology")));
        }
        let index = self.index_of(processor)?;
        let node = &mut self.nodes[index];
        if !matches!(node.kind, NodeKind::Processor) {
            return Err(StreamsError::Topology(format!("`{processor}` is not a processor; only processors use stores")));
        }
        if !node.stores.iter().any(|s| s == store) {
            node.stores.push(store.to_string());
        }
        Ok(self)
    }

    /// Whether a node of this name exists.
    pub fn has_node(&self, name: &str) -> bool {
        self.nodes.iter().any(|n| n.name == name)
    }

    /// Whether a store of this name exists.
    pub fn has_store(&self, name: &str) -> bool {
        self.stores.contains_key(name)
    }

    fn source_of(&self, topic: &TopicName) -> Option<&str> {
        self.nodes.iter().find_map(|n| match &n.kind {
            NodeKind::Source { topics } if topics.contains(topic) => Some(n.name.as_str()),
            _ => None,
        })
    }

    /// Adds a source node after checking that no other source reads its topics (or, for a
    /// pattern source, any topic its pattern matches).
    fn add_checked_source<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: Vec<TopicName>,
        pattern: Option<SourcePattern>,
        factory: SourceFactory<K, V>,
    ) -> Result<&mut Self> {
        for topic in &topics {
            if let Some(other) = self.source_of(topic) {
                return Err(StreamsError::Topology(format!(
                    "topic `{topic}` is already read by source `{other}`; a topic can feed one source only"
                )));
            }
            if let Some((node, p)) = self.source_patterns.iter().find(|(_, p)| !topic.is_internal() && p.matches(topic.name())) {
                return Err(StreamsError::Topology(format!(
                    "topic `{topic}` matches the pattern `{}` of source `{}`; a topic can feed one source only",
                    p.text, self.nodes[*node].name
                )));
            }
        }
        if let Some(pattern) = &pattern {
            let named = self.nodes.iter().find_map(|n| match &n.kind {
                NodeKind::Source { topics } => topics.iter().find(|t| !t.is_internal() && pattern.matches(t.name())).map(|t| (n, t)),
                _ => None,
            });
            if let Some((node, topic)) = named {
                return Err(StreamsError::Topology(format!(
                    "the pattern `{}` matches topic `{topic}`, already read by source `{}`; a topic can feed one source only",
                    pattern.text, node.name
                )));
            }
        }
        let index = self.nodes.len();
        self.add_node(name, NodeKind::Source { topics }, &[], Arc::new(factory))?;
        if let Some(pattern) = pattern {
            self.source_patterns.insert(index, pattern);
        }
        Ok(self)
    }

    /// Whether a source subscribes by pattern.
    pub(crate) fn has_source_patterns(&self) -> bool {
        !self.source_patterns.is_empty()
    }

    /// The pattern sources, by node index.
    pub(crate) fn source_patterns(&self) -> impl Iterator<Item = (usize, &SourcePattern)> + '_ {
        self.source_patterns.iter().map(|(i, p)| (*i, p))
    }

    /// Whether `topic` is one a pattern source of this application may read: not a broker
    /// internal topic (`__` prefix), not one of the application's own internal topics, and not
    /// a global store's.
    pub(crate) fn pattern_may_match(&self, application_id: &str, topic: &str) -> bool {
        neither_broker_nor_internal(application_id, topic) && !self.global_stores.iter().any(|g| g.topic == topic)
    }

    /// The topology with each pattern source reading the topics of `topics` its pattern
    /// matches (added to those it reads already). A topic that two patterns match is an error;
    /// with `require_match`, so is a pattern that matches none
    /// ([`StreamsError::MissingSourceTopics`] naming it).
    pub(crate) fn with_pattern_topics<'a>(
        &self,
        application_id: &str,
        topics: impl IntoIterator<Item = &'a str>,
        require_match: bool,
    ) -> Result<Topology> {
        let mut resolved = self.clone();
        let candidates: Vec<&str> = topics.into_iter().filter(|t| self.pattern_may_match(application_id, t)).collect();
        let mut matched_by: BTreeMap<&str, usize> = BTreeMap::new();
        for (&index, pattern) in &self.source_patterns {
            let mut matched = Vec::new();
            for &topic in candidates.iter().filter(|t| pattern.matches(t)) {
                let named = TopicName::external(topic);
                if self.source_of(&named).is_some_and(|n| n != self.nodes[index].name) {
                    continue;
                }
                if let Some(other) = matched_by.insert(topic, index) {
                    return Err(StreamsError::Topology(format!(
                        "topic `{topic}` matches the patterns of sources `{}` and `{}`; a topic can feed one source only",
                        self.nodes[other].name, self.nodes[index].name
                    )));
                }
                matched.push(named);
            }
            if require_match && matched.is_empty() {
                return Err(StreamsError::MissingSourceTopics(vec![format!("(pattern `{}`)", pattern.text)]));
            }
            if let NodeKind::Source { topics } = &mut resolved.nodes[index].kind {
                for topic in matched {
                    if !topics.contains(&topic) {
                        topics.push(topic);
                    }
                }
                topics.sort();
            }
        }
        Ok(resolved)
    }

    /// The source node indices behind `node` (itself, if it is a source).
    fn source_nodes_of(&self, node: &str) -> Result<BTreeSet<usize>> {
        let mut sources = BTreeSet::new();
        let mut stack = vec![self.index_of(node)?];
        let mut seen = BTreeSet::new();
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            if matches!(self.nodes[i].kind, NodeKind::Source { .. }) {
                sources.insert(i);
            }
            stack.extend(&self.nodes[i].parents);
        }
        Ok(sources)
    }

    /// Each co-partition group's topics, as its sources read them now.
    fn copartition_topic_groups(&self) -> Vec<Vec<TopicName>> {
        self.copartition_groups
            .iter()
            .map(|group| {
                group
                    .iter()
                    .flat_map(|&i| match &self.nodes[i].kind {
                        NodeKind::Source { topics } => topics.clone(),
                        _ => Vec::new(),
                    })
                    .collect()
            })
            .collect()
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| StreamsError::Topology(format!("no node named `{name}`")))
    }

    /// Adds a sink node after checking it has parents.
    fn add_sink_factory<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: Option<TopicName>,
        factory: SinkFactory<K, V>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        if parents.is_empty() {
            return Err(StreamsError::Topology(format!("sink `{name}` must have at least one parent")));
        }
        self.add_node(name, NodeKind::Sink { topic }, parents, Arc::new(factory))
    }

    fn add_node(
        &mut self,
        name: &str,
        kind: NodeKind,
        parents: &[&str],
        factory: Arc<dyn NodeFactory>,
    ) -> Result<&mut Self> {
        if name.is_empty() {
            return Err(StreamsError::Topology("node names must not be empty".into()));
        }
        if self.has_node(name) {
            return Err(StreamsError::Topology(format!("a node named `{name}` already exists")));
        }
        let mut parent_indices = Vec::new();
        for parent in parents {
            let input = factory.input_type().expect("nodes with parents have an input type");
            let index = self.index_of(parent).map_err(|_| {
                StreamsError::Topology(format!("parent `{parent}` of `{name}` is not in the topology (add it first)"))
            })?;
            let parent_def = &self.nodes[index];
            let Some(output) = parent_def.factory.output_type() else {
                return Err(StreamsError::Topology(format!("sink `{parent}` cannot be the parent of `{name}`")));
            };
            if output != input {
                return Err(StreamsError::Topology(format!(
                    "type mismatch: `{parent}` forwards {output} but `{name}` takes {input}"
                )));
            }
            if parent_indices.contains(&index) {
                return Err(StreamsError::Topology(format!("`{parent}` is listed twice as parent of `{name}`")));
            }
            parent_indices.push(index);
        }
        let index = self.nodes.len();
        for &p in &parent_indices {
            self.nodes[p].children.push(index);
        }
        self.nodes.push(NodeDef {
            name: name.to_string(),
            kind,
            parents: parent_indices,
            children: Vec::new(),
            stores: Vec::new(),
            factory,
        });
        Ok(self)
    }

    /// The sub-topologies: nodes connected by edges or by a shared store, numbered by first node.
    pub(crate) fn subtopologies(&self) -> Vec<Subtopology> {
        let mut root: Vec<usize> = (0..self.nodes.len()).collect();
        fn find(root: &mut [usize], mut i: usize) -> usize {
            while root[i] != i {
                root[i] = root[root[i]];
                i = root[i];
            }
            i
        }
        fn union(root: &mut [usize], a: usize, b: usize) {
            let (ra, rb) = (find(root, a), find(root, b));
            if ra != rb {
                root[ra.max(rb)] = ra.min(rb);
            }
        }
        let mut store_user: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for &p in &node.parents {
                union(&mut root, i, p);
            }
            for store in &node.stores {
                match store_user.get(store.as_str()) {
                    Some(&other) => union(&mut root, i, other),
                    None => {
                        store_user.insert(store, i);
                    }
                }
            }
        }
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..self.nodes.len() {
            let r = find(&mut root, i);
            groups.entry(r).or_default().push(i);
        }
        groups
            .into_values()
            .enumerate()
            .map(|(id, nodes)| {
                let mut source_topics = Vec::new();
                let mut sink_topics = Vec::new();
                let mut stores = BTreeSet::new();
                for &i in &nodes {
                    let node = &self.nodes[i];
                    match &node.kind {
                        NodeKind::Source { topics } => source_topics.extend(topics.iter().cloned()),
                        NodeKind::Sink { topic } => sink_topics.extend(topic.clone()),
                        NodeKind::Processor => {}
                    }
                    stores.extend(node.stores.iter().cloned());
                }
                Subtopology { id: id as u32, nodes, source_topics, sink_topics, stores: stores.into_iter().collect() }
            })
            .collect()
    }

    /// Checks what can only be checked on the whole graph.
    pub fn validate(&self) -> Result<()> {
        if self.nodes.is_empty() {
            return Err(StreamsError::Topology("the topology has no nodes".into()));
        }
        for sub in self.subtopologies() {
            if sub.source_topics.is_empty() && !sub.nodes.iter().any(|i| self.source_patterns.contains_key(i)) {
                let names: Vec<&str> = sub.nodes.iter().map(|&i| self.nodes[i].name.as_str()).collect();
                return Err(StreamsError::Topology(format!("nodes {names:?} are not reachable from any source")));
            }
        }
        for (name, builder) in &self.stores {
            if !self.nodes.iter().any(|n| n.stores.contains(name)) {
                tracing::warn!(store = %name, kind = %builder.type_name(), "state store is connected to no processor");
            }
        }
        Ok(())
    }

    /// Adds a global store: a full copy of `topic` (all partitions) in every instance, read by
    /// processors through [`ProcessorContext::global_store`](crate::ProcessorContext::global_store).
    pub fn add_global_store(&mut self, spec: GlobalStoreSpec) -> Result<&mut Self> {
        if self.global_stores.iter().any(|g| g.name == spec.name) || self.stores.contains_key(&spec.name) {
            return Err(StreamsError::Topology(format!("state store `{}` is already added", spec.name)));
        }
        let read_by_a_source = self.nodes.iter().any(|n| match &n.kind {
            NodeKind::Source { topics } => topics.iter().any(|t| t.name() == spec.topic),
            _ => false,
        });
        if read_by_a_source || self.global_stores.iter().any(|g| g.topic == spec.topic) {
            return Err(StreamsError::Topology(format!("topic `{}` is read twice; a global table needs its own", spec.topic)));
        }
        self.global_stores.push(spec);
        Ok(self)
    }

    /// The global stores.
    pub(crate) fn global_stores(&self) -> &[GlobalStoreSpec] {
        &self.global_stores
    }

    /// Names of stores that log to a changelog topic.
    pub(crate) fn logged_stores(&self) -> Vec<String> {
        self.stores.iter().filter(|(_, b)| b.logging_enabled()).map(|(n, _)| n.clone()).collect()
    }

    /// Kafka Streams' description of the topology.
    pub fn describe(&self) -> TopologyDescription {
        TopologyDescription { text: self.describe_text() }
    }

    fn describe_text(&self) -> String {
        let names = |indices: &[usize]| -> String {
            if indices.is_empty() {
                "none".to_string()
            } else {
                indices.iter().map(|&i| self.nodes[i].name.as_str()).collect::<Vec<_>>().join(", ")
            }
        };
        let mut out = String::from("Topologies:\n");
        for (n, sub) in self.subtopologies().iter().enumerate() {
            if n > 0 {
                out.push('\n');
            }
            out.push_str(&format!("   Sub-topology: {}\n", sub.id));
            for &i in &sub.nodes {
                let node = &self.nodes[i];
                match &node.kind {
                    NodeKind::Source { topics } => {
                        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
                        match self.source_patterns.get(&i) {
                            // Kafka Streams prints the pattern itself.
                            Some(pattern) => out.push_str(&format!("    Source: {} (topics: {})\n", node.name, pattern.text)),
                            None => out.push_str(&format!("    Source: {} (topics: [{}])\n", node.name, topics.join(", "))),
                        }
                        out.push_str(&format!("      --> {}\n", names(&node.children)));
                    }
                    NodeKind::Processor => {
                        out.push_str(&format!("    Processor: {} (stores: [{}])\n", node.name, node.stores.join(", ")));
                        out.push_str(&format!("      --> {}\n", names(&node.children)));
                        out.push_str(&format!("      <-- {}\n", names(&node.parents)));
                    }
                    NodeKind::Sink { topic } => {
                        let topic = topic.as_ref().map_or_else(|| "extracted per record".to_string(), |t| t.to_string());
                        out.push_str(&format!("    Sink: {} (topic: {topic})\n", node.name));
                        out.push_str(&format!("      <-- {}\n", names(&node.parents)));
                    }
                }
            }
        }
        out
    }
}

/// The DSL's hooks into a topology (Kafka Streams' `InternalTopologyBuilder`): internal topic
/// names, sources that drop null keys, shared suppliers, renames and co-partition groups, and
/// what the runtime derives from a topology. Not part of the API.
pub trait InternalTopologyBuilder {
    /// Adds a source; `skip_null_keys` drops records without a key before deserializing (KTable
    /// sources). Without an extractor, sources of internal topics take the record's timestamp
    /// (set upstream from the extracted one), others `default.timestamp.extractor`.
    fn add_source_node<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: Vec<TopicName>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        skip_null_keys: bool,
        timestamp_extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    ) -> Result<&mut Self>;
    /// [`add_processor`](Topology::add_processor) with a shared supplier.
    fn add_processor_node<KIn: 'static, VIn: 'static, KOut: 'static, VOut: 'static>(
        &mut self,
        name: &str,
        supplier: Arc<dyn ProcessorSupplier<KIn, VIn, KOut, VOut>>,
        parents: &[&str],
    ) -> Result<&mut Self>;
    /// [`add_sink`](Topology::add_sink) for any topic name, internal or not.
    fn add_sink_node<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: TopicName,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
        parents: &[&str],
    ) -> Result<&mut Self>;
    /// [`add_sink_with_topic_extractor`](Topology::add_sink_with_topic_extractor) with a
    /// partitioner.
    fn add_extracted_sink_node<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        extractor: Arc<dyn TopicNameExtractor<K, V>>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
        parents: &[&str],
    ) -> Result<&mut Self>;
    /// Renames a node that has no children yet (Kafka Streams' `Named` on a DSL operator).
    fn rename_node(&mut self, from: &str, to: &str) -> Result<()>;
    /// Adds a source reading the topics `pattern` matches ([`Topology::add_source_pattern`]).
    fn add_pattern_source_node<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        pattern: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        timestamp_extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    ) -> Result<&mut Self>;
    /// Declares that the source topics behind `nodes` must have the same partition count, as
    /// the inputs of a join must: records with one key then meet in one task.
    fn add_copartition_group(&mut self, nodes: &[&str]) -> Result<&mut Self>;
    /// Creates the internal topic `topic` with `partitions` partitions instead of the task count
    /// of the sub-topology that writes it (`Repartitioned::with_number_of_partitions`).
    fn set_partition_count(&mut self, topic: &TopicName, partitions: i32) -> &mut Self;
    /// Tasks per sub-topology and partitions of every internal topic (repartition and changelog),
    /// given the partition counts of the user's source topics.
    ///
    /// A sub-topology has as many tasks as its largest source topic has partitions; a repartition
    /// topic gets the task count of the sub-topology that writes it; a changelog the task count
    /// of the sub-topology that owns the store.
    fn partition_counts(&self, application_id: &str, external: impl Fn(&str) -> i32) -> PartitionCounts;
    /// Checks every co-partition group against the partition counts of existing topics.
    fn check_copartitioning(&self, application_id: &str, partitions: impl Fn(&str) -> i32) -> Result<()>;
    /// Topic configs of each changelog topic, by full name.
    fn changelog_configs(&self, application_id: &str) -> BTreeMap<String, Vec<(String, String)>>;
}

impl InternalTopologyBuilder for Topology {
    fn add_source_node<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        topics: Vec<TopicName>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        skip_null_keys: bool,
        timestamp_extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    ) -> Result<&mut Self> {
        if topics.is_empty() {
            return Err(StreamsError::Topology(format!("source `{name}` must read at least one topic")));
        }
        let timestamp_extractor = timestamp_extractor.or_else(|| {
            topics
                .iter()
                .all(TopicName::is_internal)
                .then(|| Arc::new(BuiltinTimestampExtractor::FailOnInvalid) as Arc<dyn TimestampExtractor<K, V>>)
        });
        let factory = SourceFactory { key_serde, value_serde, skip_null_keys, timestamp_extractor };
        self.add_checked_source(name, topics, None, factory)
    }

    fn add_pattern_source_node<K: Clone + 'static, V: Clone + 'static>(
        &mut self,
        name: &str,
        pattern: &str,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        timestamp_extractor: Option<Arc<dyn TimestampExtractor<K, V>>>,
    ) -> Result<&mut Self> {
        let pattern = SourcePattern::new(pattern)?;
        if let Some((node, _)) = self.source_patterns.iter().find(|(_, p)| p.text == pattern.text) {
            return Err(StreamsError::Topology(format!(
                "the pattern `{}` is already read by source `{}`",
                pattern.text, self.nodes[*node].name
            )));
        }
        let factory = SourceFactory { key_serde, value_serde, skip_null_keys: false, timestamp_extractor };
        self.add_checked_source(name, Vec::new(), Some(pattern), factory)
    }

    fn add_processor_node<KIn: 'static, VIn: 'static, KOut: 'static, VOut: 'static>(
        &mut self,
        name: &str,
        supplier: Arc<dyn ProcessorSupplier<KIn, VIn, KOut, VOut>>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        if parents.is_empty() {
            return Err(StreamsError::Topology(format!("processor `{name}` must have at least one parent")));
        }
        self.add_node(name, NodeKind::Processor, parents, Arc::new(ProcessorFactory { supplier }))
    }

    fn add_sink_node<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        topic: TopicName,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        let factory = SinkFactory { topic: SinkTopic::Fixed(topic.clone()), key_serde, value_serde, partitioner };
        self.add_sink_factory(name, Some(topic), factory, parents)
    }

    fn add_extracted_sink_node<K: 'static, V: 'static>(
        &mut self,
        name: &str,
        extractor: Arc<dyn TopicNameExtractor<K, V>>,
        key_serde: SerdeRef<K>,
        value_serde: SerdeRef<V>,
        partitioner: Option<Arc<dyn StreamPartitioner<K, V>>>,
        parents: &[&str],
    ) -> Result<&mut Self> {
        let factory = SinkFactory { topic: SinkTopic::Extracted(extractor), key_serde, value_serde, partitioner };
        self.add_sink_factory(name, None, factory, parents)
    }

    fn rename_node(&mut self, from: &str, to: &str) -> Result<()> {
        if self.has_node(to) {
            return Err(StreamsError::Topology(format!("a node named `{to}` already exists")));
        }
        let index = self.index_of(from)?;
        if !self.nodes[index].children.is_empty() {
            return Err(StreamsError::Topology(format!("cannot rename `{from}`: it already has children")));
        }
        self.nodes[index].name = to.to_string();
        if let Some(reset) = self.offset_resets.remove(from) {
            self.offset_resets.insert(to.to_string(), reset);
        }
        Ok(())
    }

    fn add_copartition_group(&mut self, nodes: &[&str]) -> Result<&mut Self> {
        let mut group = BTreeSet::new();
        for node in nodes {
            group.extend(self.source_nodes_of(node)?);
        }
        self.copartition_groups.push(group);
        Ok(self)
    }

    fn set_partition_count(&mut self, topic: &TopicName, partitions: i32) -> &mut Self {
        self.fixed_partitions.insert(topic.clone(), partitions);
        self
    }

    fn partition_counts(&self, application_id: &str, external: impl Fn(&str) -> i32) -> PartitionCounts {
        let subs = self.subtopologies();
        let copartition_groups = self.copartition_topic_groups();
        let mut tasks: BTreeMap<u32, i32> = BTreeMap::new();
        let mut internal: BTreeMap<String, i32> = BTreeMap::new();
        // Writers usually come before readers; iterate to a fixed point for the rest.
        for _ in 0..=subs.len() {
            for sub in &subs {
                let n = sub
                    .source_topics
                    .iter()
                    .map(|t| {
                        let name = t.resolve(application_id);
                        if t.is_internal() {
                            internal.get(&name).copied().unwrap_or(1)
                        } else {
                            external(&name)
                        }
                    })
                    .max()
                    .unwrap_or(1);
                tasks.insert(sub.id, n);
                for sink in sub.sink_topics.iter().filter(|t| t.is_internal()) {
                    internal.insert(sink.resolve(application_id), self.fixed_partitions.get(sink).copied().unwrap_or(n));
                }
            }
            // A repartition topic joined with user topics takes their partition count, so the
            // join's inputs are co-partitioned.
            for group in &copartition_groups {
                let external_max = group
                    .iter()
                    .filter(|t| !t.is_internal())
                    .map(|t| external(&t.resolve(application_id)))
                    .max();
                let fixed_max = group.iter().filter_map(|t| self.fixed_partitions.get(t).copied()).max();
                if let Some(n) = external_max.or(fixed_max) {
                    for t in group.iter().filter(|t| t.is_internal() && !self.fixed_partitions.contains_key(t)) {
                        internal.insert(t.resolve(application_id), n);
                    }
                }
            }
        }
        let logged = self.logged_stores();
        let mut changelogs = BTreeMap::new();
        for sub in &subs {
            for store in sub.stores.iter().filter(|s| logged.contains(s)) {
                changelogs.insert(crate::state::changelog_topic(application_id, store), tasks[&sub.id]);
            }
        }
        PartitionCounts { tasks, repartition_topics: internal, changelog_topics: changelogs }
    }

    fn check_copartitioning(&self, application_id: &str, partitions: impl Fn(&str) -> i32) -> Result<()> {
        for group in &self.copartition_topic_groups() {
            // Repartition topics are created with the count of the user topics they join,
            // unless their count was set.
            let counted: Vec<(String, i32)> = group
                .iter()
                .filter_map(|t| match (t.is_internal(), self.fixed_partitions.get(t)) {
                    (false, _) => Some((t.resolve(application_id), partitions(&t.resolve(application_id)))),
                    (true, Some(n)) => Some((t.resolve(application_id), *n)),
                    (true, None) => None,
                })
                .collect();
            let counts: BTreeSet<i32> = counted.iter().map(|(_, n)| *n).collect();
            if counts.len() > 1 {
                let detail: Vec<String> = counted.iter().map(|(t, n)| format!("{t} ({n})")).collect();
                return Err(StreamsError::Topology(format!("Topics not co-partitioned: [{}]", detail.join(", "))));
            }
        }
        Ok(())
    }

    fn changelog_configs(&self, application_id: &str) -> BTreeMap<String, Vec<(String, String)>> {
        self.stores
            .iter()
            .filter(|(_, b)| b.logging_enabled())
            .map(|(name, b)| (crate::state::changelog_topic(application_id, name), b.changelog_config()))
            .collect()
    }
}

/// What [`InternalTopologyBuilder::partition_counts`] computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionCounts {
    /// Tasks (partitions) per sub-topology.
    pub tasks: BTreeMap<u32, i32>,
    /// Partitions of each repartition topic, by full name.
    pub repartition_topics: BTreeMap<String, i32>,
    /// Partitions of each changelog topic, by full name.
    pub changelog_topics: BTreeMap<String, i32>,
}

/// The printable description returned by [`Topology::describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyDescription {
    text: String,
}

impl fmt::Display for TopologyDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::{Processor, ProcessorContext};
    use crate::record::Record;
    use crate::serdes::Serdes;

    struct Upper;
    impl Processor<String, String> for Upper {
        fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, r: Record<String, String>) -> Result<()> {
            let value = r.value.to_uppercase();
            ctx.forward(r.with_value(value))
        }
    }

    #[test]
    fn describes_like_kafka_streams() {
        let mut t = Topology::new();
        t.add_source::<String, String>("src", &["in"], Serdes::string(), Serdes::string()).unwrap();
        t.add_processor("upper", || Upper, &["src"]).unwrap();
        t.add_sink::<String, String>("sink", "out", Serdes::string(), Serdes::string(), &["upper"]).unwrap();
        let expected = "Topologies:\n   Sub-topology: 0\n    Source: src (topics: [in])\n      --> upper\n    \
Processor: upper (stores: [])\n      --> sink\n      <-- src\n    Sink: sink (topic: out)\n      <-- upper\n";
        assert_eq!(t.describe().to_string(), expected);
    }

    #[test]
    fn type_mismatch_is_found_when_connecting() {
        let mut t = Topology::new();
        t.add_source::<String, i64>("src", &["in"], Serdes::string(), Serdes::i64()).unwrap();
        let err = t.add_processor("upper", || Upper, &["src"]).unwrap_err().to_string();
        assert!(err.contains("type mismatch") && err.contains("i64"), "{err}");
    }

    #[test]
    fn bad_wiring_is_rejected() {
        let mut t = Topology::new();
        t.add_source::<String, String>("src", &["in"], Serdes::string(), Serdes::string()).unwrap();
        assert!(t.add_processor("p", || Upper, &["nope"]).is_err());
        assert!(t.add_source::<String, String>("src2", &["in"], Serdes::string(), Serdes::string()).is_err());
        assert!(t.add_source::<String, String>("src", &["other"], Serdes::string(), Serdes::string()).is_err());
        assert!(t.connect_processor_and_state_store("src", "missing").is_err());
    }

    #[test]
    fn copartition_groups_need_equal_partition_counts() {
        let mut t = Topology::new();
        t.add_source::<String, String>("a", &["a"], Serdes::string(), Serdes::string()).unwrap();
        t.add_source::<String, String>("b", &["b"], Serdes::string(), Serdes::string()).unwrap();
        t.add_copartition_group(&["a", "b"]).unwrap();
        assert!(t.check_copartitioning("app", |_| 4).is_ok());
        let err = t.check_copartitioning("app", |t| if t == "a" { 4 } else { 2 }).unwrap_err().to_string();
        assert!(err.contains("Topics not co-partitioned: [a (4), b (2)]"), "{err}");
    }

    #[test]
    fn pattern_sources_resolve_to_the_matching_topics() {
        let mut t = Topology::new();
        t.add_source_pattern::<String, String>("src", "orders-.*", Serdes::string(), Serdes::string()).unwrap();
        t.add_processor("upper", || Upper, &["src"]).unwrap();
        t.add_sink::<String, String>("sink", "orders-out", Serdes::string(), Serdes::string(), &["upper"]).unwrap();
        t.validate().unwrap();
        assert!(t.describe().to_string().contains("Source: src (topics: orders-.*)\n"), "{}", t.describe());
        let topics = ["orders-eu", "orders-us", "orders", "__consumer_offsets", "app-orders-x-changelog", "xorders-eu"];
        let resolved = t.with_pattern_topics("app", topics, true).unwrap();
        let names: Vec<String> = resolved.subtopologies()[0].source_topics.iter().map(|t| t.to_string()).collect();
        // Whole names only; the application's own internal topics and the broker's are never matched.
        assert_eq!(names, ["orders-eu", "orders-us"]);
        let err = t.with_pattern_topics("app", ["payments"], true).unwrap_err();
        assert!(matches!(err, StreamsError::MissingSourceTopics(_)) && err.to_string().contains("orders-.*"), "{err}");
        assert!(t.with_pattern_topics("app", ["payments"], false).is_ok(), "the test driver matches topics as they are piped");
    }

    #[test]
    fn a_topic_feeds_one_source_whether_named_or_matched() {
        let mut t = Topology::new();
        t.add_source_pattern::<String, String>("p", "in-.*", Serdes::string(), Serdes::string()).unwrap();
        let err = t.add_source::<String, String>("named", &["in-1"], Serdes::string(), Serdes::string()).unwrap_err();
        assert!(err.to_string().contains("matches the pattern `in-.*` of source `p`"), "{err}");
        t.add_source::<String, String>("other", &["other"], Serdes::string(), Serdes::string()).unwrap();
        let err = t.add_source_pattern::<String, String>("q", "oth.*", Serdes::string(), Serdes::string()).unwrap_err();
        assert!(err.to_string().contains("already read by source `other`"), "{err}");
        assert!(t.add_source_pattern::<String, String>("q", "in-.*", Serdes::string(), Serdes::string()).is_err(), "the same pattern twice");
        assert!(t.add_source_pattern::<String, String>("q", "in-(", Serdes::string(), Serdes::string()).is_err(), "not a regex");
        t.add_source_pattern::<String, String>("q", "in-1.*", Serdes::string(), Serdes::string()).unwrap();
        let err = t.with_pattern_topics("app", ["in-10"], true).unwrap_err();
        assert!(err.to_string().contains("matches the patterns of sources `p` and `q`"), "{err}");
    }

    #[test]
    fn stores_join_sub_topologies() {
        let mut t = Topology::new();
        t.add_source::<String, String>("a", &["a"], Serdes::string(), Serdes::string()).unwrap();
        t.add_source::<String, String>("b", &["b"], Serdes::string(), Serdes::string()).unwrap();
        t.add_processor("pa", || Upper, &["a"]).unwrap();
        t.add_processor("pb", || Upper, &["b"]).unwrap();
        assert_eq!(t.subtopologies().len(), 2);
        let store = crate::state::Stores::key_value_store_builder::<String, String>(
            crate::state::Stores::in_memory_key_value_store("s"),
            Serdes::string(),
            Serdes::string(),
        );
        t.add_state_store(store, &["pa", "pb"]).unwrap();
        let subs = t.subtopologies();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].source_topics.len(), 2);
    }

    #[test]
    fn offset_resets_are_per_source_and_internal_topics_read_from_the_earliest() {
        let mut t = Topology::new();
        t.add_source::<String, String>("clicks", &["clicks"], Serdes::string(), Serdes::string()).unwrap();
        t.add_source::<String, String>("views", &["views"], Serdes::string(), Serdes::string()).unwrap();
        let internal = vec![TopicName::internal("x-repartition")];
        t.add_source_node::<String, String>("again", internal, Arc::new(Serdes::string()), Arc::new(Serdes::string()), false, None)
            .unwrap();
        t.add_processor("up", || Upper, &["clicks"]).unwrap();
        t.set_offset_reset("clicks", AutoOffsetReset::Latest).unwrap();
        assert!(t.set_offset_reset("up", AutoOffsetReset::Latest).is_err(), "not a source");
        assert!(t.set_offset_reset("again", AutoOffsetReset::Latest).is_err(), "internal topics always start at the earliest");
        let resets: Vec<(String, AutoOffsetReset)> = t.offset_resets("app").into_iter().collect();
        assert_eq!(resets, [("app-x-repartition".into(), AutoOffsetReset::Earliest), ("clicks".into(), AutoOffsetReset::Latest)]);
    }
}

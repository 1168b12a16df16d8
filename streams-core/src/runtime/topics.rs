//! `InternalTopicManager`: checks source topics and creates repartition and changelog topics.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

use crate::error::{Result, StreamsError};
use crate::topology::{InternalTopologyBuilder, PartitionCounts, Topology};

/// Topic-level configs of a topic to create.
type TopicConfigs = Vec<(String, String)>;

/// Partition counts of every topic the cluster has.
pub(crate) fn topic_partitions(admin: &AdminClient<DefaultClientContext>, timeout: Duration) -> Result<BTreeMap<String, i32>> {
    let metadata = admin.inner().fetch_metadata(None, timeout).map_err(|e| StreamsError::kafka("fetch metadata", e))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect())
}

/// The topology with its pattern sources reading the cluster's matching topics, fixed for the
/// life of the client (Kafka Streams also picks up topics created later; this runtime does not).
pub(crate) fn resolve_source_patterns(
    topology: &Topology,
    application_id: &str,
    admin_config: &ClientConfig,
    timeout: Duration,
) -> Result<Topology> {
    let admin: AdminClient<DefaultClientContext> =
        admin_config.create().map_err(|e| StreamsError::kafka("create admin client", e))?;
    let existing = topic_partitions(&admin, timeout)?;
    let resolved = topology.with_pattern_topics(application_id, existing.keys().map(String::as_str), true)?;
    for (index, pattern) in topology.source_patterns() {
        if let crate::topology::NodeKind::Source { topics } = &resolved.nodes[index].kind {
            tracing::info!(source = %resolved.nodes[index].name, pattern = %pattern, topics = ?topics.iter().map(|t| t.name()).collect::<Vec<_>>(), "pattern source subscribed");
        }
    }
    Ok(resolved)
}

/// Makes sure every topic the topology reads or writes internally exists with the right
/// partition count; returns the partition counts (tasks per sub-topology).
pub(crate) fn setup(
    topology: &Topology,
    application_id: &str,
    admin_config: &ClientConfig,
    replication_factor: i32,
    dead_letter_queue: Option<&str>,
    metadata_topic: Option<&str>,
    timeout: Duration,
) -> Result<PartitionCounts> {
    let admin: AdminClient<DefaultClientContext> =
        admin_config.create().map_err(|e| StreamsError::kafka("create admin client", e))?;
    let existing = topic_partitions(&admin, timeout)?;
    let mut missing = Vec::new();
    for sub in topology.subtopologies() {
        for topic in sub.source_topics.iter().filter(|t| !t.is_internal()) {
            if !existing.contains_key(topic.name()) {
                missing.push(topic.name().to_string());
            }
        }
    }
    if !missing.is_empty() {
        missing.sort();
        missing.dedup();
        return Err(StreamsError::MissingSourceTopics(missing));
    }
    if let Some(topic) = dead_letter_queue.filter(|t| !existing.contains_key(*t)) {
        return Err(StreamsError::Config {
            key: crate::config::StreamsConfig::DEAD_LETTER_QUEUE_TOPIC.into(),
            message: format!("topic `{topic}` does not exist; create it before starting"),
        });
    }
    let partitions = |t: &str| existing.get(t).copied().unwrap_or(1);
    topology.check_copartitioning(application_id, partitions)?;
    let counts = topology.partition_counts(application_id, partitions);
    let changelog_configs = topology.changelog_configs(application_id);
    let delete = vec![("cleanup.policy".to_string(), "delete".to_string())];
    let compact = vec![("cleanup.policy".to_string(), "compact".to_string())];
    let metadata: Vec<(String, i32)> = metadata_topic.map(|t| (t.to_string(), 1)).into_iter().collect();
    let wanted: Vec<(&String, i32, &TopicConfigs)> = counts
        .repartition_topics
        .iter()
        .map(|(t, n)| (t, *n, &delete))
        .chain(counts.changelog_topics.iter().map(|(t, n)| (t, *n, &changelog_configs[t])))
        .chain(metadata.iter().map(|(t, n)| (t, *n, &compact)))
        .collect();
    let mut to_create = Vec::new();
    for (topic, partitions, configs) in &wanted {
        match existing.get(*topic) {
            Some(n) if n == partitions => {}
            Some(n) => {
                return Err(StreamsError::Topology(format!(
                    "internal topic `{topic}` has {n} partitions but the topology needs {partitions}; \
                     delete it or reset the application"
                )))
            }
            None => to_create.push(
                configs
                    .iter()
                    .fold(NewTopic::new(topic, *partitions, TopicReplication::Fixed(replication_factor)), |t, (k, v)| {
                        t.set(k, v)
                    }),
            ),
        }
    }
    if to_create.is_empty() {
        return Ok(counts);
    }
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = futures::executor::block_on(admin.create_topics(&to_create, &options))
        .map_err(|e| StreamsError::kafka("create internal topics", e))?;
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(topic) => tracing::info!(topic = %topic, "created internal topic"),
            Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %topic, "internal topic already exists")
            }
            Err((topic, code)) => failures.push(format!("{topic}: {code}")),
        }
    }
    // Wait until the new topics show up in metadata (creation is asynchronous on the broker).
    let deadline = Instant::now() + timeout;
    loop {
        let now = topic_partitions(&admin, timeout)?;
        let absent: Vec<&String> = wanted.iter().map(|(t, _, _)| *t).filter(|t| !now.contains_key(*t)).collect();
        if absent.is_empty() {
            return Ok(counts);
        }
        if Instant::now() > deadline {
            return Err(StreamsError::Topology(format!(
                "internal topics {absent:?} do not exist and could not be created ({}); create them before starting",
                failures.join("; ")
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

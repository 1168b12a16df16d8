//! An in-process cluster (librdkafka's mock cluster) for examples and tests without a broker.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::error::{Result, StreamsError};
use crate::topology::{InternalTopologyBuilder, Topology};

/// librdkafka's mock cluster. It has no CreateTopics API, so topics — including a topology's
/// internal ones — are created through [`create_topic`](Self::create_topic) and
/// [`create_internal_topics`](Self::create_internal_topics) before an application starts.
pub struct EmbeddedKafkaCluster {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedKafkaCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedKafkaCluster").field("bootstrap_servers", &self.bootstrap_servers()).finish()
    }
}

impl EmbeddedKafkaCluster {
    /// A cluster of `brokers` brokers.
    pub fn new(brokers: i32) -> Result<Self> {
        let cluster = MockCluster::new(brokers).map_err(|e| StreamsError::kafka("start mock cluster", e))?;
        Ok(EmbeddedKafkaCluster { cluster })
    }

    /// `host:port,...` of the brokers.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<()> {
        self.cluster.create_topic(topic, partitions, 1).map_err(|e| StreamsError::kafka(format!("create topic {topic}"), e))
    }

    /// Creates the repartition and changelog topics `topology` needs as `application_id`,
    /// given the partition counts of its source topics, and the instance-metadata topic
    /// (used with `application.server`).
    pub fn create_internal_topics(
        &self,
        topology: &Topology,
        application_id: &str,
        source_partitions: impl Fn(&str) -> i32,
    ) -> Result<()> {
        // Pattern sources read the topics they match now, as the application will at start.
        let resolved;
        let topology = match topology.has_source_patterns() {
            true => {
                let mut admin = rdkafka::ClientConfig::new();
                admin.set("bootstrap.servers", self.bootstrap_servers());
                let timeout = std::time::Duration::from_secs(10);
                resolved = crate::runtime::resolve_source_patterns(topology, application_id, &admin, timeout)?;
                &resolved
            }
            false => topology,
        };
        let counts = topology.partition_counts(application_id, source_partitions);
        for (topic, partitions) in counts.repartition_topics.iter().chain(&counts.changelog_topics) {
            self.create_topic(topic, *partitions)?;
        }
        self.create_topic(&crate::runtime::metadata_topic(application_id), 1)
    }

    /// The underlying mock cluster, for fault injection.
    pub fn mock(&self) -> &MockCluster<'static, DefaultProducerContext> {
        &self.cluster
    }
}

//! A cluster for the runtime tests: the broker named by `STREAMS_BOOTSTRAP_SERVERS`, else an
//! embedded one. Every test uses fresh topic and application names, so runs never mix.

use std::sync::atomic::{AtomicU32, Ordering};

use streams::runtime::test_utils;
use streams::{EmbeddedKafkaCluster, Topology};

pub(crate) enum Cluster {
    Embedded(EmbeddedKafkaCluster),
    External(String),
}

impl Cluster {
    pub(crate) fn new() -> Self {
        match std::env::var("STREAMS_BOOTSTRAP_SERVERS") {
            Ok(servers) if !servers.is_empty() => Cluster::External(servers),
            _ => Cluster::Embedded(EmbeddedKafkaCluster::new(1).expect("embedded cluster")),
        }
    }

    /// Whether groups with several members work. librdkafka's mock cluster races on SyncGroup
    /// (members can end up with overlapping or no assignments), so tests that need two members
    /// at once run only against a real broker.
    pub(crate) fn supports_several_members(&self) -> bool {
        matches!(self, Cluster::External(_))
    }

    /// Stream threads per instance: one on the embedded broker (see `supports_several_members`).
    pub(crate) fn threads(&self) -> usize {
        if self.supports_several_members() {
            2
        } else {
            1
        }
    }

    pub(crate) fn bootstrap_servers(&self) -> String {
        match self {
            Cluster::Embedded(c) => c.bootstrap_servers(),
            Cluster::External(s) => s.clone(),
        }
    }

    pub(crate) fn create_topic(&self, topic: &str, partitions: i32) {
        match self {
            Cluster::Embedded(c) => c.create_topic(topic, partitions).expect("create topic"),
            Cluster::External(s) => test_utils::ensure_topic(s, topic, partitions).expect("create topic"),
        }
    }

    /// Internal topics: the embedded cluster has no CreateTopics API, so they are made here;
    /// on a real broker `KafkaStreams::start` creates them.
    pub(crate) fn prepare(&self, topology: &Topology, application_id: &str, source_partitions: i32) {
        if let Cluster::Embedded(c) = self {
            c.create_internal_topics(topology, application_id, |_| source_partitions).expect("internal topics");
        }
    }
}

/// A name no earlier run used.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

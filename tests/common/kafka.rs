//! A cluster for the runtime tests: the broker named by `STREAMS_BOOTSTRAP_SERVERS`, else an
//! embedded one. Every test uses fresh topic and application names, so runs never mix.
//!
//! `make test-kafka` runs the runtime suites against Apache Kafka (started from the Maven jars by
//! `scripts/kafka.sh`, or the broker a user names) and sets `STREAMS_REQUIRE_ALL=1`: there a test
//! that would skip an exactly-once or multi-member check fails instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use streams::test_utils;
use streams::test_utils::EmbeddedKafkaCluster;
use streams::Topology;

pub(crate) enum Cluster {
    Embedded(EmbeddedKafkaCluster),
    External(String),
}

impl Cluster {
    /// The broker of this run; says on stderr which one it is.
    pub(crate) fn new() -> Self {
        let cluster = match external_servers() {
            Some(servers) => Cluster::External(servers),
            None => Cluster::Embedded(EmbeddedKafkaCluster::new(1).expect("embedded cluster")),
        };
        eprintln!("broker: {}", cluster.describe());
        cluster
    }

    fn describe(&self) -> String {
        match self {
            Cluster::Embedded(c) => format!("embedded mock cluster (librdkafka) at {}", c.bootstrap_servers()),
            Cluster::External(s) => {
                format!("{} at {s}", std::env::var("STREAMS_BROKER").unwrap_or_else(|_| "external broker".into()))
            }
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

    /// Whether this test may run here; if not, says why on stderr, and fails where every test
    /// must run (`STREAMS_REQUIRE_ALL=1`, set by `make test-kafka` for its own broker).
    pub(crate) fn runs_here(&self, why_not: Option<String>) -> bool {
        let Some(why) = why_not else { return true };
        assert!(
            std::env::var("STREAMS_REQUIRE_ALL").as_deref() != Ok("1"),
            "would skip on {} ({why}), but STREAMS_REQUIRE_ALL=1 says every test must run",
            self.describe()
        );
        eprintln!("skipped on {}: {why}", self.describe());
        false
    }

    /// [`runs_here`](Self::runs_here) for tests that need what only a real broker does; `needs`
    /// says what.
    pub(crate) fn runs_on_a_real_broker(&self, needs: &str) -> bool {
        self.runs_here(matches!(self, Cluster::Embedded(_)).then(|| format!("{needs}; `make test-kafka` runs it")))
    }

    /// [`runs_here`](Self::runs_here) for tests that need several group members at once.
    pub(crate) fn runs_several_members(&self) -> bool {
        self.runs_on_a_real_broker("needs several group members at once, which the embedded broker cannot run")
    }

    /// [`runs_here`](Self::runs_here) for tests that check exactly-once results: the broker must
    /// hide aborted records and keep offsets committed in transactions (probed).
    pub(crate) fn runs_exactly_once(&self) -> bool {
        let probe = unique("txn-probe");
        self.create_topic(&probe, 1);
        let support = test_utils::exactly_once_support(&self.bootstrap_servers(), &probe).expect("exactly-once probe");
        self.runs_here(support.err().map(|lacking| format!("{lacking}; exactly-once results need Apache Kafka to be checked")))
    }
}

/// `config` with what the embedded broker needs: librdkafka's mock cluster waits the session
/// timeout less one second for members to rejoin in every rebalance after the first, so there a
/// short session timeout keeps rebalances short. Real brokers run with the defaults.
pub(crate) fn for_broker(config: streams::StreamsConfig) -> streams::StreamsConfig {
    match external_servers() {
        Some(_) => config,
        None => config.with("consumer.session.timeout.ms", "6000").with("consumer.heartbeat.interval.ms", "500"),
    }
}

/// The broker named by `STREAMS_BOOTSTRAP_SERVERS`, if any.
fn external_servers() -> Option<String> {
    std::env::var("STREAMS_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty())
}

/// A broker of a test's own, which the test may kill and restart: Apache Kafka run from the
/// Maven jars by `scripts/kafka.sh` (Java and Maven needed), stopped on drop.
pub(crate) struct OwnBroker {
    dir: tempfile::TempDir,
    pub(crate) bootstrap_servers: String,
}

impl OwnBroker {
    /// Starts one; `None` (and why, on stderr) where this machine cannot.
    pub(crate) fn start(cluster: &Cluster) -> Option<OwnBroker> {
        if !cluster.runs_on_a_real_broker("needs a broker of its own (killed and restarted)") {
            return None;
        }
        let no_java = Command::new("java").arg("-version").output().is_err() || Command::new("mvn").arg("-v").output().is_err();
        if !cluster.runs_here(no_java.then(|| "needs Java and Maven to run a broker of its own (scripts/kafka.sh)".into())) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let bootstrap_servers = kafka_sh("start", dir.path());
        eprintln!("own broker: Apache Kafka (scripts/kafka.sh) at {bootstrap_servers}");
        Some(OwnBroker { dir, bootstrap_servers })
    }

    /// SIGKILL: no controlled shutdown, no flush of the log.
    pub(crate) fn kill(&self) {
        kafka_sh("kill", self.dir.path());
    }

    /// Starts it again on its data directory and port.
    pub(crate) fn restart(&self) {
        let servers = kafka_sh("start", self.dir.path());
        assert_eq!(servers, self.bootstrap_servers, "the same address");
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        kafka_sh("stop", self.dir.path());
    }
}

fn kafka_sh(command: &str, dir: &Path) -> String {
    let script: PathBuf = [env!("CARGO_MANIFEST_DIR"), "scripts", "kafka.sh"].iter().collect();
    let out = Command::new(script).arg(command).arg(dir).output().expect("run scripts/kafka.sh");
    assert!(out.status.success(), "kafka.sh {command}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A name no earlier run used.
pub(crate) fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A consumer (no group membership) of `topic`'s partitions `0..partitions`, each from its
/// current end: it sees only records written from now on.
pub(crate) fn tail(servers: &str, topic: &str, partitions: i32) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique("tail"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, std::time::Duration::from_secs(10)).unwrap();
        tpl.add_partition_offset(topic, p, Offset::Offset(high)).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    consumer
}

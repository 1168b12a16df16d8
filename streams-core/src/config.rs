//! `StreamsConfig`: Kafka Streams' settings with their names and defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::error::{Result, StreamsError};
use crate::handlers::{Builtin, DeserializationExceptionHandler, ProcessingExceptionHandler, ProductionExceptionHandler};
use crate::processor::BuiltinTimestampExtractor;
use crate::state::{RocksDbConfig, RocksDbConfigSetter};

/// What to do with a record that cannot be deserialized (`deserialization.exception.handler`)
/// or whose processing failed (`processing.exception.handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExceptionHandler {
    /// Log the record's coordinates and stop with an error (Kafka Streams' default).
    #[default]
    LogAndFail,
    /// Log, count it in `dropped-records`, and go on with the next record.
    LogAndContinue,
}

/// The handler of undeserializable input records.
pub type DeserializationHandler = ExceptionHandler;

/// The processing guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProcessingGuarantee {
    /// Commit offsets after outputs are flushed; a crash may repeat records.
    #[default]
    AtLeastOnce,
    /// Transactions: outputs, changelogs and offsets commit atomically.
    ExactlyOnceV2,
}

/// The consumer-group protocol of the stream threads (`group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// The classic protocol with eager rebalancing: every rebalance revokes (and closes) every
    /// task of every member, then assigns. Works with every broker.
    #[default]
    Classic,
    /// KIP-848's consumer protocol (Apache Kafka 4.0+): the broker assigns (range, so
    /// co-partitioned topics stay together) and rebalances incrementally: only the tasks that
    /// move are closed; the others keep processing.
    Consumer,
}

/// Settings by Kafka Streams name, e.g. `config.set("application.id", "word-count")`.
///
/// Settings prefixed `consumer.`, `restore.consumer.`, `global.consumer.`, `producer.` and
/// `admin.` go to those Kafka clients (librdkafka names). Every setting is parsed and checked
/// once, when a [`KafkaStreams`](crate::KafkaStreams) client or a test driver is created (or by
/// [`validate`](Self::validate)): a bad value is an error naming the setting and the value, an
/// unknown name a warning.
#[derive(Debug, Clone, Default)]
pub struct StreamsConfig {
    values: BTreeMap<String, String>,
    handlers: UserHandlers,
    rocksdb_config: RocksDbConfig,
}

/// Handlers set as objects, which win over the `*.exception.handler` settings.
#[derive(Clone, Default)]
struct UserHandlers {
    deserialization: Option<Arc<dyn DeserializationExceptionHandler>>,
    processing: Option<Arc<dyn ProcessingExceptionHandler>>,
    production: Option<Arc<dyn ProductionExceptionHandler>>,
}

impl fmt::Debug for UserHandlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserHandlers")
            .field("deserialization", &self.deserialization.is_some())
            .field("processing", &self.processing.is_some())
            .field("production", &self.production.is_some())
            .finish()
    }
}

/// The handlers a client's tasks and producers use.
#[derive(Clone)]
pub(crate) struct Handlers {
    pub(crate) deserialization: Arc<dyn DeserializationExceptionHandler>,
    pub(crate) processing: Arc<dyn ProcessingExceptionHandler>,
    pub(crate) production: Arc<dyn ProductionExceptionHandler>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handlers").finish_non_exhaustive()
    }
}

impl StreamsConfig {
    /// `application.id`: group id, prefix of internal topics and of the state directory.
    pub const APPLICATION_ID: &'static str = "application.id";
    /// `bootstrap.servers`.
    pub const BOOTSTRAP_SERVERS: &'static str = "bootstrap.servers";
    /// `num.stream.threads` (default 1).
    pub const NUM_STREAM_THREADS: &'static str = "num.stream.threads";
    /// `processing.guarantee`: `at_least_once` (default) or `exactly_once_v2`.
    pub const PROCESSING_GUARANTEE: &'static str = "processing.guarantee";
    /// `commit.interval.ms` (30000, or 100 under exactly-once).
    pub const COMMIT_INTERVAL_MS: &'static str = "commit.interval.ms";
    /// `state.dir` (default `<tmp>/kafka-streams`).
    pub const STATE_DIR: &'static str = "state.dir";
    /// `statestore.cache.max.bytes` (default 10485760), shared by the threads of a client.
    pub const CACHE_MAX_BYTES: &'static str = "statestore.cache.max.bytes";
    /// `max.task.idle.ms` (default 0): how long a task whose other input partitions have
    /// records waits for data on an empty one before it processes what it has (enforced
    /// processing), so that records of co-partitioned inputs are processed in timestamp order.
    /// `0` waits only while the partition is known to have records on the broker not fetched
    /// yet; `-1` never waits.
    pub const MAX_TASK_IDLE_MS: &'static str = "max.task.idle.ms";
    /// `buffered.records.per.partition` (default 1000): once a task holds this many records of
    /// one input partition, the partition's further records wait in a librdkafka queue of its
    /// own, which stops fetching at `consumer.queued.min.messages`, until the task has room
    /// (Kafka Streams pauses the partition instead). Checked after each processing pass, so a
    /// buffer can pass it by what was already on the consumer's queue. Bounds the memory of a
    /// task that waits on another input (a join over a backlog).
    pub const BUFFERED_RECORDS_PER_PARTITION: &'static str = "buffered.records.per.partition";
    /// `poll.ms` (default 100).
    pub const POLL_MS: &'static str = "poll.ms";
    /// `deserialization.exception.handler`: `log-and-fail` (default) or `log-and-continue`.
    pub const DESERIALIZATION_EXCEPTION_HANDLER: &'static str = "deserialization.exception.handler";
    /// What to do when a processor fails on a record: `log-and-fail` (default) or `log-and-continue`.
    pub const PROCESSING_EXCEPTION_HANDLER: &'static str = "processing.exception.handler";
    /// `log-and-fail` (default) or `log-and-continue` for records the producer cannot send
    /// (continue is for records refused outright or, under at-least-once, failed deliveries).
    pub const PRODUCTION_EXCEPTION_HANDLER: &'static str = "default.production.exception.handler";
    /// `default.timestamp.extractor`: the event time of records of sources without their own
    /// extractor: `fail-on-invalid` (default: the record's timestamp, a negative one stops the
    /// task), `log-and-skip-on-invalid`, `use-partition-time-on-invalid` or `wall-clock`, or
    /// Kafka Streams' class names; see [`BuiltinTimestampExtractor`].
    pub const DEFAULT_TIMESTAMP_EXTRACTOR: &'static str = "default.timestamp.extractor";
    /// A topic that receives the records the deserialization and processing handlers skip,
    /// with the error in `__streams.errors.*` headers (unset: none).
    pub const DEAD_LETTER_QUEUE_TOPIC: &'static str = "errors.dead.letter.queue.topic.name";
    /// How long transient broker errors (commit, send, flush) are retried before they fail
    /// the thread, in ms (default 300000).
    pub const TASK_TIMEOUT_MS: &'static str = "task.timeout.ms";
    /// `replication.factor` of the internal topics (repartition topics and changelogs) the
    /// client creates; default -1, the broker's `default.replication.factor`.
    pub const REPLICATION_FACTOR: &'static str = "replication.factor";

    /// `application.server`: this instance's `host:port` for interactive queries; other
    /// instances learn it through [`KafkaStreams::metadata_for_all_streams_clients`](crate::KafkaStreams::metadata_for_all_streams_clients)
    /// and friends (unset: no instance metadata).
    pub const APPLICATION_SERVER: &'static str = "application.server";
    /// `group.protocol`: `classic` (default) or `consumer` (KIP-848, Apache Kafka 4.0+:
    /// incremental rebalances); see [`GroupProtocol`].
    pub const GROUP_PROTOCOL: &'static str = "group.protocol";
    /// `num.standby.replicas` (default 0): how many other instances keep a warm copy of each
    /// task's stores by reading its changelogs, so that a failover restores only the tail.
    pub const NUM_STANDBY_REPLICAS: &'static str = "num.standby.replicas";
    /// `metrics.recording.level`: `INFO` (default) or `DEBUG` (adds per-task, per-node and
    /// per-store latencies and the record-cache hit ratio), as Kafka Streams' levels.
    pub const METRICS_RECORDING_LEVEL: &'static str = "metrics.recording.level";

    /// The prefixes of settings that go to the Kafka clients.
    const CLIENT_PREFIXES: [&'static str; 5] = ["consumer.", "restore.consumer.", "global.consumer.", "producer.", "admin."];

    /// An empty config: every setting at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles undeserializable input records with `handler` instead of the built-in
    /// `deserialization.exception.handler`.
    pub fn set_deserialization_exception_handler(&mut self, handler: impl DeserializationExceptionHandler) -> &mut Self {
        self.handlers.deserialization = Some(Arc::new(handler));
        self
    }

    /// Handles records processors fail on with `handler` instead of the built-in
    /// `processing.exception.handler`.
    pub fn set_processing_exception_handler(&mut self, handler: impl ProcessingExceptionHandler) -> &mut Self {
        self.handlers.processing = Some(Arc::new(handler));
        self
    }

    /// Handles records the producer refuses or fails to deliver with `handler` instead of
    /// the built-in `default.production.exception.handler`.
    pub fn set_production_exception_handler(&mut self, handler: impl ProductionExceptionHandler) -> &mut Self {
        self.handlers.production = Some(Arc::new(handler));
        self
    }

    /// Opens every RocksDB store (task stores, window and session segments, global stores)
    /// with the options `setter` adjusts, as Kafka Streams' `rocksdb.config.setter`; e.g.
    /// [`BoundedMemory`](crate::state::BoundedMemory) for one memory budget across all stores.
    pub fn set_rocksdb_config_setter(&mut self, setter: impl RocksDbConfigSetter) -> &mut Self {
        self.rocksdb_config = RocksDbConfig::new(setter);
        self
    }

    /// Sets a value by name.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.values.insert(key.into(), value.into());
        self
    }

    /// Builder-style [`set`](Self::set).
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }

    /// The raw value of a setting, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Parses and checks every setting, as a client does when it is created.
    pub fn validate(&self) -> Result<()> {
        self.settings(None).map(drop)
    }

    /// The typed settings; `application.id` falls back to `default_application_id` if given
    /// (the test driver's), else is required.
    pub(crate) fn settings(&self, default_application_id: Option<&str>) -> Result<Settings> {
        for key in self.values.keys() {
            let known = Settings::KNOWN.contains(&key.as_str()) || Self::CLIENT_PREFIXES.iter().any(|p| key.starts_with(p));
            if !known {
                warn!(setting = %key, "unknown setting, ignored (Kafka client settings take a consumer., \
                    restore.consumer., global.consumer., producer. or admin. prefix)");
            }
        }
        let guarantee = match self.get(Self::PROCESSING_GUARANTEE) {
            None | Some("at_least_once") => ProcessingGuarantee::AtLeastOnce,
            Some("exactly_once_v2") => ProcessingGuarantee::ExactlyOnceV2,
            Some(other) => return Err(bad(Self::PROCESSING_GUARANTEE, other, "expected at_least_once or exactly_once_v2")),
        };
        let commit_default = match guarantee {
            ProcessingGuarantee::AtLeastOnce => 30_000,
            ProcessingGuarantee::ExactlyOnceV2 => 100,
        };
        let application_id = match (self.get(Self::APPLICATION_ID), default_application_id) {
            (Some(id), _) if !id.is_empty() => id.to_string(),
            (None, Some(default)) => default.to_string(),
            (Some(id), _) => return Err(bad(Self::APPLICATION_ID, id, "must not be empty")),
            (None, None) => return Err(StreamsError::Config { key: Self::APPLICATION_ID.into(), message: "required".into() }),
        };
        let num_stream_threads = self.parse(Self::NUM_STREAM_THREADS, 1usize)?;
        if num_stream_threads == 0 {
            return Err(bad(Self::NUM_STREAM_THREADS, "0", "must be at least 1"));
        }
        let max_task_idle_ms = self.parse(Self::MAX_TASK_IDLE_MS, 0i64)?;
        if max_task_idle_ms < -1 {
            return Err(bad(Self::MAX_TASK_IDLE_MS, &max_task_idle_ms.to_string(), "must be -1 (never wait) or at least 0"));
        }
        let buffered_records_per_partition = self.parse(Self::BUFFERED_RECORDS_PER_PARTITION, 1000usize)?;
        if buffered_records_per_partition == 0 {
            return Err(bad(Self::BUFFERED_RECORDS_PER_PARTITION, "0", "must be at least 1"));
        }
        let replication_factor = self.parse(Self::REPLICATION_FACTOR, -1i32)?;
        if replication_factor == 0 || replication_factor < -1 {
            return Err(bad(Self::REPLICATION_FACTOR, &replication_factor.to_string(), "must be -1 (broker default) or at least 1"));
        }
        let application_server = match self.get(Self::APPLICATION_SERVER).filter(|s| !s.is_empty()) {
            Some(server) => Some(server.parse::<crate::query::HostInfo>()?),
            None => None,
        };
        let debug_metrics = match self.get(Self::METRICS_RECORDING_LEVEL).map(str::trim) {
            None | Some("INFO") => false,
            Some("DEBUG") | Some("TRACE") => true,
            Some(other) => return Err(bad(Self::METRICS_RECORDING_LEVEL, other, "expected INFO, DEBUG or TRACE")),
        };
        let group_protocol = match self.get(Self::GROUP_PROTOCOL).map(str::trim) {
            None | Some("classic") => GroupProtocol::Classic,
            Some("consumer") => GroupProtocol::Consumer,
            Some(other) => return Err(bad(Self::GROUP_PROTOCOL, other, "expected classic or consumer")),
        };
        let dead_letter_queue_topic = self.get(Self::DEAD_LETTER_QUEUE_TOPIC).filter(|t| !t.is_empty()).map(str::to_string);
        Ok(Settings {
            num_standby_replicas: self.parse(Self::NUM_STANDBY_REPLICAS, 0usize)?,
            application_id,
            application_server,
            group_protocol,
            debug_metrics,
            bootstrap_servers: self.get(Self::BOOTSTRAP_SERVERS).map(str::to_string),
            num_stream_threads,
            guarantee,
            commit_interval: Duration::from_millis(self.parse(Self::COMMIT_INTERVAL_MS, commit_default)?),
            state_dir: self.get(Self::STATE_DIR).map_or_else(|| std::env::temp_dir().join("kafka-streams"), PathBuf::from),
            cache_max_bytes: self.parse(Self::CACHE_MAX_BYTES, 10_485_760)?,
            max_task_idle_ms,
            buffered_records_per_partition,
            poll: Duration::from_millis(self.parse(Self::POLL_MS, 100)?),
            handlers: self.handlers(&dead_letter_queue_topic)?,
            rocksdb_config: self.rocksdb_config.clone(),
            timestamp_extractor: match self.get(Self::DEFAULT_TIMESTAMP_EXTRACTOR) {
                None => BuiltinTimestampExtractor::default(),
                Some(name) => BuiltinTimestampExtractor::from_name(name.trim()).ok_or_else(|| {
                    bad(
                        Self::DEFAULT_TIMESTAMP_EXTRACTOR,
                        name,
                        "expected fail-on-invalid, log-and-skip-on-invalid, use-partition-time-on-invalid or wall-clock",
                    )
                })?,
            },
            dead_letter_queue_topic,
            task_timeout: Duration::from_millis(self.parse(Self::TASK_TIMEOUT_MS, 300_000)?),
            replication_factor,
            clients: Self::CLIENT_PREFIXES
                .iter()
                .map(|prefix| (*prefix, self.with_prefix(prefix)))
                .collect(),
        })
    }

    /// All settings whose names start with `prefix`, with the prefix removed.
    fn with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.values
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone())))
            .collect()
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|e: T::Err| bad(key, raw, &e.to_string())),
        }
    }

    /// The user's handlers, or the built-ins the settings name.
    fn handlers(&self, dead_letter_queue: &Option<String>) -> Result<Handlers> {
        let builtin = |kind| Builtin { kind, dead_letter_queue: dead_letter_queue.clone() };
        let deserialization = builtin(self.exception_handler(Self::DESERIALIZATION_EXCEPTION_HANDLER, "ExceptionHandler")?);
        let processing = builtin(self.exception_handler(Self::PROCESSING_EXCEPTION_HANDLER, "ProcessingExceptionHandler")?);
        let production = builtin(match self.get(Self::PRODUCTION_EXCEPTION_HANDLER) {
            Some("DefaultProductionExceptionHandler") => ExceptionHandler::LogAndFail,
            _ => self.exception_handler(Self::PRODUCTION_EXCEPTION_HANDLER, "ProductionExceptionHandler")?,
        });
        Ok(Handlers {
            deserialization: self.handlers.deserialization.clone().unwrap_or_else(|| Arc::new(deserialization)),
            processing: self.handlers.processing.clone().unwrap_or_else(|| Arc::new(processing)),
            production: self.handlers.production.clone().unwrap_or_else(|| Arc::new(production)),
        })
    }

    /// `log-and-fail` / `log-and-continue`, or Kafka Streams' class names `LogAndFail<suffix>` /
    /// `LogAndContinue<suffix>`.
    fn exception_handler(&self, key: &str, suffix: &str) -> Result<ExceptionHandler> {
        match self.get(key) {
            None | Some("log-and-fail") => Ok(ExceptionHandler::LogAndFail),
            Some("log-and-continue") => Ok(ExceptionHandler::LogAndContinue),
            Some(class) if class.strip_prefix("LogAndFail") == Some(suffix) => Ok(ExceptionHandler::LogAndFail),
            Some(class) if class.strip_prefix("LogAndContinue") == Some(suffix) => Ok(ExceptionHandler::LogAndContinue),
            Some(other) => Err(bad(key, other, "expected log-and-fail or log-and-continue")),
        }
    }
}

fn bad(key: &str, value: &str, why: &str) -> StreamsError {
    StreamsError::Config { key: key.to_string(), message: format!("`{value}`: {why}") }
}

/// A [`StreamsConfig`] parsed and checked once, shared by a client's threads and tasks.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) application_id: String,
    /// `application.server`.
    pub(crate) application_server: Option<crate::query::HostInfo>,
    /// `metrics.recording.level` is DEBUG (or TRACE).
    pub(crate) debug_metrics: bool,
    /// `group.protocol`.
    pub(crate) group_protocol: GroupProtocol,
    /// `num.standby.replicas`.
    pub(crate) num_standby_replicas: usize,
    pub(crate) bootstrap_servers: Option<String>,
    pub(crate) num_stream_threads: usize,
    pub(crate) guarantee: ProcessingGuarantee,
    pub(crate) commit_interval: Duration,
    pub(crate) state_dir: PathBuf,
    pub(crate) cache_max_bytes: usize,
    /// -1: never wait; see [`StreamsConfig::MAX_TASK_IDLE_MS`].
    pub(crate) max_task_idle_ms: i64,
    /// See [`StreamsConfig::BUFFERED_RECORDS_PER_PARTITION`].
    pub(crate) buffered_records_per_partition: usize,
    pub(crate) poll: Duration,
    /// The exception handlers.
    pub(crate) handlers: Handlers,
    /// `set_rocksdb_config_setter`.
    pub(crate) rocksdb_config: RocksDbConfig,
    /// `default.timestamp.extractor`.
    pub(crate) timestamp_extractor: BuiltinTimestampExtractor,
    pub(crate) dead_letter_queue_topic: Option<String>,
    pub(crate) task_timeout: Duration,
    pub(crate) replication_factor: i32,
    /// The prefixed client settings, by prefix, prefix removed.
    clients: BTreeMap<&'static str, Vec<(String, String)>>,
}

impl Settings {
    /// The settings this library reads.
    const KNOWN: [&'static str; 21] = [
        StreamsConfig::DEFAULT_TIMESTAMP_EXTRACTOR,
        StreamsConfig::APPLICATION_ID,
        StreamsConfig::NUM_STANDBY_REPLICAS,
        StreamsConfig::GROUP_PROTOCOL,
        StreamsConfig::APPLICATION_SERVER,
        StreamsConfig::METRICS_RECORDING_LEVEL,
        StreamsConfig::BOOTSTRAP_SERVERS,
        StreamsConfig::NUM_STREAM_THREADS,
        StreamsConfig::PROCESSING_GUARANTEE,
        StreamsConfig::COMMIT_INTERVAL_MS,
        StreamsConfig::STATE_DIR,
        StreamsConfig::CACHE_MAX_BYTES,
        StreamsConfig::MAX_TASK_IDLE_MS,
        StreamsConfig::BUFFERED_RECORDS_PER_PARTITION,
        StreamsConfig::POLL_MS,
        StreamsConfig::DESERIALIZATION_EXCEPTION_HANDLER,
        StreamsConfig::PROCESSING_EXCEPTION_HANDLER,
        StreamsConfig::PRODUCTION_EXCEPTION_HANDLER,
        StreamsConfig::DEAD_LETTER_QUEUE_TOPIC,
        StreamsConfig::TASK_TIMEOUT_MS,
        StreamsConfig::REPLICATION_FACTOR,
    ];

    /// Whether the guarantee is `exactly_once_v2`.
    pub(crate) fn exactly_once(&self) -> bool {
        self.guarantee == ProcessingGuarantee::ExactlyOnceV2
    }

    /// A client's settings: `bootstrap.servers`, then `defaults`, then the user's settings with
    /// the client's `prefix`, which win.
    pub(crate) fn client_config(&self, prefix: &str, defaults: &[(&str, String)]) -> rdkafka::ClientConfig {
        let mut client = rdkafka::ClientConfig::new();
        if let Some(servers) = &self.bootstrap_servers {
            client.set("bootstrap.servers", servers);
        }
        for (key, value) in defaults {
            client.set(*key, value);
        }
        for (key, value) in self.clients.get(prefix).into_iter().flatten() {
            client.set(key, value);
        }
        client
    }

    /// A user's setting for one client (`consumer.group.instance.id`, say).
    pub(crate) fn client_setting(&self, prefix: &str, key: &str) -> Option<&str> {
        self.clients.get(prefix)?.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(config: StreamsConfig) -> Result<Settings> {
        config.settings(Some("app"))
    }

    #[test]
    fn defaults_follow_kafka_streams() {
        let s = settings(StreamsConfig::new()).unwrap();
        assert_eq!(s.commit_interval, Duration::from_millis(30_000));
        assert_eq!(s.cache_max_bytes, 10_485_760);
        assert_eq!(s.num_stream_threads, 1);
        assert_eq!(s.max_task_idle_ms, 0);
        assert_eq!(s.buffered_records_per_partition, 1000);
        assert_eq!(s.replication_factor, -1);
        assert_eq!(s.timestamp_extractor, BuiltinTimestampExtractor::FailOnInvalid);
        assert_eq!(s.application_id, "app");
        assert!(StreamsConfig::new().validate().is_err(), "application.id is required");
        let eos = settings(StreamsConfig::new().with(StreamsConfig::PROCESSING_GUARANTEE, "exactly_once_v2")).unwrap();
        assert_eq!(eos.commit_interval, Duration::from_millis(100));
        assert!(eos.exactly_once());
    }

    #[test]
    fn bad_values_name_the_setting_and_the_value() {
        for (key, value) in [
            (StreamsConfig::COMMIT_INTERVAL_MS, "soon"),
            (StreamsConfig::NUM_STREAM_THREADS, "0"),
            (StreamsConfig::MAX_TASK_IDLE_MS, "-2"),
            (StreamsConfig::BUFFERED_RECORDS_PER_PARTITION, "0"),
            (StreamsConfig::REPLICATION_FACTOR, "0"),
            (StreamsConfig::PROCESSING_GUARANTEE, "exactly_once"),
            (StreamsConfig::PROCESSING_EXCEPTION_HANDLER, "retry"),
            (StreamsConfig::DEFAULT_TIMESTAMP_EXTRACTOR, "payload"),
            (StreamsConfig::APPLICATION_ID, ""),
        ] {
            let err = settings(StreamsConfig::new().with(key, value)).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(&format!("`{value}`")), "{err}");
        }
    }

    #[test]
    fn prefixed_client_settings_reach_their_client_only() {
        let config = StreamsConfig::new()
            .with("bootstrap.servers", "b:9092")
            .with("consumer.fetch.max.bytes", "1")
            .with("restore.consumer.fetch.max.bytes", "2")
            .with("producer.linger.ms", "5");
        let s = settings(config).unwrap();
        let producer = s.client_config("producer.", &[("linger.ms", "1".into()), ("acks", "all".into())]);
        assert_eq!(producer.get("linger.ms"), Some("5"), "the user's setting wins over the default");
        assert_eq!(producer.get("acks"), Some("all"));
        assert_eq!(producer.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(producer.get("fetch.max.bytes"), None);
        assert_eq!(s.client_config("consumer.", &[]).get("fetch.max.bytes"), Some("1"));
        assert_eq!(s.client_config("restore.consumer.", &[]).get("fetch.max.bytes"), Some("2"));
        assert_eq!(s.client_setting("consumer.", "fetch.max.bytes"), Some("1"));
    }
}

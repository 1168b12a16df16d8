//! `StreamsConfig`: Kafka Streams' settings with their names and defaults.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Result, StreamsError};

/// What to do with a record that cannot be deserialized (`deserialization.exception.handler`)
/// or whose processing failed (`processing.exception.handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
pub enum ProcessingGuarantee {
    /// Commit offsets after outputs are flushed; a crash may repeat records.
    #[default]
    AtLeastOnce,
    /// Transactions: outputs, changelogs and offsets commit atomically.
    ExactlyOnceV2,
}

/// Settings by Kafka Streams name, e.g. `config.set("application.id", "word-count")`.
///
/// Settings prefixed `consumer.`, `producer.` and `admin.` go to the Kafka clients.
#[derive(Debug, Clone, Default)]
pub struct StreamsConfig {
    values: BTreeMap<String, String>,
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
    /// `statestore.cache.max.bytes` (default 10485760).
    pub const CACHE_MAX_BYTES: &'static str = "statestore.cache.max.bytes";
    /// `max.task.idle.ms` (default 0).
    pub const MAX_TASK_IDLE_MS: &'static str = "max.task.idle.ms";
    /// `poll.ms` (default 100).
    pub const POLL_MS: &'static str = "poll.ms";
    /// `deserialization.exception.handler`: `log-and-fail` (default) or `log-and-continue`.
    pub const DESERIALIZATION_EXCEPTION_HANDLER: &'static str = "deserialization.exception.handler";
    /// What to do when a processor fails on a record: `log-and-fail` (default) or `log-and-continue`.
    pub const PROCESSING_EXCEPTION_HANDLER: &'static str = "processing.exception.handler";
    /// `log-and-fail` (default) or `log-and-continue` for records the producer cannot send
    /// (continue is for records refused outright or, under at-least-once, failed deliveries).
    pub const PRODUCTION_EXCEPTION_HANDLER: &'static str = "default.production.exception.handler";
    /// A topic that receives the records the deserialization and processing handlers skip,
    /// with the error in `__streams.errors.*` headers (unset: none).
    pub const DEAD_LETTER_QUEUE_TOPIC: &'static str = "errors.dead.letter.queue.topic.name";
    /// How long transient broker errors (commit, send, flush) are retried before they fail
    /// the thread, in ms (default 300000).
    pub const TASK_TIMEOUT_MS: &'static str = "task.timeout.ms";

    /// An empty config: every setting at its default.
    pub fn new() -> Self {
        Self::default()
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

    /// All settings whose names start with `prefix`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> BTreeMap<String, String> {
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
            Some(raw) => raw.trim().parse().map_err(|e: T::Err| StreamsError::Config {
                key: key.to_string(),
                message: format!("`{raw}`: {e}"),
            }),
        }
    }

    /// `application.id`, which is required.
    pub fn application_id(&self) -> Result<String> {
        match self.get(Self::APPLICATION_ID) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(StreamsError::Config {
                key: Self::APPLICATION_ID.into(),
                message: "required".into(),
            }),
        }
    }

    /// `processing.guarantee`.
    pub fn processing_guarantee(&self) -> Result<ProcessingGuarantee> {
        match self.get(Self::PROCESSING_GUARANTEE) {
            None | Some("at_least_once") => Ok(ProcessingGuarantee::AtLeastOnce),
            Some("exactly_once_v2") => Ok(ProcessingGuarantee::ExactlyOnceV2),
            Some(other) => Err(StreamsError::Config {
                key: Self::PROCESSING_GUARANTEE.into(),
                message: format!("`{other}`: expected at_least_once or exactly_once_v2"),
            }),
        }
    }

    /// `commit.interval.ms`, defaulting by guarantee.
    pub fn commit_interval(&self) -> Result<Duration> {
        let default = match self.processing_guarantee()? {
            ProcessingGuarantee::AtLeastOnce => 30_000,
            ProcessingGuarantee::ExactlyOnceV2 => 100,
        };
        Ok(Duration::from_millis(self.parse(Self::COMMIT_INTERVAL_MS, default)?))
    }

    /// `num.stream.threads`.
    pub fn num_stream_threads(&self) -> Result<usize> {
        self.parse(Self::NUM_STREAM_THREADS, 1)
    }

    /// `state.dir`.
    pub fn state_dir(&self) -> PathBuf {
        match self.get(Self::STATE_DIR) {
            Some(dir) => PathBuf::from(dir),
            None => std::env::temp_dir().join("kafka-streams"),
        }
    }

    /// `statestore.cache.max.bytes`.
    pub fn cache_max_bytes(&self) -> Result<usize> {
        self.parse(Self::CACHE_MAX_BYTES, 10_485_760)
    }

    /// `max.task.idle.ms`.
    pub fn max_task_idle(&self) -> Result<Duration> {
        Ok(Duration::from_millis(self.parse(Self::MAX_TASK_IDLE_MS, 0)?))
    }

    /// `poll.ms`.
    pub fn poll(&self) -> Result<Duration> {
        Ok(Duration::from_millis(self.parse(Self::POLL_MS, 100)?))
    }

    /// `deserialization.exception.handler`.
    pub fn deserialization_handler(&self) -> Result<DeserializationHandler> {
        self.exception_handler(Self::DESERIALIZATION_EXCEPTION_HANDLER, "ExceptionHandler")
    }

    /// `processing.exception.handler`.
    pub fn processing_handler(&self) -> Result<ExceptionHandler> {
        self.exception_handler(Self::PROCESSING_EXCEPTION_HANDLER, "ProcessingExceptionHandler")
    }

    /// `default.production.exception.handler`.
    pub fn production_handler(&self) -> Result<ExceptionHandler> {
        if self.get(Self::PRODUCTION_EXCEPTION_HANDLER) == Some("DefaultProductionExceptionHandler") {
            return Ok(ExceptionHandler::LogAndFail);
        }
        self.exception_handler(Self::PRODUCTION_EXCEPTION_HANDLER, "ProductionExceptionHandler")
    }

    /// `errors.dead.letter.queue.topic.name`.
    pub fn dead_letter_queue_topic(&self) -> Option<String> {
        self.get(Self::DEAD_LETTER_QUEUE_TOPIC).filter(|t| !t.is_empty()).map(str::to_string)
    }

    /// `task.timeout.ms`.
    pub fn task_timeout(&self) -> Result<Duration> {
        Ok(Duration::from_millis(self.parse(Self::TASK_TIMEOUT_MS, 300_000)?))
    }

    /// `log-and-fail` / `log-and-continue`, or Kafka Streams' class names `LogAndFail<suffix>` /
    /// `LogAndContinue<suffix>`.
    fn exception_handler(&self, key: &str, suffix: &str) -> Result<ExceptionHandler> {
        match self.get(key) {
            None | Some("log-and-fail") => Ok(ExceptionHandler::LogAndFail),
            Some("log-and-continue") => Ok(ExceptionHandler::LogAndContinue),
            Some(class) if class.strip_prefix("LogAndFail") == Some(suffix) => Ok(ExceptionHandler::LogAndFail),
            Some(class) if class.strip_prefix("LogAndContinue") == Some(suffix) => Ok(ExceptionHandler::LogAndContinue),
            Some(other) => Err(StreamsError::Config {
                key: key.into(),
                message: format!("`{other}`: expected log-and-fail or log-and-continue"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_kafka_streams() {
        let config = StreamsConfig::new();
        assert_eq!(config.commit_interval().unwrap(), Duration::from_millis(30_000));
        assert_eq!(config.cache_max_bytes().unwrap(), 10_485_760);
        assert_eq!(config.num_stream_threads().unwrap(), 1);
        assert!(config.application_id().is_err());
        let eos = StreamsConfig::new().with(StreamsConfig::PROCESSING_GUARANTEE, "exactly_once_v2");
        assert_eq!(eos.commit_interval().unwrap(), Duration::from_millis(100));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let config = StreamsConfig::new().with(StreamsConfig::COMMIT_INTERVAL_MS, "soon");
        let err = config.commit_interval().unwrap_err().to_string();
        assert!(err.contains("commit.interval.ms"), "{err}");
    }

    #[test]
    fn prefixed_client_settings() {
        let config = StreamsConfig::new().with("consumer.fetch.max.bytes", "1").with("producer.linger.ms", "5");
        assert_eq!(config.with_prefix("producer.").get("linger.ms").map(String::as_str), Some("5"));
    }
}

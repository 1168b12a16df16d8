//! The crate's error type.

pub use rdkafka::error::KafkaError;

use crate::record::TaskId;

/// Result alias used throughout the library.
pub type Result<T, E = StreamsError> = std::result::Result<T, E>;

/// A serializer or deserializer could not convert a value.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SerdeError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SerdeError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        SerdeError { message: message.into(), source: None }
    }

    /// An error wrapping the codec's own error.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SerdeError { message: message.into(), source: Some(Box::new(source)) }
    }

    /// Data was null where the type has no null.
    pub fn null(type_name: &str) -> Self {
        SerdeError::new(format!(
            "null data for non-nullable type {type_name} (use an Option<_> type to accept nulls)"
        ))
    }
}

/// Everything that can go wrong in a topology, a task or a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// The topology is malformed; found when it is built or a task is created.
    #[error("invalid topology: {0}")]
    Topology(String),

    /// A configuration value is missing or invalid.
    #[error("invalid config `{key}`: {message}")]
    Config {
        /// The config name.
        key: String,
        /// What is wrong with it.
        message: String,
    },

    /// An input record could not be deserialized and the handler said fail.
    #[error("deserialization failed for record at {topic}-{partition} offset {offset}: {source}")]
    Deserialization {
        /// Topic of the record.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// The serde's error.
        #[source]
        source: SerdeError,
    },

    /// The timestamp extractor refused an input record (a negative timestamp under
    /// `FailOnInvalidTimestamp`, Kafka Streams' default, or a user extractor's error).
    #[error("timestamp extraction failed for record at {topic}-{partition} offset {offset}: {source}")]
    TimestampExtraction {
        /// Topic of the record.
        topic: String,
        /// Partition of the record.
        partition: i32,
        /// Offset of the record.
        offset: i64,
        /// The extractor's error.
        #[source]
        source: BoxError,
    },

    /// A value could not be serialized or deserialized outside the source (sinks, stores).
    #[error("serde failed in {context}: {source}")]
    Serde {
        /// Where: node, store or topic.
        context: String,
        /// The serde's error.
        #[source]
        source: SerdeError,
    },

    /// A state store failed.
    #[error("state store `{store}`: {message}")]
    Store {
        /// The store name.
        store: String,
        /// What failed.
        message: String,
    },

    /// A processor returned an error while processing a record.
    #[error("task {task} failed in node `{node}`: {source}")]
    Processing {
        /// The task.
        task: TaskId,
        /// The node that failed.
        node: String,
        /// The processor's error.
        #[source]
        source: BoxError,
    },

    /// Sending a record failed.
    #[error("failed to send a record to topic `{topic}`: {source}")]
    Send {
        /// The destination topic.
        topic: String,
        /// The producer's error.
        #[source]
        source: KafkaError,
    },

    /// Under exactly-once, the open transaction failed and was aborted; the thread's tasks
    /// re-initialize from the last committed transaction.
    #[error("transaction aborted: {0}")]
    TransactionAborted(String),

    /// The thread's producer was fenced, or its group generation is over: another instance
    /// owns its tasks now. The tasks are closed without committing and the thread rejoins.
    #[error("tasks migrated: {0}")]
    TaskMigrated(String),

    /// An I/O error on the state directory.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A Kafka client call failed.
    #[error("kafka {operation} failed: {source}")]
    Kafka {
        /// What was being done.
        operation: String,
        /// The client's error; [`KafkaError::rdkafka_error_code`] gives its code.
        #[source]
        source: KafkaError,
    },

    /// Something did not happen in time (a broker that does not answer, a read that makes no
    /// progress).
    #[error("timed out: {0}")]
    Timeout(String),

    /// A call that the object's current state does not allow (starting a running client,
    /// using a closed test driver, a task state transition out of order).
    #[error("illegal state: {0}")]
    IllegalState(String),

    /// A source partition has no committed offset and its reset policy is
    /// [`AutoOffsetReset::Fail`](crate::AutoOffsetReset::Fail).
    #[error("no committed offset for input topic {topic} (partition {partition}) and no reset policy to start from")]
    NoCommittedOffset {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
    },

    /// A source topic does not exist.
    #[error("missing source topic(s): {0:?}")]
    MissingSourceTopics(Vec<String>),

    /// A task's state directory or checkpoint is unusable.
    #[error("state directory {path}: {message}")]
    StateDir {
        /// The file or directory.
        path: String,
        /// What is wrong.
        message: String,
    },

    /// An interactive query could not read a store (Kafka Streams' `InvalidStateStoreException`
    /// family); [`is_retriable`](StreamsError::is_retriable) says whether asking again can work.
    #[error("state store `{store}` cannot be queried ({reason}): {message}")]
    InvalidStateStore {
        /// The store queried.
        store: String,
        /// Why.
        reason: InvalidStateStoreReason,
        /// Details: the task, the client state.
        message: String,
    },

    /// Instance metadata is not known yet (the group is rebalancing, or this instance has not
    /// read it); retriable.
    #[error("instance metadata unavailable: {0}")]
    MetadataUnavailable(String),

    /// A user error from inside a processor, punctuator or callback; any error type, see
    /// [`StreamsError::user`].
    #[error(transparent)]
    User(BoxError),
}

/// A boxed error of any type, as user code returns them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store cannot be queried, as the subclasses of Kafka Streams'
/// `InvalidStateStoreException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidStateStoreReason {
    /// The client has not started yet (`StreamsNotStartedException`); retriable.
    NotStarted,
    /// The store's task is not here in a queryable state: it moved to another instance, is
    /// restoring, or the group is rebalancing (`StateStoreMigratedException`); retriable.
    Migrated,
    /// The thread holding the task did not answer in time (it is restoring or committing);
    /// retriable.
    Busy,
    /// The client is shutting down or stopped (`StateStoreNotAvailableException`).
    NotRunning,
    /// No store of that name and type in the topology (`UnknownStateStoreException`).
    UnknownStore,
    /// The requested partition does not exist (`InvalidStateStorePartitionException`).
    UnknownPartition,
}

impl std::fmt::Display for InvalidStateStoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InvalidStateStoreReason::NotStarted => "client not started",
            InvalidStateStoreReason::Migrated => "migrated",
            InvalidStateStoreReason::Busy => "busy",
            InvalidStateStoreReason::NotRunning => "client not running",
            InvalidStateStoreReason::UnknownStore => "unknown store",
            InvalidStateStoreReason::UnknownPartition => "unknown partition",
        })
    }
}

impl StreamsError {
    /// Whether the same call may succeed later: a store that is migrating or restoring, a
    /// client still starting, metadata during a rebalance.
    pub fn is_retriable(&self) -> bool {
        match self {
            StreamsError::InvalidStateStore { reason, .. } => matches!(
                reason,
                InvalidStateStoreReason::NotStarted | InvalidStateStoreReason::Migrated | InvalidStateStoreReason::Busy
            ),
            StreamsError::MetadataUnavailable(_) | StreamsError::Timeout(_) => true,
            _ => false,
        }
    }

    pub(crate) fn invalid_store(store: &str, reason: InvalidStateStoreReason, message: impl Into<String>) -> Self {
        StreamsError::InvalidStateStore { store: store.to_string(), reason, message: message.into() }
    }

    /// A store error.
    pub fn store(store: impl Into<String>, message: impl std::fmt::Display) -> Self {
        StreamsError::Store { store: store.into(), message: message.to_string() }
    }

    /// A serde error with context.
    pub fn serde(context: impl Into<String>, source: SerdeError) -> Self {
        StreamsError::Serde { context: context.into(), source }
    }

    /// A Kafka client error with what was being done.
    pub fn kafka(operation: impl Into<String>, source: KafkaError) -> Self {
        StreamsError::Kafka { operation: operation.into(), source }
    }

    /// A user error: a message (`StreamsError::user("no such customer")`) or any error value,
    /// kept as the source.
    pub fn user(error: impl Into<BoxError>) -> Self {
        StreamsError::User(error.into())
    }

    /// An I/O error with the path it concerns.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        StreamsError::Io { path: path.as_ref().display().to_string(), source }
    }
}

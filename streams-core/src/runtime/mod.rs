//! The Kafka runtime: [`KafkaStreams`] runs a topology on a cluster with N stream threads,
//! internal topics, changelog-backed stores and restoration after rebalances.
//!
//! `client` is the user's handle, `shared` the state its threads share with it; each stream
//! thread (`stream_thread`) drives a `TaskManager` of tasks with a consumer, a record collector
//! (producer) and a `ChangelogReader` (restore consumer); the `state_updater` thread restores
//! persistent stores for all of them; `topics` creates internal topics.

mod changelog_reader;
mod checkpoint;
mod client;
mod collector;
mod global_thread;
mod input_queues;
mod metadata;
mod native;
mod offset_reset;
mod query;
mod shared;
mod standby;
mod state_directory;
mod state_updater;
mod stream_thread;
mod task_manager;
mod topics;

pub use changelog_reader::RestoreEvent;
pub use client::KafkaStreams;
pub use shared::{State, StreamThreadExceptionResponse};
#[cfg(feature = "test-utils")]
pub(crate) use changelog_reader::EndAwareContext;
pub(crate) use state_directory::StateDirectory;
#[cfg(feature = "test-utils")]
pub(crate) use {stream_thread::to_record, topics::resolve_source_patterns, topics::topic_partitions};

pub(crate) use shared::ClientShared;

/// The runtime's defaults for one of its consumers, each applied unless configured:
/// `fetch.wait.max.ms` (how long the broker may hold an empty fetch) when given, and a
/// `fetch.queue.backoff.ms` of 10 ms. librdkafka waits that long (1 s by default) before
/// fetching again for a partition whose prefetched records exceed `queued.min.messages`, so a
/// thread that drains them faster would idle; Java's consumer fetches again once its buffer is
/// drained.
pub(crate) fn consumer_defaults(config: &mut rdkafka::ClientConfig, fetch_wait_max_ms: Option<&str>) {
    let defaults = [("fetch.wait.max.ms", fetch_wait_max_ms), ("fetch.queue.backoff.ms", Some("10"))];
    for (key, value) in defaults {
        if let (None, Some(value)) = (config.get(key), value) {
            config.set(key, value);
        }
    }
}
pub(crate) use task_manager::now_ms;
#[cfg(feature = "test-utils")]
pub(crate) use metadata::metadata_topic;

#[cfg(test)]
mod tests {
    #[test]
    fn consumer_defaults_yield_to_the_users_settings() {
        let mut config = rdkafka::ClientConfig::new();
        config.set("fetch.wait.max.ms", "7");
        super::consumer_defaults(&mut config, Some("20"));
        assert_eq!(config.get("fetch.wait.max.ms"), Some("7"));
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("10"));

        let mut config = rdkafka::ClientConfig::new();
        config.set("fetch.queue.backoff.ms", "1000");
        super::consumer_defaults(&mut config, None);
        assert_eq!(config.get("fetch.wait.max.ms"), None);
        assert_eq!(config.get("fetch.queue.backoff.ms"), Some("1000"));
    }
}

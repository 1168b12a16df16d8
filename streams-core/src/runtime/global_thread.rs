//! `GlobalStreamThread`: fills the global stores from every partition of their topics before
//! the stream threads start, then keeps them up to date until the client closes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tracing::{error, info, info_span, warn};

use super::changelog_reader::EndAwareContext;
use super::checkpoint::{OffsetCheckpoint, Offsets};
use super::ClientShared;
use crate::config::Settings;
use crate::error::{Result, StreamsError};
use crate::state::{GlobalBytesStore, GlobalStores};
use crate::topology::Topology;

/// What one poll of the global consumer gave.
enum Polled {
    Record,
    /// The partition reached its end.
    End(i32),
    Nothing,
}

/// The global stores of an instance and the consumer that feeds them.
pub(crate) struct GlobalStreamThread {
    by_topic: HashMap<String, Arc<dyn GlobalBytesStore>>,
    consumer: BaseConsumer<EndAwareContext>,
    checkpoint: OffsetCheckpoint,
    offsets: Offsets,
    commit_interval: Duration,
}

impl GlobalStreamThread {
    /// Opens the global stores of `topology` under `app_dir/global` and assigns every partition
    /// of their topics, from the checkpoint of stores on disk, else from the beginning.
    /// Returns `None` when the topology has no global stores.
    pub(crate) fn new(
        topology: &Topology,
        consumer_config: &ClientConfig,
        app_dir: &std::path::Path,
        settings: &Settings,
    ) -> Result<Option<(Self, GlobalStores)>> {
        let commit_interval = settings.commit_interval;
        if topology.global_stores().is_empty() {
            return Ok(None);
        }
        let dir = app_dir.join("global");
        std::fs::create_dir_all(&dir).map_err(|e| StreamsError::io(&dir, e))?;
        let mut config = consumer_config.clone();
        if config.get("group.id").is_none() {
            config.set("group.id", "global-consumer");
        }
        config.set("enable.auto.commit", "false").set("enable.partition.eof", "true").set("auto.offset.reset", "earliest");
        super::consumer_defaults(&mut config, None);
        let consumer: BaseConsumer<EndAwareContext> =
            config.create_with_context(EndAwareContext).map_err(|e| StreamsError::kafka("create global consumer", e))?;
        let checkpoint = OffsetCheckpoint::in_dir(&dir);
        let mut offsets = checkpoint.read().unwrap_or_else(|e| {
            warn!(error = %e, "unreadable global checkpoint; reading the global topics from the start");
            Offsets::new()
        });
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(30))
            .map_err(|e| StreamsError::kafka("fetch metadata for global topics", e))?;
        let mut stores = BTreeMap::new();
        let mut by_topic = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        let mut missing = Vec::new();
        for spec in topology.global_stores() {
            let store = spec.open(&dir, &settings.rocksdb_config)?;
            let Some(topic) = metadata.topics().iter().find(|t| t.name() == spec.topic && t.error().is_none()) else {
                missing.push(spec.topic.clone());
                continue;
            };
            for p in topic.partitions() {
                let start = offsets.get(&(spec.topic.clone(), p.id())).filter(|_| store.persistent()).map(|o| o + 1);
                assignment
                    .add_partition_offset(&spec.topic, p.id(), start.map_or(Offset::Beginning, Offset::Offset))
                    .map_err(|e| StreamsError::kafka("assign global topic", e))?;
            }
            if !store.persistent() {
                offsets.retain(|(t, _), _| t != &spec.topic);
            }
            by_topic.insert(spec.topic.clone(), store.clone());
            stores.insert(spec.name.clone(), store);
        }
        if !missing.is_empty() {
            return Err(StreamsError::MissingSourceTopics(missing));
        }
        consumer.assign(&assignment).map_err(|e| StreamsError::kafka("assign global topics", e))?;
        let thread = GlobalStreamThread { by_topic, consumer, checkpoint, offsets, commit_interval };
        Ok(Some((thread, Arc::new(stores))))
    }

    /// Polls once, applying a record to its store.
    fn poll_once(&mut self) -> Result<Polled> {
        match self.consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let topic = message.topic();
                if let (Some(store), Some(key)) = (self.by_topic.get(topic), message.key()) {
                    store.put(key, message.payload())?;
                }
                self.offsets.insert((topic.to_string(), message.partition()), message.offset());
                Ok(Polled::Record)
            }
            Some(Err(KafkaError::PartitionEOF(p))) => Ok(Polled::End(p)),
            Some(Err(e)) => Err(StreamsError::kafka("read global topics", e)),
            None => Ok(Polled::Nothing),
        }
    }

    fn checkpoint(&self) -> Result<()> {
        for store in self.by_topic.values() {
            store.flush()?;
        }
        let persistent: Offsets = self
            .offsets
            .iter()
            .filter(|((t, _), _)| self.by_topic.get(t).is_some_and(|s| s.persistent()))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        self.checkpoint.write(&persistent)
    }

    /// Reads every partition to its end (`timeout` at most): the stores are then complete.
    pub(crate) fn bootstrap(&mut self, timeout: Duration) -> Result<u64> {
        let partitions = self.consumer.assignment().map_err(|e| StreamsError::kafka("global assignment", e))?.count();
        let started = Instant::now();
        let mut at_end = HashSet::new();
        let mut applied = 0;
        while at_end.len() < partitions {
            if started.elapsed() > timeout {
                return Err(StreamsError::Timeout(format!(
                    "bootstrapping global stores: {} of {partitions} partitions read to their end within {timeout:?}",
                    at_end.len()
                )));
            }
            match self.poll_once()? {
                Polled::Record => applied += 1,
                Polled::End(p) => {
                    at_end.insert(p);
                }
                Polled::Nothing => {}
            }
        }
        self.checkpoint()?;
        info!(records = applied, elapsed = ?started.elapsed(), "global stores bootstrapped");
        Ok(applied)
    }

    /// Keeps applying updates on a thread of its own until the client shuts down; checkpoints
    /// every commit interval and at the end. An error stops the client.
    pub(crate) fn spawn(mut self, name: String, shared: Arc<ClientShared>) -> Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _span = info_span!("global-stream-thread", thread = %name).entered();
                if let Err(e) = self.run(&shared.shutdown) {
                    error!(error = %e, "global stream thread failed; shutting down the client");
                    shared.fail(e);
                }
            })
            .map_err(|e| StreamsError::io("the global stream thread (spawn)", e))
    }

    fn run(&mut self, shutdown: &AtomicBool) -> Result<()> {
        let mut last_checkpoint = Instant::now();
        while !shutdown.load(Ordering::Acquire) {
            if let Err(e) = self.poll_once() {
                match e {
                    StreamsError::Kafka { .. } => warn!(error = %e, "global consumer error; retrying"),
                    other => return Err(other),
                }
            }
            if last_checkpoint.elapsed() >= self.commit_interval {
                self.checkpoint()?;
                last_checkpoint = Instant::now();
            }
        }
        self.checkpoint()
    }
}

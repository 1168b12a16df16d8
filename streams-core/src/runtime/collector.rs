//! `KafkaRecordCollector`: sends a thread's sink, repartition and changelog records with one
//! producer, and tracks the offsets acknowledged for each partition (for checkpoints).
//!
//! Under `exactly_once_v2` the producer is transactional: the first send after a commit begins
//! a transaction, and [`commit_transaction`](KafkaRecordCollector::commit_transaction) adds the
//! consumed offsets to it and commits outputs, changelog writes and offsets atomically.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foldhash::HashMap as FastMap;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message, TopicPartitionList};

use super::native;
use crate::collector::RecordCollector;
use crate::handlers::{DeadLetter, HandlerResponse, ProducedRecord, ProductionExceptionHandler};
use crate::error::{Result, StreamsError};
use crate::record::ProducerRecord;
use crate::topic::{topic_entry, TopicMap};

/// Delivery reports: the last acknowledged offset per partition, and the first failure.
#[derive(Default)]
pub(crate) struct Deliveries {
    /// By topic, then partition: a report looks its topic up without allocating (foldhash:
    /// every acknowledged record hashes its topic here).
    offsets: Mutex<TopicMap<FastMap<i32, i64>>>,
    /// The first failed delivery: its topic-partition and the producer's error.
    error: Mutex<Option<(String, KafkaError)>>,
    /// `default.production.exception.handler`, asked about failed deliveries (none under
    /// exactly-once, where a failed delivery fails the transaction).
    handler: Option<Arc<dyn ProductionExceptionHandler>>,
    /// Records the handler asked to write for failed deliveries, sent at the next flush (each
    /// commit flushes, so they are written before the offsets of their inputs commit).
    dead_letters: Mutex<Vec<DeadLetter>>,
}

impl std::fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliveries").field("offsets", &self.offsets).field("error", &self.error).finish_non_exhaustive()
    }
}

impl Deliveries {
    pub(crate) fn offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.lock().unwrap_or_else(|e| e.into_inner()).get(topic).and_then(|p| p.get(&partition)).copied()
    }

    /// Forgets offsets and failures (after an aborted transaction).
    fn reset(&self) {
        self.offsets.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.error.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The producer's context: records delivery reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeliveryContext(pub(crate) Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                let mut offsets = self.0.offsets.lock().unwrap_or_else(|e| e.into_inner());
                let entry = topic_entry(&mut offsets, message.topic()).entry(message.partition()).or_insert(-1);
                *entry = (*entry).max(message.offset());
            }
            // Records purged by an abort were never written; the abort is already handled.
            Err((error, _))
                if matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                ) => {}
            Err((error, message)) => {
                let text = format!("{}-{}: {error}", message.topic(), message.partition());
                if let Some(handler) = &self.0.handler {
                    let record = ProducedRecord {
                        topic: message.topic(),
                        partition: Some(message.partition()),
                        key: message.key(),
                        value: message.payload(),
                    };
                    if let HandlerResponse::Resume(dead) = handler.handle(&record, error) {
                        tracing::debug!(error = %text, "record delivery failed; the production handler skips it");
                        self.0.dead_letters.lock().unwrap_or_else(|e| e.into_inner()).extend(dead);
                        return;
                    }
                }
                tracing::error!(error = %text, "record delivery failed");
                let failed = (format!("{}-{}", message.topic(), message.partition()), error.clone());
                self.0.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(failed);
            }
        }
    }
}

/// A [`RecordCollector`] over an rdkafka producer.
pub(crate) struct KafkaRecordCollector {
    config: ClientConfig,
    producer: ThreadedProducer<DeliveryContext>,
    deliveries: Arc<Deliveries>,
    /// How long a flush or a transaction call may take.
    timeout: Duration,
    production_handler: Arc<dyn ProductionExceptionHandler>,
    /// Whether the producer has a `transactional.id`.
    transactional: bool,
    in_transaction: bool,
    /// Partition counts of the topics sinks with a partitioner wrote to.
    partition_counts: HashMap<String, i32>,
}

impl KafkaRecordCollector {
    /// A producer from `config`; with a `transactional.id` in it, a transactional one (its
    /// transactions initialized, which fences older producers with the same id).
    pub(crate) fn new(
        config: &ClientConfig,
        timeout: Duration,
        production_handler: Arc<dyn ProductionExceptionHandler>,
    ) -> Result<Self> {
        let transactional = config.get("transactional.id").is_some();
        let (producer, deliveries) = Self::create(config, timeout, &production_handler, transactional)?;
        Ok(KafkaRecordCollector {
            config: config.clone(),
            producer,
            deliveries,
            timeout,
            production_handler,
            transactional,
            in_transaction: false,
            partition_counts: HashMap::new(),
        })
    }

    fn create(
        config: &ClientConfig,
        timeout: Duration,
        handler: &Arc<dyn ProductionExceptionHandler>,
        transactional: bool,
    ) -> Result<(ThreadedProducer<DeliveryContext>, Arc<Deliveries>)> {
        let deliveries = Arc::new(Deliveries {
            handler: (!transactional).then(|| handler.clone()),
            ..Deliveries::default()
        });
        let producer: ThreadedProducer<DeliveryContext> = config
            .create_with_context(DeliveryContext(deliveries.clone()))
            .map_err(|e| StreamsError::kafka("create producer", e))?;
        if transactional {
            producer.init_transactions(timeout).map_err(|e| transaction_error("init transactions", e))?;
        }
        Ok((producer, deliveries))
    }

    /// Replaces a fenced or fatally failed producer with a new one (same `transactional.id`).
    pub(crate) fn recreate(&mut self) -> Result<()> {
        let (producer, deliveries) = Self::create(&self.config, self.timeout, &self.production_handler, self.transactional)?;
        self.producer = producer;
        self.deliveries = deliveries;
        self.in_transaction = false;
        Ok(())
    }

    pub(crate) fn deliveries(&self) -> &Arc<Deliveries> {
        &self.deliveries
    }

    /// Hands `record` to the producer, waiting while its queue is full; the error is the
    /// producer's refusal of the record itself (too large, unknown partition).
    fn enqueue(&self, record: &ProducerRecord) -> std::result::Result<(), KafkaError> {
        let mut base = base_record(record);
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Sends what a handler asked to write instead of a failed record (once: a dead letter
    /// the producer refuses fails the send).
    fn send_dead_letter(&self, dead: DeadLetter) -> Result<()> {
        let dead = dead.into_producer_record();
        self.enqueue(&dead).map_err(|source| StreamsError::Send { topic: dead.topic.to_string(), source })
    }

    fn check(&self) -> Result<()> {
        match self.deliveries.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some((partition, error)) if self.transactional => {
                Err(StreamsError::TransactionAborted(format!("a send to {partition} failed: {error}")))
            }
            Some((partition, source)) => Err(StreamsError::Send { topic: partition, source }),
            None => Ok(()),
        }
    }

    /// Commits the open transaction with `offsets` (the next offsets to consume) for the
    /// consumer group `group`. Without a transaction open, begins one for the offsets alone.
    pub(crate) fn commit_transaction(&mut self, offsets: &TopicPartitionList, group: &ConsumerGroupMetadata) -> Result<()> {
        if !self.in_transaction && offsets.count() == 0 {
            return Ok(());
        }
        self.begin()?;
        // rdkafka's `commit_transaction` flushes first, in its slow way: flush here, so that
        // it finds nothing left in flight.
        native::flush(self.producer.client(), self.timeout).map_err(|e| transaction_error("flush the producer", e))?;
        self.check()?;
        let deadline = std::time::Instant::now() + self.timeout;
        if offsets.count() > 0 {
            retrying(deadline, "send offsets to the transaction", || {
                self.producer.send_offsets_to_transaction(offsets, group, self.timeout)
            })?;
        }
        retrying(deadline, "commit the transaction", || self.producer.commit_transaction(self.timeout))?;
        self.in_transaction = false;
        self.check()
    }

    /// Aborts the open transaction, if any: none of its records become visible to
    /// read_committed consumers. A producer that cannot abort (fenced) is recreated.
    pub(crate) fn abort_transaction(&mut self) -> Result<()> {
        if self.in_transaction {
            self.in_transaction = false;
            if let Err(e) = self.producer.abort_transaction(self.timeout) {
                tracing::warn!(error = %e, "abort failed; recreating the producer");
                self.recreate()?;
            }
        }
        self.deliveries.reset();
        Ok(())
    }

    fn begin(&mut self) -> Result<()> {
        if self.transactional && !self.in_transaction {
            self.producer.begin_transaction().map_err(|e| transaction_error("begin a transaction", e))?;
            self.in_transaction = true;
        }
        Ok(())
    }
}

/// Runs a transaction call again while it fails with a retriable error, until `deadline`.
fn retrying(deadline: std::time::Instant, operation: &str, mut call: impl FnMut() -> rdkafka::error::KafkaResult<()>) -> Result<()> {
    loop {
        match call() {
            Ok(()) => return Ok(()),
            Err(KafkaError::Transaction(e)) if e.is_retriable() && std::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, operation, "retrying a transaction call");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(transaction_error(operation, e)),
        }
    }
}

/// Sorts a transactional producer's error: fenced or fatal means the thread lost its tasks
/// (another producer or group generation took over); anything else aborts the transaction.
fn transaction_error(operation: &str, error: KafkaError) -> StreamsError {
    let fatal = match &error {
        KafkaError::Transaction(e) => e.is_fatal() || matches!(e.code(), RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced),
        _ => false,
    };
    let rebalanced = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::FencedInstanceId
        )
    );
    if fatal || rebalanced {
        StreamsError::TaskMigrated(format!("{operation}: {error}"))
    } else {
        StreamsError::TransactionAborted(format!("{operation}: {error}"))
    }
}

/// The producer's view of a record.
fn base_record(record: &ProducerRecord) -> BaseRecord<'_, [u8], [u8]> {
    let mut base: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&record.topic).timestamp(record.timestamp);
    if !record.headers.is_empty() {
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (key, value) in &record.headers {
            headers = headers.insert(Header { key, value: value.as_deref() });
        }
        base = base.headers(headers);
    }
    if let Some(key) = &record.key {
        base = base.key(key.as_slice());
    }
    if let Some(value) = &record.value {
        base = base.payload(value.as_slice());
    }
    if let Some(partition) = record.partition {
        base = base.partition(partition);
    }
    base
}

impl RecordCollector for KafkaRecordCollector {
    fn send(&mut self, record: ProducerRecord) -> Result<()> {
        self.check()?;
        self.begin()?;
        let Err(e) = self.enqueue(&record) else { return Ok(()) };
        let refused =
            ProducedRecord { topic: &record.topic, partition: record.partition, key: record.key.as_deref(), value: record.value.as_deref() };
        match self.production_handler.handle(&refused, &e) {
            HandlerResponse::Resume(dead) => dead.into_iter().try_for_each(|d| self.send_dead_letter(d)),
            HandlerResponse::Fail => Err(StreamsError::Send { topic: record.topic.to_string(), source: e }),
        }
    }

    fn partitions(&mut self, topic: &str) -> Result<i32> {
        if let Some(n) = self.partition_counts.get(topic) {
            return Ok(*n);
        }
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|e| StreamsError::kafka(format!("fetch the partitions of `{topic}`"), e))?;
        let n = match metadata.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().len() as i32,
            _ => {
                return Err(StreamsError::Send {
                    topic: topic.to_string(),
                    source: KafkaError::MessageProduction(RDKafkaErrorCode::UnknownTopicOrPartition),
                })
            }
        };
        self.partition_counts.insert(topic.to_string(), n);
        Ok(n)
    }

    fn flush(&mut self) -> Result<()> {
        loop {
            match native::flush(self.producer.client(), self.timeout) {
                Ok(()) => self.check()?,
                Err(e) if self.transactional => return Err(transaction_error("flush the producer", e)),
                Err(e) => return Err(StreamsError::kafka("flush producer", e)),
            }
            // Failed deliveries the handler skipped may have asked for dead letters: write
            // them, and flush again so they are acknowledged too.
            let dead = std::mem::take(&mut *self.deliveries.dead_letters.lock().unwrap_or_else(|e| e.into_inner()));
            if dead.is_empty() {
                return Ok(());
            }
            dead.into_iter().try_for_each(|d| self.send_dead_letter(d))?;
        }
    }
}

//! `KafkaRecordCollector`: sends a thread's sink, repartition and changelog records with one
//! producer, and tracks the offsets acknowledged for each partition (for checkpoints).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message};

use crate::collector::RecordCollector;
use crate::error::{Result, StreamsError};
use crate::record::ProducerRecord;

/// Delivery reports: the last acknowledged offset per partition, and the first failure.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    offsets: Mutex<HashMap<(String, i32), i64>>,
    error: Mutex<Option<String>>,
}

impl Deliveries {
    pub(crate) fn offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.lock().unwrap_or_else(|e| e.into_inner()).get(&(topic.to_string(), partition)).copied()
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
                let key = (message.topic().to_string(), message.partition());
                let mut offsets = self.0.offsets.lock().unwrap_or_else(|e| e.into_inner());
                let entry = offsets.entry(key).or_insert(-1);
                *entry = (*entry).max(message.offset());
            }
            Err((error, message)) => {
                let text = format!("{}-{}: {error}", message.topic(), message.partition());
                tracing::error!(error = %text, "record delivery failed");
                self.0.error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(text);
            }
        }
    }
}

/// A [`RecordCollector`] over an rdkafka producer.
pub(crate) struct KafkaRecordCollector {
    producer: ThreadedProducer<DeliveryContext>,
    deliveries: Arc<Deliveries>,
    flush_timeout: Duration,
}

impl KafkaRecordCollector {
    pub(crate) fn new(config: &ClientConfig, flush_timeout: Duration) -> Result<Self> {
        let context = DeliveryContext::default();
        let deliveries = context.0.clone();
        let producer = config.create_with_context(context).map_err(|e| StreamsError::kafka("create producer", e))?;
        Ok(KafkaRecordCollector { producer, deliveries, flush_timeout })
    }

    pub(crate) fn deliveries(&self) -> &Arc<Deliveries> {
        &self.deliveries
    }

    fn check(&self) -> Result<()> {
        match self.deliveries.error.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(message) => Err(StreamsError::Send { topic: String::new(), message }),
            None => Ok(()),
        }
    }
}

impl RecordCollector for KafkaRecordCollector {
    fn send(&mut self, record: ProducerRecord) -> Result<()> {
        self.check()?;
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
        loop {
            match self.producer.send(base) {
                Ok(()) => return Ok(()),
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                    base = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    return Err(StreamsError::Send { topic: record.topic.clone(), message: e.to_string() });
                }
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.producer.flush(self.flush_timeout).map_err(|e| StreamsError::kafka("flush producer", e))?;
        self.check()
    }
}

//! Test utilities (the `test-utils` feature), as Kafka Streams ships them in
//! `kafka-streams-test-utils`: the broker-free [`TopologyTestDriver`], an embedded cluster, and
//! helpers to produce to and read from a real (or embedded) cluster in tests and examples, as
//! Kafka Streams' `IntegrationTestUtils`.

mod driver;
mod embedded;

pub use driver::{TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use embedded::EmbeddedKafkaCluster;
pub use crate::record::ConsumerRecord;
pub use crate::processor::context::TaskMetrics;

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::error::{Result, StreamsError};

/// Sends `(key, value)` pairs to `topic` (keys partitioned as the Java client does) and waits for
/// every acknowledgement.
pub fn produce(
    bootstrap_servers: &str,
    topic: &str,
    records: impl IntoIterator<Item = (Option<Vec<u8>>, Option<Vec<u8>>)>,
) -> Result<u64> {
    produce_at(bootstrap_servers, topic, records.into_iter().map(|(k, v)| (k, v, None)))
}

/// As [`produce`], with record timestamps (`None`, and also `Some(0)`, mean the producer's clock).
pub fn produce_at(
    bootstrap_servers: &str,
    topic: &str,
    records: impl IntoIterator<Item = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>)>,
) -> Result<u64> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "10")
        // Retries never duplicate a record: exactly-once tests count the input exactly.
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| StreamsError::kafka("create producer", e))?;
    let mut sent = 0;
    for (key, value, timestamp) in records {
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic);
        if let Some(ts) = timestamp {
            record = record.timestamp(ts);
        }
        if let Some(k) = &key {
            record = record.key(k.as_slice());
        }
        if let Some(v) = &value {
            record = record.payload(v.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(StreamsError::Send { topic: topic.to_string(), source: e }),
            }
        }
        sent += 1;
    }
    producer.flush(Duration::from_secs(60)).map_err(|e| StreamsError::kafka("flush producer", e))?;
    Ok(sent)
}

/// Reads every partition of `topic` from the beginning until no record arrived for `idle`
/// after reaching the end of all partitions.
pub fn read_all(bootstrap_servers: &str, topic: &str, idle: Duration) -> Result<Vec<ConsumerRecord>> {
    let consumer: BaseConsumer<crate::runtime::EndAwareContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", "streams-test-utils-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(crate::runtime::EndAwareContext)
        .map_err(|e| StreamsError::kafka("create consumer", e))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| StreamsError::kafka(format!("metadata of {topic}"), e))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(|e| StreamsError::kafka("assign", e))?;
    }
    consumer.assign(&tpl).map_err(|e| StreamsError::kafka("assign", e))?;
    let mut records = Vec::new();
    let mut at_end = std::collections::HashSet::new();
    let mut last = Instant::now();
    while at_end.len() < partitions || last.elapsed() < idle {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                records.push(crate::runtime::to_record(&m));
                at_end.remove(&m.partition());
                last = Instant::now();
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => tracing::debug!(error = %e, "read_all"),
            None => {}
        }
        if last.elapsed() > Duration::from_secs(120) {
            return Err(StreamsError::Timeout(format!("reading {topic}: no progress for 120 s")));
        }
    }
    Ok(records)
}

/// Whether the broker supports what exactly-once needs, or what it lacks: hiding aborted
/// transactions from read_committed consumers and keeping offsets committed in a transaction
/// (Apache Kafka does both; librdkafka's mock cluster and some compatible brokers do not).
/// Writes one aborted and one committed record to `topic`, an existing topic used for nothing else.
pub fn exactly_once_support(bootstrap_servers: &str, topic: &str) -> Result<std::result::Result<(), String>> {
    let kafka = |what: &'static str| move |e| StreamsError::kafka(what, e);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("transactional.id", format!("{topic}-probe"))
        .create()
        .map_err(kafka("create producer"))?;
    let group = format!("{topic}-probe");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", &group)
        .create()
        .map_err(kafka("create consumer"))?;
    let metadata = consumer.group_metadata().ok_or_else(|| StreamsError::IllegalState("the consumer has no group metadata".into()))?;
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).map_err(kafka("init transactions"))?;
    for (value, commit) in [("aborted", false), ("committed", true)] {
        producer.begin_transaction().map_err(kafka("begin transaction"))?;
        producer
            .send(BaseRecord::<[u8], [u8]>::to(topic).partition(0).payload(value.as_bytes()))
            .map_err(|(e, _)| StreamsError::kafka("send", e))?;
        producer.flush(timeout).map_err(kafka("flush"))?;
        if commit {
            let mut offsets = TopicPartitionList::new();
            offsets.add_partition_offset(topic, 0, Offset::Offset(1)).map_err(kafka("offsets"))?;
            producer.send_offsets_to_transaction(&offsets, &metadata, timeout).map_err(kafka("send offsets"))?;
            producer.commit_transaction(timeout).map_err(kafka("commit transaction"))?;
        } else {
            producer.abort_transaction(timeout).map_err(kafka("abort transaction"))?;
        }
    }
    let records = read_all(bootstrap_servers, topic, Duration::from_millis(500))?;
    let seen = |v: &str| records.iter().any(|r| r.value.as_deref() == Some(v.as_bytes()));
    if seen("aborted") || !seen("committed") {
        return Ok(Err("the broker shows aborted transactions to read_committed consumers".into()));
    }
    let mut partition = TopicPartitionList::new();
    partition.add_partition(topic, 0);
    let committed = consumer.committed_offsets(partition, timeout).map_err(kafka("committed offsets"))?;
    if committed.find_partition(topic, 0).map(|e| e.offset()) != Some(Offset::Offset(1)) {
        return Ok(Err("the broker does not keep offsets committed in transactions".into()));
    }
    Ok(Ok(()))
}

/// Creates `topic` with `partitions` through the admin API unless it exists.
pub fn ensure_topic(bootstrap_servers: &str, topic: &str, partitions: i32) -> Result<()> {
    ensure_topic_with_config(bootstrap_servers, topic, partitions, &[])
}

/// As [`ensure_topic`], with topic configs (`cleanup.policy`, `segment.ms`, ...) for a new topic.
pub fn ensure_topic_with_config(bootstrap_servers: &str, topic: &str, partitions: i32, config: &[(&str, &str)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create()
        .map_err(|e| StreamsError::kafka("create admin client", e))?;
    let existing = crate::runtime::topic_partitions(&admin, Duration::from_secs(10))?;
    if existing.contains_key(topic) {
        return Ok(());
    }
    let new = config.iter().fold(NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)), |t, (k, v)| t.set(k, v));
    let results = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))
        .map_err(|e| StreamsError::kafka(format!("create topic {topic}"), e))?;
    for result in results {
        if let Err((t, code)) = result {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(StreamsError::kafka(format!("create topic {t}"), KafkaError::AdminOp(code)));
            }
        }
    }
    Ok(())
}

/// Records of `topics` that the consumer group `group` has not committed yet.
pub fn group_lag(bootstrap_servers: &str, group: &str, topics: &[&str]) -> Result<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| StreamsError::kafka("create consumer", e))?;
    let timeout = Duration::from_secs(10);
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for topic in topics {
        let metadata =
            consumer.fetch_metadata(Some(topic), timeout).map_err(|e| StreamsError::kafka(format!("metadata of {topic}"), e))?;
        for p in 0..metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32 {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, timeout)
                .map_err(|e| StreamsError::kafka(format!("watermarks of {topic}-{p}"), e))?;
            tpl.add_partition(topic, p);
            ends.push(((topic.to_string(), p), high));
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout).map_err(|e| StreamsError::kafka("committed offsets", e))?;
    let mut lag = 0;
    for ((topic, p), high) in ends {
        let done = match committed.find_partition(&topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        };
        lag += (high - done).max(0);
    }
    Ok(lag)
}

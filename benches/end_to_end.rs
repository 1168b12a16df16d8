//! End-to-end throughput on one broker, side by side in one run: a raw rdkafka
//! consume->produce pipe, then topologies from `Running` until they processed and committed
//! everything — map/filter, word count under at-least-once and exactly-once, a
//! windowed word count and a stream-stream join (records/s and ratios to the raw pipe) — then
//! changelog restoration versus a raw consume of the same records.
//!
//! Uses `STREAMS_BOOTSTRAP_SERVERS` if set, else the embedded broker (whose 5 MiB partition cap
//! limits the restore run to fewer records).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use streams::prelude::*;
use streams::test_utils;
use streams::topologies::word_count_between;
use streams::state::WindowedSerde;
use streams::test_utils::EmbeddedKafkaCluster;
use streams::{JoinWindows, KafkaStreams, State, StreamJoined, TimeWindows, Topology};

const PARTITIONS: i32 = 4;

struct Broker {
    embedded: Option<EmbeddedKafkaCluster>,
    servers: String,
}

impl Broker {
    fn new() -> Self {
        match std::env::var("STREAMS_BOOTSTRAP_SERVERS") {
            Ok(servers) if !servers.is_empty() => Broker { embedded: None, servers },
            _ => {
                let cluster = EmbeddedKafkaCluster::new(1).expect("embedded broker");
                Broker { servers: cluster.bootstrap_servers(), embedded: Some(cluster) }
            }
        }
    }

    fn topic(&self, name: &str, partitions: i32) {
        match &self.embedded {
            Some(c) => c.create_topic(name, partitions).expect("topic"),
            None => test_utils::ensure_topic(&self.servers, name, partitions).expect("topic"),
        }
    }
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}", nanos % 1_000_000_000_000)
}

fn lines(n: usize) -> Vec<String> {
    streams::topologies::random_lines(n, 5_000, 0x9e37_79b9_7f4a_7c15)
}

/// Consumes every partition of `input` from the start to its end, sending each record to
/// `output`; returns records/s from the first record received to the last acknowledgement.
fn raw_pipe(servers: &str, input: &str, output: &str) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique("raw"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", servers).set("linger.ms", "5").create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(input, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut done = HashSet::new();
    let mut n = 0;
    let mut first = None;
    while done.len() < PARTITIONS as usize {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output).partition(m.partition());
                if let Some(v) = m.payload() {
                    record = record.payload(v);
                }
                while let Err((_, back)) = producer.send(record) {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                n += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            _ => {}
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
    n as f64 / first.expect("records").elapsed().as_secs_f64()
}

/// Runs `topology` (committing every 100 ms) until it processed `records` input records and
/// committed once more (so every output was acknowledged); returns the seconds from `Running`
/// to then (the group join and the close are not measured). Progress comes from the client's
/// own counters, as some brokers (the embedded one) do not keep offsets committed in transactions.
fn run_topology(broker: &Broker, topology: Topology, app: &str, records: u64, guarantee: &str) -> f64 {
    if let Some(c) = &broker.embedded {
        c.create_internal_topics(&topology, app, |_| PARTITIONS).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, app)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, &broker.servers)
        .with(StreamsConfig::NUM_STREAM_THREADS, "1")
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "100")
        .with(StreamsConfig::PROCESSING_GUARANTEE, guarantee)
        .with(StreamsConfig::STATE_DIR, dir.path().to_string_lossy());
    let mut streams = KafkaStreams::new(topology, config).unwrap();
    let running_at = Arc::new(Mutex::new(None));
    let mark = running_at.clone();
    streams.set_state_listener(move |new, _| {
        if new == State::Running {
            mark.lock().unwrap().get_or_insert(Instant::now());
        }
    });
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running);
    let total = |name| streams.metrics().sum("stream-thread-metrics", name) as u64;
    while total("process-total") < records {
        assert_eq!(streams.state(), State::Running, "{:?}", streams.take_error());
        std::thread::sleep(Duration::from_millis(5));
    }
    // The next commit flushes the producer (and commits the transaction): all output is out.
    let commits = total("commit-total");
    while total("commit-total") <= commits {
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = running_at.lock().unwrap().expect("was running").elapsed().as_secs_f64();
    assert!(streams.close(Duration::from_secs(60)));
    secs
}

fn raw_consume(servers: &str, topic: &str) -> (u64, f64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique("raw-consume"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    consumer.assign(&tpl).unwrap();
    let mut start = None;
    let mut n = 0;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                start.get_or_insert_with(Instant::now);
                n += 1
            }
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    (n, start.expect("records").elapsed().as_secs_f64())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches`: nothing to smoke-test without a long run
    }
    let broker = Broker::new();
    let n_lines = 60_000;
    let corpus = lines(n_lines);
    let words = n_lines * 10;

    let input = unique("bench-in");
    broker.topic(&input, PARTITIONS);
    test_utils::produce(&broker.servers, &input, corpus.iter().map(|l| (None, Some(l.as_bytes().to_vec())))).unwrap();

    let raw_out = unique("bench-raw-out");
    broker.topic(&raw_out, PARTITIONS);
    let raw_rate = raw_pipe(&broker.servers, &input, &raw_out);

    let stateless_out = unique("bench-stateless-out");
    broker.topic(&stateless_out, PARTITIONS);
    let builder = StreamsBuilder::new();
    builder
        .stream::<Option<String>, String>(&input, Consumed::with(Serdes::string(), Serdes::string()))
        .filter(|_, line| !line.is_empty())
        .map_values(|line| line.to_uppercase())
        .to(&stateless_out, Produced::with(Serdes::string(), Serdes::string()));
    let app = unique("bench-stateless");
    let secs = run_topology(&broker, builder.build().unwrap(), &app, n_lines as u64, "at_least_once");
    let stateless_rate = n_lines as f64 / secs;

    let wc_out = unique("bench-wc-out");
    broker.topic(&wc_out, PARTITIONS);
    let app = unique("bench-wc");
    let wc_records = (n_lines + words) as u64;
    let secs = run_topology(&broker, word_count_between(&input, &wc_out, Materialized::as_("counts")), &app, wc_records, "at_least_once");
    let wc_rate = (n_lines + words) as f64 / secs;

    // The same word count under exactly-once: a transaction every 100 ms, stores buffering it.
    let eos_out = unique("bench-eos-out");
    broker.topic(&eos_out, PARTITIONS);
    let app = unique("bench-eos");
    let topology = word_count_between(&input, &eos_out, Materialized::as_("counts"));
    let secs = run_topology(&broker, topology, &app, wc_records, "exactly_once_v2");
    let eos_rate = (n_lines + words) as f64 / secs;

    // Windowed word count: words per one-minute window (records carry the producer's clock).
    let ww_out = unique("bench-ww-out");
    broker.topic(&ww_out, PARTITIONS);
    let app = unique("bench-ww");
    let builder = StreamsBuilder::new();
    builder
        .stream::<Option<String>, String>(&input, Consumed::with(Serdes::string(), Serdes::string()))
        .flat_map_values(streams::topologies::words)
        .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
        .count(Materialized::as_("counts"))
        .to_stream()
        .to(&ww_out, Produced::with(WindowedSerde::time(Arc::new(Serdes::string()), 60_000), Serdes::i64()));
    let secs = run_topology(&broker, builder.build().unwrap(), &app, wc_records, "at_least_once");
    let ww_rate = (n_lines + words) as f64 / secs;

    // Stream-stream join: every line of `input` keyed by its index meets one record of `right`.
    let (left, right, join_out) = (unique("bench-join-l"), unique("bench-join-r"), unique("bench-join-out"));
    for topic in [&left, &right, &join_out] {
        broker.topic(topic, PARTITIONS);
    }
    let keyed = |v: &'static str| (0..n_lines / 2).map(move |i| (Some(format!("{i}").into_bytes()), Some(v.as_bytes().to_vec())));
    test_utils::produce(&broker.servers, &left, keyed("left-value")).unwrap();
    test_utils::produce(&broker.servers, &right, keyed("right-value")).unwrap();
    let builder = StreamsBuilder::new();
    let consumed = || Consumed::<String, String>::with(Serdes::string(), Serdes::string());
    builder
        .stream(&left, consumed())
        .join(
            &builder.stream(&right, consumed()),
            |l, r| format!("{l}+{r}"),
            JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(300)),
            StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string()),
        )
        .to(&join_out, Produced::with(Serdes::string(), Serdes::string()));
    let app = unique("bench-join");
    let secs = run_topology(&broker, builder.build().unwrap(), &app, n_lines as u64, "at_least_once");
    let join_rate = n_lines as f64 / secs;

    println!(
        "\nend to end on {} ({} partitions, 1 stream thread, {n_lines} lines of 10 words):",
        if broker.embedded.is_some() { "the embedded broker" } else { &broker.servers },
        PARTITIONS
    );
    println!("  raw consume->produce pipe   {raw_rate:>10.0} records/s   1.00");
    println!("  map/filter topology         {stateless_rate:>10.0} records/s   {:.2} of raw", stateless_rate / raw_rate);
    println!("  word count (lines + words)  {wc_rate:>10.0} records/s   {:.2} of raw", wc_rate / raw_rate);
    println!("  word count, exactly_once_v2 {eos_rate:>10.0} records/s   {:.2} of raw, {:.2} of at-least-once", eos_rate / raw_rate, eos_rate / wc_rate);
    println!("  windowed word count (1 min) {ww_rate:>10.0} records/s   {:.2} of raw", ww_rate / raw_rate);
    println!("  stream-stream join (2 x {}) {join_rate:>10.0} records/s   {:.2} of raw", n_lines / 2, join_rate / raw_rate);

    // Restoration: a changelog partition of N records, restored into RocksDB by a fresh instance.
    let n_restore: u64 = if broker.embedded.is_some() { 150_000 } else { 1_000_000 };
    let app = unique("bench-restore");
    let topology = word_count_between(&input, &wc_out, Materialized::as_("counts"));
    let changelog = format!("{app}-counts-changelog");
    broker.topic(&changelog, PARTITIONS);
    let values = (0..n_restore).map(|i| {
        let mut v = (i as i64).to_be_bytes().to_vec();
        v.extend_from_slice(&1i64.to_be_bytes());
        (Some(format!("key-{i:09}").into_bytes()), Some(v))
    });
    // All into partition 0 (the key partitioner would spread them): send explicitly.
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &broker.servers).set("linger.ms", "20").create().unwrap();
    for (k, v) in values {
        let mut record = BaseRecord::to(&changelog).partition(0).key(k.as_deref().unwrap()).payload(v.as_deref().unwrap());
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let (consumed, consume_secs) = raw_consume(&broker.servers, &changelog);
    if let Some(c) = &broker.embedded {
        c.create_internal_topics(&topology, &app, |_| PARTITIONS).ok();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, &app)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, &broker.servers)
        .with(StreamsConfig::STATE_DIR, dir.path().to_string_lossy());
    let mut streams = KafkaStreams::new(topology, config).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    streams.set_restore_listener(move |e| sink.lock().unwrap().push(e.clone()));
    streams.start().unwrap();
    streams.wait_until_running(Duration::from_secs(300));
    streams.close(Duration::from_secs(60));
    let events = events.lock().unwrap();
    let big = events.iter().max_by_key(|e| e.restored).expect("a restore");
    let restore_rate = big.restored as f64 / big.elapsed.as_secs_f64();
    let consume_rate = consumed as f64 / consume_secs;
    println!("\nchangelog restore of {} records (one partition, RocksDB):", big.restored);
    println!("  raw consume                 {consume_rate:>10.0} records/s   1.00");
    println!("  restore into RocksDB        {restore_rate:>10.0} records/s   {:.2} of raw", restore_rate / consume_rate);
}

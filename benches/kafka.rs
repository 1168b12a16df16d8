//! `make bench-kafka`: this project against Kafka Streams itself, on one real broker, in one
//! run: the same topologies (stateless map/filter, word count, windowed count with grace and
//! suppress, stream-stream join, table-table join) as separate processes on the same input
//! topics, one after the other, with the same settings, and a raw rdkafka consume->produce pipe
//! as the limit of a stateless topology.
//!
//! Each run starts on preloaded input and is timed from the application reporting RUNNING to
//! the broker's append time of its last output record (output topics use `LogAppendTime`), once
//! the group has committed all input. Reported per run: input records/s and MB/s, CPU seconds
//! per million input records (user + system, after RUNNING) and peak RSS (`VmHWM`); word count
//! runs under exactly-once too. Then latency: on empty topics, a fixed offered load, and for each output record the time from
//! the input's creation to a `read_committed` consumer reading it (p50, p99, max), under
//! at-least-once and exactly-once. Last, restoration: a fresh instance restores a changelog
//! partition of a million records into RocksDB, against a raw consume of the same partition.
//!
//! Needs `STREAMS_BOOTSTRAP_SERVERS` (the make target starts Apache Kafka from the Maven jars)
//! and Java 17+ with Maven for Kafka Streams (`tests/reference/run.sh bench`).
//! `STREAMS_BENCH_SCALE` (default 1) scales the record counts; `STREAMS_BENCH_ONLY` picks
//! topologies by name (comma-separated; `raw` is the raw pipe alone), and
//! `STREAMS_BENCH_RAW_CONSUMER` / `STREAMS_BENCH_RAW_PRODUCER` (`key=value,...`) add librdkafka
//! settings to the raw pipe's clients, to explore what bounds it (`STREAMS_BENCH_OURS_EXTRA`:
//! settings of our side alone). `STREAMS_BENCH_PHASE` (`throughput`,
//! `latency` or `restore`) runs one phase alone; `STREAMS_BENCH_PERF=<prefix>` records a CPU profile of our
//! side of each throughput run (`perf record`, to `<prefix>-<topology>.data`).
//! `STREAMS_BENCH_RUNS=n` repeats each throughput and latency run n times, alternating the
//! implementations, and reports medians; `STREAMS_BENCH_OURS_ONLY=1` skips Kafka Streams in the
//! throughput runs, for experiments on our side. Our side runs with the `jemalloc` feature (the
//! dev-dependency on this crate turns it on).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use streams::prelude::*;
use streams::test_utils;
use streams::topologies::word_count_between;
use streams::{JoinWindows, KafkaStreams, State, StreamJoined, Suppressed, TimeWindows, Topology};

const PARTITIONS: i32 = 4;
/// Settings both implementations run with.
const SETTINGS: [(&str, &str); 4] = [
    ("num.stream.threads", "1"),
    ("commit.interval.ms", "1000"),
    ("statestore.cache.max.bytes", "10485760"),
    ("producer.linger.ms", "10"),
];
const APP_ENV: &str = "STREAMS_BENCH_APP";
/// For inputs whose event times are in 1970: the broker's time-based retention (7 days, checked
/// every 5 minutes) would otherwise delete them under a running application, whose lag then
/// never reaches 0.
const KEEP: [(&str, &str); 1] = [("retention.ms", "-1")];

fn main() {
    if let Ok(topology) = std::env::var(APP_ENV) {
        return run_app(&topology, &std::env::args().skip(1).collect::<Vec<_>>());
    }
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches`: nothing to smoke-test without a broker
    }
    let Ok(servers) = std::env::var("STREAMS_BOOTSTRAP_SERVERS") else {
        eprintln!("bench-kafka: set STREAMS_BOOTSTRAP_SERVERS (make bench-kafka starts a broker)");
        std::process::exit(2);
    };
    let scale: f64 = std::env::var("STREAMS_BENCH_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let only: Option<Vec<String>> = std::env::var("STREAMS_BENCH_ONLY").ok().map(|s| s.split(',').map(str::to_string).collect());
    let phase = std::env::var("STREAMS_BENCH_PHASE").ok();
    let wanted_in = |p: &str, name: &str| {
        phase.as_deref().is_none_or(|phase| phase == p) && only.as_ref().is_none_or(|o| o.iter().any(|n| n == name))
    };
    let wanted = |name: &str| wanted_in("throughput", name);
    let count = |n: f64| (n * scale) as u64;
    let mut rows = Vec::new();

    if wanted("stateless") || wanted("raw") || wanted("word-count") {
        let lines = count(6_000_000.0);
        let input = unique("bk-lines");
        test_utils::ensure_topic(&servers, &input, PARTITIONS).unwrap();
        let corpus = streams::topologies::random_lines(100_000, 5_000, 7);
        let bytes = produce(&servers, &input, (0..lines).map(|i| (None, corpus[i as usize % corpus.len()].clone().into_bytes(), None)));
        let input = Input { topics: vec![input], records: lines, bytes };
        if wanted("stateless") || wanted("raw") {
            rows.push(median_row((0..runs()).map(|_| raw_pipe(&servers, &input)).collect()));
        }
        if wanted("stateless") {
            rows.extend(side_by_side(&servers, "stateless", &input, ALOS));
        }
        if wanted("word-count") {
            let words = count(600_000.0) as usize;
            let input = Input { records: words as u64, ..input.clone() };
            // Word count reads the first `words` lines of the topic: its own smaller topic.
            let topic = unique("bk-wc-lines");
            test_utils::ensure_topic(&servers, &topic, PARTITIONS).unwrap();
            let bytes = produce(&servers, &topic, (0..words).map(|i| (None, corpus[i % corpus.len()].clone().into_bytes(), None)));
            let input = Input { topics: vec![topic], bytes, ..input };
            rows.extend(side_by_side(&servers, "word-count", &input, ALOS));
            rows.extend(side_by_side(&servers, "word-count", &input, EOS));
        }
    }
    if wanted("windowed-count") {
        let n = count(6_000_000.0);
        let topic = unique("bk-events");
        test_utils::ensure_topic_with_config(&servers, &topic, PARTITIONS, &KEEP).unwrap();
        // 100 events per ms of event time over 10,000 keys: a 10 s window holds a million.
        let bytes = produce(&servers, &topic, (0..n).map(|i| (Some(format!("key-{}", i % 10_000).into_bytes()), b"1".to_vec(), Some(1_000_000 + i as i64 / 100))));
        rows.extend(side_by_side(&servers, "windowed-count", &Input { topics: vec![topic], records: n, bytes }, ALOS));
    }
    if wanted("stream-join") {
        let n = count(2_000_000.0);
        let (left, right) = (unique("bk-left"), unique("bk-right"));
        let mut bytes = 0;
        for (topic, value) in [(&left, "left-value-0123456789"), (&right, "right-value-0123456789")] {
            test_utils::ensure_topic_with_config(&servers, topic, PARTITIONS, &KEEP).unwrap();
            // Each key once per side, 1 ms apart: every left record meets one right record.
            bytes += produce(&servers, topic, (0..n).map(|i| (Some(format!("order-{i}").into_bytes()), value.as_bytes().to_vec(), Some(1_000_000 + i as i64))));
        }
        rows.extend(side_by_side(&servers, "stream-join", &Input { topics: vec![left, right], records: 2 * n, bytes }, ALOS));
    }
    if wanted("table-join") {
        let n = count(1_000_000.0);
        let (left, right) = (unique("bk-tleft"), unique("bk-tright"));
        let mut bytes = 0;
        for (topic, value) in [(&left, "left-row-0123456789"), (&right, "right-row-0123456789")] {
            test_utils::ensure_topic(&servers, topic, PARTITIONS).unwrap();
            // Updates of 100,000 rows per table.
            bytes += produce(&servers, topic, (0..n).map(|i| (Some(format!("row-{}", i % 100_000).into_bytes()), format!("{value}-{i}").into_bytes(), None)));
        }
        rows.extend(side_by_side(&servers, "table-join", &Input { topics: vec![left, right], records: 2 * n, bytes }, ALOS));
    }
    report(&rows);

    // Latency at a fixed load; not for the suppressed windowed count, whose output waits for
    // windows to close by design.
    let mut latencies = Vec::new();
    for topology in ["stateless", "word-count", "stream-join", "table-join"].into_iter().filter(|t| wanted_in("latency", t)) {
        for guarantee in [ALOS, EOS] {
            for _ in 0..runs() {
                for by in IMPLEMENTATIONS {
                    latencies.push(latency_run(&servers, topology, by, guarantee));
                }
            }
        }
    }
    report_latency(&latencies);

    if wanted_in("restore", "restore") {
        restore_runs(&servers, count(1_000_000.0));
    }
}

/// Restoration, five times each, medians: a changelog partition of `n` records with 100-byte
/// values, restored into a RocksDB store by a fresh instance (its state updater), against a raw
/// consume of the same partition to its end with the runtime's fetch settings.
fn restore_runs(servers: &str, n: u64) {
    let app = unique("bk-restore");
    let (input, output) = (format!("{app}-in"), format!("{app}-out"));
    let changelog = format!("{app}-counts-changelog");
    for topic in [&input, &output] {
        test_utils::ensure_topic(servers, topic, PARTITIONS).unwrap();
    }
    test_utils::ensure_topic_with_config(servers, &changelog, PARTITIONS, &[("cleanup.policy", "compact")]).unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", servers).set("linger.ms", "20").create().unwrap();
    let value = [b'v'; 100];
    for i in 0..n {
        let key = format!("key-{i:09}");
        let mut record = BaseRecord::to(&changelog).partition(0).key(key.as_bytes()).payload(&value[..]);
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let bytes = n * (13 + 100);

    // Alternating, so that both meet the broker in the same state.
    let (mut raw, mut restored) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        raw.push(raw_consume(servers, &changelog, n));
        let dir = tempfile::tempdir().unwrap();
        let config = StreamsConfig::new()
            .with(StreamsConfig::APPLICATION_ID, &app)
            .with(StreamsConfig::BOOTSTRAP_SERVERS, servers)
            .with(StreamsConfig::STATE_DIR, dir.path().to_string_lossy());
        let mut streams = KafkaStreams::new(word_count_between(&input, &output, Materialized::as_("counts")), config).unwrap();
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        streams.set_restore_listener(move |e| sink.lock().unwrap().push(e.clone()));
        streams.start().unwrap();
        assert_eq!(streams.wait_until_running(Duration::from_secs(300)), State::Running, "the restore did not finish");
        streams.close(Duration::from_secs(60));
        let events = events.lock().unwrap();
        let event = events.iter().find(|e| e.partition == 0).expect("the restore of partition 0");
        assert_eq!(event.restored, n, "records restored");
        restored.push(n as f64 / event.elapsed.as_secs_f64());
    }
    eprintln!("bench-kafka: raw consumes {raw:.0?} records/s, restores {restored:.0?} records/s");
    let (raw, restored) = (median(raw), median(restored));
    println!("\nrestore of {n} records of 100 bytes (one changelog partition into RocksDB, medians of 5):");
    println!("  raw consume      {raw:>10.0} records/s {:>7.1} MB/s", raw * bytes as f64 / n as f64 / 1e6);
    println!("  restore (ours)   {restored:>10.0} records/s {:>7.1} MB/s   {:.2} of the raw consume", restored * bytes as f64 / n as f64 / 1e6, restored / raw);
}

/// Records/s of one consumer reading `topic`'s partition 0 from the start to its `n` records.
fn raw_consume(servers: &str, topic: &str, n: u64) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique("bk-raw-consume"))
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    // Timed as the restore is: connected to the broker, from the assignment to the last record.
    consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    consumer.assign(&tpl).unwrap();
    let mut read = 0;
    while read < n {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Repeats of each throughput and latency run (`STREAMS_BENCH_RUNS`, default 1).
fn runs() -> usize {
    std::env::var("STREAMS_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

/// Repeated runs of one topology by one implementation as one row: the median time, CPU
/// seconds and peak RSS.
fn median_row(runs: Vec<Row>) -> Row {
    let first = &runs[0];
    if runs.len() > 1 {
        let rates: Vec<f64> = runs.iter().map(Row::rate).collect();
        eprintln!("bench-kafka: {} by {}: {rates:.0?} records/s", first.topology, first.implementation);
    }
    let median_of = |f: fn(&Row) -> Option<f64>| {
        let values: Vec<f64> = runs.iter().filter_map(f).collect();
        (!values.is_empty()).then(|| median(values))
    };
    Row {
        topology: first.topology.clone(),
        implementation: first.implementation,
        records: first.records,
        secs: median_of(|r| Some(r.secs)).expect("at least one run"),
        mb: first.mb,
        cpu_secs: median_of(|r| r.cpu_secs),
        peak_rss_mb: median_of(|r| r.peak_rss_mb),
    }
}

/// Prints latency percentiles; for repeated runs, the median of each run's percentile.
fn report_latency(all: &[Latency]) {
    if all.is_empty() {
        return;
    }
    let mut summaries: Vec<LatencySummary> = Vec::new();
    for r in all {
        if summaries.iter().any(|s| s.is(r)) {
            continue;
        }
        let same: Vec<&Latency> = all.iter().filter(|l| l.topology == r.topology && l.implementation == r.implementation && l.guarantee == r.guarantee).collect();
        let median_of = |f: &dyn Fn(&Latency) -> i64| median(same.iter().map(|l| f(l) as f64).collect()) as i64;
        summaries.push(LatencySummary {
            topology: r.topology,
            implementation: r.implementation,
            guarantee: r.guarantee,
            p50: median_of(&|l| l.percentile(0.5)),
            p99: median_of(&|l| l.percentile(0.99)),
            max: median_of(&|l| l.millis.last().copied().unwrap_or(-1)),
            outputs: median_of(&|l| l.millis.len() as i64),
        });
    }
    println!(
        "\nlatency at {LATENCY_RATE} input records/s for {LATENCY_SECS} s (commit.interval.ms=100), ms from input creation to output read (read_committed):"
    );
    println!("{:<16} {:<14} {:<16} {:>8} {:>8} {:>8} {:>9} {:>12}", "topology", "by", "guarantee", "p50", "p99", "max", "outputs", "p99 ours/KS");
    for r in &summaries {
        let ks = summaries.iter().find(|k| k.topology == r.topology && k.guarantee == r.guarantee && k.implementation == "Kafka Streams");
        let ratio = match ks {
            Some(ks) if r.implementation == "ours" && ks.p99 > 0 => format!("{:.2}", r.p99 as f64 / ks.p99 as f64),
            _ => String::new(),
        };
        println!(
            "{:<16} {:<14} {:<16} {:>8} {:>8} {:>8} {:>9} {:>12}",
            r.topology, r.implementation, r.guarantee, r.p50, r.p99, r.max, r.outputs, ratio
        );
    }
}

/// The latency of one (topology, implementation, guarantee): medians over its runs.
struct LatencySummary {
    topology: &'static str,
    implementation: &'static str,
    guarantee: &'static str,
    p50: i64,
    p99: i64,
    max: i64,
    outputs: i64,
}

impl LatencySummary {
    fn is(&self, l: &Latency) -> bool {
        self.topology == l.topology && self.implementation == l.implementation && self.guarantee == l.guarantee
    }
}

#[derive(Clone)]
struct Input {
    topics: Vec<String>,
    records: u64,
    bytes: u64,
}

/// One measured run.
struct Row {
    topology: String,
    implementation: &'static str,
    records: u64,
    secs: f64,
    mb: f64,
    cpu_secs: Option<f64>,
    peak_rss_mb: Option<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.records as f64 / self.secs
    }
}

fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}", nanos % 1_000_000_000_000)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Sends `(key, value, timestamp)`s (keys partitioned as the Java client does); returns the bytes sent.
fn produce(servers: &str, topic: &str, records: impl Iterator<Item = (Option<Vec<u8>>, Vec<u8>, Option<i64>)>) -> u64 {
    let mut bytes = 0;
    let counted = records.map(|(k, v, ts)| {
        bytes += (k.as_ref().map_or(0, Vec::len) + v.len()) as u64;
        (k, Some(v), ts)
    });
    let started = Instant::now();
    let n = test_utils::produce_at(servers, topic, counted).unwrap();
    eprintln!("bench-kafka: {n} records into {topic} in {:.1} s", started.elapsed().as_secs_f64());
    bytes
}

/// An output topic whose records carry the broker's append time.
fn output_topic(servers: &str, prefix: &str) -> String {
    let topic = unique(prefix);
    test_utils::ensure_topic_with_config(servers, &topic, PARTITIONS, &[("message.timestamp.type", "LogAppendTime")]).unwrap();
    topic
}

/// The latest append time among the last records of each partition of `topic`.
fn last_append_ms(servers: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique("bk-tail"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut live = 0;
    for p in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap();
        if high > low {
            // Transaction markers may end a partition: read the last few offsets.
            tpl.add_partition_offset(topic, p, Offset::Offset((high - 20).max(low))).unwrap();
            live += 1;
        }
    }
    consumer.assign(&tpl).unwrap();
    let (mut last, mut ended) = (None, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while ended < live && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => last = last.max(m.timestamp().to_millis()),
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            _ => {}
        }
    }
    last
}

/// The end offsets of `topic`, summed.
fn end_offsets(servers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", servers).create().unwrap();
    (0..PARTITIONS).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).unwrap().1).sum()
}

/// `(CPU seconds, peak RSS in MB)` of a process, from /proc.
fn process_stats(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0) + fields.get(12).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    // USER_HZ is 100 on Linux.
    (ticks / 100.0, hwm_kb / 1024.0)
}

/// Runs `topology` by this project and by Kafka Streams, one after the other.
const ALOS: &str = "at_least_once";
const EOS: &str = "exactly_once_v2";

fn side_by_side(servers: &str, topology: &str, input: &Input, guarantee: &str) -> Vec<Row> {
    let mut measured: Vec<Vec<Row>> = IMPLEMENTATIONS.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs() {
        for (by, rows) in IMPLEMENTATIONS.iter().zip(&mut measured) {
            if *by != "ours" && std::env::var_os("STREAMS_BENCH_OURS_ONLY").is_some() {
                continue;
            }
            rows.push(run_process(servers, topology, by, input, guarantee, &command_for(topology, by)));
        }
    }
    measured.into_iter().filter(|r| !r.is_empty()).map(median_row).collect()
}

const IMPLEMENTATIONS: [&str; 2] = ["ours", "Kafka Streams"];

/// The command that runs `topology` by `implementation`, given the application's arguments.
fn command_for(topology: &str, implementation: &str) -> impl Fn(&[String]) -> Command {
    let ours = implementation == "ours";
    let topology = topology.to_string();
    move |args: &[String]| {
        let mut command = if ours {
            let mut c = Command::new(std::env::current_exe().unwrap());
            c.env(APP_ENV, &topology);
            c
        } else {
            let mut c = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/run.sh"));
            c.arg("bench").arg(&topology);
            c
        };
        command.args(args);
        command
    }
}

/// End-to-end latency at a fixed offered load.
struct Latency {
    topology: &'static str,
    implementation: &'static str,
    guarantee: &'static str,
    /// Milliseconds from an input record's creation to its output being readable
    /// (`read_committed`), sorted.
    millis: Vec<i64>,
}

impl Latency {
    fn percentile(&self, p: f64) -> i64 {
        self.millis.get(((self.millis.len() as f64 * p) as usize).min(self.millis.len().saturating_sub(1))).copied().unwrap_or(-1)
    }
}

/// Input records per second offered in latency runs, for this many seconds.
const LATENCY_RATE: u64 = 5_000;
const LATENCY_SECS: u64 = 10;

/// Runs `topology` on empty topics, offers [`LATENCY_RATE`] records/s for [`LATENCY_SECS`] and
/// measures, for each output record, the time from the creation of the input record whose
/// timestamp it carries to a `read_committed` consumer receiving it.
fn latency_run(servers: &str, topology: &'static str, implementation: &'static str, guarantee: &'static str) -> Latency {
    let app = unique(&format!("bk-lat-{topology}-{}", if implementation == "ours" { "rs" } else { "ks" }));
    let two = matches!(topology, "stream-join" | "table-join");
    let inputs: Vec<String> = (0..if two { 2 } else { 1 }).map(|i| format!("{app}-in{i}")).collect();
    let output = format!("{app}-out");
    for topic in inputs.iter().chain([&output]) {
        test_utils::ensure_topic(servers, topic, PARTITIONS).unwrap();
    }
    let settings = settings_of(implementation, true);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let running = App::start(&command_for(topology, implementation), servers, &app, guarantee, &output, &inputs, &settings);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", unique("bk-lat"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .unwrap();
    // Assigned, not subscribed: no group join delays the first reads.
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&output, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The first two seconds warm both sides up (fetch sessions, the first transaction).
    let measured_from = now_ms() + 2_000;
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut millis = Vec::new();
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                    if let Some(ts) = m.timestamp().to_millis().filter(|ts| *ts >= measured_from) {
                        millis.push(now_ms() - ts);
                    }
                }
            }
            millis
        })
    };
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", servers).set("linger.ms", "1").create().unwrap();
    let corpus = streams::topologies::random_lines(1_000, 500, 3);
    let started = Instant::now();
    for i in 0..LATENCY_RATE * LATENCY_SECS {
        let due = started + Duration::from_secs_f64(i as f64 / LATENCY_RATE as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (topic, key, value) = match topology {
            "stream-join" => (&inputs[(i % 2) as usize], Some(format!("order-{}", i / 2)), format!("value-{i}")),
            "table-join" => (&inputs[(i % 2) as usize], Some(format!("row-{}", (i / 2) % 1_000)), format!("value-{i}")),
            _ => (&inputs[0], None, corpus[i as usize % corpus.len()].clone()),
        };
        // No timestamp: the producer stamps each record when it is sent (CreateTime).
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(value.as_bytes());
        if let Some(k) = &key {
            record = record.key(k.as_bytes());
        }
        while let Err((_, back)) = producer.send(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    // The last commits (100 ms apart) and the caches behind them.
    std::thread::sleep(Duration::from_secs(3));
    done.store(true, std::sync::atomic::Ordering::Release);
    let mut millis = reader.join().unwrap();
    running.stop();
    millis.sort_unstable();
    let latency = Latency { topology, implementation, guarantee, millis };
    eprintln!(
        "bench-kafka: latency of {topology} by {implementation} ({guarantee}): p50 {} ms, p99 {} ms over {} outputs",
        latency.percentile(0.5),
        latency.percentile(0.99),
        latency.millis.len()
    );
    latency
}

/// An application process (ours or Kafka Streams'), running.
struct App {
    child: Child,
    _state_dir: tempfile::TempDir,
}

impl App {
    /// Starts it and waits until it reports RUNNING.
    #[allow(clippy::too_many_arguments)]
    fn start(
        command: &dyn Fn(&[String]) -> Command,
        servers: &str,
        app: &str,
        guarantee: &str,
        output: &str,
        inputs: &[String],
        settings: &[(&str, &str)],
    ) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = vec![servers.into(), app.into(), dir.path().to_string_lossy().into(), guarantee.into(), output.into()];
        args.extend(inputs.iter().cloned());
        args.extend(settings.iter().map(|(k, v)| format!("{k}={v}")));
        let mut child = command(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start the application");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim() != "RUNNING" {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "{app} exited before running");
        }
        App { child, _state_dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin (the application closes), killing it after 90 s.
    fn stop(mut self) {
        drop(self.child.stdin.take());
        let stopped = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if stopped.elapsed() > Duration::from_secs(90) {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The settings of a run: [`SETTINGS`] (with 100 ms commits for latency runs), and for our side
/// any experiments in `STREAMS_BENCH_OURS_EXTRA` (`key=value,...`).
fn settings_of(implementation: &str, latency: bool) -> Vec<(String, String)> {
    let mut settings: Vec<(String, String)> = SETTINGS
        .iter()
        .map(|&(k, v)| (k.to_string(), if latency && k == "commit.interval.ms" { "100" } else { v }.to_string()))
        .collect();
    if implementation == "ours" {
        for setting in std::env::var("STREAMS_BENCH_OURS_EXTRA").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
            let (k, v) = setting.split_once('=').expect("key=value");
            settings.push((k.into(), v.into()));
        }
    }
    settings
}

/// Starts one implementation on `input` and measures it until it has processed everything.
fn run_process(
    servers: &str,
    topology: &str,
    implementation: &'static str,
    input: &Input,
    guarantee: &str,
    command: &dyn Fn(&[String]) -> Command,
) -> Row {
    let app = unique(&format!("bk-{topology}-{}", if implementation == "ours" { "rs" } else { "ks" }));
    let output = output_topic(servers, &format!("{app}-out"));
    let settings = settings_of(implementation, false);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut child = App::start(command, servers, &app, guarantee, &output, &input.topics, &settings);
    let pid = child.pid();
    let (started_ms, cpu_at_start) = (now_ms(), process_stats(pid).0);
    // A CPU profile of our side: `perf record` on the running process.
    let perf = std::env::var("STREAMS_BENCH_PERF").ok().filter(|_| implementation == "ours").map(|prefix| {
        Command::new("perf")
            .args(["record", "-F", "499", "--call-graph", "dwarf,8192", "-o", &format!("{prefix}-{topology}-{guarantee}.data"), "-p", &pid.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .expect("perf record")
    });
    let topics: Vec<&str> = input.topics.iter().map(String::as_str).collect();
    let deadline = Instant::now() + Duration::from_secs(900);
    while test_utils::group_lag(servers, &app, &topics).unwrap() > 0 {
        assert!(Instant::now() < deadline, "{implementation} {topology} did not finish");
        assert!(child.child.try_wait().unwrap().is_none(), "{implementation} {topology} stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Output after the input commit (a repartition stage, a cache flush): until it stops growing.
    let mut seen = end_offsets(servers, &output);
    loop {
        std::thread::sleep(Duration::from_millis(2_000));
        let now = end_offsets(servers, &output);
        if now == seen {
            break;
        }
        seen = now;
    }
    let (cpu, peak_rss_mb) = process_stats(pid);
    let finished_ms = last_append_ms(servers, &output).expect("output");
    if let Some(mut perf) = perf {
        let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
        let _ = perf.wait();
    }
    child.stop();
    let secs = (finished_ms - started_ms) as f64 / 1000.0;
    let row = Row {
        topology: if guarantee == EOS { format!("{topology} (eos)") } else { topology.into() },
        implementation,
        records: input.records,
        secs,
        mb: input.bytes as f64 / 1e6,
        cpu_secs: Some(cpu - cpu_at_start),
        peak_rss_mb: Some(peak_rss_mb),
    };
    eprintln!("bench-kafka: {} by {implementation}: {:.0} records/s over {secs:.1} s, {seen} output records", row.topology, row.rate());
    row
}

/// The limit of a stateless topology: one consumer over all partitions, one producer with the
/// runtime's settings, each record sent to the same partition of the output, from the first
/// record received to the broker's append time of the last.
fn raw_pipe(servers: &str, input: &Input) -> Row {
    let output = output_topic(servers, "bk-raw-out");
    let mut consumer = ClientConfig::new();
    // The runtime's consumer settings: without `fetch.queue.backoff.ms`, librdkafka pauses a
    // partition's fetches for 1 s whenever its prefetch queue is full.
    consumer
        .set("bootstrap.servers", servers)
        .set("group.id", unique("bk-raw"))
        .set("enable.partition.eof", "true")
        .set("fetch.queue.backoff.ms", "10");
    let mut producer = ClientConfig::new();
    producer.set("bootstrap.servers", servers).set("acks", "all").set("enable.idempotence", "true").set("linger.ms", "10");
    for (config, var) in [(&mut consumer, "STREAMS_BENCH_RAW_CONSUMER"), (&mut producer, "STREAMS_BENCH_RAW_PRODUCER")] {
        for setting in std::env::var(var).unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
            let (k, v) = setting.split_once('=').expect("key=value");
            config.set(k, v);
        }
    }
    let consumer: BaseConsumer = consumer.create().unwrap();
    let producer: ThreadedProducer<DefaultProducerContext> = producer.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&input.topics[0], p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let cpu_at_start = process_stats(std::process::id()).0;
    let (mut ended, mut n, mut started_ms) = (0, 0u64, None);
    while ended < PARTITIONS {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                started_ms.get_or_insert_with(now_ms);
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&output).partition(m.partition());
                if let Some(v) = m.payload() {
                    record = record.payload(v);
                }
                while let Err((_, back)) = producer.send(record) {
                    record = back;
                    producer.poll(Duration::from_millis(1));
                }
                n += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => ended += 1,
            _ => {}
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let cpu = process_stats(std::process::id()).0 - cpu_at_start;
    let finished_ms = last_append_ms(servers, &output).expect("output");
    assert_eq!(n, input.records);
    let secs = (finished_ms - started_ms.expect("records")) as f64 / 1000.0;
    Row { topology: "stateless".into(), implementation: "raw pipe", records: n, secs, mb: input.bytes as f64 / 1e6, cpu_secs: Some(cpu), peak_rss_mb: None }
}

fn report(rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "\nbench-kafka: {cores} cores, {PARTITIONS} partitions per topic, settings {SETTINGS:?}, at_least_once unless marked (eos): exactly_once_v2; ours with the jemalloc feature"
    );
    println!(
        "{:<16} {:<14} {:>10} {:>12} {:>8} {:>13} {:>10} {:>9}",
        "topology", "by", "records", "records/s", "MB/s", "CPU s/M rec", "peak RSS", "secs"
    );
    for r in rows {
        println!(
            "{:<16} {:<14} {:>10} {:>12.0} {:>8.1} {:>13} {:>10} {:>9.1}",
            r.topology,
            r.implementation,
            r.records,
            r.rate(),
            r.mb / r.secs,
            r.cpu_secs.map_or("-".into(), |c| format!("{:.2}", c / (r.records as f64 / 1e6))),
            r.peak_rss_mb.map_or("-".into(), |m| format!("{m:.0} MB")),
            r.secs
        );
    }
    println!("\nratios (ours / Kafka Streams: throughput, throughput per CPU second, peak RSS; ours / raw pipe):");
    let find = |t: &str, by: &str| rows.iter().find(|r| r.topology == t && r.implementation == by);
    for ours in rows.iter().filter(|r| r.implementation == "ours") {
        let mut line = format!("  {:<16}", ours.topology);
        if let Some(ks) = find(&ours.topology, "Kafka Streams") {
            let per_cpu = |r: &Row| r.cpu_secs.map(|c| r.records as f64 / c);
            line += &format!(" {:>5.2}x throughput", ours.rate() / ks.rate());
            if let (Some(a), Some(b)) = (per_cpu(ours), per_cpu(ks)) {
                line += &format!("  {:>5.2}x per CPU second", a / b);
            }
            if let (Some(a), Some(b)) = (ours.peak_rss_mb, ks.peak_rss_mb) {
                line += &format!("  RSS {:.2} of theirs", a / b);
            }
        }
        if let Some(raw) = find(&ours.topology, "raw pipe") {
            line += &format!("  {:.2} of the raw pipe", ours.rate() / raw.rate());
        }
        println!("{line}");
    }
}

/// The application side of a run (this binary, started by `run_process`): the same topologies
/// as Bench.java, with the same arguments.
fn run_app(topology: &str, args: &[String]) {
    let (servers, app, dir, guarantee, output) = (&args[0], &args[1], &args[2], &args[3], &args[4]);
    let inputs: Vec<&String> = args[5..].iter().filter(|a| !a.contains('=')).collect();
    let mut config = StreamsConfig::new()
        .with(StreamsConfig::BOOTSTRAP_SERVERS, servers)
        .with(StreamsConfig::APPLICATION_ID, app)
        .with(StreamsConfig::STATE_DIR, dir)
        .with(StreamsConfig::PROCESSING_GUARANTEE, guarantee);
    for setting in args[5..].iter().filter(|a| a.contains('=')) {
        let (k, v) = setting.split_once('=').unwrap();
        config.set(k, v);
    }
    let strings = || Consumed::<String, String>::with(Serdes::string(), Serdes::string());
    let built: Topology = match topology {
        "stateless" => {
            let b = StreamsBuilder::new();
            b.stream::<Option<String>, String>(inputs[0], Consumed::with(Serdes::string(), Serdes::string()))
                .filter(|_, line| !line.is_empty())
                .map_values(|line| line.to_uppercase())
                .to(output, Produced::with(Serdes::string(), Serdes::string()));
            b.build().unwrap()
        }
        "word-count" => word_count_between(inputs[0], output, Materialized::as_("counts")),
        "windowed-count" => {
            let b = StreamsBuilder::new();
            b.stream(inputs[0], strings())
                .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
                .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(10), Duration::from_secs(1)))
                .count(Materialized::new())
                .suppress(Suppressed::until_window_closes())
                .to_stream()
                .map(|w, count| (format!("{}@{}", w.key, w.window.start), count))
                .to(output, Produced::with(Serdes::string(), Serdes::i64()));
            b.build().unwrap()
        }
        "stream-join" => {
            let b = StreamsBuilder::new();
            b.stream(inputs[0], strings())
                .join(
                    &b.stream(inputs[1], strings()),
                    |l, r| format!("{l}+{r}"),
                    JoinWindows::of_time_difference_and_grace(Duration::from_secs(5), Duration::from_secs(1)),
                    StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string()),
                )
                .to(output, Produced::with(Serdes::string(), Serdes::string()));
            b.build().unwrap()
        }
        "table-join" => {
            let b = StreamsBuilder::new();
            let right = b.table(inputs[1], strings(), Materialized::new());
            b.table(inputs[0], strings(), Materialized::new())
                .join(&right, |l: &String, r: &String| format!("{l}+{r}"))
                .to_stream()
                .to(output, Produced::with(Serdes::string(), Serdes::string()));
            b.build().unwrap()
        }
        other => panic!("unknown topology {other}"),
    };
    let mut streams = KafkaStreams::new(built, config).unwrap();
    let running = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = running.clone();
    streams.set_state_listener(move |new, _| {
        if new == State::Running && !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
            println!("RUNNING");
            let _ = std::io::stdout().flush();
        }
    });
    streams.start().unwrap();
    // Runs until stdin closes.
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    streams.close(Duration::from_secs(60));
    println!("CLOSED");
}

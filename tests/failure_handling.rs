//! Exactly-once, failures and bad input through `KafkaStreams`: poison pills and the
//! dead-letter queue, the production and uncaught-exception handlers, broker faults (embedded
//! mock cluster), one instance per state directory. Instances killed, stalled or rebalanced and
//! brokers killed are in `resilience.rs`.
//!
//! On the embedded broker by default; `STREAMS_BOOTSTRAP_SERVERS=host:port` runs them against
//! a real cluster. Checks a broker here cannot show are skipped with a message saying so.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::truth;
use common::kafka::{unique, Cluster};
use streams::handlers::{DeadLetter, HandlerResponse, ProducedRecord, ProductionExceptionHandler};
use streams::prelude::*;
use streams::{test_utils, KafkaError};
use streams::topologies::{random_lines, word_count_between};
use streams::{KafkaStreams, State, StreamThreadExceptionResponse, Topology};

fn config(application_id: &str, servers: &str, state_dir: &std::path::Path) -> StreamsConfig {
    common::kafka::for_broker(StreamsConfig::new())
        .with(StreamsConfig::APPLICATION_ID, application_id)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, servers)
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "200")
        .with(StreamsConfig::STATE_DIR, state_dir.to_string_lossy())
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

/// Waits until `group` has committed everything in `topics`, failing if a client stopped.
fn wait_for_end(cluster: &Cluster, group: &str, topics: &[&str], clients: &[&KafkaStreams]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let lag = test_utils::group_lag(&cluster.bootstrap_servers(), group, topics).unwrap();
        if lag == 0 {
            return;
        }
        for c in clients {
            assert!(!matches!(c.state(), State::Error | State::PendingError), "stopped with {:?}", c.take_error());
        }
        let processed: Vec<u64> = clients.iter().map(|c| c.metrics().sum("stream-thread-metrics", "process-total") as u64).collect();
        let commits: Vec<u64> = clients.iter().map(|c| c.metrics().sum("stream-thread-metrics", "commit-total") as u64).collect();
        assert!(Instant::now() < deadline, "{lag} records left; processed {processed:?}, commits {commits:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_state(streams: &KafkaStreams, wanted: State) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while streams.state() != wanted {
        assert!(Instant::now() < deadline, "state {:?}, wanted {wanted:?}", streams.state());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// At-least-once: no count below the truth (duplicates may raise some).
fn assert_no_loss(counts: &HashMap<String, i64>, truth: &HashMap<String, i64>) {
    let low: Vec<_> = truth.iter().filter(|(w, c)| counts.get(*w).copied().unwrap_or(0) < **c).collect();
    assert!(low.is_empty(), "no count below the truth, but {} are: {:?}", low.len(), &low[..low.len().min(5)]);
}

/// The last count per word in `topic` (read_committed).
fn final_counts(cluster: &Cluster, topic: &str) -> HashMap<String, i64> {
    common::final_counts(&cluster.bootstrap_servers(), topic)
}

// ---------------------------------------------------------------------------------------------
// Poison pills

/// `amounts` (String -> i64) times ten into `output`.
fn times_ten(input: &str, output: &str) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(input, Consumed::with(Serdes::string(), Serdes::i64()))
        .map_values(|v| v * 10)
        .to(output, Produced::with(Serdes::string(), Serdes::i64()));
    builder.build().unwrap()
}

#[test]
fn a_poison_pill_stops_the_app_at_its_offset_and_continue_resumes_without_loss() {
    init_tracing();
    let cluster = Cluster::new();
    let (input, output, dlq, app) = (unique("pp-in"), unique("pp-out"), unique("pp-dlq"), unique("pp-app"));
    for topic in [&input, &output, &dlq] {
        cluster.create_topic(topic, 1);
    }
    cluster.prepare(&times_ten(&input, &output), &app, 1);
    // 300 records; every 37th is 3 bytes where an i64 needs 8.
    let bad: BTreeSet<i64> = (0..300).filter(|i| i % 37 == 20).collect();
    let records = (0..300i64).map(|i| {
        let value = if bad.contains(&i) { b"bad".to_vec() } else { i.to_be_bytes().to_vec() };
        (Some(format!("k{}", i % 7).into_bytes()), Some(value))
    });
    test_utils::produce(&cluster.bootstrap_servers(), &input, records).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // log-and-fail (the default): the client stops, naming topic, partition and offset.
    let mut streams = KafkaStreams::new(times_ten(&input, &output), config(&app, &cluster.bootstrap_servers(), dir.path())).unwrap();
    streams.start().unwrap();
    wait_for_state(&streams, State::Error);
    let err = streams.take_error().expect("the error that stopped the client").to_string();
    let first_bad = bad.first().unwrap();
    assert!(err.contains(&format!("{input}-0 offset {first_bad}")), "{err}");
    streams.close(Duration::from_secs(30));
    drop(streams);

    // Restarted with log-and-continue and a dead-letter queue: it resumes from the last commit.
    let cfg = config(&app, &cluster.bootstrap_servers(), dir.path())
        .with(StreamsConfig::DESERIALIZATION_EXCEPTION_HANDLER, "log-and-continue")
        .with(StreamsConfig::DEAD_LETTER_QUEUE_TOPIC, &dlq);
    let mut streams = KafkaStreams::new(times_ten(&input, &output), cfg).unwrap();
    streams.start().unwrap();
    wait_for_end(&cluster, &app, &[&input], &[&streams]);
    assert!(streams.close(Duration::from_secs(30)));

    let out = test_utils::read_all(&cluster.bootstrap_servers(), &output, Duration::from_millis(300)).unwrap();
    let values: BTreeSet<i64> = out.iter().map(|r| Serdes::i64().deserialize(&output, r.value.as_deref()).unwrap()).collect();
    let expected: BTreeSet<i64> = (0..300).filter(|i| !bad.contains(i)).map(|i| i * 10).collect();
    assert_eq!(values, expected, "every good record is processed, none lost");

    let dead = test_utils::read_all(&cluster.bootstrap_servers(), &dlq, Duration::from_millis(300)).unwrap();
    let header = |r: &streams::test_utils::ConsumerRecord, name: &str| {
        r.headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.clone()).map(|v| String::from_utf8(v).unwrap())
    };
    let dead_offsets: BTreeSet<i64> = dead.iter().map(|r| header(r, "__streams.errors.offset").unwrap().parse().unwrap()).collect();
    assert_eq!(dead_offsets, bad, "each poison pill goes to the dead-letter queue");
    let first = &dead[0];
    assert_eq!(first.value.as_deref(), Some(&b"bad"[..]), "the record as consumed");
    assert_eq!(header(first, "__streams.errors.topic").as_deref(), Some(input.as_str()));
    assert_eq!(header(first, "__streams.errors.exception").as_deref(), Some("deserialization-exception"));
    assert!(header(first, "__streams.errors.message").unwrap().contains("8 bytes"), "{:?}", header(first, "__streams.errors.message"));
}

#[test]
fn a_missing_dead_letter_topic_is_a_start_error() {
    let cluster = Cluster::new();
    let (input, output, app) = (unique("dlq-in"), unique("dlq-out"), unique("dlq-app"));
    cluster.create_topic(&input, 1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&app, &cluster.bootstrap_servers(), dir.path()).with(StreamsConfig::DEAD_LETTER_QUEUE_TOPIC, "no-such-dlq");
    let mut streams = KafkaStreams::new(times_ten(&input, &output), cfg).unwrap();
    let err = streams.start().unwrap_err().to_string();
    assert!(err.contains("errors.dead.letter.queue.topic.name") && err.contains("no-such-dlq"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Production and uncaught-exception handlers

/// Copies `input` to `output` as bytes.
fn copy(input: &str, output: &str) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<Vec<u8>, Vec<u8>>(input, Consumed::with(Serdes::bytes(), Serdes::bytes()))
        .to(output, Produced::with(Serdes::bytes(), Serdes::bytes()));
    builder.build().unwrap()
}

#[test]
fn the_production_handler_decides_about_records_the_producer_refuses() {
    init_tracing();
    let cluster = Cluster::new();
    let (input, output) = (unique("ph-in"), unique("ph-out"));
    cluster.create_topic(&input, 1);
    cluster.create_topic(&output, 1);
    // Record 5 is larger than the application's producer accepts.
    let records = (0..10).map(|i| (Some(vec![i]), Some(vec![i; if i == 5 { 20_000 } else { 10 }])));
    test_utils::produce(&cluster.bootstrap_servers(), &input, records).unwrap();
    for handler in ["log-and-fail", "log-and-continue"] {
        let app = unique("ph-app");
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&app, &cluster.bootstrap_servers(), dir.path())
            .with("producer.message.max.bytes", "10000")
            .with(StreamsConfig::PRODUCTION_EXCEPTION_HANDLER, handler);
        let mut streams = KafkaStreams::new(copy(&input, &output), cfg).unwrap();
        streams.start().unwrap();
        if handler == "log-and-fail" {
            wait_for_state(&streams, State::Error);
            let err = streams.take_error().unwrap().to_string();
            assert!(err.contains(&output) && err.contains("failed to send"), "{err}");
        } else {
            wait_for_end(&cluster, &app, &[&input], &[&streams]);
            assert_eq!(streams.state(), State::Running);
        }
        streams.close(Duration::from_secs(30));
    }
    let out = test_utils::read_all(&cluster.bootstrap_servers(), &output, Duration::from_millis(300)).unwrap();
    let keys: BTreeSet<u8> = out.iter().map(|r| r.key.as_ref().unwrap()[0]).collect();
    assert_eq!(keys, (0..10).filter(|i| *i != 5).collect(), "continue skips only the refused record");
}

/// Sends records the producer refuses to `oversized`, as their key and size.
struct Oversized {
    topic: String,
    calls: Arc<AtomicUsize>,
}

impl ProductionExceptionHandler for Oversized {
    fn handle(&self, record: &ProducedRecord<'_>, error: &KafkaError) -> HandlerResponse {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if error.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge) {
            return HandlerResponse::fail();
        }
        let size = record.value.map_or(0, <[u8]>::len).to_string().into_bytes();
        HandlerResponse::resume_with(vec![DeadLetter {
            topic: self.topic.clone(),
            key: record.key.map(<[u8]>::to_vec),
            value: Some(size),
            timestamp: 0,
            headers: vec![("refused-by".into(), Some(record.topic.as_bytes().to_vec()))],
        }])
    }
}

#[test]
fn a_user_production_handler_writes_refused_records_where_it_chooses() {
    init_tracing();
    let cluster = Cluster::new();
    let (input, output, oversized, app) = (unique("uph-in"), unique("uph-out"), unique("uph-big"), unique("uph-app"));
    for topic in [&input, &output, &oversized] {
        cluster.create_topic(topic, 1);
    }
    let records = (0..10).map(|i| (Some(vec![i]), Some(vec![i; if i % 4 == 1 { 20_000 } else { 10 }])));
    test_utils::produce(&cluster.bootstrap_servers(), &input, records).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut cfg = config(&app, &cluster.bootstrap_servers(), dir.path()).with("producer.message.max.bytes", "10000");
    cfg.set_production_exception_handler(Oversized { topic: oversized.clone(), calls: calls.clone() });
    let mut streams = KafkaStreams::new(copy(&input, &output), cfg).unwrap();
    streams.start().unwrap();
    wait_for_end(&cluster, &app, &[&input], &[&streams]);
    assert_eq!(streams.state(), State::Running);
    streams.close(Duration::from_secs(30));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let out = test_utils::read_all(&cluster.bootstrap_servers(), &output, Duration::from_millis(300)).unwrap();
    let keys: BTreeSet<u8> = out.iter().map(|r| r.key.as_ref().unwrap()[0]).collect();
    assert_eq!(keys, [0, 2, 3, 4, 6, 7, 8].into_iter().collect());
    let big = test_utils::read_all(&cluster.bootstrap_servers(), &oversized, Duration::from_millis(300)).unwrap();
    let got: Vec<(u8, String)> =
        big.iter().map(|r| (r.key.as_ref().unwrap()[0], String::from_utf8(r.value.clone().unwrap()).unwrap())).collect();
    assert_eq!(got, vec![(1, "20000".into()), (5, "20000".into()), (9, "20000".into())]);
    assert!(big.iter().all(|r| r.headers.iter().any(|(k, v)| k == "refused-by" && v.as_deref() == Some(output.as_bytes()))));
}

/// Fails the first time it sees the value 13, then works.
struct FailsOnce(Arc<AtomicBool>);

impl Processor<String, i64, String, i64> for FailsOnce {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, record: Record<String, i64>) -> streams::Result<()> {
        if record.value == 13 && !self.0.swap(true, Ordering::SeqCst) {
            return Err(StreamsError::user("transient failure"));
        }
        ctx.forward(record)
    }
}

#[test]
fn the_uncaught_exception_handler_can_replace_a_failed_thread() {
    init_tracing();
    let cluster = Cluster::new();
    let (input, output, app) = (unique("ue-in"), unique("ue-out"), unique("ue-app"));
    cluster.create_topic(&input, 2);
    cluster.create_topic(&output, 2);
    let failed = Arc::new(AtomicBool::new(false));
    let mut topology = Topology::new();
    topology.add_source::<String, i64>("src", &[input.as_str()], Serdes::string(), Serdes::i64()).unwrap();
    let flag = failed.clone();
    topology.add_processor("fails-once", move || FailsOnce(flag.clone()), &["src"]).unwrap();
    topology.add_sink::<String, i64>("sink", &output, Serdes::string(), Serdes::i64(), &["fails-once"]).unwrap();
    let records = (0..100i64).map(|i| (Some(format!("k{i}").into_bytes()), Some(i.to_be_bytes().to_vec())));
    test_utils::produce(&cluster.bootstrap_servers(), &input, records).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology, config(&app, &cluster.bootstrap_servers(), dir.path())).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    streams.set_uncaught_exception_handler(move |error| {
        assert!(error.to_string().contains("transient failure"), "{error}");
        seen.fetch_add(1, Ordering::SeqCst);
        StreamThreadExceptionResponse::ReplaceThread
    });
    streams.start().unwrap();
    wait_for_end(&cluster, &app, &[&input], &[&streams]);
    assert!(failed.load(Ordering::SeqCst) && calls.load(Ordering::SeqCst) == 1);
    assert_eq!(streams.state(), State::Running, "the replaced thread runs on");
    assert!(streams.close(Duration::from_secs(30)));
    let out = test_utils::read_all(&cluster.bootstrap_servers(), &output, Duration::from_millis(300)).unwrap();
    let values: BTreeSet<i64> = out.iter().map(|r| Serdes::i64().deserialize(&output, r.value.as_deref()).unwrap()).collect();
    assert_eq!(values, (0..100).collect(), "the failed record and all after it are processed by the new thread");
}

// ---------------------------------------------------------------------------------------------
// State directory

#[test]
fn two_instances_on_one_state_directory_are_refused() {
    let cluster = Cluster::new();
    let (input, output, app) = (unique("sd-in"), unique("sd-out"), unique("sd-app"));
    cluster.create_topic(&input, 1);
    cluster.create_topic(&output, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut first = KafkaStreams::new(copy(&input, &output), config(&app, &cluster.bootstrap_servers(), dir.path())).unwrap();
    first.start().unwrap();
    let mut second = KafkaStreams::new(copy(&input, &output), config(&app, &cluster.bootstrap_servers(), dir.path())).unwrap();
    let err = second.start().unwrap_err().to_string();
    assert!(err.contains("another instance") && err.contains("state.dir"), "{err}");
    assert!(first.close(Duration::from_secs(30)));
    second.start().expect("the directory is free once the first instance closed");
    assert!(second.close(Duration::from_secs(30)));
}

#[test]
fn an_unusable_state_directory_is_a_clear_error() {
    let cluster = Cluster::new();
    let (input, output, app) = (unique("bd-in"), unique("bd-out"), unique("bd-app"));
    cluster.create_topic(&input, 1);
    cluster.create_topic(&output, 1);
    // A regular file where the state directory should be.
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut streams = KafkaStreams::new(copy(&input, &output), config(&app, &cluster.bootstrap_servers(), file.path())).unwrap();
    let err = streams.start().unwrap_err().to_string();
    assert!(err.contains(&file.path().display().to_string()), "the error names the path: {err}");
    assert_eq!(streams.state(), State::Created);
}

/// A small tmpfs, unmounted on drop; `None` where this process may not mount.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_stops_the_client_with_an_error_and_loses_nothing() {
    init_tracing();
    let Some(disk) = SmallDisk::mount("256k") else {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    };
    let cluster = Cluster::new();
    let (input, output, app) = (unique("full-in"), unique("full-out"), unique("full-app"));
    cluster.create_topic(&input, 4);
    cluster.create_topic(&output, 4);
    let topology = || word_count_between(&input, &output, Materialized::as_("counts"));
    cluster.prepare(&topology(), &app, 4);
    // 40,000 distinct, hardly compressible words: more store than the disk holds.
    let word = |i: u64| format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let lines: Vec<String> = (0..4_000u64).map(|i| (0..10).map(|j| word(i * 10 + j)).collect::<Vec<_>>().join(" ")).collect();
    test_utils::produce(&cluster.bootstrap_servers(), &input, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())))).unwrap();

    let mut streams = KafkaStreams::new(topology(), config(&app, &cluster.bootstrap_servers(), disk.0.path())).unwrap();
    streams.start().unwrap();
    wait_for_state(&streams, State::Error);
    let err = streams.take_error().unwrap().to_string();
    assert!(err.contains("No space left on device") || err.contains("IO error"), "{err}");
    streams.close(Duration::from_secs(30));
    drop(streams);
    drop(disk);

    // Another instance (a disk with room) takes over from the last commit.
    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology(), config(&app, &cluster.bootstrap_servers(), dir.path())).unwrap();
    streams.start().unwrap();
    let repartition = format!("{app}-counts-repartition");
    wait_for_end(&cluster, &app, &[&input, &repartition], &[&streams]);
    assert!(streams.close(Duration::from_secs(30)));
    assert_no_loss(&final_counts(&cluster, &output), &truth(&lines));
}

// ---------------------------------------------------------------------------------------------
// Exactly-once

struct WordCount {
    cluster: Cluster,
    input: String,
    output: String,
    app: String,
}

impl WordCount {
    fn new(partitions: i32) -> Self {
        init_tracing();
        let cluster = Cluster::new();
        let wc = WordCount { cluster, input: unique("eos-in"), output: unique("eos-out"), app: unique("eos-app") };
        wc.cluster.create_topic(&wc.input, partitions);
        wc.cluster.create_topic(&wc.output, partitions);
        wc.cluster.prepare(&wc.topology(), &wc.app, partitions);
        wc
    }

    fn topology(&self) -> Topology {
        word_count_between(&self.input, &self.output, Materialized::as_("counts"))
    }

    fn config(&self, dir: &std::path::Path, guarantee: &str) -> StreamsConfig {
        config(&self.app, &self.cluster.bootstrap_servers(), dir).with(StreamsConfig::PROCESSING_GUARANTEE, guarantee)
    }

    fn produce(&self, lines: &[String]) {
        let records = lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())));
        test_utils::produce(&self.cluster.bootstrap_servers(), &self.input, records).unwrap();
    }

    fn topics(&self) -> [String; 2] {
        [self.input.clone(), format!("{}-counts-repartition", self.app)]
    }

    fn wait_for_end(&self, clients: &[&KafkaStreams]) {
        let topics = self.topics();
        wait_for_end(&self.cluster, &self.app, &[&topics[0], &topics[1]], clients);
    }

    /// Waits until `streams` processed `records` input records.
    fn wait_for_processed(&self, streams: &KafkaStreams, records: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while (streams.metrics().sum("stream-thread-metrics", "process-total") as u64) < records {
            assert!(!matches!(streams.state(), State::Error | State::PendingError), "stopped with {:?}", streams.take_error());
            assert!(Instant::now() < deadline, "processed {} of {records}", streams.metrics().sum("stream-thread-metrics", "process-total"));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Input records of a word count over `lines`: the lines, then one repartitioned record per word.
fn word_count_records(lines: &[String]) -> u64 {
    lines.len() as u64 + truth(lines).values().sum::<i64>() as u64
}

#[test]
fn exactly_once_counts_are_exact_and_a_restart_resumes_from_the_checkpoint() {
    let wc = WordCount::new(2);
    let lines = random_lines(3_000, 200, 5);
    wc.produce(&lines[..1_500]);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(wc.topology(), wc.config(dir.path(), "exactly_once_v2")).unwrap();
    streams.start().unwrap();
    // (Progress by the client's own count: some brokers do not keep transactional offsets.)
    wc.wait_for_processed(&streams, word_count_records(&lines[..1_500]));
    // (Thread metrics go with their threads, as in Kafka Streams: read them before the close.)
    assert!(streams.metrics().sum("stream-thread-metrics", "commit-total") as u64 > 1, "commits every commit.interval.ms (100 ms)");
    assert!(streams.close(Duration::from_secs(30)));
    let app_dir = dir.path().join(&wc.app);
    assert!(app_dir.join("kafka-streams-process-metadata").exists(), "the process id that names the transactional producers");
    assert!(app_dir.join("1_0/.checkpoint").exists() && app_dir.join("1_1/.checkpoint").exists(), "a clean close checkpoints");
    assert_eq!(final_counts(&wc.cluster, &wc.output), truth(&lines[..1_500]));
    if !wc.cluster.runs_exactly_once() {
        eprintln!("skipped: the restart half (it resumes from offsets committed in transactions)");
        return;
    }

    // The checkpoint holds the committed changelog offsets: the restart restores nothing.
    wc.produce(&lines[1_500..]);
    let mut streams = KafkaStreams::new(wc.topology(), wc.config(dir.path(), "exactly_once_v2")).unwrap();
    let restored = Arc::new(AtomicUsize::new(0));
    let sink = restored.clone();
    streams.set_restore_listener(move |e| {
        assert!(e.start_offset.is_some(), "restored from the checkpoint, not from scratch: {e:?}");
        sink.fetch_add(e.restored as usize, Ordering::SeqCst);
    });
    streams.start().unwrap();
    wc.wait_for_end(&[&streams]);
    assert!(streams.close(Duration::from_secs(30)));
    assert_eq!(restored.load(Ordering::SeqCst), 0);
    assert_eq!(final_counts(&wc.cluster, &wc.output), truth(&lines));
}

#[test]
fn an_aborted_or_fenced_transaction_reinitializes_the_tasks_instead_of_stopping() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let wc = WordCount::new(2);
    let Cluster::Embedded(embedded) = &wc.cluster else {
        eprintln!("skipped: fault injection needs the embedded mock cluster");
        return;
    };
    let lines = random_lines(2_000, 100, 41);
    wc.produce(&lines[..1_000]);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(wc.topology(), wc.config(dir.path(), "exactly_once_v2")).unwrap();
    let restores = Arc::new(AtomicUsize::new(0));
    let sink = restores.clone();
    streams.set_restore_listener(move |_| {
        sink.fetch_add(1, Ordering::SeqCst);
    });
    streams.start().unwrap();
    wc.wait_for_processed(&streams, word_count_records(&lines[..1_000]));
    let initial = restores.load(Ordering::SeqCst);
    // An abortable error, then a fenced producer, each on a transaction's offset commit.
    for error in [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
    ] {
        let before = restores.load(Ordering::SeqCst);
        embedded.mock().request_errors(RDKafkaApiKey::TxnOffsetCommit, &[error]);
        wc.produce(&lines[1_000..1_010]);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Re-initialized tasks restore their stores again.
        while restores.load(Ordering::SeqCst) < before + initial {
            assert!(!matches!(streams.state(), State::Error | State::PendingError), "stopped with {:?}", streams.take_error());
            assert!(Instant::now() < deadline, "the tasks were not re-initialized after {error:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    wc.produce(&lines[1_010..]);
    // Re-initialized tasks process records again, so the count alone does not say it is done:
    // wait until it stops growing too.
    wc.wait_for_processed(&streams, word_count_records(&lines));
    let mut last = 0;
    while streams.metrics().sum("stream-thread-metrics", "process-total") as u64 != last {
        last = streams.metrics().sum("stream-thread-metrics", "process-total") as u64;
        std::thread::sleep(Duration::from_secs(2));
    }
    assert_eq!(streams.wait_until_running(Duration::from_secs(30)), State::Running);
    assert!(streams.close(Duration::from_secs(30)));
    assert!(streams.take_error().is_none());
    // The mock cluster shows aborted records and forgets transactional offsets, so the counts
    // here are only bounded below; against Apache Kafka the crash tests check them exactly.
    let counts = final_counts(&wc.cluster, &wc.output);
    assert_no_loss(&counts, &truth(&lines));
}

// ---------------------------------------------------------------------------------------------
// Broker faults (the embedded mock cluster injects them)

#[test]
fn the_app_recovers_from_request_errors_and_a_broker_outage() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let wc = WordCount::new(2);
    let Cluster::Embedded(embedded) = &wc.cluster else {
        eprintln!("skipped: fault injection needs the embedded mock cluster");
        return;
    };
    let mock = embedded.mock();
    let lines = random_lines(4_000, 200, 23);
    wc.produce(&lines[..2_000]);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(wc.topology(), wc.config(dir.path(), "at_least_once")).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running);
    // Failed produce, fetch and commit requests (retried by the clients and by the commit loop)...
    use RDKafkaRespErr::*;
    mock.request_errors(RDKafkaApiKey::Produce, &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT]);
    mock.request_errors(RDKafkaApiKey::Fetch, &[RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION; 3]);
    mock.request_errors(RDKafkaApiKey::OffsetCommit, &[RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT]);
    wc.produce(&lines[2_000..3_000]);
    // ...then the broker goes away for a while and comes back.
    mock.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    mock.broker_up(1).unwrap();
    wc.produce(&lines[3_000..]);
    wc.wait_for_end(&[&streams]);
    assert!(streams.close(Duration::from_secs(30)));
    let counts = final_counts(&wc.cluster, &wc.output);
    let truth = truth(&lines);
    assert_no_loss(&counts, &truth);
    let high = truth.iter().filter(|(w, c)| counts[*w] > **c).count();
    eprintln!("{high} of {} counts above the truth (at-least-once reprocessing)", truth.len());
}

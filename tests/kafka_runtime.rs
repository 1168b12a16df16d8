//! Word count end to end through a broker: exact counts, checkpoints, and restoration from
//! changelogs. Runs against `STREAMS_BOOTSTRAP_SERVERS` if set, else an embedded broker.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{files_named, truth};
use common::kafka::{unique, Cluster};
use streams::prelude::*;
use streams::test_utils;
use streams::topologies::{word_count_between, words};
use streams::{KafkaStreams, RestoreEvent, State};

const VOCABULARY: u64 = 500;

fn corpus(lines: usize, seed: u64) -> Vec<String> {
    streams::topologies::random_lines(lines, VOCABULARY, seed)
}

fn config(application_id: &str, servers: &str, state_dir: &std::path::Path, threads: usize) -> StreamsConfig {
    common::kafka::for_broker(StreamsConfig::new())
        .with(StreamsConfig::APPLICATION_ID, application_id)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, servers)
        .with(StreamsConfig::NUM_STREAM_THREADS, threads.to_string())
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "200")
        .with(StreamsConfig::STATE_DIR, state_dir.to_string_lossy())
}

struct App {
    input: String,
    output: String,
    application_id: String,
    cluster: Cluster,
    caching: bool,
}

impl App {
    fn new(partitions: i32, caching: bool) -> Self {
        let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
        let cluster = Cluster::new();
        let app = App {
            input: unique("wc-in"),
            output: unique("wc-out"),
            application_id: unique("wc-app"),
            cluster,
            caching,
        };
        app.cluster.create_topic(&app.input, partitions);
        app.cluster.create_topic(&app.output, partitions);
        app.cluster.prepare(&app.topology(), &app.application_id, partitions);
        app
    }

    fn topology(&self) -> streams::Topology {
        let materialized = Materialized::as_("counts");
        let materialized = if self.caching { materialized } else { materialized.with_caching_disabled() };
        word_count_between(&self.input, &self.output, materialized)
    }

    fn produce(&self, lines: &[String]) {
        let records = lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())));
        test_utils::produce(&self.cluster.bootstrap_servers(), &self.input, records).unwrap();
    }

    /// Starts an instance and waits until it runs; returns it and what it restores.
    fn start(&self, state_dir: &std::path::Path, threads: usize) -> (KafkaStreams, Arc<Mutex<Vec<RestoreEvent>>>) {
        let config = config(&self.application_id, &self.cluster.bootstrap_servers(), state_dir, threads);
        let mut streams = KafkaStreams::new(self.topology(), config).unwrap();
        let restored = Arc::new(Mutex::new(Vec::new()));
        let sink = restored.clone();
        streams.set_restore_listener(move |e| sink.lock().unwrap().push(e.clone()));
        streams.start().unwrap();
        let state = streams.wait_until_running(Duration::from_secs(60));
        assert_eq!(state, State::Running, "error: {:?}", streams.take_error());
        (streams, restored)
    }

    /// Waits until the group has committed everything in the input and repartition topics.
    fn wait_for_end(&self, instances: &[&KafkaStreams]) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let repartition = format!("{}-counts-repartition", self.application_id);
        loop {
            let lag = test_utils::group_lag(&self.cluster.bootstrap_servers(), &self.application_id, &[&self.input, &repartition])
                .unwrap();
            if lag == 0 {
                break;
            }
            for streams in instances {
                assert!(
                    !matches!(streams.state(), State::Error | State::PendingError),
                    "stopped with {:?}",
                    streams.take_error()
                );
            }
            assert!(Instant::now() < deadline, "{lag} records left");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts an instance, waits until it has committed everything, closes it cleanly;
    /// returns what it restored.
    fn run_to_end(&self, state_dir: &std::path::Path, threads: usize) -> Vec<RestoreEvent> {
        let (mut streams, restored) = self.start(state_dir, threads);
        self.wait_for_end(&[&streams]);
        assert!(streams.close(Duration::from_secs(60)));
        assert_eq!(streams.state(), State::NotRunning);
        let events = restored.lock().unwrap().clone();
        events
    }

    fn final_counts(&self) -> HashMap<String, i64> {
        common::final_counts(&self.cluster.bootstrap_servers(), &self.output)
    }
}


#[test]
fn word_count_end_to_end_matches_independent_counts() {
    let app = App::new(3, true);
    let lines = corpus(12_000, 7); // 120,000 words
    app.produce(&lines);
    let dir = tempfile::tempdir().unwrap();
    let restored = app.run_to_end(dir.path(), app.cluster.threads());
    assert_eq!(restored.iter().map(|e| e.restored).sum::<u64>(), 0, "nothing to restore on a fresh changelog");
    assert_counts(app.final_counts(), truth(&lines));
}

fn assert_counts(actual: HashMap<String, i64>, truth: HashMap<String, i64>) {
    let wrong: Vec<_> = truth.iter().filter(|(w, c)| actual.get(*w) != Some(c)).map(|(w, c)| (w, c, actual.get(w))).collect();
    assert!(wrong.is_empty() && actual.len() == truth.len(), "{} of {} words wrong (word, truth, actual): {:?}", wrong.len(), truth.len(), &wrong[..wrong.len().min(10)]);
}

#[test]
fn restart_restores_only_the_changelog_tail_and_a_wiped_state_dir_restores_all() {
    let app = App::new(2, false);
    let lines = corpus(2_000, 11);
    let (first, second) = lines.split_at(1_000);
    let words_in = |part: &[String]| part.iter().map(|l| words(l.clone()).len() as u64).sum::<u64>();
    let threads = app.cluster.threads();
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();

    // A processes the first half and closes cleanly: its checkpoints hold the changelog ends.
    app.produce(first);
    app.run_to_end(dir_a.path(), threads);
    let checkpoints = std::fs::read_dir(dir_a.path().join(&app.application_id)).unwrap().count();
    assert!(checkpoints >= 2, "task directories are kept");

    // B, with an empty state dir, restores every changelog record, then processes the second half.
    app.produce(second);
    let restored_b = app.run_to_end(dir_b.path(), threads);
    assert_eq!(restored_b.iter().map(|e| e.restored).sum::<u64>(), words_in(first), "full restore: one record per counted word");
    assert!(restored_b.iter().all(|e| e.start_offset.is_none()));

    // A again, with its state dir intact: only the tail B wrote is restored.
    let restored_a = app.run_to_end(dir_a.path(), threads);
    assert_eq!(restored_a.iter().map(|e| e.restored).sum::<u64>(), words_in(second), "only the changelog tail");
    assert!(restored_a.iter().any(|e| e.start_offset.is_some()));

    assert_counts(app.final_counts(), truth(&lines));
}

#[test]
fn tasks_moved_by_a_rebalance_restore_their_stores_and_counts_stay_exact() {
    let app = App::new(4, false);
    if !app.cluster.runs_several_members() {
        return;
    }
    let lines = corpus(4_000, 23);
    let (first, second) = lines.split_at(2_000);
    let (dir_1, dir_2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    app.produce(first);
    let (mut one, restored_1) = app.start(dir_1.path(), app.cluster.threads());
    app.wait_for_end(&[&one]);
    assert_eq!(restored_1.lock().unwrap().iter().map(|e| e.restored).sum::<u64>(), 0);

    // A second instance joins: half the tasks move to it and restore from their changelogs.
    app.produce(second);
    let (mut two, restored_2) = app.start(dir_2.path(), app.cluster.threads());
    app.wait_for_end(&[&one, &two]);
    let moved: Vec<RestoreEvent> = restored_2.lock().unwrap().clone();
    assert!(!moved.is_empty(), "the new instance took over tasks");
    assert!(moved.iter().all(|e| e.start_offset.is_none()), "its state dir was empty");
    assert!(moved.iter().map(|e| e.restored).sum::<u64>() > 0, "moved tasks restored the first half's counts");

    assert!(one.close(Duration::from_secs(60)) && two.close(Duration::from_secs(60)));
    assert_counts(app.final_counts(), truth(&lines));
}

#[test]
fn missing_source_topics_and_bad_config_are_clear_errors() {
    let cluster = Cluster::new();
    let dir = tempfile::tempdir().unwrap();
    let missing = unique("missing");
    let topology = word_count_between(&missing, &unique("out"), Materialized::as_("counts"));
    let mut streams =
        KafkaStreams::new(topology.clone(), config(&unique("app"), &cluster.bootstrap_servers(), dir.path(), 1)).unwrap();
    let err = streams.start().unwrap_err().to_string();
    assert!(err.contains("missing source topic") && err.contains(&missing), "{err}");
    assert_eq!(streams.state(), State::Created);

    let no_servers = StreamsConfig::new().with(StreamsConfig::APPLICATION_ID, "a");
    assert!(KafkaStreams::new(topology.clone(), no_servers).unwrap_err().to_string().contains("bootstrap.servers"));
    let bad = config("a", "localhost:1", dir.path(), 1).with(StreamsConfig::COMMIT_INTERVAL_MS, "often");
    assert!(KafkaStreams::new(topology.clone(), bad).unwrap_err().to_string().contains("commit.interval.ms"));
    let eos_v1 = config("a", "localhost:1", dir.path(), 1).with(StreamsConfig::PROCESSING_GUARANTEE, "exactly_once");
    let err = KafkaStreams::new(topology, eos_v1).unwrap_err().to_string();
    assert!(err.contains("processing.guarantee") && err.contains("exactly_once_v2"), "no silent downgrade: {err}");
}

#[test]
fn cleanup_removes_the_application_state_dir() {
    let app = App::new(1, true);
    app.produce(&corpus(10, 3));
    let dir = tempfile::tempdir().unwrap();
    app.run_to_end(dir.path(), 1);
    let app_dir = dir.path().join(&app.application_id);
    assert!(app_dir.join("1_0").join("rocksdb").join("counts").exists());
    assert!(app_dir.join("1_0").join(".checkpoint").exists());
    let streams =
        KafkaStreams::new(app.topology(), config(&app.application_id, &app.cluster.bootstrap_servers(), dir.path(), 1)).unwrap();
    streams.cleanup().unwrap();
    assert!(!app_dir.exists());
}

#[test]
fn a_corrupt_store_is_wiped_and_restored_from_its_changelog() {
    let app = App::new(1, false);
    let lines = corpus(600, 13);
    let (first, second) = lines.split_at(300);
    let words_in_first = first.iter().map(|l| words(l.clone()).len() as u64).sum::<u64>();
    let dir = tempfile::tempdir().unwrap();
    app.produce(first);
    app.run_to_end(dir.path(), 1);
    // Break the RocksDB store: its CURRENT file no longer names a manifest.
    let current = files_named(&dir.path().join(&app.application_id), "CURRENT");
    assert!(!current.is_empty(), "the counts store is on disk");
    for file in &current {
        std::fs::write(file, b"garbage").unwrap();
    }
    app.produce(second);
    let restored = app.run_to_end(dir.path(), 1);
    assert_eq!(
        restored.iter().map(|e| e.restored).sum::<u64>(),
        words_in_first,
        "the wiped store restores its whole changelog, not the checkpointed tail"
    );
    assert_counts(app.final_counts(), truth(&lines));

    // A checkpoint file that is not a checkpoint: the store is wiped too and restored in full.
    let checkpoints = files_named(&dir.path().join(&app.application_id), ".checkpoint");
    assert!(!checkpoints.is_empty());
    for file in &checkpoints {
        std::fs::write(file, [0xff, 0x00, 0x13, 0x37]).unwrap();
    }
    let restored = app.run_to_end(dir.path(), 1);
    let words_in_all = lines.iter().map(|l| words(l.clone()).len() as u64).sum::<u64>();
    assert!(restored.iter().all(|e| e.start_offset.is_none()), "{restored:?}");
    assert_eq!(restored.iter().map(|e| e.restored).sum::<u64>(), words_in_all);
    assert_counts(app.final_counts(), truth(&lines));
}

/// Records the topic and timestamp of every record it processes.
struct ProcessingOrder(Arc<Mutex<Vec<(String, i64)>>>);

impl Processor<String, String> for ProcessingOrder {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, String, String>, record: Record<String, String>) -> streams::Result<()> {
        self.0.lock().unwrap().push((ctx.record_context().topic, record.timestamp));
        Ok(())
    }
}

/// Two co-partitioned inputs read by one task; the right one's records arrive 2 s after the
/// left one's, with timestamps in between. Returns the processing order and the client's
/// enforced-processing count.
fn processing_order_with_idle(max_task_idle_ms: Option<&str>) -> (Vec<(String, i64)>, u64) {
    let cluster = Cluster::new();
    let (left, right, application_id) = (unique("idle-left"), unique("idle-right"), unique("idle-app"));
    cluster.create_topic(&left, 1);
    cluster.create_topic(&right, 1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut topology = streams::Topology::new();
    topology.add_source::<String, String>("left", &[left.as_str()], Serdes::string(), Serdes::string()).unwrap();
    topology.add_source::<String, String>("right", &[right.as_str()], Serdes::string(), Serdes::string()).unwrap();
    let sink = order.clone();
    topology.add_processor("order", move || ProcessingOrder(sink.clone()), &["left", "right"]).unwrap();
    let records = |from: i64| (0..10).map(move |i| (Some(b"k".to_vec()), Some(b"v".to_vec()), Some(from + 2000 * i)));
    test_utils::produce_at(&cluster.bootstrap_servers(), &left, records(1000)).unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let mut config = config(&application_id, &cluster.bootstrap_servers(), state_dir.path(), 1)
        .with(StreamsConfig::METRICS_RECORDING_LEVEL, "DEBUG");
    if let Some(idle) = max_task_idle_ms {
        config.set(StreamsConfig::MAX_TASK_IDLE_MS, idle);
    }
    let mut streams = KafkaStreams::new(topology, config).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running, "{:?}", streams.take_error());
    std::thread::sleep(Duration::from_secs(2));
    test_utils::produce_at(&cluster.bootstrap_servers(), &right, records(2000)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while order.lock().unwrap().len() < 20 {
        assert!(Instant::now() < deadline, "processed {} of 20: {:?}", order.lock().unwrap().len(), streams.take_error());
        std::thread::sleep(Duration::from_millis(50));
    }
    let enforced = streams.metrics().sum("stream-task-metrics", "enforced-processing-total") as u64;
    assert!(streams.close(Duration::from_secs(30)));
    let order = order.lock().unwrap().clone();
    (order.into_iter().map(|(topic, ts)| (if topic == left { "left" } else { "right" }.to_string(), ts)).collect(), enforced)
}

#[test]
fn max_task_idle_ms_waits_for_a_lagging_input_and_processes_in_timestamp_order() {
    let (order, enforced) = processing_order_with_idle(Some("6000"));
    let times: Vec<i64> = order.iter().map(|(_, ts)| *ts).collect();
    assert_eq!(times, (1..=20).map(|i| i * 1000).collect::<Vec<_>>(), "timestamp order across both inputs: {order:?}");
    // The last right record waited out max.task.idle.ms once the left input had nothing more.
    assert!(enforced >= 1, "enforced processing counted: {enforced}");

    // Without waiting, the left input is processed before the right one's records arrive.
    let (order, _) = processing_order_with_idle(None);
    let sides: Vec<&str> = order.iter().map(|(side, _)| side.as_str()).collect();
    assert_eq!(sides, [["left"; 10], ["right"; 10]].concat(), "{order:?}");
}

/// (tag, value) of every record of `topic` once it holds `count`, within 60 s.
fn read_tagged(servers: &str, topic: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = test_utils::read_all(servers, topic, Duration::from_millis(500)).unwrap();
        if records.len() >= count || Instant::now() > deadline {
            let mut values: Vec<String> = records.into_iter().map(|r| String::from_utf8(r.value.unwrap()).unwrap()).collect();
            values.sort();
            return values;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sources_without_committed_offsets_start_where_their_reset_policy_says() {
    use streams::AutoOffsetReset;
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let cluster = Cluster::new();
    let servers = cluster.bootstrap_servers();
    let (recent, latest, all, out, app) = (unique("reset-recent"), unique("reset-latest"), unique("reset-all"), unique("reset-out"), unique("reset-app"));
    for topic in [&recent, &latest, &all, &out] {
        cluster.create_topic(topic, 1);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let records = |values: &[&str], ts: i64| values.iter().map(|v| (None, Some(v.as_bytes().to_vec()), Some(ts))).collect::<Vec<_>>();
    // By time: only records at most 10 minutes old are read. (librdkafka's mock cluster does not
    // look offsets up by time, so that source is left out on the embedded broker.)
    let by_time = cluster.runs_on_a_real_broker("looks offsets up by time");
    if by_time {
        test_utils::produce_at(&servers, &recent, records(&["old0", "old1"], now - 3_600_000)).unwrap();
        test_utils::produce_at(&servers, &recent, records(&["new0", "new1"], now - 60_000)).unwrap();
    }
    test_utils::produce_at(&servers, &latest, records(&["before0", "before1"], now)).unwrap();
    test_utils::produce_at(&servers, &all, records(&["a0", "a1"], now)).unwrap();

    let topology = || {
        let builder = StreamsBuilder::new();
        let consumed = || Consumed::with(Serdes::nullable(Serdes::bytes()), Serdes::string());
        let tagged = |topic: &str, consumed: Consumed<Option<Vec<u8>>, String>| {
            let tag = topic.split('-').nth(1).unwrap().to_string();
            let produced = Produced::with(Serdes::nullable(Serdes::bytes()), Serdes::string());
            builder.stream(topic, consumed).map_values(move |v| format!("{tag}:{v}")).to(&out, produced);
        };
        if by_time {
            tagged(&recent, consumed().with_offset_reset_policy(AutoOffsetReset::ByDuration(Duration::from_secs(600))));
        }
        tagged(&latest, consumed().with_offset_reset_policy(AutoOffsetReset::Latest));
        tagged(&all, consumed());
        builder.build().unwrap()
    };
    cluster.prepare(&topology(), &app, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology(), config(&app, &servers, dir.path(), 1)).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running, "{:?}", streams.take_error());
    let mut expected = vec!["all:a0", "all:a1"];
    if by_time {
        expected.extend(["recent:new0", "recent:new1"]);
    }
    expected.sort();
    assert_eq!(read_tagged(&servers, &out, expected.len()), expected, "the earliest by default, the recent ones by time");
    // The latest source started at the end when it was assigned: it reads only what follows.
    test_utils::produce_at(&servers, &latest, records(&["after0"], now)).unwrap();
    expected.push("latest:after0");
    expected.sort();
    assert_eq!(read_tagged(&servers, &out, expected.len()), expected);
    assert!(streams.close(Duration::from_secs(30)));

    // Restarted, every source resumes from its committed offset, whatever its policy.
    test_utils::produce_at(&servers, &latest, records(&["after1"], now)).unwrap();
    let mut streams = KafkaStreams::new(topology(), config(&app, &servers, dir.path(), 1)).unwrap();
    streams.start().unwrap();
    expected.push("latest:after1");
    expected.sort();
    assert_eq!(read_tagged(&servers, &out, expected.len()), expected);
    assert!(streams.close(Duration::from_secs(30)));
}

#[test]
fn a_source_that_must_not_reset_fails_the_thread_without_a_committed_offset() {
    let cluster = Cluster::new();
    let servers = cluster.bootstrap_servers();
    let (input, out, app) = (unique("noreset-in"), unique("noreset-out"), unique("noreset-app"));
    cluster.create_topic(&input, 1);
    cluster.create_topic(&out, 1);
    test_utils::produce(&servers, &input, [(None, Some(b"x".to_vec()))]).unwrap();
    let builder = StreamsBuilder::new();
    builder
        .stream::<Vec<u8>, Vec<u8>>(&input, Consumed::with(Serdes::bytes(), Serdes::bytes()).with_offset_reset_policy(streams::AutoOffsetReset::Fail))
        .to(&out, Produced::with(Serdes::bytes(), Serdes::bytes()));
    // (The record has a null key: any record read would fail the thread on deserialization.)
    let topology = builder.build().unwrap();
    cluster.prepare(&topology, &app, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology, config(&app, &servers, dir.path(), 1)).unwrap();
    streams.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while streams.state() != State::Error {
        assert!(Instant::now() < deadline, "still {:?}", streams.state());
        std::thread::sleep(Duration::from_millis(100));
    }
    let error = streams.take_error().expect("the thread's error").to_string();
    assert!(error.contains(&format!("no committed offset for input topic {input} (partition 0)")), "{error}");
    assert!(test_utils::read_all(&servers, &out, Duration::from_millis(500)).unwrap().is_empty(), "nothing was processed");
    streams.close(Duration::from_secs(30));
}

#[test]
fn a_pattern_source_reads_every_matching_topic_and_none_matching_is_a_clear_error() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let cluster = Cluster::new();
    let servers = cluster.bootstrap_servers();
    let prefix = unique("regions");
    let (eu, us, other, out, app) =
        (format!("{prefix}-eu"), format!("{prefix}-us"), format!("{prefix}-eu-archive"), unique("regions-out"), unique("regions-app"));
    for topic in [&eu, &us, &other, &out] {
        cluster.create_topic(topic, 2);
    }
    for topic in [&eu, &us, &other] {
        let records = (0..20).map(|i| (Some(format!("k{}", i % 5).into_bytes()), Some(format!("{topic}:{i}").into_bytes())));
        test_utils::produce(&servers, topic, records).unwrap();
    }
    let topology = |pattern: &str| {
        let builder = StreamsBuilder::new();
        builder
            .stream_pattern::<String, String>(pattern, Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .count(Materialized::as_("per-key"))
            .to_stream()
            .to(&out, Produced::with(Serdes::string(), Serdes::i64()));
        builder.build().unwrap()
    };
    // Whole names: `<prefix>-eu-archive` does not match.
    let pattern = format!("{prefix}-(eu|us)");
    assert!(topology(&pattern).describe().to_string().contains(&format!("(topics: {pattern})")));
    cluster.prepare(&topology(&pattern), &app, 2);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology(&pattern), config(&app, &servers, dir.path(), 1)).unwrap();
    streams.start().unwrap();
    let expected: HashMap<String, i64> = (0..5).map(|k| (format!("k{k}"), 8)).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut counts = common::final_counts(&servers, &out);
    while counts != expected && Instant::now() < deadline {
        assert!(!matches!(streams.state(), State::Error | State::PendingError), "{:?}", streams.take_error());
        std::thread::sleep(Duration::from_millis(300));
        counts = common::final_counts(&servers, &out);
    }
    assert_eq!(counts, expected, "each key counted over both matching topics (4 records in each), none of the other");
    assert!(streams.close(Duration::from_secs(30)));

    let nothing = format!("{prefix}-asia");
    let mut streams = KafkaStreams::new(topology(&nothing), config(&unique("regions-app"), &servers, dir.path(), 1)).unwrap();
    let err = streams.start().unwrap_err();
    assert!(matches!(err, streams::StreamsError::MissingSourceTopics(_)) && err.to_string().contains(&nothing), "{err}");
    assert_eq!(streams.state(), State::Created);
}

#[test]
fn headers_reach_the_output_as_they_came_with_any_value_and_compression() {
    use rdkafka::message::{Header, Headers, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::Message;
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let cluster = Cluster::new();
    let servers = cluster.bootstrap_servers();
    let (input, output, app) = (unique("headers-in"), unique("headers-out"), unique("headers-app"));
    cluster.create_topic(&input, 1);
    cluster.create_topic(&output, 1);
    // (value, headers): no headers, several, an empty value or a null one with headers, an
    // empty header name and value, a null header value.
    type Case = (Option<&'static str>, Vec<(&'static str, Option<&'static [u8]>)>);
    let cases: Vec<Case> = vec![
        (Some("plain"), vec![]),
        (Some("two"), vec![("h1", Some(b"x")), ("h2", None)]),
        (Some(""), vec![("empty-value", Some(b"1"))]),
        (None, vec![("null-value", Some(b"2"))]),
        (Some("blank"), vec![("", Some(b""))]),
        (Some(""), vec![]),
        (None, vec![]),
        (Some("last"), vec![]),
    ];
    // Each case uncompressed and in a gzip batch (records then read from a decompressed buffer).
    for codec in ["none", "gzip"] {
        let producer: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("compression.codec", codec)
            .set("linger.ms", "50")
            .create()
            .unwrap();
        for (i, (value, headers)) in cases.iter().enumerate() {
            let key = format!("{codec}-{i}");
            let mut record: BaseRecord<'_, str, str> = BaseRecord::to(&input).key(&key);
            if let Some(v) = value {
                record = record.payload(*v);
            }
            if !headers.is_empty() {
                let owned = headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: *v }));
                record = record.headers(owned);
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    let builder = StreamsBuilder::new();
    builder
        .stream::<Option<String>, Option<String>>(&input, Consumed::with(Serdes::string(), Serdes::string()))
        .to(&output, Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build().unwrap();
    cluster.prepare(&topology, &app, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology, config(&app, &servers, dir.path(), 1)).unwrap();
    streams.start().unwrap();

    // Read the output with librdkafka's own header parse.
    type Seen = (String, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", unique("headers-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    rdkafka::consumer::Consumer::subscribe(&consumer, &[&output]).unwrap();
    let mut seen: Vec<Seen> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < 2 * cases.len() && Instant::now() < deadline {
        assert!(!matches!(streams.state(), State::Error | State::PendingError), "{:?}", streams.take_error());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let m = message.unwrap();
            let headers = m
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                .unwrap_or_default();
            seen.push((String::from_utf8(m.key().unwrap().to_vec()).unwrap(), m.payload().map(<[u8]>::to_vec), headers));
        }
    }
    assert!(streams.close(Duration::from_secs(30)));
    let expected: Vec<Seen> = ["none", "gzip"]
        .iter()
        .flat_map(|codec| {
            cases.iter().enumerate().map(move |(i, (value, headers))| {
                let headers = headers.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect();
                (format!("{codec}-{i}"), value.map(|v| v.as_bytes().to_vec()), headers)
            })
        })
        .collect();
    assert_eq!(seen, expected, "every record's value and headers, in order");
}

//! Exactly-once, rebalances, broker failures, compaction and fencing on a real Apache Kafka
//! broker: instances run as child processes (this test binary again) that are killed with
//! SIGKILL or stalled with SIGSTOP, instances join and leave mid-run, the broker itself is killed
//! and restarted, and the broker compacts a changelog.
//!
//! `make test-kafka` runs them against Apache Kafka. Against the embedded broker each test says on
//! stderr why it cannot run there and skips.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{files_named, truth};
use common::kafka::{unique, Cluster, OwnBroker};
use streams::prelude::*;
use streams::test_utils;
use streams::topologies::word_count_between;
use streams::{KafkaStreams, RestoreEvent, State, Stores, Topology};

/// Input lines of the word-count runs, ten words each: 100,000 lines make 1,000,000 counted
/// records (the repartition topic the counting tasks consume).
const LINES: usize = 100_000;
const PARTITIONS: i32 = 6;

fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

/// Ten-word lines over a vocabulary of 2,000 words (reproducible).
fn corpus(lines: usize, seed: u64) -> Vec<String> {
    streams::topologies::random_lines(lines, 2_000, seed)
}

fn assert_exact(counts: &HashMap<String, i64>, truth: &HashMap<String, i64>) {
    let wrong: Vec<_> = truth.iter().filter(|(w, c)| counts.get(*w) != Some(c)).map(|(w, c)| (w, *c, counts.get(w))).collect();
    assert!(
        wrong.is_empty() && counts.len() == truth.len(),
        "exact counts, but {} of {} words differ (word, truth, counted): {:?}",
        wrong.len(),
        truth.len(),
        &wrong[..wrong.len().min(10)]
    );
}

fn assert_no_loss(counts: &HashMap<String, i64>, truth: &HashMap<String, i64>) {
    let low: Vec<_> = truth.iter().filter(|(w, c)| counts.get(*w).copied().unwrap_or(0) < **c).collect();
    assert!(low.is_empty(), "no count below the truth, but {} are: {:?}", low.len(), &low[..low.len().min(5)]);
    let high = truth.iter().filter(|(w, c)| counts[*w] > **c).count();
    eprintln!("{high} of {} counts above the truth (at-least-once reprocessing)", truth.len());
}

/// A word count through `servers`: fresh topics and application id.
struct WordCount {
    servers: String,
    input: String,
    output: String,
    app: String,
}

impl WordCount {
    fn new(servers: &str) -> Self {
        let wc = WordCount { servers: servers.to_string(), input: unique("res-in"), output: unique("res-out"), app: unique("res-app") };
        for topic in [&wc.input, &wc.output] {
            test_utils::ensure_topic(servers, topic, PARTITIONS).unwrap();
        }
        wc
    }

    fn topology(&self) -> Topology {
        word_count_between(&self.input, &self.output, Materialized::as_("counts"))
    }

    fn config(&self, dir: &Path, guarantee: &str, threads: usize) -> StreamsConfig {
        StreamsConfig::new()
            .with(StreamsConfig::APPLICATION_ID, &self.app)
            .with(StreamsConfig::BOOTSTRAP_SERVERS, &self.servers)
            .with(StreamsConfig::STATE_DIR, dir.to_string_lossy())
            .with(StreamsConfig::NUM_STREAM_THREADS, threads.to_string())
            .with(StreamsConfig::PROCESSING_GUARANTEE, guarantee)
    }

    /// Produces `lines` in `chunks` steps `pause` apart, on a thread of its own.
    fn produce_over_time(&self, lines: &[String], chunks: usize, pause: Duration) -> std::thread::JoinHandle<()> {
        let (servers, input, lines) = (self.servers.clone(), self.input.clone(), lines.to_vec());
        std::thread::spawn(move || {
            for chunk in lines.chunks(lines.len().div_ceil(chunks)) {
                let records = chunk.iter().map(|l| (None, Some(l.as_bytes().to_vec())));
                test_utils::produce(&servers, &input, records).unwrap();
                std::thread::sleep(pause);
            }
        })
    }

    fn topics(&self) -> [String; 2] {
        [self.input.clone(), format!("{}-counts-repartition", self.app)]
    }

    /// Records of the input and repartition topics the group has not committed.
    fn lag(&self) -> i64 {
        let topics = self.topics();
        test_utils::group_lag(&self.servers, &self.app, &[&topics[0], &topics[1]]).unwrap_or(i64::MAX)
    }

    /// Input lines the group has committed (retried while the group coordinator is busy).
    fn committed_lines(&self) -> i64 {
        for _ in 0..10 {
            if let Ok(lag) = test_utils::group_lag(&self.servers, &self.app, &[&self.input]) {
                return end_offsets(&self.servers, &self.input) - lag;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("the committed offsets of {} cannot be read", self.app);
    }

    /// Waits until `done`, calling `check` (that the instances are healthy) on the way; returns
    /// how long it took.
    fn wait_until(&self, timeout: Duration, mut check: impl FnMut(), done: impl Fn(&Self) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            check();
            if done(self) {
                return started.elapsed();
            }
            assert!(started.elapsed() < timeout, "not done after {timeout:?}: {} lines committed, lag {}", self.committed_lines(), self.lag());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the group committed at least `lines` input lines.
    fn wait_for_committed(&self, lines: i64, timeout: Duration, check: impl FnMut()) {
        self.wait_until(timeout, check, |wc| wc.committed_lines() >= lines);
    }

    /// Waits until the group committed `lines` input lines and everything repartitioned from them.
    fn wait_for_end(&self, lines: usize, timeout: Duration, check: impl FnMut()) -> Duration {
        self.wait_until(timeout, check, |wc| wc.committed_lines() >= lines as i64 && wc.lag() == 0)
    }

    /// The last count per word in the output, read with read_committed.
    fn final_counts(&self) -> HashMap<String, i64> {
        common::final_counts(&self.servers, &self.output)
    }
}

/// The sum of the end offsets of `topic`'s partitions.
fn end_offsets(servers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", servers).create().unwrap();
    (0..PARTITIONS).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).map_or(0, |(_, high)| high)).sum()
}

// ---------------------------------------------------------------------------------------------
// Instances as child processes

/// The child process: one word-count instance until killed. It prints its restorations and
/// state changes on stdout, and its warnings on stderr, for the test to read. A no-op in normal
/// test runs.
#[test]
fn child_instance() {
    let var = |k: &str| std::env::var(format!("RESILIENCE_CHILD_{k}")).ok();
    let (Some(app), Some(input), Some(output), Some(servers), Some(dir), Some(guarantee)) =
        (var("APP"), var("INPUT"), var("OUTPUT"), var("SERVERS"), var("DIR"), var("GUARANTEE"))
    else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,streams_core::runtime::changelog_reader=off"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let wc = WordCount { servers, input, output, app };
    let mut config = wc.config(Path::new(&dir), &guarantee, 2);
    for setting in var("CONFIG").unwrap_or_default().split(';').filter(|s| !s.is_empty()) {
        let (key, value) = setting.split_once('=').expect("key=value");
        config = config.with(key, value);
    }
    let mut streams = KafkaStreams::new(wc.topology(), config).unwrap();
    streams.set_restore_listener(|e| {
        let start = e.start_offset.map_or("-".to_string(), |o| o.to_string());
        println!("restored {} {} {} {}", e.task, e.partition, start, e.restored);
    });
    streams.set_state_listener(|new, _| println!("state {new:?}"));
    streams.start().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(e) = streams.take_error() {
            println!("error {e}");
        }
    }
}

/// What a child printed about one store restoration.
#[derive(Debug, Clone)]
struct Restored {
    task: String,
    start_offset: Option<i64>,
    records: u64,
}

/// A child instance, killed when dropped (also when a test fails).
struct Instance {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Instance {
    fn spawn(wc: &WordCount, dir: &Path, guarantee: &str, config: &[(&str, String)]) -> Instance {
        let config: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_instance", "--nocapture", "--test-threads=1"])
            .env("RESILIENCE_CHILD_APP", &wc.app)
            .env("RESILIENCE_CHILD_INPUT", &wc.input)
            .env("RESILIENCE_CHILD_OUTPUT", &wc.output)
            .env("RESILIENCE_CHILD_SERVERS", &wc.servers)
            .env("RESILIENCE_CHILD_DIR", dir)
            .env("RESILIENCE_CHILD_GUARANTEE", guarantee)
            .env("RESILIENCE_CHILD_CONFIG", config.join(";"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(format!("log {line}"));
            }
        });
        Instance { child, lines }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, signal: &str) {
        assert!(Command::new("kill").args([signal, &self.pid()]).status().unwrap().success());
    }

    /// SIGKILL: no commit, no checkpoint, no leaving the group.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "an instance exited");
        let errors: Vec<String> = self.lines.lock().unwrap().iter().filter(|l| l.starts_with("error")).cloned().collect();
        assert!(errors.is_empty(), "an instance failed: {errors:?}");
    }

    fn restored(&self) -> Vec<Restored> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("restored "))
            .map(|l| {
                let parts: Vec<&str> = l.split(' ').collect();
                Restored { task: parts[0].to_string(), start_offset: parts[2].parse().ok(), records: parts[3].parse().unwrap() }
            })
            .collect()
    }

    fn printed(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three instances count 1,000,000 words produced over time; once a third of the input is
/// committed and the victim has written checkpoints (35 s in), the victim is killed with SIGKILL (under
/// exactly-once in the middle of a transaction: one is open almost always) and, if `restart`,
/// started again on its state directory. The instances are static members, so the restarted one
/// gets its own partitions back. Returns the final counts, the truth, and the victim's
/// restorations after the restart.
fn run_with_a_crash(guarantee: &str, restart: bool) -> Option<CrashRun> {
    init_tracing();
    let cluster = Cluster::new();
    if !cluster.runs_several_members() || (guarantee == "exactly_once_v2" && !cluster.runs_exactly_once()) {
        return None;
    }
    let wc = WordCount::new(&cluster.bootstrap_servers());
    let lines = corpus(LINES, 17);
    let producer = wc.produce_over_time(&lines, 20, Duration::from_secs(2));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let static_id = |i: usize| vec![("consumer.group.instance.id", format!("{}-{i}", wc.app))];
    let spawn = |i: usize| Instance::spawn(&wc, dirs[i].path(), guarantee, &if restart { static_id(i) } else { vec![] });
    let mut instances: Vec<Instance> = (0..3).map(spawn).collect();

    let started = Instant::now();
    let victim_dir = dirs[0].path().join(&wc.app);
    // Under exactly-once checkpoints are written every 30 s: wait for one past the start.
    wc.wait_until(
        Duration::from_secs(300),
        || instances.iter_mut().for_each(Instance::assert_alive),
        |wc| {
            wc.committed_lines() >= LINES as i64 / 3
                && started.elapsed() >= Duration::from_secs(35)
                && !files_named(&victim_dir, ".checkpoint").is_empty()
        },
    );
    let at = wc.committed_lines();
    instances[0].kill();
    eprintln!("killed instance 0 (SIGKILL) after {:?}, {at} of {LINES} lines committed", started.elapsed());
    let killed = Instant::now();
    let survivors = if restart {
        instances[0] = spawn(0);
        0..3
    } else {
        1..3
    };
    producer.join().unwrap();
    wc.wait_for_end(LINES, Duration::from_secs(600), || instances[survivors.clone()].iter_mut().for_each(Instance::assert_alive));
    eprintln!("done {:?} after the kill ({:?} in all)", killed.elapsed(), started.elapsed());
    let restored = if restart { instances[0].restored() } else { instances[1].restored().into_iter().chain(instances[2].restored()).collect() };
    for (i, instance) in instances.iter().enumerate() {
        let restored: u64 = instance.restored().iter().map(|r| r.records).sum();
        eprintln!("instance {i}: {} restorations, {restored} records; {:?}", instance.restored().len(), instance.printed().iter().filter(|l| l.starts_with("state")).collect::<Vec<_>>());
    }
    drop(instances);
    Some(CrashRun { counts: wc.final_counts(), truth: truth(&lines), restored })
}

/// What a crash run counted, the truth, and the restorations that followed the crash.
struct CrashRun {
    counts: HashMap<String, i64>,
    truth: HashMap<String, i64>,
    restored: Vec<Restored>,
}

#[test]
fn exactly_once_is_exact_when_an_instance_is_killed_mid_transaction_and_restarted() {
    let Some(CrashRun { counts, truth, restored }) = run_with_a_crash("exactly_once_v2", true) else { return };
    assert_exact(&counts, &truth);
    // The restarted instance kept its committed store: it replays only the changelog tail past
    // its checkpoint, for each counting task it owned before the crash.
    let counting: Vec<&Restored> = restored.iter().filter(|r| r.task.starts_with("1_")).collect();
    assert!(!counting.is_empty(), "the restarted instance restored its counting tasks: {restored:?}");
    for r in &counting {
        assert!(r.start_offset.is_some_and(|o| o > 0), "restored from its checkpoint, not wiped: {r:?}");
    }
    eprintln!("restarted instance restored {:?}", counting);
}

#[test]
fn exactly_once_is_exact_when_an_instance_is_killed_and_the_others_take_over() {
    let Some(CrashRun { counts, truth, restored }) = run_with_a_crash("exactly_once_v2", false) else { return };
    assert_exact(&counts, &truth);
    assert!(
        restored.iter().any(|r| r.task.starts_with("1_") && r.start_offset.is_none() && r.records > 0),
        "the survivors restored the killed instance's counting tasks from their changelogs: {restored:?}"
    );
}

#[test]
fn at_least_once_loses_nothing_when_an_instance_is_killed_and_restarted() {
    let Some(CrashRun { counts, truth, .. }) = run_with_a_crash("at_least_once", true) else { return };
    assert_no_loss(&counts, &truth);
}

// ---------------------------------------------------------------------------------------------
// Rebalances

/// One in-process instance and what it restored.
struct Member {
    streams: KafkaStreams,
    restored: Arc<Mutex<Vec<RestoreEvent>>>,
    _dir: tempfile::TempDir,
}

impl Member {
    fn start(wc: &WordCount, guarantee: &str) -> Member {
        let dir = tempfile::tempdir().unwrap();
        let mut streams = KafkaStreams::new(wc.topology(), wc.config(dir.path(), guarantee, 2)).unwrap();
        let restored = Arc::new(Mutex::new(Vec::new()));
        let sink = restored.clone();
        streams.set_restore_listener(move |e| sink.lock().unwrap().push(e.clone()));
        streams.start().unwrap();
        Member { streams, restored, _dir: dir }
    }

    fn assert_healthy(&self) {
        assert!(!matches!(self.streams.state(), State::Error | State::PendingError), "stopped with {:?}", self.streams.take_error());
    }
}

#[test]
fn counts_stay_exact_while_instances_join_and_leave() {
    init_tracing();
    let cluster = Cluster::new();
    if !cluster.runs_several_members() || !cluster.runs_exactly_once() {
        return;
    }
    let wc = WordCount::new(&cluster.bootstrap_servers());
    let lines = corpus(LINES, 29);
    let guarantee = "exactly_once_v2";
    let producer = wc.produce_over_time(&lines, 20, Duration::from_secs(2));
    let started = Instant::now();
    let mut members = vec![Member::start(&wc, guarantee)];
    // Joins at a quarter and half of the input, a clean leave at three quarters.
    let mut moved_to_joiners = 0;
    let total = LINES as i64;
    for (target, step) in [(total / 4, "join"), (total / 2, "join"), (total * 3 / 4, "leave")] {
        let left = Duration::from_secs(600).saturating_sub(started.elapsed());
        wc.wait_for_committed(target, left, || members.iter().for_each(Member::assert_healthy));
        if step == "join" {
            members.push(Member::start(&wc, guarantee));
            eprintln!("instance {} joined at {} lines ({:?})", members.len(), wc.committed_lines(), started.elapsed());
        } else {
            let mut leaving = members.remove(0);
            assert!(leaving.streams.close(Duration::from_secs(60)), "a clean close");
            eprintln!("instance 1 left at {} lines ({:?})", wc.committed_lines(), started.elapsed());
        }
    }
    producer.join().unwrap();
    wc.wait_for_end(LINES, Duration::from_secs(600), || members.iter().for_each(Member::assert_healthy));
    eprintln!("done after {:?}", started.elapsed());
    for (i, m) in members.iter().enumerate() {
        let events = m.restored.lock().unwrap();
        let records: u64 = events.iter().map(|e| e.restored).sum();
        eprintln!("instance {}: {} restorations, {records} changelog records", i + 2, events.len());
        moved_to_joiners += records;
    }
    assert!(moved_to_joiners > 0, "moved tasks restored their stores from the changelogs");
    for m in &mut members {
        assert!(m.streams.close(Duration::from_secs(60)));
    }
    assert_exact(&wc.final_counts(), &truth(&lines));
}

// ---------------------------------------------------------------------------------------------
// Broker failure

#[test]
fn a_broker_killed_and_restarted_mid_stream_loses_nothing() {
    init_tracing();
    let cluster = Cluster::new();
    let Some(broker) = OwnBroker::start(&cluster) else { return };
    for guarantee in ["at_least_once", "exactly_once_v2"] {
        let wc = WordCount::new(&broker.bootstrap_servers);
        let lines = corpus(LINES / 5, 31);
        let producer = wc.produce_over_time(&lines[..lines.len() / 2], 5, Duration::from_millis(500));
        let member = Member::start(&wc, guarantee);
        wc.wait_for_committed(lines.len() as i64 / 4, Duration::from_secs(300), || member.assert_healthy());
        producer.join().unwrap();
        broker.kill();
        eprintln!("{guarantee}: broker killed (SIGKILL) at {} of {} lines", lines.len() / 4, lines.len());
        std::thread::sleep(Duration::from_secs(5));
        let restart = Instant::now();
        broker.restart();
        eprintln!("{guarantee}: broker back after {:?}", restart.elapsed());
        let records = lines[lines.len() / 2..].iter().map(|l| (None, Some(l.as_bytes().to_vec())));
        test_utils::produce(&broker.bootstrap_servers, &wc.input, records).unwrap();
        let took = wc.wait_for_end(lines.len(), Duration::from_secs(600), || member.assert_healthy());
        eprintln!("{guarantee}: caught up {took:?} after the restart");
        let mut member = member;
        assert!(member.streams.close(Duration::from_secs(60)));
        let (counts, truth) = (wc.final_counts(), truth(&lines));
        if guarantee == "exactly_once_v2" {
            assert_exact(&counts, &truth);
        } else {
            assert_no_loss(&counts, &truth);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compaction

/// Upserts `key -> value` into a logged store, deleting on a null value; at init (after
/// restoration) it records the store's contents.
struct Upsert {
    store: Option<streams::KeyValueStore<String, String>>,
    contents: Arc<Mutex<Option<BTreeMap<String, String>>>>,
}

impl Processor<String, Option<String>, String, String> for Upsert {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> streams::Result<()> {
        let store = ctx.key_value_store::<String, String>("latest")?;
        self.contents.lock().unwrap().get_or_insert_with(BTreeMap::new).extend(store.all()?.collect::<streams::Result<Vec<_>>>()?);
        self.store = Some(store);
        Ok(())
    }

    fn process(&mut self, _ctx: &mut ProcessorContext<'_, String, String>, record: Record<String, Option<String>>) -> streams::Result<()> {
        let store = self.store.as_ref().unwrap();
        match record.value {
            Some(v) => store.put(&record.key, &v),
            None => store.delete(&record.key).map(drop),
        }
    }
}

fn upsert_topology(input: &str, contents: Arc<Mutex<Option<BTreeMap<String, String>>>>) -> Topology {
    let mut t = Topology::new();
    t.add_source::<String, Option<String>>("src", &[input], Serdes::string(), Serdes::string()).unwrap();
    t.add_processor("upsert", move || Upsert { store: None, contents: contents.clone() }, &["src"]).unwrap();
    let store = Stores::key_value_store_builder::<String, String>(Stores::persistent_key_value_store("latest"), Serdes::string(), Serdes::string());
    t.add_state_store(store, &["upsert"]).unwrap();
    t
}

#[test]
fn a_changelog_compacted_by_the_broker_restores_the_same_store() {
    init_tracing();
    let cluster = Cluster::new();
    if !cluster.runs_on_a_real_broker("the embedded broker never compacts") {
        return;
    }
    let servers = cluster.bootstrap_servers();
    let (input, app) = (unique("cmp-in"), unique("cmp-app"));
    cluster.create_topic(&input, 2);
    // The changelog, made before the application starts, with a broker that compacts it soon:
    // segments roll every 100 ms and any dirty part is worth cleaning; tombstones go after 100 ms.
    let changelog = format!("{app}-latest-changelog");
    let compacting = [("cleanup.policy", "compact"), ("segment.ms", "100"), ("min.cleanable.dirty.ratio", "0.01"), ("delete.retention.ms", "100")];
    test_utils::ensure_topic_with_config(&servers, &changelog, 2, &compacting).unwrap();
    let config = |dir: &Path| {
        StreamsConfig::new()
            .with(StreamsConfig::APPLICATION_ID, &app)
            .with(StreamsConfig::BOOTSTRAP_SERVERS, &servers)
            .with(StreamsConfig::STATE_DIR, dir.to_string_lossy())
            .with(StreamsConfig::COMMIT_INTERVAL_MS, "100")
    };
    let dir = tempfile::tempdir().unwrap();
    let mut first = KafkaStreams::new(upsert_topology(&input, Arc::default()), config(dir.path())).unwrap();
    first.start().unwrap();
    assert_eq!(first.wait_until_running(Duration::from_secs(60)), State::Running);

    // 200 keys updated 50 times each; every fifth key deleted at the end, one more put after a
    // delete for every tenth key. Written in rounds while the application runs, so that its
    // changelog writes spread over many segments; a last record after a pause rolls the segment
    // that holds the deletes, so that it can be cleaned too.
    let mut latest = BTreeMap::new();
    let mut written = 0;
    for round in 0..53 {
        let mut batch = Vec::new();
        for k in 0..200 {
            let key = format!("k{k:03}");
            let value = match round {
                0..50 => Some(format!("v{round}")),
                50 if k % 5 == 0 => None,
                51 if k % 10 == 0 => Some("back".to_string()),
                52 if k % 20 == 1 => Some("last".to_string()),
                _ => continue,
            };
            match &value {
                Some(v) => latest.insert(key.clone(), v.clone()),
                None => latest.remove(&key),
            };
            batch.push((Some(key.into_bytes()), value.map(String::into_bytes)));
        }
        written += batch.len();
        test_utils::produce(&servers, &input, batch).unwrap();
        std::thread::sleep(Duration::from_millis(if round < 51 { 120 } else { 1_000 }));
    }
    let started = Instant::now();
    while test_utils::group_lag(&servers, &app, &[&input]).unwrap() > 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "the first instance did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(first.close(Duration::from_secs(30)));

    // The broker compacts: superseded values and (after delete.retention.ms) tombstones go.
    let started = Instant::now();
    let remaining = loop {
        std::thread::sleep(Duration::from_secs(1));
        let remaining = test_utils::read_all(&servers, &changelog, Duration::from_millis(300)).unwrap();
        if remaining.len() < written / 10 {
            break remaining;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "not compacted: {} of {written} records left", remaining.len());
    };
    let tombstones = remaining.iter().filter(|r| r.value.is_none()).count();
    eprintln!(
        "changelog compacted after {:?}: {} of {written} records left ({tombstones} tombstones) for {} live keys",
        started.elapsed(),
        remaining.len(),
        latest.len()
    );

    // A fresh instance restores the store from the compacted changelog: the same contents.
    let contents = Arc::new(Mutex::new(None));
    let fresh = tempfile::tempdir().unwrap();
    let mut second = KafkaStreams::new(upsert_topology(&input, contents.clone()), config(fresh.path())).unwrap();
    let restored = Arc::new(Mutex::new(0));
    let sink = restored.clone();
    second.set_restore_listener(move |e| *sink.lock().unwrap() += e.restored);
    second.start().unwrap();
    let started = Instant::now();
    while contents.lock().unwrap().is_none() || second.state() != State::Running {
        assert!(started.elapsed() < Duration::from_secs(60), "the fresh instance did not start: {:?}", second.take_error());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1)); // both tasks initialized
    assert!(second.close(Duration::from_secs(30)));
    let contents = contents.lock().unwrap().clone().unwrap();
    eprintln!("fresh instance restored {} changelog records into {} keys", restored.lock().unwrap(), contents.len());
    assert_eq!(contents, latest, "the restored store equals the store before compaction");
}

// ---------------------------------------------------------------------------------------------
// Fencing

#[test]
fn an_instance_stalled_past_the_transaction_timeout_is_fenced_and_recovers_without_duplicates() {
    init_tracing();
    let cluster = Cluster::new();
    if !cluster.runs_several_members() || !cluster.runs_exactly_once() {
        return;
    }
    let wc = WordCount::new(&cluster.bootstrap_servers());
    let lines = corpus(LINES / 2, 37);
    let (first, second) = lines.split_at(lines.len() / 2);
    // Input keeps coming, in small steps, so that a transaction is open (almost) all the time,
    // also when the instance is stalled.
    let producer = wc.produce_over_time(first, 250, Duration::from_millis(100));
    // transaction.timeout.ms is 10 s under exactly-once (Kafka Streams' default); the session
    // timeout is set to 15 s here so that the stalled instance's tasks move within the test.
    let config = [("consumer.session.timeout.ms", "15000".to_string()), ("consumer.heartbeat.interval.ms", "3000".to_string())];
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut instances: Vec<Instance> = dirs.iter().map(|d| Instance::spawn(&wc, d.path(), "exactly_once_v2", &config)).collect();
    wc.wait_for_committed(first.len() as i64 / 5, Duration::from_secs(300), || instances.iter_mut().for_each(Instance::assert_alive));
    instances[0].signal("-STOP");
    let stalled_at = wc.committed_lines();
    std::thread::sleep(Duration::from_secs(25));
    let during = wc.committed_lines();
    let printed_before = instances[0].printed().len();
    instances[0].signal("-CONT");
    let resumed = Instant::now();
    eprintln!("instance 0 stalled 25 s (SIGSTOP): {stalled_at} -> {during} lines committed meanwhile by the other");
    assert!(during > stalled_at, "the other instance took the stalled one's tasks over");
    producer.join().unwrap();

    // The stalled instance finds its transaction aborted and its producer fenced, and its
    // membership gone; it rejoins, gets tasks again and restores them.
    let recovered = |i: &Instance| {
        let after = i.printed()[printed_before..].to_vec();
        after.iter().any(|l| l.starts_with("restored")) && after.iter().rev().find(|l| l.starts_with("state")).is_some_and(|l| l == "state Running")
    };
    while !recovered(&instances[0]) {
        instances.iter_mut().for_each(Instance::assert_alive);
        assert!(resumed.elapsed() < Duration::from_secs(120), "the stalled instance did not recover: {:?}", &instances[0].printed()[printed_before..]);
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("instance 0 running again {:?} after SIGCONT", resumed.elapsed());
    let producer = wc.produce_over_time(second, 5, Duration::from_secs(1));
    producer.join().unwrap();
    wc.wait_for_end(lines.len(), Duration::from_secs(600), || instances.iter_mut().for_each(Instance::assert_alive));
    let after: Vec<String> = instances[0].printed()[printed_before..].iter().filter(|l| !l.contains("kafka client error")).cloned().collect();
    eprintln!("instance 0 after SIGCONT: {after:#?}");
    assert!(
        after.iter().any(|l| l.contains("fenced") || l.contains("re-initializing tasks")),
        "the stalled instance's open transaction was aborted by the broker and its producer fenced: {after:#?}"
    );
    drop(instances);
    assert_exact(&wc.final_counts(), &truth(&lines));
}

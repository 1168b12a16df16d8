//! The examples as services, run as processes against a real broker: the word count behind
//! HTTP (`examples/interactive_queries.rs`) answers every word on every instance, through a
//! rebalance, and serves Prometheus metrics; the word count example (`examples/word_count.rs`)
//! run twice with one application id counts each line once.
//!
//! Needs the example binaries (`scripts/test-kafka.sh` builds them) and a real broker: several
//! group members at once, and the group API instance metadata reads.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{unique, Cluster};
use common::truth;
use streams::test_utils;
use streams::topologies::random_lines;

/// A built example, next to this test's binary (`target/<profile>/examples/<name>`).
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(path.exists(), "{} is missing: `cargo build --example {name}` first (scripts/test-kafka.sh does)", path.display());
    path
}

/// A free local port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on `port`: status and body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

/// The count and the answering host of `/counts/{word}`, `None` if retriable (503).
fn count(port: u16, word: &str) -> Option<(i64, String)> {
    let (status, body) = get(port, &format!("/counts/{word}")).unwrap();
    match status {
        200 => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            Some((v["count"].as_i64().unwrap(), v["host"].as_str().unwrap().to_string()))
        }
        503 => None,
        other => panic!("GET /counts/{word} on {port}: {other} {body}"),
    }
}

/// One instance of the HTTP word count, killed on drop.
struct Instance {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Instance {
    fn start(servers: &str, app: &str, topics: (&str, &str), dir: &Path, input: Option<&Path>, protocol: &str) -> Instance {
        Self::start_with(servers, app, topics, dir, input, protocol, &[])
    }

    /// As [`Instance::start`], with more command-line arguments.
    fn start_with(servers: &str, app: &str, topics: (&str, &str), dir: &Path, input: Option<&Path>, protocol: &str, extra: &[String]) -> Instance {
        let port = free_port();
        let log = dir.join(format!("instance-{port}.log"));
        let mut command = Command::new(example("interactive_queries"));
        command
            .args(["--bootstrap-servers", servers, "--port", &port.to_string(), "--application-id", app])
            .args(["--input-topic", topics.0, "--output-topic", topics.1, "--partitions", "4", "--group-protocol", protocol])
            .arg("--state-dir")
            .arg(dir.join(format!("state-{port}")))
            .args(extra)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(log.with_extension("err")).unwrap()));
        if let Some(input) = input {
            command.arg("--input").arg(input);
        }
        let child = command.spawn().unwrap();
        let instance = Instance { port, child, log };
        instance.wait_healthy();
        instance
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !matches!(get(self.port, "/health"), Ok((200, _))) {
            assert!(Instant::now() < deadline, "instance on {} not healthy: {}", self.port, self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self) -> String {
        let out = std::fs::read_to_string(&self.log).unwrap_or_default();
        let err = std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        format!("{out}\n{}", err.lines().rev().take(20).collect::<Vec<_>>().join("\n"))
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
    }
}

#[test]
fn instances_answer_every_word_over_http_through_a_rebalance() {
    // 500,000 words over a vocabulary of 2,000.
    answer_every_word_through_a_rebalance("classic", 50_000);
}

#[test]
fn instances_answer_every_word_through_an_incremental_rebalance() {
    answer_every_word_through_a_rebalance("consumer", 20_000);
}

fn answer_every_word_through_a_rebalance(protocol: &str, lines: usize) {
    let cluster = Cluster::new();
    if !cluster.runs_several_members() {
        return;
    }
    eprintln!("group protocol {protocol}");
    let servers = cluster.bootstrap_servers();
    let (input, output, app) = (unique("svc-in"), unique("svc-out"), unique("svc-app"));
    let dir = tempfile::tempdir().unwrap();
    let lines = random_lines(lines, 2_000, 11);
    let truth: BTreeMap<String, i64> = truth(&lines).into_iter().collect();
    let file = dir.path().join("input.txt");
    std::fs::write(&file, lines.join("\n")).unwrap();

    let a = Instance::start(&servers, &app, (&input, &output), dir.path(), Some(&file), protocol);
    let b = Instance::start(&servers, &app, (&input, &output), dir.path(), None, protocol);
    let repartition = format!("{app}-counts-repartition");
    let caught_up = || test_utils::group_lag(&servers, &app, &[&input, &repartition]).unwrap() == 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !caught_up() {
        assert!(Instant::now() < deadline, "not caught up: {}\n{}", a.logs(), b.logs());
        std::thread::sleep(Duration::from_millis(500));
    }

    // Every word, asked on either instance, is the true count; some answers come from the other.
    let ask_all = |instances: &[&Instance]| -> HashMap<String, usize> {
        let mut answered_by = HashMap::new();
        for (i, (word, expected)) in truth.iter().enumerate() {
            let on = instances[i % instances.len()];
            let deadline = Instant::now() + Duration::from_secs(60);
            let (count, host) = loop {
                if let Some(answer) = count(on.port, word) {
                    break answer;
                }
                assert!(Instant::now() < deadline, "{word} unanswered on {}", on.port);
                std::thread::sleep(Duration::from_millis(100));
            };
            assert_eq!(count, *expected, "{word} asked on {}, answered by {host}", on.port);
            *answered_by.entry(host).or_insert(0) += 1;
        }
        answered_by
    };
    let answered = ask_all(&[&a, &b]);
    assert_eq!(answered.len(), 2, "both instances own words: {answered:?}");
    eprintln!("{} words answered over HTTP: {answered:?}", truth.len());

    // A range merged across instances.
    let (status, body) = get(b.port, "/counts?from=w1&to=w15").unwrap();
    assert_eq!(status, 200, "{body}");
    let merged: BTreeMap<String, i64> = serde_json::from_str(&body).unwrap();
    let expected: BTreeMap<String, i64> = truth.range("w1".to_string()..="w15".to_string()).map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(merged, expected);

    // Prometheus metrics parse; the lag is zero once caught up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = get(a.port, "/metrics").unwrap();
        assert_eq!(status, 200);
        let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
        let value = |s: &prometheus_parse::Sample| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        };
        let lag: Vec<f64> = scrape.samples.iter().filter(|s| s.metric == "kafka_streams_consumer_fetch_manager_metrics_records_lag").map(value).collect();
        let processed: f64 = scrape.samples.iter().filter(|s| s.metric == "kafka_streams_stream_thread_metrics_process_total").map(value).sum();
        if !lag.is_empty() && lag.iter().all(|l| *l == 0.0) {
            assert!(processed > 0.0);
            break;
        }
        assert!(Instant::now() < deadline, "lag {lag:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A third instance joins. While the group rebalances, answers are right or retriable.
    let joining = {
        let (servers, app, input, output, dir) = (servers.clone(), app.clone(), input.clone(), output.clone(), dir.path().to_path_buf());
        let protocol = protocol.to_string();
        std::thread::spawn(move || Instance::start(&servers, &app, (&input, &output), &dir, None, &protocol))
    };
    let words: Vec<(&String, &i64)> = truth.iter().collect();
    let (mut right, mut retriable, mut i) = (0, 0, 0usize);
    while !joining.is_finished() || right < 200 {
        let (word, expected) = words[(i * 7919) % words.len()];
        let on = if i % 2 == 0 { &a } else { &b };
        match count(on.port, word) {
            Some((count, host)) => {
                assert_eq!(count, *expected, "{word} during the rebalance, answered by {host}");
                right += 1;
            }
            None => retriable += 1,
        }
        i += 1;
    }
    let c = joining.join().unwrap();
    eprintln!("during the rebalance: {right} right answers, {retriable} retriable, none wrong");

    // Afterwards the metadata points at the new owners: the third instance answers some words.
    let answered = ask_all(&[&a, &b, &c]);
    assert!(answered.contains_key(&c.host()), "the new instance owns words: {answered:?}");
    assert_eq!(answered.len(), 3, "{answered:?}");
    eprintln!("after the rebalance: {answered:?}");
}

#[test]
fn the_word_count_example_run_twice_counts_each_line_once() {
    let cluster = Cluster::new();
    if !cluster.runs_on_a_real_broker("runs the example against a cluster that outlives it") {
        return;
    }
    let servers = cluster.bootstrap_servers();
    let (input, output, app) = (unique("wce-in"), unique("wce-out"), unique("wce-app"));
    let dir = tempfile::tempdir().unwrap();
    let first = random_lines(2_000, 300, 3);
    let second = random_lines(1_000, 300, 4);
    let run = |lines: Option<&[String]>| {
        let mut command = Command::new(example("word_count"));
        command
            .args(["--bootstrap-servers", &servers, "--application-id", &app, "--input-topic", &input, "--output-topic", &output])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--until-caught-up");
        if let Some(lines) = lines {
            let file = dir.path().join("lines.txt");
            std::fs::write(&file, lines.join("\n")).unwrap();
            command.arg("--input").arg(file);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    run(Some(&first));
    assert_eq!(common::final_counts(&servers, &output), truth(&first));
    // The same application id and state directory: it resumes; nothing is counted twice.
    let again = run(None);
    assert!(again.contains("caught up"), "{again}");
    assert_eq!(common::final_counts(&servers, &output), truth(&first));
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    run(Some(&second));
    assert_eq!(common::final_counts(&servers, &output), truth(&all));
}

/// The samples of an instance's `/metrics`.
fn scrape(port: u16) -> Vec<prometheus_parse::Sample> {
    let (status, text) = get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text").samples
}

fn sample_value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

/// The sum of metric `name` on `port`.
fn metric_sum(port: u16, name: &str) -> f64 {
    scrape(port).iter().filter(|s| s.metric == name).map(sample_value).sum()
}

#[test]
fn a_killed_instance_fails_over_to_its_warm_standbys() {
    failover(1, "at_least_once");
}

#[test]
fn a_killed_exactly_once_instance_fails_over_to_its_warm_standbys() {
    failover(1, "exactly_once_v2");
}

#[test]
fn a_killed_instance_fails_over_without_standbys() {
    failover(0, "at_least_once");
}

/// Three instances count FAILOVER_KEYS (default 1,000,000) distinct words over 6 partitions;
/// one is SIGKILLed while new lines keep coming. Measured: the time from the kill to the first
/// count of a new word on each partition the dead instance owned, and the changelog records
/// the survivors restored. With a standby replica the takeover restores only the tail. Counts
/// are exact under exactly-once and never below the truth under at-least-once.
fn failover(standbys: usize, guarantee: &str) {
    let exactly_once = guarantee == "exactly_once_v2";
    let cluster = Cluster::new();
    if !cluster.runs_several_members() {
        return;
    }
    let keys: usize = std::env::var("FAILOVER_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let servers = cluster.bootstrap_servers();
    let (input, output, app) = (unique("fo-in"), unique("fo-out"), unique("fo-app"));
    test_utils::ensure_topic(&servers, &input, 6).unwrap();
    test_utils::ensure_topic(&servers, &output, 6).unwrap();
    let started = Instant::now();
    let lines = (0..keys / 10).map(|l| {
        let line: Vec<String> = (0..10).map(|w| format!("k{:07}", l * 10 + w)).collect();
        (None, Some(line.join(" ").into_bytes()))
    });
    test_utils::produce(&servers, &input, lines).unwrap();
    eprintln!("standbys {standbys}: {keys} words produced in {:?}", started.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let extra: Vec<String> = [
        "--standby-replicas".to_string(),
        standbys.to_string(),
        "--processing-guarantee".into(),
        guarantee.into(),
        // The group notices a dead member after the session timeout (the broker's minimum).
        "--config".into(),
        "consumer.session.timeout.ms=6000".into(),
        "--config".into(),
        "consumer.heartbeat.interval.ms=1000".into(),
    ]
    .into();
    let mut instances: Vec<Instance> =
        (0..3).map(|_| Instance::start_with(&servers, &app, (&input, &output), dir.path(), None, "classic", &extra)).collect();
    let repartition = format!("{app}-counts-repartition");
    let deadline = Instant::now() + Duration::from_secs(600);
    while test_utils::group_lag(&servers, &app, &[&input, &repartition]).unwrap() != 0 {
        let logs: Vec<String> = instances.iter().map(Instance::logs).collect();
        assert!(Instant::now() < deadline, "not caught up: {logs:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("standbys {standbys}: {keys} words counted by 3 instances {:?} after start", started.elapsed());
    // The standbys are in place and caught up with their changelogs.
    let standby_lag = |port: u16| -> f64 {
        scrape(port)
            .iter()
            .filter(|s| s.metric == "kafka_streams_consumer_fetch_manager_metrics_records_lag" && s.labels.get("topic").is_some_and(|t| t.ends_with("-changelog")))
            .map(sample_value)
            .sum()
    };
    loop {
        let tasks: f64 = instances.iter().map(|i| metric_sum(i.port, "kafka_streams_stream_thread_metrics_standby_updating_tasks")).sum();
        let lag: f64 = instances.iter().map(|i| standby_lag(i.port)).sum();
        if tasks == (6 * standbys) as f64 && lag == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "standbys: {tasks} tasks, lag {lag}");
        std::thread::sleep(Duration::from_millis(500));
    }
    // A third of the partitions are the victim's; which count partitions it owns, its metrics say.
    let victim = instances.remove(1);
    let moved: Vec<i32> = scrape(victim.port)
        .iter()
        .filter(|s| s.metric == "kafka_streams_consumer_fetch_manager_metrics_records_lag" && s.labels.get("topic") == Some(repartition.as_str()))
        .filter_map(|s| s.labels.get("partition").and_then(|p| p.parse().ok()))
        .collect();
    assert!(!moved.is_empty(), "the victim owns count partitions");
    let restored_before: Vec<f64> = instances.iter().map(|i| metric_sum(i.port, "kafka_streams_stream_thread_metrics_restore_total")).collect();

    // New words keep coming; the first count of one on each moved partition is when its output resumed.
    use rdkafka::Message;
    let watcher = common::kafka::tail(&servers, &output, 6);
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let progress = std::sync::Arc::new(AtomicUsize::new(0));
    let producer = {
        let (servers, input, stop, progress) = (servers.clone(), input.clone(), stop.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut written = 0usize;
            while !stop.load(Ordering::Acquire) {
                let lines = (0..10).map(|l| {
                    let line: Vec<String> = (0..10).map(|w| format!("after{:07}", written + l * 10 + w)).collect();
                    (None, Some(line.join(" ").into_bytes()))
                });
                test_utils::produce(&servers, &input, lines).unwrap();
                written += 100;
                progress.store(written, Ordering::Release);
                std::thread::sleep(Duration::from_millis(100));
            }
            written
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let mut victim = victim;
    victim.child.kill().unwrap();
    let killed = Instant::now();
    // Words from the batch after the one being written now were produced after the kill.
    let after_kill = progress.load(Ordering::Acquire) + 100;
    let mut resumed: BTreeMap<i32, Duration> = BTreeMap::new();
    while resumed.len() < moved.len() {
        assert!(killed.elapsed() < Duration::from_secs(180), "output resumed only on {resumed:?} of {moved:?}");
        if let Some(Ok(m)) = watcher.poll(Duration::from_millis(100)) {
            let index = m.key().and_then(|k| std::str::from_utf8(k).ok()?.strip_prefix("after")?.parse::<usize>().ok());
            let new_word = index.is_some_and(|i| i >= after_kill);
            if new_word && moved.contains(&m.partition()) {
                resumed.entry(m.partition()).or_insert_with(|| killed.elapsed());
            }
        }
    }
    stop.store(true, Ordering::Release);
    let written = producer.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while test_utils::group_lag(&servers, &app, &[&input, &repartition]).unwrap() != 0 {
        assert!(Instant::now() < deadline, "survivors not caught up");
        std::thread::sleep(Duration::from_millis(500));
    }
    let restored: f64 = instances
        .iter()
        .zip(&restored_before)
        .map(|(i, before)| metric_sum(i.port, "kafka_streams_stream_thread_metrics_restore_total") - before)
        .sum();
    let longest = resumed.values().max().unwrap();
    eprintln!(
        "FAILOVER {guarantee} standbys={standbys} keys={keys}: kill to first new output on the {} moved partitions: longest {:.1} s ({:?}); survivors restored {restored} changelog records",
        moved.len(),
        longest.as_secs_f64(),
        resumed.iter().map(|(p, d)| format!("{p}: {:.1} s", d.as_secs_f64())).collect::<Vec<_>>(),
    );
    if standbys > 0 {
        assert!(restored < (keys / 20) as f64, "a warm standby restores only the tail, not {restored} of {keys}");
    }

    // Exactly once: every count is the truth; at least once: none below it. Old words and new.
    let sample = (0..keys).step_by((keys / 1000).max(1)).map(|i| (format!("k{i:07}"), 1));
    let fresh = (0..written).step_by(7).map(|i| (format!("after{i:07}"), 1));
    for (i, (word, at_least)) in sample.chain(fresh).enumerate() {
        let on = &instances[i % 2];
        let deadline = Instant::now() + Duration::from_secs(60);
        let (n, host) = loop {
            if let Some(answer) = count(on.port, &word) {
                break answer;
            }
            assert!(Instant::now() < deadline, "{word} unanswered");
            std::thread::sleep(Duration::from_millis(100));
        };
        if exactly_once {
            assert_eq!(n, at_least, "{word} on {host}");
        } else {
            assert!(n >= at_least, "{word}: {n} on {host}");
        }
    }
}

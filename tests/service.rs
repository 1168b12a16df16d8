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
        let port = free_port();
        let log = dir.join(format!("instance-{port}.log"));
        let mut command = Command::new(example("interactive_queries"));
        command
            .args(["--bootstrap-servers", servers, "--port", &port.to_string(), "--application-id", app])
            .args(["--input-topic", topics.0, "--output-topic", topics.1, "--partitions", "4", "--group-protocol", protocol])
            .arg("--state-dir")
            .arg(dir.join(format!("state-{port}")))
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

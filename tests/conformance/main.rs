//! Differential conformance: the catalogue's topologies run through Kafka Streams itself (its
//! TopologyTestDriver, in one JVM started by tests/reference/run.sh) and through this project's
//! TopologyTestDriver on the same seeded random scenarios; every output record (topic, key,
//! value, timestamp, and when it came out) must be the same. A difference is shrunk to a
//! minimal scenario and printed.
//!
//! `CONFORMANCE_SEEDS` (default 200) scenarios per topology; `CONFORMANCE_TOPOLOGIES` (names,
//! comma-separated) runs only those. Needs Java 17+ and Maven; without them the test says so
//! and skips, unless `STREAMS_REQUIRE_JAVA=1` or `STREAMS_REQUIRE_ALL=1` (CI), where that fails.

mod catalogue;
mod scenario;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use catalogue::{catalogue, Entry, Output as Kind};
use scenario::{generate, shrink, Event, Output, Scenario};
use streams::prelude::*;
use streams::state::{Windowed, WindowedSerde};
use streams::TestOutputTopic;

/// What one implementation did with a scenario: its outputs, or the error it stopped with.
type Outcome = Result<Vec<Output>, String>;

/// The reference runner: a JVM answering one scenario per line.
struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Reference {
    fn start() -> std::io::Result<Self> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/run.sh");
        let mut child = Command::new("bash").arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Reference { child, stdin, stdout })
    }

    fn names(&mut self) -> Vec<String> {
        writeln!(self.stdin, "list").expect("reference runner accepts input");
        serde_json::from_str(&self.line()).expect("a list of names")
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).expect("reference runner answers");
        assert!(n > 0, "the reference runner exited (see its stderr above)");
        line
    }

    /// Runs `scenarios` through Kafka Streams while `meanwhile` runs here.
    fn run_all<T>(&mut self, scenarios: &[Scenario], meanwhile: impl FnOnce() -> T) -> (Vec<Outcome>, T) {
        let lines: Vec<String> = scenarios.iter().map(|s| serde_json::to_string(s).expect("serializable")).collect();
        let stdin = &mut self.stdin;
        let stdout = &mut self.stdout;
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                for line in lines {
                    writeln!(stdin, "{line}").expect("reference runner accepts input");
                }
                stdin.flush().expect("reference runner accepts input");
            });
            let reader = scope.spawn(move || {
                (0..scenarios.len())
                    .map(|_| {
                        let mut line = String::new();
                        let n = stdout.read_line(&mut line).expect("reference runner answers");
                        assert!(n > 0, "the reference runner exited (see its stderr above)");
                        parse_answer(&line)
                    })
                    .collect::<Vec<_>>()
            });
            let ours = meanwhile();
            writer.join().expect("writer");
            (reader.join().expect("reader"), ours)
        })
    }

    fn run(&mut self, scenario: &Scenario) -> Outcome {
        self.run_all(std::slice::from_ref(scenario), || ()).0.remove(0)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_answer(line: &str) -> Outcome {
    #[derive(serde::Deserialize)]
    struct Answer {
        outputs: Option<Vec<Output>>,
        error: Option<String>,
    }
    let answer: Answer = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad answer `{line}`: {e}"));
    match (answer.outputs, answer.error) {
        (Some(outputs), _) => Ok(outputs),
        (None, error) => Err(error.unwrap_or_default()),
    }
}

/// Reads `out` as `kind` says, rendering records as the reference runner does.
fn reader(driver: &TopologyTestDriver, kind: Kind) -> Box<dyn Fn(usize) -> streams::Result<Vec<Output>>> {
    fn rendered<K: 'static, V: 'static>(
        topic: TestOutputTopic<K, Option<V>>,
        key: impl Fn(&K) -> String + 'static,
        value: impl Fn(&V) -> String + 'static,
    ) -> Box<dyn Fn(usize) -> streams::Result<Vec<Output>>> {
        Box::new(move |event| {
            Ok(topic
                .read_records_to_list()?
                .into_iter()
                .map(|r| Output {
                    event,
                    topic: "out".into(),
                    key: key(&r.key),
                    value: r.value.as_ref().map(&value),
                    ts: r.timestamp,
                })
                .collect())
        })
    }
    fn window(k: &Windowed<String>) -> String {
        format!("{}@{}/{}", k.key, k.window.start, k.window.end)
    }
    let string = Serdes::string;
    match kind {
        Kind::Strings => rendered(driver.create_output_topic("out", string(), string()), String::clone, String::clone),
        Kind::Counts => rendered(driver.create_output_topic("out", string(), Serdes::i64()), String::clone, i64::to_string),
        Kind::Windowed { size, counts } => {
            let keys = WindowedSerde::time(Arc::new(string()), size);
            if counts {
                rendered(driver.create_output_topic("out", keys, Serdes::i64()), window, i64::to_string)
            } else {
                rendered(driver.create_output_topic("out", keys, string()), window, String::clone)
            }
        }
        Kind::Session { counts } => {
            let keys = WindowedSerde::session(Arc::new(string()));
            if counts {
                rendered(driver.create_output_topic("out", keys, Serdes::i64()), window, i64::to_string)
            } else {
                rendered(driver.create_output_topic("out", keys, string()), window, String::clone)
            }
        }
    }
}

/// Runs `scenario` through this project's TopologyTestDriver.
fn run_ours(entry: &Entry, scenario: &Scenario) -> Outcome {
    let run = || -> streams::Result<Vec<Output>> {
        let mut config = StreamsConfig::new().with(StreamsConfig::APPLICATION_ID, "conformance");
        // In memory where the machine has a tmpfs: the driver commits (and so flushes) after
        // every record.
        if std::path::Path::new("/dev/shm").is_dir() {
            config = config.with(StreamsConfig::STATE_DIR, "/dev/shm/streams-conformance");
        }
        let driver = TopologyTestDriver::new((entry.build)(), config)?;
        let read = reader(&driver, entry.output);
        let mut inputs = std::collections::HashMap::new();
        let mut outputs = Vec::new();
        for (i, event) in scenario.events.iter().enumerate() {
            match event {
                Event::Record { topic, key, value, ts } => {
                    let input = inputs.entry(topic.clone()).or_insert_with(|| {
                        driver.create_input_topic::<String, Option<String>>(topic, Serdes::string(), Serdes::string())
                    });
                    input.pipe_input_at(key.clone(), value.clone(), *ts)?;
                }
                Event::Advance { advance } => {
                    driver.advance_wall_clock_time(std::time::Duration::from_millis(*advance as u64))?
                }
            }
            // Kafka Streams' driver commits after every record and every wall-clock advance.
            driver.commit()?;
            outputs.extend(read(i)?);
        }
        driver.close()?;
        Ok(outputs)
    };
    run().map_err(|e| format!("{e:#}"))
}

/// The two outcomes agree: the same records in the same order, or both failed.
fn agree(reference: &Outcome, ours: &Outcome) -> bool {
    match (reference, ours) {
        (Ok(a), Ok(b)) => a == b,
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

fn print_outcome(label: &str, outcome: &Outcome) {
    match outcome {
        Ok(outputs) if outputs.is_empty() => eprintln!("  {label}: no output"),
        Ok(outputs) => {
            eprintln!("  {label}:");
            for o in outputs {
                eprintln!("    {o}");
            }
        }
        Err(e) => eprintln!("  {label}: failed: {}", e.lines().next().unwrap_or_default()),
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Whether the machine can run the reference runner; says why not on stderr.
fn reference_available() -> bool {
    let missing: Vec<&str> = ["java", "javac", "mvn"]
        .into_iter()
        .filter(|tool| Command::new(tool).arg("-version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = format!("conformance: skipped: {} not found (Kafka Streams runs on a JDK, resolved by Maven)", missing.join(", "));
    let required = ["STREAMS_REQUIRE_ALL", "STREAMS_REQUIRE_JAVA"].iter().any(|v| std::env::var(v).as_deref() == Ok("1"));
    assert!(!required, "{why}, and STREAMS_REQUIRE_JAVA=1 (or STREAMS_REQUIRE_ALL=1)");
    eprintln!("{why}");
    false
}

#[test]
fn catalogue_conforms_to_kafka_streams() {
    if !reference_available() {
        return;
    }
    let seeds = env_number("CONFORMANCE_SEEDS", 200);
    let only: Option<Vec<String>> =
        std::env::var("CONFORMANCE_TOPOLOGIES").ok().map(|v| v.split(',').map(str::to_string).collect());
    let mut reference = Reference::start().expect("start the reference runner");
    let entries = catalogue();
    let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
    assert_eq!(reference.names(), names, "the Java and Rust catalogues list the same topologies in the same order");
    assert!(entries.len() >= 30, "at least 30 topologies");

    let mut failed = Vec::new();
    for entry in &entries {
        if only.as_ref().is_some_and(|only| !only.iter().any(|n| n == entry.name)) {
            continue;
        }
        let started = std::time::Instant::now();
        let scenarios: Vec<Scenario> = (0..seeds).map(|seed| generate(entry, seed)).collect();
        let (theirs, ours) = reference.run_all(&scenarios, || scenarios.iter().map(|s| run_ours(entry, s)).collect::<Vec<_>>());
        let mut differing = (0..scenarios.len()).filter(|&i| !agree(&theirs[i], &ours[i]));
        let first = differing.next();
        let count = first.map_or(0, |_| 1 + differing.count());
        let outputs: usize = theirs.iter().filter_map(|o| o.as_ref().ok()).map(Vec::len).sum();
        eprintln!(
            "conformance: {:<28} {} of {seeds} scenarios differ ({outputs} reference outputs, {:.1} s)",
            entry.name,
            count,
            started.elapsed().as_secs_f64()
        );
        if let Some(i) = first {
            let minimal = shrink(&scenarios[i], |s| !agree(&reference.run(s), &run_ours(entry, s)));
            eprintln!("conformance: {} differs from Kafka Streams (seed {i}); minimal scenario:\n{minimal}", entry.name);
            print_outcome("Kafka Streams", &reference.run(&minimal));
            print_outcome("ours", &run_ours(entry, &minimal));
            failed.push(entry.name);
        }
    }
    assert!(failed.is_empty(), "{} topologies differ from Kafka Streams: {}", failed.len(), failed.join(", "));
}

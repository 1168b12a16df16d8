//! WordCount on Kafka.
//!
//! With no arguments it starts an embedded broker (librdkafka's in-process mock cluster), writes
//! sample text to `streams-plaintext-input`, runs the word count, and prints the counts read
//! back from `streams-wordcount-output`. With `--bootstrap-servers host:port` it does the same on
//! a real cluster. `--input FILE` (or `-` for stdin) replaces the sample text.
//!
//! SIGINT (Ctrl-C) or SIGTERM stops it early and cleanly: the application commits, writes its
//! checkpoints and leaves the group before the counts so far are printed.
//!
//! ```sh
//! cargo run --release --example word_count
//! cargo run --release --example word_count -- --bootstrap-servers localhost:9092 --input README.md
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use streams::prelude::*;
use streams::test_utils;
use streams::topologies::{word_count, words, WORD_COUNT_INPUT, WORD_COUNT_OUTPUT};
use streams::test_utils::EmbeddedKafkaCluster;
use streams::{KafkaStreams, Serde, State};

/// Runs the Kafka Streams WordCount.
#[derive(Parser, Debug)]
struct Args {
    /// A Kafka cluster to use instead of the embedded one.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Text to count: a file, or `-` for standard input (default: built-in sample text).
    #[arg(long)]
    input: Option<String>,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How many words to print.
    #[arg(long, default_value_t = 20)]
    top: usize,
}

const SAMPLE: &str = "\
all streams lead to kafka
hello kafka streams
join kafka summit
Apache Kafka Streams is a client library for building applications and microservices
where the input and output data are stored in Kafka clusters
it combines the simplicity of writing and deploying standard applications on the client side
with the benefits of Kafka's server-side cluster technology";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let text = match args.input.as_deref() {
        None => vec![SAMPLE; 200].join("\n"),
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
        Some(path) => std::fs::read_to_string(path)?,
    };
    let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
    let word_total: usize = lines.iter().map(|l| words(l.clone()).len()).sum();

    let application_id = format!("word-count-{}", std::process::id());
    let topology = word_count(Materialized::as_("counts"));
    let _embedded; // keeps the embedded cluster alive until the end
    let bootstrap = match &args.bootstrap_servers {
        Some(servers) => {
            test_utils::ensure_topic(servers, WORD_COUNT_INPUT, 2)?;
            test_utils::ensure_topic(servers, WORD_COUNT_OUTPUT, 2)?;
            servers.clone()
        }
        None => {
            let cluster = EmbeddedKafkaCluster::new(1)?;
            cluster.create_topic(WORD_COUNT_INPUT, 2)?;
            cluster.create_topic(WORD_COUNT_OUTPUT, 2)?;
            cluster.create_internal_topics(&topology, &application_id, |_| 2)?;
            println!("started an embedded broker at {}", cluster.bootstrap_servers());
            let servers = cluster.bootstrap_servers();
            _embedded = cluster;
            servers
        }
    };

    println!("writing {} lines ({} words) to {WORD_COUNT_INPUT}", lines.len(), word_total);
    test_utils::produce(&bootstrap, WORD_COUNT_INPUT, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec()))))?;

    let state_dir = tempfile::tempdir()?;
    let config = StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, &application_id)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, &bootstrap)
        .with(StreamsConfig::NUM_STREAM_THREADS, args.threads.to_string())
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "1000")
        .with(StreamsConfig::STATE_DIR, state_dir.path().to_string_lossy());
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.set_state_listener(|new, old| println!("state: {old:?} -> {new:?}"));
    let started = Instant::now();
    streams.start()?;

    // Done when the group has committed everything in the input and repartition topics (on a
    // real broker the input may also hold lines of earlier runs; they are counted too).
    let repartition = format!("{application_id}-counts-repartition");
    let stop = shutdown_signal();
    loop {
        if stop.load(Ordering::Acquire) {
            println!("signal received: closing (commit, checkpoints, leave the group)");
            break;
        }
        let processed = streams.metrics().sum("stream-thread-metrics", "process-total") as u64;
        let lag = test_utils::group_lag(&bootstrap, &application_id, &[WORD_COUNT_INPUT, &repartition])?;
        println!("  processed {processed:>8} records, {lag:>8} to go ({:.1} s)", started.elapsed().as_secs_f64());
        if lag == 0 && streams.state() == State::Running {
            break;
        }
        if matches!(streams.state(), State::Error | State::PendingError | State::NotRunning) {
            return Err(format!("stopped: {:?}", streams.take_error()).into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if !streams.close(Duration::from_secs(30)) {
        return Err("the stream threads did not stop within 30 s".into());
    }
    println!("done in {:.2} s", started.elapsed().as_secs_f64());

    let mut counts = BTreeMap::new();
    for record in test_utils::read_all(&bootstrap, WORD_COUNT_OUTPUT, Duration::from_millis(500))? {
        let word: String = Serdes::string().deserialize(WORD_COUNT_OUTPUT, record.key.as_deref())?;
        let count: i64 = Serdes::i64().deserialize(WORD_COUNT_OUTPUT, record.value.as_deref())?;
        counts.insert(word, count);
    }
    let mut top: Vec<(String, i64)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    println!("\ntop {} of {} words:", args.top.min(top.len()), top.len());
    for (word, count) in top.iter().take(args.top) {
        println!("  {word:<20} {count}");
    }
    Ok(())
}

/// A flag set on the first SIGINT or SIGTERM.
fn shutdown_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("signal runtime");
        runtime.block_on(async {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        });
        set.store(true, Ordering::Release);
    });
    flag
}

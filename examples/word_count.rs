//! WordCount, as Kafka Streams' WordCountDemo: counts the words of `streams-plaintext-input`
//! into the `counts` store and `streams-wordcount-output`.
//!
//! Against a cluster (`--bootstrap-servers host:port`) it only consumes: it keeps its
//! application id (`--application-id`, default `streams-wordcount`) and its state directory
//! (`--state-dir`, default under the user's data directory), so a second run resumes where the
//! first stopped and counts each line once. `--input FILE` (`-` for stdin) first writes the
//! lines of a file to the input topic. It runs until SIGINT or SIGTERM (the application then
//! commits, writes its checkpoints and leaves the group), printing progress every two seconds;
//! `--until-caught-up` stops instead once everything in the input is processed and committed.
//!
//! Without `--bootstrap-servers` it starts an embedded broker (librdkafka's in-process mock
//! cluster), writes sample text, and keeps its state in a temporary directory (the broker, and
//! so the changelogs, live only as long as the process).
//!
//! Before it exits it prints the most frequent words, read from its store with an interactive
//! query.
//!
//! ```sh
//! cargo run --release --example word_count -- --until-caught-up
//! cargo run --release --example word_count -- --bootstrap-servers localhost:9092 --input README.md
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use streams::prelude::*;
use streams::query::{QueryableStoreTypes, StoreQueryParameters};
use streams::test_utils;
use streams::test_utils::EmbeddedKafkaCluster;
use streams::topologies::{word_count_between, WORD_COUNT_INPUT, WORD_COUNT_OUTPUT};
use streams::{KafkaStreams, State};

/// Runs the Kafka Streams WordCount.
#[derive(Parser, Debug)]
struct Args {
    /// A Kafka cluster to use instead of the embedded one.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Lines to write to the input topic first: a file, or `-` for standard input (the
    /// embedded broker gets built-in sample text without it).
    #[arg(long)]
    input: Option<String>,
    /// The application id: consumer group, internal topics, state directory.
    #[arg(long, default_value = "streams-wordcount")]
    application_id: String,
    /// Where the stores live (default: `<data dir>/streams/<application id>`; a temporary
    /// directory on the embedded broker).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The topic of lines to count.
    #[arg(long, default_value = WORD_COUNT_INPUT)]
    input_topic: String,
    /// The topic the counts go to.
    #[arg(long, default_value = WORD_COUNT_OUTPUT)]
    output_topic: String,
    /// Stop once the input is processed and committed, instead of running until a signal.
    #[arg(long)]
    until_caught_up: bool,
    /// How many words to print at the end.
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
        None if args.bootstrap_servers.is_none() => Some(vec![SAMPLE; 200].join("\n")),
        None => None,
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Some(text)
        }
        Some(path) => Some(std::fs::read_to_string(path)?),
    };

    let application_id = args.application_id.clone();
    let topology = word_count_between(&args.input_topic, &args.output_topic, Materialized::as_("counts"));
    let _embedded; // keeps the embedded cluster alive until the end
    let _temporary_state;
    let (bootstrap, state_dir) = match &args.bootstrap_servers {
        Some(servers) => {
            test_utils::ensure_topic(servers, &args.input_topic, 2)?;
            test_utils::ensure_topic(servers, &args.output_topic, 2)?;
            (servers.clone(), args.state_dir.clone().unwrap_or_else(|| data_dir().join(&application_id)))
        }
        None => {
            let cluster = EmbeddedKafkaCluster::new(1)?;
            cluster.create_topic(&args.input_topic, 2)?;
            cluster.create_topic(&args.output_topic, 2)?;
            cluster.create_internal_topics(&topology, &application_id, |_| 2)?;
            println!("started an embedded broker at {}", cluster.bootstrap_servers());
            let servers = cluster.bootstrap_servers();
            _embedded = cluster;
            let dir = tempfile::tempdir()?;
            let path = dir.path().to_path_buf();
            _temporary_state = dir;
            (servers, args.state_dir.clone().unwrap_or(path))
        }
    };

    if let Some(text) = text {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        println!("writing {} lines to {}", lines.len(), args.input_topic);
        test_utils::produce(&bootstrap, &args.input_topic, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec()))))?;
    }

    let config = StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, &application_id)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, &bootstrap)
        .with(StreamsConfig::NUM_STREAM_THREADS, args.threads.to_string())
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "1000")
        .with(StreamsConfig::STATE_DIR, state_dir.to_string_lossy());
    println!("application {application_id}, state in {}", state_dir.display());
    let mut streams = KafkaStreams::new(topology, config)?;
    streams.set_state_listener(|new, old| println!("state: {old:?} -> {new:?}"));
    let started = Instant::now();
    streams.start()?;

    let repartition = format!("{application_id}-counts-repartition");
    let stop = shutdown_signal();
    let mut last_report = Instant::now() - Duration::from_secs(2);
    loop {
        if stop.load(Ordering::Acquire) {
            println!("signal received: closing (commit, checkpoints, leave the group)");
            break;
        }
        if matches!(streams.state(), State::Error | State::PendingError | State::NotRunning) {
            return Err(format!("stopped: {:?}", streams.take_error()).into());
        }
        let caught_up = args.until_caught_up
            && streams.state() == State::Running
            && test_utils::group_lag(&bootstrap, &application_id, &[&args.input_topic, &repartition])? == 0;
        if last_report.elapsed() >= Duration::from_secs(2) || caught_up {
            last_report = Instant::now();
            let metrics = streams.metrics();
            println!(
                "  {:>6.1} s  {:?}: processed {:>9} records ({:>8.0}/s), lag {}",
                started.elapsed().as_secs_f64(),
                streams.state(),
                metrics.sum("stream-thread-metrics", "process-total"),
                metrics.sum("stream-thread-metrics", "process-rate"),
                metrics.sum("consumer-fetch-manager-metrics", "records-lag"),
            );
        }
        if caught_up {
            println!("caught up");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    print_top(&streams, args.top);
    if !streams.close(Duration::from_secs(30)) {
        return Err("the stream threads did not stop within 30 s".into());
    }
    println!("closed after {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The most frequent words, from the `counts` store of this instance.
fn print_top(streams: &KafkaStreams, n: usize) {
    let params = StoreQueryParameters::from_name_and_type("counts", QueryableStoreTypes::key_value::<String, i64>());
    let all = streams.store(params).and_then(|store| store.all()?.collect::<streams::Result<Vec<_>>>());
    match all {
        Ok(mut counts) => {
            counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            println!("\ntop {} of {} words:", n.min(counts.len()), counts.len());
            for (word, count) in counts.iter().take(n) {
                println!("  {word:<20} {count}");
            }
        }
        Err(e) => println!("the counts cannot be read now: {e}"),
    }
}

/// `$XDG_DATA_HOME/streams`, else `~/.local/share/streams`, else the temporary directory.
fn data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("streams")
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

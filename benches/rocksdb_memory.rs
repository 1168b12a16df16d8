//! Memory of many RocksDB stores: 100 tasks x 2 stores (a count and a reduce per key, caching
//! off so every update reaches RocksDB, logging off) loaded once through the TopologyTestDriver
//! and once by `KafkaStreams` reading a 100-partition topic from a broker, each with RocksDB's
//! defaults and under `BoundedMemory` (64 MiB shared block cache, 16 MiB of it for memtables).
//! Each configuration runs in a process of its own; the table gives each one's peak RSS (VmHWM)
//! and the shared cache's usage.
//!
//! `cargo bench --bench rocksdb_memory` measures 200 stores and 2,000,000 updates of 200-byte
//! values (ROCKSDB_MEMORY_RECORDS changes the count; the runtime runs use
//! `STREAMS_BOOTSTRAP_SERVERS` if set, else the embedded broker, which holds at most 1,000,000
//! of them); without `--bench` (as `cargo test` runs benches) a small smoke run checks every
//! configuration works.

use std::process::Command;
use std::time::{Duration, Instant};

use streams::prelude::*;
use streams::state::BoundedMemory;
use streams::test_utils::{self, EmbeddedKafkaCluster};
use streams::{KafkaStreams, State, Topology};

const BUDGET: usize = 64 << 20;
const WRITE_BUFFERS: usize = 16 << 20;

fn topology(topic: &str) -> Topology {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, String>(topic, Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()));
    // No changelogs: the driver would keep every changelog record in memory, where the
    // runtime sends them to Kafka.
    grouped.count(Materialized::as_("counts").with_caching_disabled().with_logging_disabled());
    grouped.reduce(|_, latest| latest, Materialized::as_("latest").with_caching_disabled().with_logging_disabled());
    builder.build().unwrap()
}

/// Peak and current resident set size in MiB, from /proc/self/status.
fn rss_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

/// `records` updates of 200-byte values, their keys drawn (xorshift) from a quarter as many.
fn updates(records: usize) -> impl Iterator<Item = (String, String)> {
    let value = "v".repeat(200);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..records).map(move |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (format!("key-{:08}", state % (records as u64 / 4).max(1)), value.clone())
    })
}

fn result_line(label: &str, stores: usize, records: usize, memory: Option<&BoundedMemory>, elapsed: f64) {
    let (peak, now) = rss_mib().unwrap_or((f64::NAN, f64::NAN));
    println!(
        "RESULT {label} stores={stores} records={records} peak_rss_mib={peak:.0} rss_mib={now:.0} cache_mib={:.0} records_per_s={:.0}",
        memory.map_or(f64::NAN, |m| m.usage() as f64 / (1 << 20) as f64),
        records as f64 / elapsed,
    );
}

/// The application reading `topic` in one configuration (`default` or `bounded`).
fn application_id(topic: &str, mode: &str) -> String {
    format!("{topic}-{mode}")
}

/// One configuration under the runtime, in this process: reads `records` updates of `topic`
/// (already produced) with one stream thread and prints one result line.
fn measure_runtime(bounded: bool, servers: &str, topic: &str, partitions: i32, records: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, application_id(topic, if bounded { "bounded" } else { "default" }))
        .with(StreamsConfig::BOOTSTRAP_SERVERS, servers)
        .with(StreamsConfig::NUM_STREAM_THREADS, "1")
        .with(StreamsConfig::STATE_DIR, dir.path().to_string_lossy());
    let memory = BoundedMemory::new(BUDGET, WRITE_BUFFERS);
    if bounded {
        config.set_rocksdb_config_setter(memory.clone());
    }
    let mut streams = KafkaStreams::new(topology(topic), config).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(120)), State::Running, "{:?}", streams.take_error());
    let started = Instant::now();
    while (streams.metrics().sum("stream-thread-metrics", "process-total") as usize) < records {
        assert_eq!(streams.state(), State::Running, "{:?}", streams.take_error());
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    // One thread of one instance: every partition's task, each with both stores.
    let label = if bounded { "runtime bounded" } else { "runtime default" };
    result_line(label, partitions as usize * 2, records, bounded.then_some(&memory), elapsed);
    assert!(streams.close(Duration::from_secs(120)));
}

/// One configuration through the driver, in this process: loads the stores and prints one result line.
fn measure(bounded: bool, partitions: i32, records: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, "rocksdb-memory")
        .with(StreamsConfig::STATE_DIR, dir.path().to_string_lossy());
    let memory = BoundedMemory::new(BUDGET, WRITE_BUFFERS);
    if bounded {
        config.set_rocksdb_config_setter(memory.clone());
    }
    let driver = TopologyTestDriver::with_partitions(topology("updates"), config, &[("updates", partitions)]).unwrap();
    let stores = driver.task_ids().len() * 2;
    let mut input = driver.create_input_topic::<String, String>("updates", Serdes::string(), Serdes::string());
    let started = Instant::now();
    for (key, value) in updates(records) {
        input.pipe_input(key, value).unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let label = if bounded { "driver bounded" } else { "driver default" };
    result_line(label, stores, records, bounded.then_some(&memory), elapsed);
    driver.close().unwrap();
}

/// Runs one configuration in a child process and returns its result line.
fn child(mode: &str, envs: &[(&str, String)]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .env("ROCKSDB_MEMORY_MODE", mode)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run a measurement");
    assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("RESULT")).expect("a result").to_string()
}

fn peak(line: &str) -> f64 {
    line.split_whitespace().find_map(|f| f.strip_prefix("peak_rss_mib=")).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn report(title: &str, lines: &[String]) {
    println!("\n{title}, one process each:");
    for line in lines {
        println!("  {}", line.trim_start_matches("RESULT "));
    }
    println!(
        "  peak RSS bounded / default: {:.2}; budget {} MiB (block cache + memtables)",
        peak(&lines[1]) / peak(&lines[0]),
        BUDGET >> 20
    );
}

fn main() {
    if let Ok(mode) = std::env::var("ROCKSDB_MEMORY_MODE") {
        let var = |name: &str| std::env::var(name).unwrap();
        let records: usize = var("ROCKSDB_MEMORY_RECORDS").parse().unwrap();
        let partitions: i32 = var("ROCKSDB_MEMORY_PARTITIONS").parse().unwrap();
        match mode.strip_prefix("runtime-") {
            Some(mode) => {
                measure_runtime(mode == "bounded", &var("ROCKSDB_MEMORY_SERVERS"), &var("ROCKSDB_MEMORY_TOPIC"), partitions, records)
            }
            None => measure(mode == "bounded", partitions, records),
        }
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (partitions, records) = if full {
        (100, std::env::var("ROCKSDB_MEMORY_RECORDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2_000_000))
    } else {
        (4, 2_000)
    };
    let driver: Vec<String> = ["default", "bounded"]
        .iter()
        .map(|mode| {
            child(mode, &[("ROCKSDB_MEMORY_PARTITIONS", partitions.to_string()), ("ROCKSDB_MEMORY_RECORDS", records.to_string())])
        })
        .collect();

    // The runtime: the same updates produced once to a topic of `partitions` partitions, read by
    // a fresh application per configuration. The embedded broker lives in this process, so its
    // log is not counted in the children's RSS.
    let external = std::env::var("STREAMS_BOOTSTRAP_SERVERS").ok().filter(|s| !s.is_empty());
    let embedded = if external.is_none() { Some(EmbeddedKafkaCluster::new(1).expect("embedded broker")) } else { None };
    let servers = external.unwrap_or_else(|| embedded.as_ref().unwrap().bootstrap_servers());
    let runtime_records = if embedded.is_some() { records.min(1_000_000) } else { records };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let topic = format!("rocksdb-memory-{}", nanos % 1_000_000_000_000);
    match &embedded {
        Some(cluster) => {
            cluster.create_topic(&topic, partitions).unwrap();
            for mode in ["default", "bounded"] {
                cluster.create_internal_topics(&topology(&topic), &application_id(&topic, mode), |_| partitions).unwrap();
            }
        }
        None => test_utils::ensure_topic(&servers, &topic, partitions).unwrap(),
    }
    let records_bytes = updates(runtime_records).map(|(k, v)| (Some(k.into_bytes()), Some(v.into_bytes())));
    test_utils::produce(&servers, &topic, records_bytes).unwrap();
    let runtime: Vec<String> = ["runtime-default", "runtime-bounded"]
        .iter()
        .map(|mode| {
            child(
                mode,
                &[
                    ("ROCKSDB_MEMORY_SERVERS", servers.clone()),
                    ("ROCKSDB_MEMORY_TOPIC", topic.clone()),
                    ("ROCKSDB_MEMORY_PARTITIONS", partitions.to_string()),
                    ("ROCKSDB_MEMORY_RECORDS", runtime_records.to_string()),
                ],
            )
        })
        .collect();

    report(&format!("RocksDB memory, {} stores, {records} updates of 200-byte values (TopologyTestDriver)", partitions * 2), &driver);
    let broker = if embedded.is_some() { "the embedded broker".to_string() } else { servers };
    report(
        &format!("RocksDB memory, {} stores, {runtime_records} updates of 200-byte values (KafkaStreams, 1 stream thread, {broker})", partitions * 2),
        &runtime,
    );
}

//! Memory of many RocksDB stores: 100 tasks x 2 stores (a count and a reduce per key, caching
//! off so every update reaches RocksDB, logging off) loaded through the TopologyTestDriver, once with
//! RocksDB's defaults and once under `BoundedMemory` (64 MiB shared block cache, 16 MiB of it
//! for memtables). Each configuration runs in a process of its own; the table gives each one's
//! peak RSS (VmHWM) and the shared cache's usage.
//!
//! `cargo bench --bench rocksdb_memory` measures 200 stores and 2,000,000 updates of 200-byte
//! values (ROCKSDB_MEMORY_RECORDS changes the count); without `--bench` (as `cargo test` runs
//! benches) a small smoke run checks both configurations work.

use std::process::Command;
use std::time::Instant;

use streams::prelude::*;
use streams::state::BoundedMemory;
use streams::Topology;

const BUDGET: usize = 64 << 20;
const WRITE_BUFFERS: usize = 16 << 20;

fn topology() -> Topology {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, String>("updates", Consumed::with(Serdes::string(), Serdes::string()))
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

/// One configuration, in this process: loads the stores and prints one result line.
fn measure(bounded: bool, partitions: i32, records: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, "rocksdb-memory")
        .with(StreamsConfig::STATE_DIR, dir.path().to_string_lossy());
    let memory = BoundedMemory::new(BUDGET, WRITE_BUFFERS);
    if bounded {
        config.set_rocksdb_config_setter(memory.clone());
    }
    let driver = TopologyTestDriver::with_partitions(topology(), config, &[("updates", partitions)]).unwrap();
    let stores = driver.task_ids().len() * 2;
    let mut input = driver.create_input_topic::<String, String>("updates", Serdes::string(), Serdes::string());
    let value = "v".repeat(200);
    let started = Instant::now();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..records {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        input.pipe_input(format!("key-{:08}", state % (records as u64 / 4).max(1)), value.clone()).unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (peak, now) = rss_mib().unwrap_or((f64::NAN, f64::NAN));
    println!(
        "RESULT {} stores={stores} records={records} peak_rss_mib={peak:.0} rss_mib={now:.0} cache_mib={:.0} records_per_s={:.0}",
        if bounded { "bounded" } else { "default" },
        if bounded { memory.usage() as f64 / (1 << 20) as f64 } else { f64::NAN },
        records as f64 / elapsed,
    );
    driver.close().unwrap();
}

fn main() {
    if let Ok(mode) = std::env::var("ROCKSDB_MEMORY_MODE") {
        let partitions: i32 = std::env::var("ROCKSDB_MEMORY_PARTITIONS").unwrap().parse().unwrap();
        let records: usize = std::env::var("ROCKSDB_MEMORY_RECORDS").unwrap().parse().unwrap();
        measure(mode == "bounded", partitions, records);
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (partitions, records) = if full {
        (100, std::env::var("ROCKSDB_MEMORY_RECORDS").ok().and_then(|r| r.parse().ok()).unwrap_or(2_000_000))
    } else {
        (4, 2_000)
    };
    let mut lines = Vec::new();
    for mode in ["default", "bounded"] {
        let out = Command::new(std::env::current_exe().unwrap())
            .env("ROCKSDB_MEMORY_MODE", mode)
            .env("ROCKSDB_MEMORY_PARTITIONS", partitions.to_string())
            .env("ROCKSDB_MEMORY_RECORDS", records.to_string())
            .output()
            .expect("run a measurement");
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout).lines().find(|l| l.starts_with("RESULT")).expect("a result").to_string();
        lines.push(line);
    }
    let peak = |line: &str| -> f64 {
        line.split_whitespace().find_map(|f| f.strip_prefix("peak_rss_mib=")).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
    };
    println!("\nRocksDB memory, {} stores, {records} updates of 200-byte values (TopologyTestDriver), one process each:", partitions * 2);
    for line in &lines {
        println!("  {}", line.trim_start_matches("RESULT "));
    }
    println!(
        "  peak RSS bounded / default: {:.2}; budget {} MiB (block cache + memtables)",
        peak(&lines[1]) / peak(&lines[0]),
        BUDGET >> 20
    );
}

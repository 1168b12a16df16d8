//! Word count through the TopologyTestDriver: records/s with RocksDB and in-memory stores.
//!
//! Criterion measures each variant; then a side-by-side run (variants interleaved, medians of
//! several rounds) prints records/s and the ratios between store kinds in one go.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};

mod common;
use streams::prelude::*;
use streams::Topology;

const LINES: usize = 2_000;
const WORDS_PER_LINE: usize = 10; // as random_lines makes them
const VOCABULARY: u64 = 1_000;

fn corpus() -> Vec<String> {
    streams::topologies::random_lines(LINES, VOCABULARY, 0x9e37_79b9_7f4a_7c15)
}

#[derive(Clone, Copy)]
enum Variant {
    RocksDb,
    RocksDbCached,
    InMemory,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::RocksDb => "rocksdb",
            Variant::RocksDbCached => "rocksdb+cache",
            Variant::InMemory => "in-memory",
        }
    }

    fn topology(self) -> Topology {
        let materialized = match self {
            Variant::RocksDb => Materialized::as_("counts").with_caching_disabled(),
            Variant::RocksDbCached => Materialized::as_("counts"),
            Variant::InMemory => Materialized::as_("counts").in_memory().with_caching_disabled(),
        };
        streams::topologies::word_count(materialized)
    }
}

/// A fresh driver (setup, not measured) for one pass over the corpus.
fn driver(variant: Variant) -> TopologyTestDriver {
    let config = StreamsConfig::new().with(StreamsConfig::APPLICATION_ID, "bench-wc");
    TopologyTestDriver::new(variant.topology(), config).expect("driver")
}

/// Pipes the corpus and commits; returns the words counted.
fn run(driver: &TopologyTestDriver, lines: &[String]) -> u64 {
    let mut input = driver.create_input_topic::<Option<String>, String>(streams::topologies::WORD_COUNT_INPUT, Serdes::string(), Serdes::string());
    for line in lines {
        input.pipe_value(line.clone()).expect("pipe");
    }
    driver.commit().expect("commit");
    driver.metrics().processed_records
}

fn side_by_side(lines: &[String]) {
    let variants = [Variant::RocksDb, Variant::RocksDbCached, Variant::InMemory];
    let medians = common::median_rates(&variants, 7, |variant| {
        let d = driver(variant);
        let started = Instant::now();
        (run(&d, lines), started.elapsed())
    });
    println!("\nword count through TopologyTestDriver ({} lines, {} words; records = lines + words), median of 7:", LINES, LINES * WORDS_PER_LINE);
    for (variant, median) in variants.iter().zip(&medians) {
        println!("  {:<14} {:>12.0} records/s   ratio to in-memory {:.2}", variant.name(), median, median / medians[2]);
    }
}

fn main() {
    let lines = corpus();
    let mut criterion = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = criterion.benchmark_group("word_count_test_driver");
    group.throughput(Throughput::Elements((LINES * (WORDS_PER_LINE + 1)) as u64));
    for variant in [Variant::RocksDb, Variant::RocksDbCached, Variant::InMemory] {
        group.bench_function(variant.name(), |b| {
            b.iter_batched(|| driver(variant), |d| run(&d, &lines), BatchSize::PerIteration)
        });
    }
    group.finish();
    criterion.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not: keep test runs short.
    if std::env::args().any(|a| a == "--bench") {
        side_by_side(&lines);
    }
}

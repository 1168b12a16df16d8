//! Windowed count and stream-stream join through the TopologyTestDriver, side by side with a
//! pass-through topology (the "raw pipe" of the driver: source -> sink): records/s and ratios.
//!
//! Each round builds fresh drivers and interleaves the variants; medians of 7 rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};

mod common;
use streams::prelude::*;
use streams::state::WindowedSerde;
use streams::{JoinWindows, StreamJoined, TimeWindows, Topology};

const RECORDS: usize = 20_000;
const KEYS: usize = 1_000;

#[derive(Clone, Copy)]
enum Variant {
    Pipe,
    WindowedCount,
    WindowedCountCached,
    Join,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Pipe => "pipe",
            Variant::WindowedCount => "windowed count",
            Variant::WindowedCountCached => "windowed count+cache",
            Variant::Join => "stream-stream join",
        }
    }

    fn topology(self) -> Topology {
        let builder = StreamsBuilder::new();
        let consumed = || Consumed::<String, String>::with(Serdes::string(), Serdes::string());
        let left = builder.stream("left", consumed());
        match self {
            Variant::Pipe => left.to("out", Produced::with(Serdes::string(), Serdes::string())),
            Variant::WindowedCount | Variant::WindowedCountCached => {
                let materialized = Materialized::as_("counts");
                let materialized =
                    if matches!(self, Variant::WindowedCount) { materialized.with_caching_disabled() } else { materialized };
                left.group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
                    .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(60)))
                    .count(materialized)
                    .to_stream()
                    .to("out", Produced::with(WindowedSerde::time(Arc::new(Serdes::string()), 60_000), Serdes::i64()));
            }
            Variant::Join => {
                let right = builder.stream("right", consumed());
                left.join(
                    &right,
                    |l, r| format!("{l}{r}"),
                    JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(10)),
                    StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string()),
                )
                .to("out", Produced::with(Serdes::string(), Serdes::string()));
            }
        }
        builder.build().unwrap()
    }
}

fn driver(variant: Variant) -> TopologyTestDriver {
    let config = StreamsConfig::new().with(StreamsConfig::APPLICATION_ID, "bench-windows");
    TopologyTestDriver::new(variant.topology(), config).expect("driver")
}

/// Pipes `RECORDS` input records 1 ms apart and commits; returns the records processed. For
/// the join, half left and half right: a key's 10 left and 10 right records all fall within
/// one 10 s window, so it emits 100 results per key, 5 per input record.
fn run(driver: &TopologyTestDriver, variant: Variant) -> u64 {
    let mut left = driver.create_input_topic::<String, String>("left", Serdes::string(), Serdes::string());
    if let Variant::Join = variant {
        let mut right = driver.create_input_topic::<String, String>("right", Serdes::string(), Serdes::string());
        for i in 0..RECORDS / 2 {
            let key = format!("key-{}", i % KEYS);
            left.pipe_input_at(key.clone(), "l".into(), i as i64).expect("pipe");
            right.pipe_input_at(key, "r".into(), i as i64).expect("pipe");
        }
    } else {
        for i in 0..RECORDS {
            left.pipe_input_at(format!("key-{}", i % KEYS), "v".into(), i as i64).expect("pipe");
        }
    }
    driver.commit().expect("commit");
    driver.metrics().processed_records
}

fn side_by_side() {
    let variants = [Variant::Pipe, Variant::WindowedCount, Variant::WindowedCountCached, Variant::Join];
    let medians = common::median_rates(&variants, 7, |variant| {
        let d = driver(variant);
        let started = Instant::now();
        (run(&d, variant), started)
    });
    println!("\nwindows and joins through TopologyTestDriver ({RECORDS} records over {KEYS} keys, RocksDB), median of 7:");
    for (variant, median) in variants.iter().zip(&medians) {
        println!("  {:<22} {:>10.0} records/s   ratio to pipe {:.2}", variant.name(), median, median / medians[0]);
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = criterion.benchmark_group("windows_joins_test_driver");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for variant in [Variant::Pipe, Variant::WindowedCount, Variant::WindowedCountCached, Variant::Join] {
        group.bench_function(variant.name(), |b| {
            b.iter_batched(|| driver(variant), |d| run(&d, variant), BatchSize::PerIteration)
        });
    }
    group.finish();
    criterion.final_summary();
    if std::env::args().any(|a| a == "--bench") {
        side_by_side();
    }
}

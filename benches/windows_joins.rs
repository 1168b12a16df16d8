//! Windowed count and stream-stream join through the TopologyTestDriver, side by side with a
//! pass-through topology (the "raw pipe" of the driver: source -> sink): records/s and ratios.
//! Beside them, the RocksDB operations each stateful topology issues per record, issued
//! directly through the rocksdb crate: what RocksDB alone costs, so the ratio to the
//! pass-through that any implementation over RocksDB could reach.
//!
//! Each round builds fresh drivers (and databases) and interleaves the variants; medians of 7 rounds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use streams::state::rocksdb::{Options, WriteOptions, DB};

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
    /// The windowed count's RocksDB work per record: get and put of the key's window.
    RocksDbCount,
    /// The join's: put into this side's store, then a bounded scan of the other side's.
    RocksDbJoin,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Pipe => "pipe",
            Variant::WindowedCount => "windowed count",
            Variant::WindowedCountCached => "windowed count+cache",
            Variant::Join => "stream-stream join",
            Variant::RocksDbCount => "RocksDB alone: count",
            Variant::RocksDbJoin => "RocksDB alone: join",
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
            Variant::RocksDbCount | Variant::RocksDbJoin => unreachable!("not a topology"),
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

/// Two RocksDB instances opened as the stores open theirs (the library's default options, no
/// write-ahead log), one per side of a join.
struct RocksDbAlone {
    _dir: tempfile::TempDir,
    dbs: [DB; 2],
    write: WriteOptions,
}

impl RocksDbAlone {
    fn open() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = Options::default();
        options.create_if_missing(true);
        options.set_max_background_jobs(2);
        options.set_compression_type(streams::state::rocksdb::DBCompressionType::Lz4);
        let dbs = ["left", "right"].map(|side| DB::open(&options, dir.path().join(side)).expect("open RocksDB"));
        let mut write = WriteOptions::default();
        write.disable_wal(true);
        RocksDbAlone { _dir: dir, dbs, write }
    }

    /// The stores' key of `key`'s window at `start` (and, for a join, the record's sequence number).
    fn window_key(out: &mut Vec<u8>, key: &str, start: i64, seq: Option<u32>) {
        out.clear();
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&start.to_be_bytes());
        if let Some(seq) = seq {
            out.extend_from_slice(&seq.to_be_bytes());
        }
    }

    /// The same records as [`run`]: the count reads and writes a 60 s window's count and
    /// timestamp; the join writes each record and reads the other side's records 10 s around it
    /// through a kept iterator, refreshed before each read, as the stores read. Returns the records.
    fn run(&self, variant: Variant) -> u64 {
        let (mut key, mut until, mut read) = (Vec::new(), Vec::new(), 0usize);
        let mut cursors = self.dbs.each_ref().map(|db| db.raw_iterator());
        for i in 0..RECORDS {
            // The join pipes a left and a right record of one key per millisecond.
            let name = format!("key-{}", if let Variant::RocksDbCount = variant { i } else { i / 2 } % KEYS);
            match variant {
                Variant::RocksDbCount => {
                    Self::window_key(&mut key, &name, 0, None);
                    let count = self.dbs[0].get(&key).expect("get").map_or(0, |v| i64::from_be_bytes(v[..8].try_into().unwrap()));
                    let value = [(count + 1).to_be_bytes(), (i as i64).to_be_bytes()].concat();
                    self.dbs[0].put_opt(&key, value, &self.write).expect("put");
                }
                _ => {
                    let (side, t) = (i % 2, (i / 2) as i64);
                    Self::window_key(&mut key, &name, t, Some(i as u32));
                    self.dbs[side].put_opt(&key, if side == 0 { "l" } else { "r" }, &self.write).expect("put");
                    Self::window_key(&mut key, &name, (t - 10_000).max(0), Some(0));
                    Self::window_key(&mut until, &name, t + 10_000, Some(u32::MAX));
                    let cursor = &mut cursors[1 - side];
                    cursor.refresh().expect("refresh");
                    cursor.seek(&key);
                    while let Some((k, v)) = cursor.item().filter(|(k, _)| *k <= until.as_slice()) {
                        read += k.len() + v.len();
                        cursor.next();
                    }
                }
            }
        }
        std::hint::black_box(read);
        RECORDS as u64
    }
}

fn side_by_side() {
    let variants = [
        Variant::Pipe,
        Variant::WindowedCount,
        Variant::WindowedCountCached,
        Variant::Join,
        Variant::RocksDbCount,
        Variant::RocksDbJoin,
    ];
    let medians = common::median_rates(&variants, 7, |variant| {
        if let Variant::RocksDbCount | Variant::RocksDbJoin = variant {
            let dbs = RocksDbAlone::open();
            let started = Instant::now();
            return (dbs.run(variant), started.elapsed());
        }
        let d = driver(variant);
        let started = Instant::now();
        (run(&d, variant), started.elapsed())
    });
    println!("\nwindows and joins through TopologyTestDriver ({RECORDS} records over {KEYS} keys, RocksDB), median of 7:");
    for (variant, median) in variants.iter().zip(&medians) {
        println!("  {:<22} {:>10.0} records/s   ratio to pipe {:.2}", variant.name(), median, median / medians[0]);
    }
    // A topology over RocksDB does at least the pass-through's work and RocksDB's: its time per
    // record is at least the sum of theirs.
    let bound = |rocksdb: f64| (1.0 / medians[0]) / (1.0 / medians[0] + 1.0 / rocksdb);
    println!(
        "  bound on the ratio to pipe over RocksDB: windowed count {:.2}, stream-stream join {:.2}",
        bound(medians[4]),
        bound(medians[5])
    );
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

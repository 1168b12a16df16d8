//! Windowed aggregation semantics: epoch-aligned half-open time windows, grace and late
//! records, session merging, suppression of intermediate results.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::config;
use streams::prelude::*;
use streams::state::{Window, Windowed, WindowedSerde};
use streams::{BufferConfig, EmitStrategy, SessionWindows, SlidingWindows, Suppressed, TimeWindows, Topology, ValueAndTimestamp};

const MIN: i64 = 60_000;

/// What a windowed count emits.
#[derive(Clone, Copy)]
enum Emit {
    Updates,
    OnWindowClose,
    Suppressed,
}

fn counts(windows: TimeWindows, caching: bool, emit: Emit) -> Topology {
    let builder = StreamsBuilder::new();
    let materialized = Materialized::as_("counts");
    let materialized = if caching { materialized.with_caching_enabled() } else { materialized.with_caching_disabled() };
    let strategy = if let Emit::OnWindowClose = emit { EmitStrategy::OnWindowClose } else { EmitStrategy::OnWindowUpdate };
    let mut table = builder
        .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by(windows)
        .emit_strategy(strategy)
        .count(materialized);
    if let Emit::Suppressed = emit {
        table = table.suppress(Suppressed::until_window_closes());
    }
    table
        .to_stream()
        .to("out", Produced::with(WindowedSerde::time(Arc::new(Serdes::string()), windows.size_ms), Serdes::i64()));
    builder.build().unwrap()
}

type Out = Vec<(String, i64, i64, Option<i64>)>;

/// Reads `(key, window start, window end, count)` from `out`.
fn read(out: &streams::TestOutputTopic<Windowed<String>, Option<i64>>) -> Out {
    out.read_key_values_to_list()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k.key, k.window.start, k.window.end, v))
        .collect()
}

type Harness = (TopologyTestDriver, streams::TestInputTopic<String, String>, streams::TestOutputTopic<Windowed<String>, Option<i64>>);

fn driver(topology: Topology, size: i64) -> Harness {
    let driver = TopologyTestDriver::new(topology, config("windows")).unwrap();
    let input = driver.create_input_topic::<String, String>("events", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<Windowed<String>, Option<i64>>(
        "out",
        WindowedSerde::time(Arc::new(Serdes::string()), size),
        Serdes::i64(),
    );
    (driver, input, out)
}

#[test]
fn hopping_windows_are_epoch_aligned_and_half_open() {
    let windows = TimeWindows::of_size_with_no_grace(Duration::from_millis(5000)).advance_by(Duration::from_millis(3000));
    let (driver, mut input, out) = driver(counts(windows, false, Emit::Updates), 5000);
    let k = || "k".to_string();
    let row = |start: i64, count: i64| (k(), start, start + 5000, Some(count));
    let steps: &[(i64, Out)] = &[
        (0, vec![row(0, 1)]),
        (3000, vec![row(0, 2), row(3000, 1)]),
        (4999, vec![row(0, 3), row(3000, 2)]),
        (5000, vec![row(3000, 3)]),
        (6000, vec![row(3000, 4), row(6000, 1)]),
    ];
    for (ts, expected) in steps {
        input.pipe_input_at(k(), "v".into(), *ts).unwrap();
        assert_eq!(&read(&out), expected, "record at {ts}");
    }
    let store = driver.window_store::<String, ValueAndTimestamp<i64>>("counts").unwrap();
    let fetched: Vec<(i64, i64)> = store.fetch_range(&k(), 0, 6000).unwrap().map(|e| e.unwrap()).map(|(s, v)| (s, v.value)).collect();
    // Stream time 6000: the window at 0 is a retention (size + grace, 5000) behind and no
    // longer read, as in Kafka Streams.
    assert_eq!(fetched, vec![(3000, 4), (6000, 1)]);
}

#[test]
fn records_later_than_window_end_plus_grace_are_dropped_and_counted() {
    let windows = TimeWindows::of_size_and_grace(Duration::from_secs(10), Duration::from_secs(2));
    let (driver, mut input, out) = driver(counts(windows, false, Emit::Updates), 10_000);
    for ts in [1000, 11_000, 9000, 12_500, 9500] {
        input.pipe_input_at("k".into(), "v".into(), ts).unwrap();
    }
    let row = |start: i64, count: i64| ("k".to_string(), start, start + 10_000, Some(count));
    // 9000 arrives at stream time 11000: [0,10000) closes at 10000 + 2000 > 11000, so it counts.
    // 9500 arrives at stream time 12500 > 12000: dropped.
    assert_eq!(read(&out), vec![row(0, 1), row(10_000, 1), row(0, 2), row(10_000, 2)]);
    assert_eq!(driver.metrics().dropped_records, 1);
}

#[test]
fn the_cache_collapses_the_updates_one_record_makes_to_a_window() {
    // Each record is split into one record per character: with a cache, a window's updates
    // from one input record leave as one (the driver commits after every record).
    let counts = |caching: bool| {
        let builder = StreamsBuilder::new();
        let materialized = Materialized::as_("counts");
        let materialized = if caching { materialized.with_caching_enabled() } else { materialized.with_caching_disabled() };
        builder
            .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
            .flat_map_values(|v: String| v.chars().map(String::from).collect::<Vec<_>>())
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_secs(10)))
            .count(materialized)
            .to_stream()
            .to("out", Produced::with(WindowedSerde::time(Arc::new(Serdes::string()), 10_000), Serdes::i64()));
        let (_driver, mut input, out) = driver(builder.build().unwrap(), 10_000);
        input.pipe_input_at("k".into(), "abc".into(), 0).unwrap();
        input.pipe_input_at("k".into(), "d".into(), 1).unwrap();
        read(&out).into_iter().map(|(_, _, _, count)| count.unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(counts(true), vec![3, 4]);
    assert_eq!(counts(false), vec![1, 2, 3, 4]);
}

fn check_final_results_only(topology: Topology) {
    let (driver, mut input, out) = driver(topology, 60 * MIN);
    // Commit after every record, as the runtime would now and then: a cache upstream then
    // passes its updates on, and suppression still emits only final results.
    let pipe = |input: &mut streams::TestInputTopic<String, String>, key: &str, at_min: i64| {
        input.pipe_input_at(key.to_string(), "v".into(), at_min * MIN).unwrap();
        driver.commit().unwrap();
    };
    for (key, at) in [("a", 0), ("a", 10), ("b", 30), ("a", 50), ("a", 65)] {
        pipe(&mut input, key, at);
    }
    // [0, 60 min) closes at 60 + 10 min of grace.
    assert!(out.is_empty(), "nothing before the window closes: {:?}", read(&out));
    pipe(&mut input, "c", 69);
    assert!(out.is_empty());
    pipe(&mut input, "c", 70);
    let hour = 60 * MIN;
    assert_eq!(read(&out), vec![("a".into(), 0, hour, Some(3)), ("b".into(), 0, hour, Some(1))]);
    pipe(&mut input, "a", 130);
    assert_eq!(read(&out), vec![("a".into(), hour, 2 * hour, Some(1)), ("c".into(), hour, 2 * hour, Some(2))]);
}

#[test]
fn suppress_until_window_closes_emits_one_final_result_per_key_and_window() {
    let windows = TimeWindows::of_size_and_grace(Duration::from_secs(3600), Duration::from_secs(600));
    for caching in [false, true] {
        check_final_results_only(counts(windows, caching, Emit::Suppressed));
    }
}

#[test]
fn emit_on_window_close_gives_the_same_final_results() {
    let windows = TimeWindows::of_size_and_grace(Duration::from_secs(3600), Duration::from_secs(600));
    check_final_results_only(counts(windows, false, Emit::OnWindowClose));
}

#[test]
fn suppress_until_window_closes_needs_a_windowed_table() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_("plain"))
        .suppress(Suppressed::until_window_closes());
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("not a windowed aggregation"), "{err}");
}

#[test]
fn suppress_until_time_limit_rate_limits_updates_per_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_("plain").with_caching_disabled())
        .suppress(Suppressed::until_time_limit(Duration::from_secs(10), BufferConfig::unbounded()))
        .to_stream()
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("rate")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("events", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, Option<i64>>("out", Serdes::string(), Serdes::i64());
    for (key, ts) in [("a", 0), ("a", 1000), ("b", 5000), ("a", 9000)] {
        input.pipe_input_at(key.into(), "v".into(), ts).unwrap();
    }
    assert!(out.is_empty());
    input.pipe_input_at("c".into(), "v".into(), 10_000).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![("a".to_string(), Some(3))]);
    input.pipe_input_at("c".into(), "v".into(), 15_000).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![("b".to_string(), Some(1))]);
}

#[test]
fn a_bounded_buffer_emits_early_or_fails_when_full() {
    for emit_early in [true, false] {
        let builder = StreamsBuilder::new();
        let buffer = if emit_early { BufferConfig::max_records(1) } else { BufferConfig::max_records(1).shut_down_when_full() };
        builder
            .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .count(Materialized::as_("plain").with_caching_disabled())
            .suppress(Suppressed::until_time_limit(Duration::from_secs(60), buffer))
            .to_stream()
            .to("out", Produced::with(Serdes::string(), Serdes::i64()));
        let driver = TopologyTestDriver::new(builder.build().unwrap(), config("bounded")).unwrap();
        let mut input = driver.create_input_topic::<String, String>("events", Serdes::string(), Serdes::string());
        let out = driver.create_output_topic::<String, Option<i64>>("out", Serdes::string(), Serdes::i64());
        input.pipe_input_at("a".into(), "v".into(), 0).unwrap();
        let second = input.pipe_input_at("b".into(), "v".into(), 1);
        if emit_early {
            second.unwrap();
            assert_eq!(out.read_key_values_to_list().unwrap(), vec![("a".to_string(), Some(1))]);
        } else {
            let err = second.unwrap_err().to_string();
            assert!(err.contains("is full"), "{err}");
        }
    }
}

#[test]
fn a_buffer_bounded_in_bytes_emits_the_oldest_updates_until_it_fits() {
    let long = "k".repeat(1_000);
    for (buffer, strict) in [(BufferConfig::max_bytes(500), false), (BufferConfig::max_records(10).with_max_bytes(500).shut_down_when_full(), true)] {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .count(Materialized::as_("plain").with_caching_disabled())
            .suppress(Suppressed::until_time_limit(Duration::from_secs(60), buffer))
            .to_stream()
            .to("out", Produced::with(Serdes::string(), Serdes::i64()));
        let driver = TopologyTestDriver::new(builder.build().unwrap(), config("bytes")).unwrap();
        let mut input = driver.create_input_topic::<String, String>("events", Serdes::string(), Serdes::string());
        let out = driver.create_output_topic::<String, Option<i64>>("out", Serdes::string(), Serdes::i64());
        input.pipe_input_at("a".into(), "v".into(), 0).unwrap();
        input.pipe_input_at("b".into(), "v".into(), 1).unwrap();
        input.pipe_input_at("a".into(), "v".into(), 2).unwrap();
        assert!(out.is_empty(), "small keys fit in 500 bytes");
        let big = input.pipe_input_at(long.clone(), "v".into(), 3);
        if strict {
            let err = big.unwrap_err().to_string();
            assert!(err.contains("is full") && err.contains("bytes"), "{err}");
        } else {
            big.unwrap();
            // A 1,000-byte key can never fit: everything older goes first, then the key itself.
            let emitted = out.read_key_values_to_list().unwrap();
            assert_eq!(emitted, vec![("a".to_string(), Some(2)), ("b".to_string(), Some(1)), (long.clone(), Some(1))]);
            input.pipe_input_at("c".into(), "v".into(), 4).unwrap();
            assert!(out.is_empty(), "the buffer is small again");
        }
    }
}

fn sessions() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(Duration::from_secs(5), Duration::from_secs(10)))
        .count(Materialized::as_("sessions").with_caching_disabled())
        .to_stream()
        .to("out", Produced::with(WindowedSerde::session(Arc::new(Serdes::string())), Serdes::i64()));
    builder.build().unwrap()
}

#[test]
fn emit_final_sessions_come_out_once_stream_time_is_past_their_end_gap_and_grace() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(Duration::from_millis(5), Duration::from_millis(10)))
        .emit_strategy(EmitStrategy::OnWindowClose)
        .count(Materialized::as_("sessions"))
        .to_stream()
        .to("out", Produced::with(WindowedSerde::session(Arc::new(Serdes::string())), Serdes::i64()));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("emit-final-sessions")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("events", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<Windowed<String>, Option<i64>>("out", WindowedSerde::session(Arc::new(Serdes::string())), Serdes::i64());
    let session = |k: &str, s: i64, e: i64| Windowed::new(k.to_string(), Window::new(s, e));
    input.pipe_input_at("a".into(), "v".into(), 0).unwrap();
    input.pipe_input_at("a".into(), "v".into(), 3).unwrap();
    input.pipe_input_at("b".into(), "v".into(), 10).unwrap();
    // Session a [0, 3] could still grow or merge until stream time passes 3 + 5 + 10.
    input.pipe_input_at("c".into(), "v".into(), 18).unwrap();
    assert!(out.is_empty(), "no update is emitted, and no session has closed");
    input.pipe_input_at("c".into(), "v".into(), 19).unwrap();
    let records = out.read_records_to_list().unwrap();
    let got: Vec<_> = records.iter().map(|r| (r.key.clone(), r.value, r.timestamp)).collect();
    assert_eq!(got, vec![(session("a", 0, 3), Some(2), 3)], "once, with its final count, at its end");
    input.pipe_input_at("c".into(), "v".into(), 60).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![(session("b", 10, 10), Some(1)), (session("c", 18, 19), Some(2))]);
}

#[test]
fn session_windows_merge_on_out_of_order_records_within_the_gap() {
    let driver = TopologyTestDriver::new(sessions(), config("sessions")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("events", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<Windowed<String>, Option<i64>>(
        "out",
        WindowedSerde::session(Arc::new(Serdes::string())),
        Serdes::i64(),
    );
    let session = |s: i64, e: i64| Windowed::new("k".to_string(), Window::new(s, e));
    input.pipe_input_at("k".into(), "v".into(), 0).unwrap();
    input.pipe_input_at("k".into(), "v".into(), 10_000).unwrap();
    assert_eq!(
        out.read_key_values_to_list().unwrap(),
        vec![(session(0, 0), Some(1)), (session(10_000, 10_000), Some(1))],
        "10 s apart with a 5 s gap: two sessions"
    );
    // 5000 is within the gap of both: they merge into one session of three records.
    input.pipe_input_at("k".into(), "v".into(), 5000).unwrap();
    let records = out.read_records_to_list().unwrap();
    let merged: Vec<(Windowed<String>, Option<i64>)> = records.iter().map(|r| (r.key.clone(), r.value)).collect();
    assert_eq!(merged, vec![(session(0, 0), None), (session(10_000, 10_000), None), (session(0, 10_000), Some(3))]);
    assert_eq!(records[2].timestamp, 10_000, "a session result carries the session end");
    // Inside the session: it grows in place.
    input.pipe_input_at("k".into(), "v".into(), 12_000).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![(session(0, 10_000), None), (session(0, 12_000), Some(4))]);
    let store = driver.session_store::<String, i64>("sessions").unwrap();
    assert_eq!(store.find_sessions(&"k".into(), 0, i64::MAX).unwrap().map(|e| e.unwrap()).collect::<Vec<_>>(), vec![(session(0, 12_000), 4)]);
    // A record far later starts a new session; one older than the closed session is dropped.
    input.pipe_input_at("k".into(), "v".into(), 40_000).unwrap();
    input.pipe_input_at("k".into(), "v".into(), 1000).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![(session(40_000, 40_000), Some(1))]);
    assert_eq!(driver.metrics().dropped_records, 1);
}

#[test]
fn windowed_reduce_and_aggregate() {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::i64()));
    let windows = TimeWindows::of_size_with_no_grace(Duration::from_secs(10));
    // Stores keep closed windows a minute, so the test reads them after stream time moved on.
    let retention = Duration::from_secs(60);
    grouped
        .windowed_by(windows)
        .reduce(|a, b| a.max(b), Materialized::as_("max").with_caching_disabled().with_retention(retention));
    grouped.windowed_by(windows).aggregate(
        Vec::new,
        |_, v, mut all: Vec<i64>| {
            all.push(v);
            all
        },
        Materialized::as_("all").with_value_serde(Serdes::json()).with_caching_disabled().with_retention(retention),
    );
    grouped
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(1)))
        .reduce(|a, b| a + b, Materialized::as_("session-sums").with_caching_disabled().with_retention(retention));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("reduce")).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("numbers", Serdes::string(), Serdes::i64());
    for (v, ts) in [(3, 0), (9, 500), (4, 1200), (7, 12_000)] {
        input.pipe_input_at("k".into(), v, ts).unwrap();
    }
    let max = driver.window_store::<String, ValueAndTimestamp<i64>>("max").unwrap();
    let max: Vec<(i64, i64)> = max.fetch_range(&"k".into(), 0, 20_000).unwrap().map(|e| e.unwrap()).map(|(s, v)| (s, v.value)).collect();
    assert_eq!(max, vec![(0, 9), (10_000, 7)]);
    let all = driver.window_store::<String, ValueAndTimestamp<Vec<i64>>>("all").unwrap();
    assert_eq!(all.fetch(&"k".into(), 0).unwrap().map(|v| v.value), Some(vec![3, 9, 4]));
    let sums = driver.session_store::<String, i64>("session-sums").unwrap();
    let sums: Vec<(i64, i64, i64)> =
        sums.all().unwrap().map(|e| e.unwrap()).map(|(w, v)| (w.window.start, w.window.end, v)).collect();
    assert_eq!(sums, vec![(0, 1200, 16), (12_000, 12_000, 7)]);
}

#[test]
fn sliding_windows_hold_each_distinct_set_of_records_with_inclusive_bounds() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(Duration::from_secs(10), Duration::from_secs(100)))
        .count(Materialized::as_("sliding"))
        .to_stream()
        .to("out", Produced::with(WindowedSerde::time(Arc::new(Serdes::string()), 10_000), Serdes::i64()));
    let (driver, mut input, out) = driver(builder.build().unwrap(), 10_000);
    let w = |start: i64, count: i64| ("k".to_string(), start, start + 10_000, Some(count));
    let steps: &[(i64, Out)] = &[
        // Records closer to 0 than the window size share the window [0, 10 s].
        (5000, vec![w(0, 1)]),
        // 8 s creates the window right after 5 s ([5.001 s, 15.001 s]), then joins [0, 10 s].
        (8000, vec![w(5001, 1), w(0, 2)]),
        // 20 s is more than 10 s after 8 s: a window of its own.
        (20_000, vec![w(10_000, 1)]),
        // Out of order, within grace: 12 s updates the windows it falls in, newest first, then
        // creates the right window of the record before it ([8.001 s, 18.001 s]), its own left
        // window ([2 s, 12 s]) and its right window ([12.001 s, 22.001 s]), as Kafka Streams does.
        (12_000, vec![w(10_000, 2), w(5001, 2), w(8001, 1), w(2000, 3), w(12_001, 1)]),
    ];
    for (ts, expected) in steps {
        input.pipe_input_at("k".into(), "v".into(), *ts).unwrap();
        assert_eq!(&read(&out), expected, "record at {ts}");
    }
    // Both bounds are inclusive: a record exactly at a window's end belongs to it.
    input.pipe_input_at("k".into(), "v".into(), 22_001).unwrap();
    let updates = read(&out);
    assert!(updates.contains(&w(12_001, 2)), "{updates:?}");
    let _ = driver;
}

#[test]
fn window_changelogs_are_compacted_and_deleted_after_retention() {
    let windows = TimeWindows::of_size_and_grace(Duration::from_secs(60), Duration::from_secs(30));
    use streams_core::internals::InternalTopologyBuilder;
    let configs = counts(windows, false, Emit::Suppressed).changelog_configs("app");
    let window_store = &configs["app-counts-changelog"];
    assert!(window_store.contains(&("cleanup.policy".to_string(), "compact,delete".to_string())), "{window_store:?}");
    // Retention: window size + grace, plus a day, as Kafka Streams' default additional retention.
    let retention = 90_000 + 24 * 60 * 60 * 1000;
    assert!(window_store.contains(&("retention.ms".to_string(), retention.to_string())), "{window_store:?}");
    let buffer = configs.iter().find(|(topic, _)| topic.contains("SUPPRESS")).map(|(_, c)| c).unwrap();
    assert_eq!(buffer, &vec![("cleanup.policy".to_string(), "compact".to_string())]);
}

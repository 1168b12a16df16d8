//! Event time: `default.timestamp.extractor` and per-source timestamp extractors, as Kafka
//! Streams' `TimestampExtractor`s.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::config;
use streams::prelude::*;
use streams::state::{Windowed, WindowedSerde};
use streams::{BoxError, ConsumedRecord, TimeWindows, TimestampExtractor, Topology};

const MIN: i64 = 60_000;

/// Event time is the payload's first field: `"<millis>,<user>"`.
fn payload_time(record: &ConsumedRecord<'_, String, String>, _partition_time: i64) -> i64 {
    record.value.split(',').next().and_then(|t| t.parse().ok()).unwrap_or(-1)
}

/// Clicks per user per minute, optionally through a repartition (grouped by the payload's user).
fn clicks_per_minute(consumed: Consumed<String, String>, repartition: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let clicks = builder.stream::<String, String>("clicks", consumed);
    let grouped = if repartition {
        clicks.group_by(|_, v| v.split(',').nth(1).unwrap_or("").to_string(), Grouped::with(Serdes::string(), Serdes::string()))
    } else {
        clicks.group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
    };
    grouped
        .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(MIN as u64)))
        .count(Materialized::as_("per-minute").with_caching_disabled())
        .to_stream()
        .to("out", Produced::with(WindowedSerde::time(Arc::new(Serdes::string()), MIN), Serdes::i64()));
    builder.build().unwrap()
}

type Out = streams::TestOutputTopic<Windowed<String>, Option<i64>>;

fn run(topology: Topology, config: StreamsConfig) -> (TopologyTestDriver, streams::TestInputTopic<String, String>, Out) {
    let driver = TopologyTestDriver::new(topology, config).unwrap();
    let input = driver.create_input_topic::<String, String>("clicks", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic("out", WindowedSerde::time(Arc::new(Serdes::string()), MIN), Serdes::nullable(Serdes::i64()));
    (driver, input, out)
}

/// `(key, window start, count, record timestamp)` of each output.
fn read(out: &Out) -> Vec<(String, i64, i64, i64)> {
    out.read_records_to_list()
        .unwrap()
        .into_iter()
        .map(|r| (r.key.key, r.key.window.start, r.value.unwrap(), r.timestamp))
        .collect()
}

#[test]
fn a_payload_extractor_puts_records_in_the_windows_of_their_payload_times() {
    let consumed = Consumed::with(Serdes::string(), Serdes::string()).with_timestamp_extractor(payload_time);
    let (_driver, mut input, out) = run(clicks_per_minute(consumed, false), config("payload-time"));
    // The record timestamps (all 10 min) say nothing; the payloads say 0 s, 30 s, 70 s, 130 s.
    for t in [0, 30_000, 70_000, 130_000] {
        input.pipe_input_at("alice".into(), format!("{t},alice"), 10 * MIN).unwrap();
    }
    assert_eq!(
        read(&out),
        vec![
            ("alice".into(), 0, 1, 0),
            ("alice".into(), 0, 2, 30_000),
            ("alice".into(), MIN, 1, 70_000),
            ("alice".into(), 2 * MIN, 1, 130_000),
        ]
    );
}

#[test]
fn the_extracted_time_survives_a_repartition_whatever_the_default_extractor() {
    // The default would stamp records with the wall clock; the repartition topic's source reads
    // the time the upstream source extracted, as Kafka Streams' internal sources do.
    let consumed = Consumed::with(Serdes::string(), Serdes::string()).with_timestamp_extractor(payload_time);
    let config = config("payload-time-repartition").with(StreamsConfig::DEFAULT_TIMESTAMP_EXTRACTOR, "wall-clock");
    let (_driver, mut input, out) = run(clicks_per_minute(consumed, true), config);
    input.pipe_input_at("k1".into(), "5000,bob".into(), 99 * MIN).unwrap();
    input.pipe_input_at("k2".into(), "65000,bob".into(), 99 * MIN).unwrap();
    assert_eq!(read(&out), vec![("bob".into(), 0, 1, 5_000), ("bob".into(), MIN, 1, 65_000)]);
}

#[test]
fn a_negative_timestamp_stops_the_task_by_default_naming_the_record() {
    let (_driver, mut input, _out) = run(clicks_per_minute(Consumed::with(Serdes::string(), Serdes::string()), false), config("fail"));
    input.pipe_input_at("a".into(), "x".into(), 1_000).unwrap();
    let err = input.pipe_input_at("a".into(), "x".into(), -5).unwrap_err();
    assert!(matches!(err, StreamsError::TimestampExtraction { ref topic, partition: 0, offset: 1, .. } if topic == "clicks"), "{err}");
    assert!(err.to_string().contains("clicks-0 offset 1") && err.to_string().contains("-5"), "{err}");
}

#[test]
fn an_invalid_payload_time_fails_with_the_extractors_error() {
    struct Strict;
    impl TimestampExtractor<String, String> for Strict {
        fn extract(&self, record: &ConsumedRecord<'_, String, String>, _: i64) -> Result<i64, BoxError> {
            let field = record.value.split(',').next().unwrap_or_default();
            Ok(field.parse::<i64>().map_err(|e| format!("no event time in `{}`: {e}", record.value))?)
        }
    }
    let consumed = Consumed::with(Serdes::string(), Serdes::string()).with_timestamp_extractor(Strict);
    let (_driver, mut input, _out) = run(clicks_per_minute(consumed, false), config("strict"));
    input.pipe_input_at("a".into(), "1000,a".into(), 0).unwrap();
    let err = input.pipe_input_at("a".into(), "soon,a".into(), 0).unwrap_err();
    assert!(err.to_string().contains("clicks-0 offset 1") && err.to_string().contains("no event time in `soon,a`"), "{err}");
}

#[test]
fn log_and_skip_drops_records_with_negative_timestamps() {
    let config = config("skip").with(StreamsConfig::DEFAULT_TIMESTAMP_EXTRACTOR, "LogAndSkipOnInvalidTimestamp");
    let (driver, mut input, out) = run(clicks_per_minute(Consumed::with(Serdes::string(), Serdes::string()), false), config);
    input.pipe_input_at("a".into(), "x".into(), -1).unwrap();
    input.pipe_input_at("a".into(), "x".into(), 1_000).unwrap();
    assert_eq!(read(&out), vec![("a".into(), 0, 1, 1_000)]);
    assert_eq!(driver.metrics().dropped_records, 1);
}

#[test]
fn a_payload_extractor_returning_negative_drops_the_record() {
    // As Kafka Streams' RecordQueue: a negative extracted time is logged and dropped.
    let consumed = Consumed::with(Serdes::string(), Serdes::string()).with_timestamp_extractor(payload_time);
    let (driver, mut input, out) = run(clicks_per_minute(consumed, false), config("payload-negative"));
    input.pipe_input_at("a".into(), "garbage".into(), 1_000).unwrap();
    input.pipe_input_at("a".into(), "2000,a".into(), 1_000).unwrap();
    assert_eq!(read(&out), vec![("a".into(), 0, 1, 2_000)]);
    assert_eq!(driver.metrics().dropped_records, 1);
}

#[test]
fn use_partition_time_replaces_an_invalid_timestamp_by_the_partitions_latest() {
    let config = config("partition-time").with(StreamsConfig::DEFAULT_TIMESTAMP_EXTRACTOR, "use-partition-time-on-invalid");
    let (_driver, mut input, out) = run(clicks_per_minute(Consumed::with(Serdes::string(), Serdes::string()), false), config);
    // No partition time yet: nothing to use instead.
    let err = input.pipe_input_at("a".into(), "x".into(), -1).unwrap_err();
    assert!(err.to_string().contains("no partition time"), "{err}");
    input.pipe_input_at("a".into(), "x".into(), 5_000).unwrap();
    input.pipe_input_at("a".into(), "x".into(), 70_000).unwrap();
    input.pipe_input_at("a".into(), "x".into(), -1).unwrap();
    assert_eq!(read(&out), vec![("a".into(), 0, 1, 5_000), ("a".into(), MIN, 1, 70_000), ("a".into(), MIN, 2, 70_000)]);
}

#[test]
fn wall_clock_time_stamps_records_when_they_are_processed() {
    let config = config("wall-clock").with(StreamsConfig::DEFAULT_TIMESTAMP_EXTRACTOR, "wall-clock");
    let (_driver, mut input, out) = run(clicks_per_minute(Consumed::with(Serdes::string(), Serdes::string()), false), config);
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    input.pipe_input_at("a".into(), "x".into(), 0).unwrap();
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let outputs = read(&out);
    assert_eq!(outputs.len(), 1);
    let (_, start, _, ts) = &outputs[0];
    assert!((before..=after).contains(ts), "{ts} not in {before}..={after}");
    assert_eq!(*start, ts - ts % MIN);
}

#[test]
fn a_processor_api_source_takes_its_own_extractor() {
    struct Stamp;
    impl Processor<String, String, String, i64> for Stamp {
        fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, record: Record<String, String>) -> streams::Result<()> {
            let ts = record.timestamp;
            ctx.forward(record.with_value(ts))
        }
    }
    let mut topology = Topology::new();
    topology
        .add_source_with_timestamp_extractor("src", &["clicks"], Serdes::string(), Serdes::string(), payload_time)
        .unwrap()
        .add_processor("stamp", || Stamp, &["src"])
        .unwrap()
        .add_sink::<String, i64>("sink", "stamps", Serdes::string(), Serdes::i64(), &["stamp"])
        .unwrap();
    let driver = TopologyTestDriver::new(topology, config("papi-extractor")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("clicks", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, i64>("stamps", Serdes::string(), Serdes::i64());
    input.pipe_input_at("a".into(), "42,a".into(), 7).unwrap();
    let record = out.read_record().unwrap().unwrap();
    assert_eq!((record.value, record.timestamp), (42, 42));
}

#[test]
fn a_table_source_extracts_from_values_and_keeps_tombstone_timestamps() {
    let builder = StreamsBuilder::new();
    let consumed = Consumed::with(Serdes::string(), Serdes::string()).with_timestamp_extractor(payload_time);
    builder
        .table("users", consumed, Materialized::as_("users").with_caching_disabled())
        .to_stream()
        .to("changes", Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("table-extractor")).unwrap();
    let mut input = driver.create_input_topic::<String, Option<String>>("users", Serdes::string(), Serdes::nullable(Serdes::string()));
    let out = driver.create_output_topic::<String, Option<String>>("changes", Serdes::string(), Serdes::nullable(Serdes::string()));
    input.pipe_input_at("u".into(), Some("500,u".into()), 9_000).unwrap();
    input.pipe_input_at("u".into(), None, 9_500).unwrap();
    let stamps: Vec<i64> = out.read_records_to_list().unwrap().into_iter().map(|r| r.timestamp).collect();
    assert_eq!(stamps, vec![500, 9_500]);
}

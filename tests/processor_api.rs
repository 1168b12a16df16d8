//! The Processor API, stateless DSL operators and bad input through the TopologyTestDriver.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::config;
use streams::prelude::*;
use streams::{Punctuation, PunctuationType, StoreBuilder, Stores, Topology};

/// Keeps a running total per key in a store, emits it, and on each punctuation emits `("tick", ts)`.
struct Totals {
    store: Option<streams::KeyValueStore<String, i64>>,
    store_name: &'static str,
    punctuation: Option<PunctuationType>,
}

impl Processor<String, i64> for Totals {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> streams::Result<()> {
        self.store = Some(ctx.key_value_store(self.store_name)?);
        if let Some(kind) = self.punctuation {
            ctx.schedule(Duration::from_millis(10), kind)?;
        }
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, record: Record<String, i64>) -> streams::Result<()> {
        if record.value < 0 {
            return Err(StreamsError::user(format!("negative amount for {}", record.key)));
        }
        let store = self.store.as_ref().unwrap();
        let total = store.get(&record.key)?.unwrap_or(0) + record.value;
        store.put(&record.key, &total)?;
        ctx.forward(record.with_value(total))
    }

    fn punctuate(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, p: Punctuation) -> streams::Result<()> {
        ctx.forward(Record::new("tick".to_string(), p.timestamp, p.timestamp))
    }
}

fn totals_topology(store: impl StoreBuilder, store_name: &'static str, punctuation: Option<PunctuationType>) -> Topology {
    let mut t = Topology::new();
    t.add_source::<String, i64>("src", &["amounts"], Serdes::string(), Serdes::i64()).unwrap();
    t.add_processor("totals", move || Totals { store: None, store_name, punctuation }, &["src"]).unwrap();
    t.add_state_store(store, &["totals"]).unwrap();
    t.add_sink::<String, i64>("sink", "totals", Serdes::string(), Serdes::i64(), &["totals"]).unwrap();
    t
}

fn totals_store() -> impl StoreBuilder {
    Stores::key_value_store_builder::<String, i64>(Stores::persistent_key_value_store("totals"), Serdes::string(), Serdes::i64())
}

#[test]
fn a_processor_keeps_state_in_rocksdb() {
    let driver = TopologyTestDriver::new(totals_topology(totals_store(), "totals", None), config("totals")).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let output = driver.create_output_topic::<String, i64>("totals", Serdes::string(), Serdes::i64());
    input.pipe_key_value_list([("a".into(), 5), ("b".into(), 1), ("a".into(), 2)]).unwrap();
    assert_eq!(output.read_key_values_to_list().unwrap(), vec![("a".into(), 5), ("b".into(), 1), ("a".into(), 7)]);
    let store = driver.key_value_store::<String, i64>("totals").unwrap();
    assert_eq!(store.get(&"a".into()).unwrap(), Some(7));
    let changelog = driver.create_output_topic::<String, i64>("totals-totals-changelog", Serdes::string(), Serdes::i64());
    assert_eq!(changelog.queue_size(), 3, "every write is logged");
}

#[test]
fn a_store_type_mismatch_is_an_error_when_the_task_is_built() {
    let wrong = Stores::key_value_store_builder::<String, String>(
        Stores::persistent_key_value_store("totals"),
        Serdes::string(),
        Serdes::string(),
    );
    let err = TopologyTestDriver::new(totals_topology(wrong, "totals", None), config("t")).unwrap_err().to_string();
    assert!(err.contains("totals") && err.contains("i64") && err.contains("String"), "{err}");
}

#[test]
fn an_unknown_store_name_is_an_error_when_the_task_is_built() {
    let err = TopologyTestDriver::new(totals_topology(totals_store(), "nope", None), config("t")).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("totals"), "{err}");
}

#[test]
fn a_processor_error_names_the_task_and_node() {
    let driver = TopologyTestDriver::new(totals_topology(totals_store(), "totals", None), config("t")).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let err = input.pipe_input("a".into(), -1).unwrap_err();
    assert!(matches!(&err, StreamsError::Processing { node, .. } if node == "totals"), "{err:?}");
    assert!(err.to_string().contains("task 0_0"), "{err}");
}

#[test]
fn the_processing_handler_can_skip_records_a_processor_fails_on() {
    let config = config("t").with(StreamsConfig::PROCESSING_EXCEPTION_HANDLER, "log-and-continue");
    let driver = TopologyTestDriver::new(totals_topology(totals_store(), "totals", None), config).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let output = driver.create_output_topic::<String, i64>("totals", Serdes::string(), Serdes::i64());
    input.pipe_input("a".into(), 5).unwrap();
    input.pipe_input("a".into(), -1).unwrap();
    input.pipe_input("a".into(), 2).unwrap();
    assert_eq!(output.read_values_to_list().unwrap(), vec![5, 7]);
    assert_eq!(driver.metrics().dropped_records, 1);
    let bad = common::config("t").with(StreamsConfig::PROCESSING_EXCEPTION_HANDLER, "retry");
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("processing.exception.handler") && err.contains("`retry`"), "{err}");
    // Kafka Streams' class name works too.
    let class = common::config("t").with(StreamsConfig::PROCESSING_EXCEPTION_HANDLER, "LogAndContinueProcessingExceptionHandler");
    let driver = TopologyTestDriver::new(totals_topology(totals_store(), "totals", None), class).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    input.pipe_input("a".into(), -1).unwrap();
    assert_eq!(driver.metrics().dropped_records, 1);
}

#[test]
fn stream_time_punctuation_follows_record_timestamps() {
    let driver = TopologyTestDriver::new(
        totals_topology(totals_store(), "totals", Some(PunctuationType::StreamTime)),
        config("t"),
    )
    .unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let output = driver.create_output_topic::<String, i64>("totals", Serdes::string(), Serdes::i64());
    input.pipe_input_at("a".into(), 1, 5).unwrap(); // first record: punctuates at once (aligned to 0)
    input.pipe_input_at("a".into(), 1, 9).unwrap(); // next due at 10: nothing
    input.pipe_input_at("a".into(), 1, 35).unwrap(); // 10, 20, 30 missed: fires once
    input.pipe_input_at("a".into(), 1, 3).unwrap(); // out of order: stream time stays 35
    let ticks: Vec<i64> =
        output.read_key_values_to_list().unwrap().into_iter().filter(|(k, _)| k == "tick").map(|(_, v)| v).collect();
    assert_eq!(ticks, vec![5, 35]);
}

#[test]
fn wall_clock_punctuation_follows_the_mocked_clock() {
    let driver = TopologyTestDriver::new(
        totals_topology(totals_store(), "totals", Some(PunctuationType::WallClockTime)),
        config("t"),
    )
    .unwrap();
    let output = driver.create_output_topic::<String, i64>("totals", Serdes::string(), Serdes::i64());
    driver.advance_wall_clock_time(Duration::from_millis(9)).unwrap();
    assert!(output.is_empty());
    driver.advance_wall_clock_time(Duration::from_millis(1)).unwrap();
    assert_eq!(output.queue_size(), 1);
    driver.advance_wall_clock_time(Duration::from_millis(25)).unwrap();
    assert_eq!(output.queue_size(), 2, "missed intervals fire once");
    assert_eq!(driver.metrics().punctuations, 2);
}

fn bad_input_driver(handler: &str) -> TopologyTestDriver {
    let cfg = config("bad").with(StreamsConfig::DESERIALIZATION_EXCEPTION_HANDLER, handler);
    TopologyTestDriver::new(totals_topology(totals_store(), "totals", None), cfg).unwrap()
}

#[test]
fn log_and_fail_stops_with_the_record_coordinates() {
    let driver = bad_input_driver("log-and-fail");
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    input.pipe_input("a".into(), 1).unwrap();
    let err = input.pipe_raw(Some(b"a".to_vec()), Some(b"not eight bytes".to_vec()), 1).unwrap_err();
    match &err {
        StreamsError::Deserialization { topic, partition, offset, .. } => {
            assert_eq!((topic.as_str(), *partition, *offset), ("amounts", 0, 1));
        }
        other => panic!("expected a deserialization error, got {other:?}"),
    }
    assert!(err.to_string().contains("amounts-0 offset 1"), "{err}");
}

#[test]
fn log_and_continue_skips_and_counts_poison_pills() {
    let driver = bad_input_driver("log-and-continue");
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let output = driver.create_output_topic::<String, i64>("totals", Serdes::string(), Serdes::i64());
    input.pipe_input("a".into(), 1).unwrap();
    input.pipe_raw(Some(b"a".to_vec()), Some(vec![1, 2, 3]), 1).unwrap();
    input.pipe_raw(Some(vec![0xff, 0xfe]), Some(vec![0; 8]), 1).unwrap();
    input.pipe_raw(Some(b"a".to_vec()), None, 1).unwrap();
    input.pipe_input("a".into(), 2).unwrap();
    assert_eq!(output.read_values_to_list().unwrap(), vec![1, 3]);
    assert_eq!(driver.metrics().dropped_records, 3);
    // As Kafka Streams' record queues, dropped records never reach processing.
    assert_eq!(driver.metrics().processed_records, 2);
}

#[test]
fn skipped_records_go_to_the_dead_letter_queue_with_the_error_in_headers() {
    let cfg = config("dlq")
        .with(StreamsConfig::DESERIALIZATION_EXCEPTION_HANDLER, "log-and-continue")
        .with(StreamsConfig::PROCESSING_EXCEPTION_HANDLER, "log-and-continue")
        .with(StreamsConfig::DEAD_LETTER_QUEUE_TOPIC, "amounts-dlq");
    let driver = TopologyTestDriver::new(totals_topology(totals_store(), "totals", None), cfg).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let output = driver.create_output_topic::<String, i64>("totals", Serdes::string(), Serdes::i64());
    let dlq = driver.create_output_topic::<Vec<u8>, Vec<u8>>("amounts-dlq", Serdes::bytes(), Serdes::bytes());
    input.pipe_input("a".into(), 1).unwrap();
    input.pipe_raw(Some(b"a".to_vec()), Some(vec![1, 2, 3]), 7).unwrap();
    input.pipe_input("a".into(), -5).unwrap();
    input.pipe_input("a".into(), 2).unwrap();
    assert_eq!(output.read_values_to_list().unwrap(), vec![1, 3]);
    let dead = dlq.read_records_to_list().unwrap();
    assert_eq!(dead.len(), 2);
    let header = |i: usize, name: &str| -> String {
        let (_, value) = dead[i].headers.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("no {name}"));
        String::from_utf8(value.clone().unwrap()).unwrap()
    };
    assert_eq!((dead[0].key.as_slice(), dead[0].value.as_slice(), dead[0].timestamp), (&b"a"[..], &[1u8, 2, 3][..], 7));
    assert_eq!(header(0, "__streams.errors.exception"), "deserialization-exception");
    assert_eq!((header(0, "__streams.errors.topic").as_str(), header(0, "__streams.errors.offset").as_str()), ("amounts", "1"));
    assert_eq!(dead[1].value, (-5i64).to_be_bytes().to_vec(), "the record as consumed, not as processed");
    assert_eq!(header(1, "__streams.errors.exception"), "processing-exception");
    assert!(header(1, "__streams.errors.message").contains("negative amount"), "{}", header(1, "__streams.errors.message"));
    assert_eq!(header(1, "__streams.errors.task"), "0_0");
}

#[test]
fn an_unknown_handler_name_is_a_config_error() {
    let cfg = config("bad").with(StreamsConfig::DESERIALIZATION_EXCEPTION_HANDLER, "ignore");
    let err = TopologyTestDriver::new(totals_topology(totals_store(), "totals", None), cfg).unwrap_err();
    assert!(err.to_string().contains("deserialization.exception.handler"), "{err}");
}

#[test]
fn stateless_operators() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let numbers = builder.stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()));
    let mut branches = numbers
        .filter_not(|_, v| *v == 0)
        .split_named("n-")
        .branch(|_, v| *v < 0, Branched::as_("negative"))
        .branch(|_, v| *v % 2 == 0, Branched::as_("even"))
        .default_branch(Branched::as_("odd"));
    let negative = branches.remove("n-negative").unwrap();
    let even = branches.remove("n-even").unwrap();
    let odd = branches.remove("n-odd").unwrap();
    let seen_by_peek = seen.clone();
    negative
        .map_values(|v| -v)
        .merge(&even)
        .peek(move |k, v| seen_by_peek.lock().unwrap().push(format!("{k}={v}")))
        .named("merged-peek")
        .to("abs-or-even", Produced::with(Serdes::string(), Serdes::i64()));
    odd.flat_map(|k, v| vec![(format!("{k}!"), v), (format!("{k}?"), v * 10)])
        .select_key(|k, _| k.to_uppercase())
        .map(|k, v| (v, k))
        .to("odd", Produced::with(Serdes::i64(), Serdes::string()));
    let topology = builder.build().unwrap();
    assert!(topology.describe().to_string().contains("Processor: merged-peek"));

    let driver = TopologyTestDriver::new(topology, config("ops")).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("numbers", Serdes::string(), Serdes::i64());
    let abs = driver.create_output_topic::<String, i64>("abs-or-even", Serdes::string(), Serdes::i64());
    let odd = driver.create_output_topic::<i64, String>("odd", Serdes::i64(), Serdes::string());
    input.pipe_key_value_list([("a".into(), -3), ("b".into(), 0), ("c".into(), 4), ("d".into(), 5)]).unwrap();
    assert_eq!(abs.read_key_values_to_list().unwrap(), vec![("a".into(), 3), ("c".into(), 4)]);
    assert_eq!(odd.read_key_values_to_list().unwrap(), vec![(5, "D!".into()), (50, "D?".into())]);
    assert_eq!(*seen.lock().unwrap(), vec!["a=3", "c=4"]);
}

#[test]
fn sink_records_keep_the_input_timestamp_and_headers() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v| v.len() as i64)
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("ts")).unwrap();
    let mut input = driver.create_input_topic_with_time::<String, String>("in", Serdes::string(), Serdes::string(), 1000, Duration::from_millis(10));
    let output = driver.create_output_topic::<String, i64>("out", Serdes::string(), Serdes::i64());
    input.pipe_input("k".into(), "abc".into()).unwrap();
    input.pipe_input("k".into(), "de".into()).unwrap();
    let records = output.read_records_to_list().unwrap();
    assert_eq!(records.iter().map(|r| (r.value, r.timestamp)).collect::<Vec<_>>(), vec![(3, 1000), (2, 1010)]);
}

#[test]
fn an_unknown_input_topic_is_an_error() {
    let driver = TopologyTestDriver::new(totals_topology(totals_store(), "totals", None), config("t")).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("nobody-reads-this", Serdes::string(), Serdes::i64());
    assert!(input.pipe_input("a".into(), 1).is_err());
}

#[test]
fn dsl_errors_surface_at_build() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::with(Serdes::string(), Serdes::string()))
        .map_values(|v| v.len() as i64)
        .group_by(|k, _| k.clone(), Grouped::default())
        .count(Materialized::as_("c"));
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("no serde for alloc::string::String"), "{err}");
}

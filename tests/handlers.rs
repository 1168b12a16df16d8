//! User-written exception handlers (KIP-1033 / KIP-1034): deserialization and processing
//! failures decided by the record's content and context, with dead letters of their choice.

mod common;

use std::sync::{Arc, Mutex};

use common::config;
use streams::handlers::{
    DeadLetter, DeserializationExceptionHandler, ErrorHandlerContext, HandlerResponse, ProcessingExceptionHandler,
};
use streams::prelude::*;
use streams::SerdeError;

/// Passes amounts on; a negative or zero amount is the processor's error.
struct Checked;

impl Processor<String, i64> for Checked {
    fn process(&mut self, ctx: &mut ProcessorContext<'_, String, i64>, r: Record<String, i64>) -> streams::Result<()> {
        match r.value {
            0 => Err(StreamsError::user("zero amount")),
            v if v < 0 => Err(StreamsError::user(format!("negative amount {v}"))),
            _ => ctx.forward(r),
        }
    }
}

fn sums() -> streams::Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>("amounts", Consumed::with(Serdes::string(), Serdes::i64()))
        .map_values(|v| v)
        .process(|| Checked, &[])
        .to("sums", Produced::with(Serdes::string(), Serdes::i64()));
    builder.build().unwrap()
}

/// Heartbeats (values starting `HB`) are dropped silently; any other unreadable record goes to
/// `quarantine`, with the error and its origin in headers.
struct ByContent;

impl DeserializationExceptionHandler for ByContent {
    fn handle(&self, ctx: &ErrorHandlerContext<'_>, error: &SerdeError) -> HandlerResponse {
        if ctx.source_raw_value.is_some_and(|v| v.starts_with(b"HB")) {
            return HandlerResponse::resume();
        }
        HandlerResponse::resume_with(vec![DeadLetter::of_source(ctx, "quarantine", "deserialization", error)])
    }
}

#[test]
fn a_user_deserialization_handler_routes_bad_records_by_content() {
    let mut config = config("by-content");
    config.set_deserialization_exception_handler(ByContent);
    let driver = TopologyTestDriver::new(sums(), config).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let out = driver.create_output_topic::<String, i64>("sums", Serdes::string(), Serdes::i64());
    let quarantine = driver.create_output_topic::<Vec<u8>, Vec<u8>>("quarantine", Serdes::bytes(), Serdes::bytes());
    input.pipe_input("a".into(), 1).unwrap();
    input.pipe_raw(Some(b"a".to_vec()), Some(b"HB!".to_vec()), 5).unwrap();
    input.pipe_raw(Some(b"a".to_vec()), Some(b"??".to_vec()), 6).unwrap();
    input.pipe_input("a".into(), 2).unwrap();
    assert_eq!(out.read_values_to_list().unwrap(), vec![1, 2]);
    let dead = quarantine.read_records_to_list().unwrap();
    assert_eq!(dead.len(), 1, "the heartbeat is dropped, the other bad record quarantined");
    assert_eq!((dead[0].key.as_slice(), dead[0].value.as_slice(), dead[0].timestamp), (&b"a"[..], &b"??"[..], 6));
    let header = |name: &str| dead[0].headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| v.clone()).unwrap();
    assert_eq!(header("__streams.errors.offset"), b"2");
    assert_eq!(header("__streams.errors.exception"), b"deserialization-exception");
    assert_eq!(driver.metrics().dropped_records, 2);
}

/// Skips records whose error says "negative" and remembers where they failed; fails on others.
struct SkipNegatives(Arc<Mutex<Vec<(String, String, i64, Option<Vec<u8>>)>>>);

impl ProcessingExceptionHandler for SkipNegatives {
    fn handle(&self, ctx: &ErrorHandlerContext<'_>, error: &StreamsError) -> HandlerResponse {
        if !error.to_string().contains("negative") {
            return HandlerResponse::fail();
        }
        let seen = (ctx.processor_node.to_string(), ctx.task_id.to_string(), ctx.offset, ctx.source_raw_value.map(<[u8]>::to_vec));
        self.0.lock().unwrap().push(seen);
        HandlerResponse::resume()
    }
}

#[test]
fn a_user_processing_handler_sees_the_failing_node_and_the_record_as_consumed() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut config = config("skip-negatives");
    config.set_processing_exception_handler(SkipNegatives(seen.clone()));
    let driver = TopologyTestDriver::new(sums(), config).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let out = driver.create_output_topic::<String, i64>("sums", Serdes::string(), Serdes::i64());
    input.pipe_key_value_list([("a".into(), 1), ("a".into(), -4), ("a".into(), 3)]).unwrap();
    assert_eq!(out.read_values_to_list().unwrap(), vec![1, 3]);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec![("KSTREAM-PROCESSOR-0000000002".into(), "0_0".into(), 1, Some((-4i64).to_be_bytes().to_vec()))]);
    assert_eq!(driver.metrics().dropped_records, 1);
}

#[test]
fn a_processing_handler_that_fails_stops_with_the_processors_error() {
    let mut config = config("fail-others");
    config.set_processing_exception_handler(SkipNegatives(Arc::default()));
    let driver = TopologyTestDriver::new(sums(), config).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let err = input.pipe_input("a".into(), 0).unwrap_err();
    assert!(matches!(&err, StreamsError::Processing { .. }) && err.to_string().contains("zero"), "{err}");
}

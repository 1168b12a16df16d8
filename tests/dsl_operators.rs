//! Operators beyond the core DSL: `process_values` on streams and tables, `to_table`, `repartition`,
//! partitioners on `Produced` and `Repartitioned`, topics extracted per record, `print`,
//! branches with a function or consumer, joiners that read the key, and the test driver's
//! partitions, headers and listings, with Kafka Streams' expected outputs.

mod common;

use std::time::Duration;

use common::{config, subtopologies};
use streams::prelude::*;
use streams::state::BytesKeyValueStore;
use streams::{Branched, FixedKeyProcessor, JoinWindows, StreamJoined, FixedKeyProcessorContext, FixedKeyRecord, Printed, Repartitioned, StoreBuilder, Stores};

/// A running total per key, kept in a store, with the source offset in a header.
struct RunningTotal;

impl FixedKeyProcessor<String, i64, i64> for RunningTotal {
    fn process(&mut self, ctx: &mut FixedKeyProcessorContext<'_, String, i64>, record: FixedKeyRecord<String, i64>) -> streams::Result<()> {
        let store = ctx.key_value_store::<String, i64>("totals")?;
        let total = store.get(record.key())?.unwrap_or(0) + record.value;
        store.put(record.key(), &total)?;
        let offset = ctx.record_context().offset.to_string().into_bytes();
        let mut headers = record.headers.clone();
        headers.push(("offset".into(), Some(offset)));
        ctx.forward(record.with_value(total).with_headers(headers))
    }
}

fn totals_store() -> impl StoreBuilder {
    Stores::key_value_store_builder::<String, i64>(Stores::persistent_key_value_store("totals"), Serdes::string(), Serdes::i64())
}

#[test]
fn process_values_keeps_keys_and_reaches_stores_and_record_metadata() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(totals_store());
    builder
        .stream::<String, i64>("amounts", Consumed::with(Serdes::string(), Serdes::i64()))
        .process_values(|| RunningTotal, &["totals"])
        .to("totals-out", Produced::with(Serdes::string(), Serdes::i64()));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("process-values")).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    let out = driver.create_output_topic::<String, i64>("totals-out", Serdes::string(), Serdes::i64());
    input.pipe_key_value_list([("a".into(), 5), ("b".into(), 1), ("a".into(), 2)]).unwrap();
    let records = out.read_records_to_list().unwrap();
    let got: Vec<(String, i64, Vec<u8>)> =
        records.into_iter().map(|r| (r.key, r.value, r.headers.last().unwrap().1.clone().unwrap())).collect();
    assert_eq!(got, vec![("a".into(), 5, b"0".to_vec()), ("b".into(), 1, b"1".to_vec()), ("a".into(), 7, b"2".to_vec())]);
}

#[test]
fn process_values_before_an_aggregation_needs_no_repartition_where_process_does() {
    let count_after = |fixed_key: bool| {
        let builder = StreamsBuilder::new();
        builder.add_state_store(totals_store());
        let amounts = builder.stream::<String, i64>("amounts", Consumed::with(Serdes::string(), Serdes::i64()));
        let totals = if fixed_key {
            amounts.process_values(|| RunningTotal, &["totals"])
        } else {
            amounts.process(streams::fixed_key_supplier(|| RunningTotal), &["totals"])
        };
        totals.group_by_key(Grouped::with(Serdes::string(), Serdes::i64())).count(Materialized::as_("n"));
        subtopologies(&builder.build().unwrap())
    };
    assert_eq!(count_after(true), 1);
    assert_eq!(count_after(false), 2, "a key-changing processor marks the stream for repartitioning");
}

#[test]
fn to_table_materializes_the_latest_value_per_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("users", Consumed::with(Serdes::string(), Serdes::string()))
        .to_table(None, Materialized::as_("users").with_caching_disabled())
        .to_stream()
        .to("changes", Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("to-table")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("users", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, Option<String>>("changes", Serdes::string(), Serdes::nullable(Serdes::string()));
    input.pipe_key_value_list([("u1".into(), "ann".into()), ("u2".into(), "bo".into()), ("u1".into(), "anna".into())]).unwrap();
    assert_eq!(
        out.read_key_values_to_list().unwrap(),
        vec![("u1".into(), Some("ann".into())), ("u2".into(), Some("bo".into())), ("u1".into(), Some("anna".into()))]
    );
    let store = driver.get_timestamped_key_value_store::<String, String>("users").unwrap();
    assert_eq!(store.get(&"u1".into()).unwrap().map(|v| v.value), Some("anna".into()));
    let changelog = driver.create_output_topic::<String, String>("to-table-users-changelog", Serdes::string(), Serdes::string());
    assert_eq!(changelog.queue_size(), 3);
}

#[test]
fn to_table_with_deletes_removes_keys_on_none() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, Option<String>>("users", Consumed::with(Serdes::string(), Serdes::nullable(Serdes::string())))
        .to_table_with_deletes(None, Materialized::as_("users").with_value_serde(Serdes::string()).with_caching_disabled())
        .to_stream()
        .to("changes", Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("to-table-deletes")).unwrap();
    let mut input = driver.create_input_topic::<String, Option<String>>("users", Serdes::string(), Serdes::nullable(Serdes::string()));
    let out = driver.create_output_topic::<String, Option<String>>("changes", Serdes::string(), Serdes::nullable(Serdes::string()));
    input.pipe_key_value_list([("u1".into(), Some("ann".into())), ("u1".into(), None)]).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![("u1".into(), Some("ann".into())), ("u1".into(), None)]);
    let store = driver.get_timestamped_key_value_store::<String, String>("users").unwrap();
    assert_eq!(store.get(&"u1".into()).unwrap(), None);
}

#[test]
fn to_table_after_a_key_change_goes_through_a_repartition_topic() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("emails", Consumed::with(Serdes::string(), Serdes::string()))
        .select_key(|_, email| email.split('@').nth(1).unwrap_or("").to_string())
        .to_table(Some(Named::as_("by-domain")), Materialized::as_("domains").with_key_serde(Serdes::string()).with_caching_disabled())
        .to_stream()
        .to("latest", Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())));
    let topology = builder.build().unwrap();
    assert_eq!(subtopologies(&topology), 2);
    let driver = TopologyTestDriver::new(topology, config("to-table-repartition")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("emails", Serdes::string(), Serdes::string());
    let repartition = driver.create_output_topic::<String, String>("to-table-repartition-by-domain-repartition", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, Option<String>>("latest", Serdes::string(), Serdes::nullable(Serdes::string()));
    input.pipe_key_value_list([("1".into(), "a@x.org".into()), ("2".into(), "b@x.org".into())]).unwrap();
    assert_eq!(repartition.queue_size(), 2);
    assert_eq!(
        out.read_key_values_to_list().unwrap(),
        vec![("x.org".into(), Some("a@x.org".into())), ("x.org".into(), Some("b@x.org".into()))]
    );
}

#[test]
fn repartition_sets_the_topic_name_partition_count_and_partitioner() {
    let builder = StreamsBuilder::new();
    let by_number = |_: &str, _: &String, v: &i64, partitions: i32| Some((*v % partitions as i64) as i32);
    builder
        .stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
        .repartition(Repartitioned::as_("spread").with_number_of_partitions(4).with_stream_partitioner(by_number))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::i64()))
        .count(Materialized::as_("counts"))
        .to_stream()
        .to("counts-out", Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())));
    let topology = builder.build().unwrap();
    assert_eq!(subtopologies(&topology), 2);
    let driver = TopologyTestDriver::new(topology, config("repartitioned")).unwrap();
    // One input partition, four downstream tasks.
    assert_eq!(driver.task_ids().iter().filter(|t| t.subtopology == 1).count(), 4);
    let mut input = driver.create_input_topic::<String, i64>("numbers", Serdes::string(), Serdes::i64());
    let topic = driver.create_output_topic::<String, i64>("repartitioned-spread-repartition", Serdes::string(), Serdes::i64());
    input.pipe_key_value_list((0..8).map(|i| ("k".to_string(), i))).unwrap();
    let partitions: Vec<(i64, i32)> = topic.read_records_to_list().unwrap().into_iter().map(|r| (r.value, r.partition)).collect();
    assert_eq!(partitions, (0..8).map(|i| (i, (i % 4) as i32)).collect::<Vec<_>>());
    // The same key counted in four tasks: each keeps its own count, as Kafka Streams would.
    let counts = driver.create_output_topic::<String, Option<i64>>("counts-out", Serdes::string(), Serdes::nullable(Serdes::i64()));
    let last: Vec<Option<i64>> = counts.read_records_to_list().unwrap().into_iter().map(|r| r.value).collect();
    assert_eq!(last.len(), 8);
    assert!(last.iter().all(|c| c.is_some_and(|c| c <= 2)), "{last:?}");
}

#[test]
fn repartition_without_options_keeps_the_input_partition_count_and_key_partitioning() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
        .repartition(Repartitioned::new())
        .to("out", Produced::with(Serdes::string(), Serdes::i64()));
    let topology = builder.build().unwrap();
    let described = topology.describe().to_string();
    assert!(described.contains("KSTREAM-REPARTITION-0000000001-repartition"), "{described}");
    let driver = TopologyTestDriver::with_partitions(topology, config("repartition-default"), &[("numbers", 3)]).unwrap();
    assert_eq!(driver.task_ids().len(), 6);
    let mut input = driver.create_input_topic::<String, i64>("numbers", Serdes::string(), Serdes::i64());
    let out = driver.create_output_topic::<String, i64>("out", Serdes::string(), Serdes::i64());
    input.pipe_key_value_list([("a".into(), 1), ("b".into(), 2)]).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![("a".into(), 1), ("b".into(), 2)]);
}

#[test]
fn a_produced_partitioner_chooses_the_output_partition_and_out_of_range_fails() {
    let run = |partition: i32| {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
            .to("out", Produced::with(Serdes::string(), Serdes::i64()).with_stream_partitioner(move |_: &str, _: &String, _: &i64, _| Some(partition)));
        let driver = TopologyTestDriver::with_partitions(builder.build().unwrap(), config("produced-partitioner"), &[("out", 3)]).unwrap();
        let mut input = driver.create_input_topic::<String, i64>("numbers", Serdes::string(), Serdes::i64());
        let out = driver.create_output_topic::<String, i64>("out", Serdes::string(), Serdes::i64());
        input.pipe_input("a".into(), 1).map(|()| out.read_record().unwrap().unwrap().partition)
    };
    assert_eq!(run(2).unwrap(), 2);
    let err = run(3).unwrap_err().to_string();
    assert!(err.contains("partition 3") && err.contains("`out`, which has 3"), "{err}");
}

#[test]
fn to_extracted_topic_writes_each_record_where_the_extractor_says() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()))
        .to_extracted_topic(
            |_: &String, region: &String, ctx: &streams::RecordContext| format!("orders-{region}-{}", ctx.topic),
            Produced::with(Serdes::string(), Serdes::string()),
        );
    let topology = builder.build().unwrap();
    assert!(topology.describe().to_string().contains("topic: extracted per record"), "{}", topology.describe());
    let driver = TopologyTestDriver::new(topology, config("extracted-topics")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("orders", Serdes::string(), Serdes::string());
    input.pipe_key_value_list([("1".into(), "eu".into()), ("2".into(), "us".into()), ("3".into(), "eu".into())]).unwrap();
    let read = |topic: &str| driver.create_output_topic::<String, String>(topic, Serdes::string(), Serdes::string()).read_key_values_to_list().unwrap();
    assert_eq!(read("orders-eu-orders"), vec![("1".into(), "eu".into()), ("3".into(), "eu".into())]);
    assert_eq!(read("orders-us-orders"), vec![("2".into(), "us".into())]);
    let produced: Vec<String> = driver.produced_topic_names().into_iter().collect();
    assert_eq!(produced, vec!["orders-eu-orders".to_string(), "orders-us-orders".to_string()]);
}

#[test]
fn print_writes_labelled_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("printed.txt");
    let builder = StreamsBuilder::new();
    let stream = builder.stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()));
    stream.print(Printed::to_file(&path).with_label("n"));
    stream.print(Printed::to_file(dir.path().join("mapped.txt")).with_key_value_mapper(|k, v| format!("{k}={v}")));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("print")).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("numbers", Serdes::string(), Serdes::i64());
    input.pipe_key_value_list([("a".into(), 1), ("b".into(), 2)]).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "[n]: \"a\", 1\n[n]: \"b\", 2\n");
    assert_eq!(std::fs::read_to_string(dir.path().join("mapped.txt")).unwrap(), "[KSTREAM-PRINTER-0000000002]: a=1\n[KSTREAM-PRINTER-0000000002]: b=2\n");
}

#[test]
fn the_driver_pipes_into_chosen_partitions_with_headers_and_lists_stores_and_produced_topics() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::i64()))
        .count(Materialized::as_("counts"));
    let driver = TopologyTestDriver::with_partitions(builder.build().unwrap(), config("driver-parity"), &[("numbers", 3)]).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("numbers", Serdes::string(), Serdes::i64());
    let headers = vec![("trace".to_string(), Some(b"t1".to_vec()))];
    input
        .pipe_record(streams::TestRecord { key: "a".into(), value: 1, timestamp: 5, headers, partition: 0 }, Some(2))
        .unwrap();
    let counts = driver.state_stores::<streams::TimestampedKeyValueStore<String, i64>>("counts").unwrap();
    let hits: Vec<u32> = counts.iter().filter(|(_, s)| s.get(&"a".into()).unwrap().is_some()).map(|(t, _)| t.partition as u32).collect();
    assert_eq!(hits, vec![2], "the record went to the partition asked for, not the key's");
    assert_eq!(driver.state_store_names().into_iter().collect::<Vec<_>>(), vec!["counts".to_string()]);
    assert_eq!(driver.produced_topic_names().into_iter().collect::<Vec<_>>(), vec!["driver-parity-counts-changelog".to_string()]);
    let bad = streams::TestRecord { key: "a".into(), value: 1, timestamp: 5, headers: Vec::new(), partition: 0 };
    assert!(input.pipe_record(bad, Some(3)).is_err(), "partition 3 of a 3-partition topic");
}

/// A store of the test's own: a sorted map that counts its writes.
struct MapStore {
    map: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    puts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl BytesKeyValueStore for MapStore {
    fn get(&mut self, key: &[u8]) -> streams::Result<Option<Vec<u8>>> {
        Ok(self.map.get(key).cloned())
    }
    fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> streams::Result<()> {
        self.puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match value {
            Some(v) => self.map.insert(key.to_vec(), v.to_vec()),
            None => self.map.remove(key),
        };
        Ok(())
    }
    fn range(&mut self, from: Option<&[u8]>, until: Option<&[u8]>) -> streams::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let lower = from.map_or(Unbounded, |f| Included(f.to_vec()));
        let upper = until.map_or(Unbounded, |u| Excluded(u.to_vec()));
        Ok(self.map.range((lower, upper)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }
}

#[test]
fn a_user_store_supplier_backs_a_dsl_count() {
    let puts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shared = puts.clone();
    let supplier = Stores::key_value_store_supplier("user-counts", false, move |name, task, _dir| {
        assert_eq!((name, task.partition), ("user-counts", 0));
        Ok(MapStore { map: Default::default(), puts: shared.clone() })
    });
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("words", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_supplier(supplier).with_caching_disabled())
        .to_stream()
        .to("counts", Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("user-store")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("words", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, Option<i64>>("counts", Serdes::string(), Serdes::nullable(Serdes::i64()));
    input.pipe_key_value_list([("a".into(), "x".into()), ("b".into(), "y".into()), ("a".into(), "z".into())]).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![("a".into(), Some(1)), ("b".into(), Some(1)), ("a".into(), Some(2))]);
    assert_eq!(puts.load(std::sync::atomic::Ordering::SeqCst), 3, "every update went to the user's store");
    let store = driver.get_timestamped_key_value_store::<String, i64>("user-counts").unwrap();
    let all: Vec<(String, i64)> = store.all().unwrap().map(|e| e.map(|(k, v)| (k, v.value))).collect::<streams::Result<_>>().unwrap();
    assert_eq!(all, vec![("a".into(), 2), ("b".into(), 1)]);
    let changelog = driver.create_output_topic::<String, Vec<u8>>("user-store-user-counts-changelog", Serdes::string(), Serdes::bytes());
    assert_eq!(changelog.queue_size(), 3, "the library logs a user's store too");
}

#[test]
fn branches_with_a_function_are_returned_chained_and_with_a_consumer_are_left_out() {
    let builder = StreamsBuilder::new();
    let branches = builder
        .stream::<String, i64>("numbers", Consumed::with(Serdes::string(), Serdes::i64()))
        .split_named("split-")
        .branch(|_, v| *v < 0, Branched::with_consumer(|s| s.to("negative", Produced::with(Serdes::string(), Serdes::i64()))))
        .branch(|_, v| *v >= 100, Branched::with_function(|s| s.map_values(|v| v / 100)).with_name("hundreds"))
        .default_branch(Branched::as_("rest"));
    let mut names: Vec<&String> = branches.keys().collect();
    names.sort();
    assert_eq!(names, ["split-hundreds", "split-rest"], "a consumer's branch is not in the result");
    for (name, stream) in &branches {
        stream.to(&format!("{name}-out"), Produced::with(Serdes::string(), Serdes::i64()));
    }
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("branched")).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("numbers", Serdes::string(), Serdes::i64());
    let read = |topic: &str| driver.create_output_topic::<String, i64>(topic, Serdes::string(), Serdes::i64()).read_values_to_list().unwrap();
    input.pipe_key_value_list([("a".into(), -5), ("b".into(), 300), ("c".into(), 7), ("d".into(), 100)]).unwrap();
    assert_eq!(read("negative"), [-5]);
    assert_eq!(read("split-hundreds-out"), [3, 1], "the function's stream is the one returned");
    assert_eq!(read("split-rest-out"), [7]);
}

#[test]
fn joiners_with_the_key_see_the_record_key_in_every_kind_of_join() {
    let builder = StreamsBuilder::new();
    let serde = || Consumed::with(Serdes::string(), Serdes::string());
    let produced = || Produced::with(Serdes::string(), Serdes::string());
    let left = builder.stream::<String, String>("left", serde());
    let right = builder.stream::<String, String>("right", serde());
    let table = builder.table::<String, String>("table", serde(), Materialized::as_("table"));
    let global = builder.global_table::<String, String>("global", serde(), Materialized::as_("global"));
    let windows = || JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(10));
    let joined = || StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string());
    left.join_with_key(&right, |k, l, r| format!("{k}:{l}+{r}"), windows(), joined()).to("ss-inner", produced());
    left.left_join_with_key(&right, |k, l, r| format!("{k}:{l}+{r:?}"), windows(), joined()).to("ss-left", produced());
    left.outer_join_with_key(&right, |k, l, r| format!("{k}:{l:?}+{r:?}"), windows(), joined()).to("ss-outer", produced());
    left.join_table_with_key(&table, |k, l, t| format!("{k}:{l}+{t}")).to("st-inner", produced());
    left.left_join_table_with_key(&table, |k, l, t| format!("{k}:{l}+{t:?}")).to("st-left", produced());
    left.join_global_with_key(&global, |_, v| v.clone(), |k, l, g| format!("{k}:{l}+{g}")).to("sg-inner", produced());
    left.left_join_global_with_key(&global, |_, v| v.clone(), |k, l, g| format!("{k}:{l}+{g:?}")).to("sg-left", produced());
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("with-key")).unwrap();
    let input = |topic: &str| driver.create_input_topic::<String, String>(topic, Serdes::string(), Serdes::string());
    let (mut l, mut r, mut t, mut g) = (input("left"), input("right"), input("table"), input("global"));
    t.pipe_input_at("k".into(), "T".into(), 0).unwrap();
    g.pipe_input_at("A".into(), "G".into(), 0).unwrap();
    l.pipe_input_at("k".into(), "A".into(), 1_000).unwrap();
    r.pipe_input_at("k".into(), "B".into(), 2_000).unwrap();
    // Past the window and its grace: unmatched records of the left and outer joins are emitted.
    l.pipe_input_at("other".into(), "Z".into(), 60_000).unwrap();
    let read = |topic: &str| driver.create_output_topic::<String, String>(topic, Serdes::string(), Serdes::string()).read_key_values_to_list().unwrap();
    let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(read("ss-inner"), [kv("k", "k:A+B")]);
    assert_eq!(read("ss-left"), [kv("k", "k:A+Some(\"B\")")]);
    assert_eq!(read("ss-outer"), [kv("k", "k:Some(\"A\")+Some(\"B\")")]);
    assert_eq!(read("st-inner"), [kv("k", "k:A+T")]);
    assert_eq!(read("st-left"), [kv("k", "k:A+Some(\"T\")"), kv("other", "other:Z+None")]);
    assert_eq!(read("sg-inner"), [kv("k", "k:A+G")]);
    assert_eq!(read("sg-left"), [kv("k", "k:A+Some(\"G\")"), kv("other", "other:Z+None")]);
}

/// Text whose records say so in a `content-type` header, and refuse to be read without it.
struct LabelledText;

impl streams::Serde<String> for LabelledText {
    fn serialize(&self, topic: &str, data: &String) -> Result<Option<Vec<u8>>, streams::SerdeError> {
        Serdes::string().serialize(topic, data)
    }
    fn deserialize(&self, _: &str, _: Option<&[u8]>) -> Result<String, streams::SerdeError> {
        Err(streams::SerdeError::new("labelled text is read with its headers"))
    }
    fn serialize_with_headers(&self, topic: &str, headers: &mut streams::Headers, data: &String) -> Result<Option<Vec<u8>>, streams::SerdeError> {
        headers.retain(|(k, _)| k != "content-type");
        headers.push(("content-type".into(), Some(b"text/plain".to_vec())));
        self.serialize(topic, data)
    }
    fn deserialize_with_headers(&self, topic: &str, headers: &streams::Headers, data: Option<&[u8]>) -> Result<String, streams::SerdeError> {
        match headers.iter().find(|(k, _)| k == "content-type") {
            Some((_, Some(v))) if v == b"text/plain" => Serdes::string().deserialize(topic, data),
            other => Err(streams::SerdeError::new(format!("not labelled text: {other:?}"))),
        }
    }
}

#[test]
fn serdes_see_and_write_the_records_headers_at_sources_and_sinks() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("notes", Consumed::with(Serdes::string(), LabelledText))
        .map_values(|v| v.to_uppercase())
        .to("loud", Produced::with(Serdes::string(), LabelledText));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("headers")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("notes", Serdes::string(), LabelledText);
    let out = driver.create_output_topic::<String, String>("loud", Serdes::string(), LabelledText);
    input.pipe_input("k".into(), "hello".into()).unwrap();
    let record = out.read_record().unwrap().unwrap();
    assert_eq!(record.value, "HELLO");
    let labels: Vec<_> = record.headers.iter().filter(|(k, _)| k == "content-type").collect();
    assert_eq!(labels.len(), 1, "the sink's serde replaced the header the record carried: {:?}", record.headers);
    // Without the header the source's serde refuses the record (log-and-fail by default).
    let err = input.pipe_raw(Some(b"k".to_vec()), Some(b"hi".to_vec()), 0).unwrap_err().to_string();
    assert!(err.contains("not labelled text"), "{err}");
}

#[test]
fn user_segment_stores_back_window_and_session_aggregations() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use streams::state::{Window, Windowed, WindowedSerde};
    use streams::{SessionWindows, TimeWindows};
    let segments: Arc<Mutex<Vec<String>>> = Arc::default();
    let puts = Arc::new(AtomicUsize::new(0));
    let (seen, counted) = (segments.clone(), puts.clone());
    let factory = move |name: &str, _task: streams::TaskId, _dir: &std::path::Path| {
        seen.lock().unwrap().push(name.to_string());
        Ok(MapStore { map: Default::default(), puts: counted.clone() })
    };
    let minute = Duration::from_secs(60);
    let windows = Stores::window_store_supplier("per-minute", 2 * minute, minute, false, false, factory.clone());
    let sessions = Stores::session_store_supplier("visits", 2 * minute, false, factory);
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()));
    grouped
        .windowed_by(TimeWindows::of_size_with_no_grace(minute))
        .count(Materialized::as_window_supplier(windows).with_caching_disabled())
        .to_stream()
        .to("per-minute", Produced::with(WindowedSerde::time(Arc::new(Serdes::string()), 60_000), Serdes::nullable(Serdes::i64())));
    grouped
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(10)))
        .count(Materialized::as_window_supplier(sessions).with_caching_disabled())
        .to_stream()
        .to("visits", Produced::with(WindowedSerde::session(Arc::new(Serdes::string())), Serdes::nullable(Serdes::i64())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("user-segments")).unwrap();
    let mut input = driver.create_input_topic::<String, String>("clicks", Serdes::string(), Serdes::string());
    for ts in [0, 5_000, 70_000] {
        input.pipe_input_at("u".into(), "p".into(), ts).unwrap();
    }
    let per_minute = driver.create_output_topic::<Windowed<String>, Option<i64>>("per-minute", WindowedSerde::time(Arc::new(Serdes::string()), 60_000), Serdes::nullable(Serdes::i64()));
    let window = |start: i64, end: i64| Windowed::new("u".to_string(), Window::new(start, end));
    assert_eq!(per_minute.read_key_values_to_list().unwrap(), vec![(window(0, 60_000), Some(1)), (window(0, 60_000), Some(2)), (window(60_000, 120_000), Some(1))]);
    let visits = driver.create_output_topic::<Windowed<String>, Option<i64>>("visits", WindowedSerde::session(Arc::new(Serdes::string())), Serdes::nullable(Serdes::i64()));
    let last = visits.read_key_values_to_list().unwrap().pop();
    assert_eq!(last, Some((window(70_000, 70_000), Some(1))));
    // Segments of one minute (retention / 2, at least a minute), one user store each.
    let mut names = segments.lock().unwrap().clone();
    names.sort();
    assert_eq!(names, ["per-minute.0", "per-minute.60000", "visits.0", "visits.60000"]);
    assert!(puts.load(Ordering::SeqCst) >= 6, "every window and session update went to the user's stores");
    // A session supplier where windows are needed is refused when the topology is built.
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by(TimeWindows::of_size_with_no_grace(minute))
        .count(Materialized::as_window_supplier(Stores::in_memory_session_store("wrong", minute)));
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("a session store supplier where a window store is needed"), "{err}");
}

/// Prefixes each value with the topic it was read from.
struct TagTopic;

impl FixedKeyProcessor<String, String, String> for TagTopic {
    fn process(&mut self, ctx: &mut FixedKeyProcessorContext<'_, String, String>, record: FixedKeyRecord<String, String>) -> streams::Result<()> {
        let value = format!("{}:{}", ctx.record_context().topic, record.value);
        ctx.forward(record.with_value(value))
    }
}

#[test]
fn a_pattern_source_reads_every_matching_topic_the_driver_is_given() {
    let builder = StreamsBuilder::new();
    builder
        .stream_pattern::<String, String>("orders-[a-z]+", Consumed::with(Serdes::string(), Serdes::string()))
        .process_values(|| TagTopic, &[])
        .to("tagged", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build().unwrap();
    assert!(topology.describe().to_string().contains("Source: KSTREAM-SOURCE-0000000000 (topics: orders-[a-z]+)\n"), "{}", topology.describe());
    // `orders-eu` has two partitions here; `orders-us` is matched when first piped (one partition).
    let driver = TopologyTestDriver::with_partitions(topology, config("pattern"), &[("orders-eu", 2)]).unwrap();
    let mut eu = driver.create_input_topic::<String, String>("orders-eu", Serdes::string(), Serdes::string());
    let mut us = driver.create_input_topic::<String, String>("orders-us", Serdes::string(), Serdes::string());
    let mut whole = driver.create_input_topic::<String, String>("orders-eu-1", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, String>("tagged", Serdes::string(), Serdes::string());
    eu.pipe_input("a".into(), "1".into()).unwrap();
    us.pipe_input("b".into(), "2".into()).unwrap();
    eu.pipe_input("c".into(), "3".into()).unwrap();
    us.pipe_input("a".into(), "4".into()).unwrap();
    let err = whole.pipe_input("a".into(), "5".into()).unwrap_err().to_string();
    assert!(err.contains("unknown input topic `orders-eu-1`"), "the whole name must match: {err}");
    let records = out.read_records_to_list().unwrap();
    let tagged: Vec<(String, String)> = records.iter().map(|r| (r.key.clone(), r.value.clone())).collect();
    assert_eq!(tagged, [("a", "orders-eu:1"), ("b", "orders-us:2"), ("c", "orders-eu:3"), ("a", "orders-us:4")].map(|(k, v)| (k.to_string(), v.to_string())));
    assert_eq!(driver.produced_topic_names().into_iter().collect::<Vec<_>>(), ["tagged"]);
}

#[test]
fn a_pattern_source_in_a_join_must_be_co_partitioned() {
    let topology = || {
        let builder = StreamsBuilder::new();
        let table = builder.table::<String, String>("prices", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("prices"));
        builder
            .stream_pattern::<String, String>("orders-.*", Consumed::with(Serdes::string(), Serdes::string()))
            .join_table(&table, |order, price| format!("{order}@{price}"))
            .to("priced", Produced::with(Serdes::string(), Serdes::string()));
        builder.build().unwrap()
    };
    let err = TopologyTestDriver::with_partitions(topology(), config("pattern-join"), &[("orders-eu", 2), ("prices", 3)]).unwrap_err();
    assert!(err.to_string().contains("Topics not co-partitioned") && err.to_string().contains("orders-eu (2)"), "{err}");
    let driver = TopologyTestDriver::with_partitions(topology(), config("pattern-join"), &[("orders-eu", 3), ("prices", 3)]).unwrap();
    let mut prices = driver.create_input_topic::<String, String>("prices", Serdes::string(), Serdes::string());
    let mut orders = driver.create_input_topic::<String, String>("orders-eu", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic("priced", Serdes::string(), Serdes::string());
    prices.pipe_input("apple".into(), "3".into()).unwrap();
    orders.pipe_input("apple".into(), "two".into()).unwrap();
    orders.pipe_input("pear".into(), "one".into()).unwrap();
    assert_eq!(out.read_key_values_to_list().unwrap(), [("apple".to_string(), "two@3".to_string())]);
}

/// A stateful processor over table rows: appends how many times it ran to each value and
/// notes what it saw; a row `skip` forwards nothing and a row `drop` forwards a delete.
struct CountedRows {
    calls: u32,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl FixedKeyProcessor<String, Option<String>, Option<String>> for CountedRows {
    fn process(
        &mut self,
        ctx: &mut FixedKeyProcessorContext<'_, String, Option<String>>,
        record: FixedKeyRecord<String, Option<String>>,
    ) -> streams::Result<()> {
        self.calls += 1;
        self.seen.lock().unwrap().push(record.value.clone());
        match record.value.as_deref() {
            Some("skip") => Ok(()),
            Some("drop") => ctx.forward(record.with_value(None)),
            _ => {
                let value = record.value.clone().map(|v| format!("{v}#{}", self.calls));
                ctx.forward(record.with_value(value))
            }
        }
    }
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>;

fn counted_rows(seen: &Seen) -> impl Fn() -> CountedRows + Send + Sync + 'static {
    let seen = seen.clone();
    move || CountedRows { calls: 0, seen: seen.clone() }
}

/// Pipes `(key, value)` updates into table topic `t` (`None`: a tombstone).
fn pipe_rows(driver: &TopologyTestDriver, rows: &[(&str, Option<&str>)]) {
    let mut input = driver.create_input_topic::<String, Option<String>>("t", Serdes::string(), Serdes::nullable(Serdes::string()));
    for (key, value) in rows {
        input.pipe_input(key.to_string(), value.map(str::to_string)).unwrap();
    }
}

fn rows_table(builder: &StreamsBuilder) -> KTable<String, String> {
    builder.table("t", Consumed::with(Serdes::string(), Serdes::string()), Materialized::new())
}

fn count_by_value(table: KTable<String, String>) {
    table
        .group_by(|_, v| (v.split('#').next().unwrap_or_default().to_string(), v.clone()), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::new().with_caching_disabled())
        .to_stream()
        .to("counts", Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())));
}

#[test]
fn table_process_values_runs_once_per_update_where_no_old_values_are_needed() {
    let seen = Seen::default();
    let builder = StreamsBuilder::new();
    rows_table(&builder)
        .process_values(counted_rows(&seen), &[])
        .to_stream()
        .to("rows", Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("table-process-values")).unwrap();
    pipe_rows(&driver, &[("a", Some("x")), ("a", Some("y")), ("b", Some("skip")), ("c", Some("drop")), ("a", None)]);
    let out = driver.create_output_topic::<String, Option<String>>("rows", Serdes::string(), Serdes::nullable(Serdes::string()));
    let some = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
    assert_eq!(
        out.read_key_values_to_list().unwrap(),
        vec![some("a", "x#1"), some("a", "y#2"), ("b".into(), None), ("c".into(), None), ("a".into(), None)],
        "nothing forwarded or a forwarded None deletes the row; a delete reaches the processor as None"
    );
    let saw = seen.lock().unwrap().clone();
    assert_eq!(saw, vec![Some("x".into()), Some("y".into()), Some("skip".into()), Some("drop".into()), None]);
}

#[test]
fn table_process_values_runs_again_on_old_values_when_an_aggregation_asks_for_them() {
    let seen = Seen::default();
    let builder = StreamsBuilder::new();
    count_by_value(rows_table(&builder).filter(|_, _| true).process_values(counted_rows(&seen), &[]));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("table-process-values-old")).unwrap();
    pipe_rows(&driver, &[("a", Some("x")), ("a", Some("y"))]);
    // Each update runs the processor on the new value, then on the old one (Kafka Streams' order).
    let saw = seen.lock().unwrap().clone();
    assert_eq!(saw, vec![Some("x".into()), None, Some("y".into()), Some("x".into())]);
    let out = driver.create_output_topic::<String, Option<i64>>("counts", Serdes::string(), Serdes::nullable(Serdes::i64()));
    let count = |k: &str, n: i64| (k.to_string(), Some(n));
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![count("x", 1), count("x", 0), count("y", 1)]);
}

#[test]
fn materialized_table_process_values_reads_old_values_from_its_store() {
    let seen = Seen::default();
    let builder = StreamsBuilder::new();
    let rows = rows_table(&builder).process_values_with(
        counted_rows(&seen),
        Materialized::as_("processed-rows").with_value_serde(Serdes::string()).with_caching_disabled(),
        &[],
    );
    assert_eq!(rows.queryable_store_name(), Some("processed-rows"));
    count_by_value(rows);
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("table-process-values-materialized")).unwrap();
    pipe_rows(&driver, &[("a", Some("x")), ("a", Some("y")), ("b", Some("z"))]);
    let saw = seen.lock().unwrap().clone();
    assert_eq!(saw, vec![Some("x".into()), Some("y".into()), Some("z".into())], "once per update");
    let out = driver.create_output_topic::<String, Option<i64>>("counts", Serdes::string(), Serdes::nullable(Serdes::i64()));
    let count = |k: &str, n: i64| (k.to_string(), Some(n));
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![count("x", 1), count("x", 0), count("y", 1), count("z", 1)]);
    let store = driver.get_timestamped_key_value_store::<String, String>("processed-rows").unwrap();
    assert_eq!(store.get(&"a".to_string()).unwrap().map(|v| v.value), Some("y#2".to_string()));
}

/// Reads a threshold from a store and keeps rows at or above it.
struct AtLeast;

impl FixedKeyProcessor<String, Option<i64>, Option<i64>> for AtLeast {
    fn process(&mut self, ctx: &mut FixedKeyProcessorContext<'_, String, Option<i64>>, record: FixedKeyRecord<String, Option<i64>>) -> streams::Result<()> {
        let minimum = ctx.key_value_store::<String, i64>("totals")?.get(&"minimum".to_string())?.unwrap_or(0);
        let value = record.value.filter(|v| *v >= minimum);
        ctx.forward(record.with_value(value))
    }
}

#[test]
fn table_process_values_reaches_connected_stores() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(totals_store());
    builder
        .table::<String, i64>("amounts", Consumed::with(Serdes::string(), Serdes::i64()), Materialized::new())
        .process_values(|| AtLeast, &["totals"])
        .to_stream()
        .to("kept", Produced::with(Serdes::string(), Serdes::nullable(Serdes::i64())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("table-process-values-stores")).unwrap();
    let tasks = driver.get_key_value_stores::<String, i64>("totals").unwrap();
    tasks[0].1.put(&"minimum".to_string(), &10).unwrap();
    let mut input = driver.create_input_topic::<String, i64>("amounts", Serdes::string(), Serdes::i64());
    input.pipe_key_value_list([("a".into(), 5), ("b".into(), 12)]).unwrap();
    let out = driver.create_output_topic::<String, Option<i64>>("kept", Serdes::string(), Serdes::nullable(Serdes::i64()));
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![("a".into(), None), ("b".into(), Some(12))]);
}

#[test]
fn a_table_processor_feeds_a_join_through_its_store() {
    let seen = Seen::default();
    let builder = StreamsBuilder::new();
    let right = builder.table::<String, String>("u", Consumed::with(Serdes::string(), Serdes::string()), Materialized::new());
    let rows = Materialized::as_("rows").with_value_serde(Serdes::string()).with_caching_disabled();
    rows_table(&builder)
        .process_values_with(counted_rows(&seen), rows, &[])
        .left_join(&right, |l, r| format!("{l}+{}", r.map_or("null", String::as_str)))
        .to_stream()
        .to("joined", Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("table-process-values-join")).unwrap();
    pipe_rows(&driver, &[("a", Some("x"))]);
    let mut input = driver.create_input_topic::<String, String>("u", Serdes::string(), Serdes::string());
    input.pipe_input("a".into(), "r".into()).unwrap();
    pipe_rows(&driver, &[("a", Some("drop"))]);
    // Materialized, it runs once per update though the left join asks it for old values; the
    // right side's update reads the processed row from its store without running it again.
    assert_eq!(seen.lock().unwrap().clone(), vec![Some("x".into()), Some("drop".into())]);
    let out = driver.create_output_topic::<String, Option<String>>("joined", Serdes::string(), Serdes::nullable(Serdes::string()));
    let some = |v: &str| ("a".to_string(), Some(v.to_string()));
    assert_eq!(out.read_key_values_to_list().unwrap(), vec![some("x#1+null"), some("x#1+r"), ("a".into(), None)]);
}

#[test]
fn joining_an_unmaterialized_table_processor_needs_its_value_serde() {
    let builder = StreamsBuilder::new();
    let right = builder.table::<String, String>("u", Consumed::with(Serdes::string(), Serdes::string()), Materialized::new());
    rows_table(&builder).process_values(counted_rows(&Seen::default()), &[]).join(&right, |l, r| format!("{l}+{r}"));
    let error = builder.build().unwrap_err().to_string();
    assert!(error.contains("has no serde"), "{error}");
}

//! The WordCount facts of the Kafka Streams docs, through the TopologyTestDriver with RocksDB.

mod common;

use std::collections::HashMap;

use common::{config, word_count};
use streams::prelude::*;

const INPUT: &str = "streams-plaintext-input";
const OUTPUT: &str = "streams-wordcount-output";

fn pairs(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(w, c)| (w.to_string(), *c)).collect()
}

#[test]
fn counts_every_update_in_order_with_cache_off() {
    let driver =
        TopologyTestDriver::new(word_count(Materialized::as_("counts").with_caching_disabled()), config("wc")).unwrap();
    let mut input = driver.create_input_topic::<Option<String>, String>(INPUT, Serdes::string(), Serdes::string());
    let output = driver.create_output_topic::<String, i64>(OUTPUT, Serdes::string(), Serdes::i64());
    input.pipe_value_list(["all streams lead to kafka", "hello kafka streams", "join kafka summit"].map(String::from)).unwrap();
    let expected = pairs(&[
        ("all", 1), ("streams", 1), ("lead", 1), ("to", 1), ("kafka", 1), ("hello", 1),
        ("kafka", 2), ("streams", 2), ("join", 1), ("kafka", 3), ("summit", 1),
    ]);
    assert_eq!(output.read_key_values_to_list().unwrap(), expected);
    assert!(output.is_empty());

    let store = driver.get_timestamped_key_value_store::<String, i64>("counts").unwrap();
    assert_eq!(store.get(&"kafka".to_string()).unwrap().map(|v| v.value), Some(3));
    assert_eq!(store.get(&"missing".to_string()).unwrap(), None);
    driver.close().unwrap();
}

fn final_counts(materialized: Materialized<String, i64>, partitions: &[(&str, i32)]) -> (HashMap<String, i64>, usize, usize) {
    let driver = TopologyTestDriver::with_partitions(word_count(materialized), config("wc"), partitions).unwrap();
    let mut input = driver.create_input_topic::<Option<String>, String>(INPUT, Serdes::string(), Serdes::string());
    let output = driver.create_output_topic::<String, i64>(OUTPUT, Serdes::string(), Serdes::i64());
    let changelog = driver.create_output_topic::<String, Vec<u8>>("wc-counts-changelog", Serdes::string(), Serdes::bytes());
    input
        .pipe_value_list(
            ["Apache   Kafka Streams   Example", "Using  \t\t Kafka   Streams\tTest Utils", "Reading and Writing Kafka Topic"]
                .map(String::from),
        )
        .unwrap();
    driver.commit().unwrap();
    let updates = output.read_key_values_to_list().unwrap();
    let changelog_records = changelog.read_key_values_to_list().unwrap().len();
    let count = updates.len();
    (updates.into_iter().collect(), count, changelog_records)
}

fn expected_final() -> HashMap<String, i64> {
    pairs(&[
        ("apache", 1), ("kafka", 3), ("streams", 2), ("example", 1), ("using", 1), ("test", 1), ("utils", 1),
        ("reading", 1), ("and", 1), ("writing", 1), ("topic", 1),
    ])
    .into_iter()
    .collect()
}

#[test]
fn final_counts_with_rocksdb_cache_off() {
    let (counts, updates, changelog) = final_counts(Materialized::as_("counts").with_caching_disabled(), &[]);
    assert_eq!(counts, expected_final());
    assert_eq!(updates, 14, "one update per word without a cache");
    assert_eq!(changelog, 14);
}

#[test]
fn caching_changes_nothing_when_every_record_commits() {
    // The driver commits after each record, and each word is a record of its own after the
    // repartition: the cache merges nothing (as with Kafka Streams' driver).
    let (counts, updates, changelog) = final_counts(Materialized::as_("counts"), &[]);
    assert_eq!(counts, expected_final());
    assert_eq!((updates, changelog), (14, 14));
}

#[test]
fn in_memory_store_gives_the_same_counts() {
    let (counts, _, _) = final_counts(Materialized::as_("counts").in_memory().with_caching_disabled(), &[]);
    assert_eq!(counts, expected_final());
}

#[test]
fn several_partitions_repartition_by_word() {
    let (counts, updates, _) =
        final_counts(Materialized::as_("counts").with_caching_disabled(), &[("streams-plaintext-input", 4)]);
    assert_eq!(counts, expected_final());
    assert_eq!(updates, 14);
}

#[test]
fn tasks_follow_partitions_and_each_word_lives_in_one_task() {
    let topology = word_count(Materialized::as_("counts").with_caching_disabled());
    let driver = TopologyTestDriver::with_partitions(topology, config("wc"), &[(INPUT, 3)]).unwrap();
    let ids: Vec<String> = driver.task_ids().iter().map(|t| t.to_string()).collect();
    assert_eq!(ids, ["0_0", "0_1", "0_2", "1_0", "1_1", "1_2"]);
    let mut input = driver.create_input_topic::<Option<String>, String>(INPUT, Serdes::string(), Serdes::string());
    input.pipe_value_list((0..30).map(|i| format!("kafka streams word{}", i % 7))).unwrap();
    let stores = driver.get_key_value_stores::<String, streams::ValueAndTimestamp<i64>>("counts").unwrap();
    assert_eq!(stores.len(), 3);
    let holders: Vec<_> = stores.iter().filter(|(_, s)| s.get(&"kafka".to_string()).unwrap().is_some()).collect();
    assert_eq!(holders.len(), 1, "a word is counted by exactly one task");
    assert_eq!(holders[0].1.get(&"kafka".to_string()).unwrap().unwrap().value, 30);
    let total: u64 = stores.iter().map(|(_, s)| s.approximate_num_entries().unwrap()).sum();
    assert!(total >= 9, "kafka, streams and word0..word6 spread over the tasks");
}

#[test]
fn the_driver_commits_after_every_record_whatever_the_commit_interval() {
    let cfg = config("wc").with(StreamsConfig::COMMIT_INTERVAL_MS, "1000");
    let driver = TopologyTestDriver::new(word_count(Materialized::as_("counts")), cfg).unwrap();
    let mut input = driver.create_input_topic::<Option<String>, String>(INPUT, Serdes::string(), Serdes::string());
    let output = driver.create_output_topic::<String, i64>(OUTPUT, Serdes::string(), Serdes::i64());
    input.pipe_value("a a a".into()).unwrap();
    assert_eq!(output.read_key_values_to_list().unwrap(), pairs(&[("a", 1), ("a", 2), ("a", 3)]));
}

#[test]
fn a_tiny_cache_evicts_and_forwards_early() {
    let cfg = config("wc").with(StreamsConfig::CACHE_MAX_BYTES, "0");
    let driver = TopologyTestDriver::new(word_count(Materialized::as_("counts")), cfg).unwrap();
    let mut input = driver.create_input_topic::<Option<String>, String>(INPUT, Serdes::string(), Serdes::string());
    let output = driver.create_output_topic::<String, i64>(OUTPUT, Serdes::string(), Serdes::i64());
    input.pipe_value("a a".into()).unwrap();
    assert_eq!(output.read_key_values_to_list().unwrap(), pairs(&[("a", 1), ("a", 2)]));
}

#[test]
fn describe_shows_two_sub_topologies_joined_by_a_repartition_topic() {
    let description = word_count(Materialized::as_("counts-store")).describe().to_string();
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: KSTREAM-SOURCE-0000000000 (topics: [streams-plaintext-input])
      --> KSTREAM-FLATMAPVALUES-0000000001
    Processor: KSTREAM-FLATMAPVALUES-0000000001 (stores: [])
      --> KSTREAM-KEY-SELECT-0000000002
      <-- KSTREAM-SOURCE-0000000000
    Processor: KSTREAM-KEY-SELECT-0000000002 (stores: [])
      --> KSTREAM-SINK-0000000004
      <-- KSTREAM-FLATMAPVALUES-0000000001
    Sink: KSTREAM-SINK-0000000004 (topic: counts-store-repartition)
      <-- KSTREAM-KEY-SELECT-0000000002

   Sub-topology: 1
    Source: KSTREAM-SOURCE-0000000005 (topics: [counts-store-repartition])
      --> KSTREAM-AGGREGATE-0000000003
    Processor: KSTREAM-AGGREGATE-0000000003 (stores: [counts-store])
      --> KTABLE-TOSTREAM-0000000006
      <-- KSTREAM-SOURCE-0000000005
    Processor: KTABLE-TOSTREAM-0000000006 (stores: [])
      --> KSTREAM-SINK-0000000007
      <-- KSTREAM-AGGREGATE-0000000003
    Sink: KSTREAM-SINK-0000000007 (topic: streams-wordcount-output)
      <-- KTABLE-TOSTREAM-0000000006
";
    assert_eq!(description, expected);
}

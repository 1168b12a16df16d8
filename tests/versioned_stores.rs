//! Versioned key-value stores (KIP-889) and versioned tables (KIP-914), with Kafka Streams'
//! expected outputs: point-in-time reads, out-of-order table updates, the history retention,
//! and stream-table joins that read the table as of each stream record's time.

mod common;

use std::time::Duration;

use common::config;
use streams::prelude::*;
use streams::state::{VersionedKeyValueStore, VersionedRecord};
use streams::Stores;

const RETENTION: Duration = Duration::from_secs(60);

fn prices(builder: &StreamsBuilder) -> KTable<String, String> {
    let supplier = Stores::persistent_versioned_key_value_store("prices", RETENTION);
    builder.table("prices", Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_versioned(supplier))
}

fn record(value: &str, timestamp: i64, valid_to: Option<i64>) -> Option<VersionedRecord<String>> {
    Some(VersionedRecord { value: value.to_string(), timestamp, valid_to })
}

#[test]
fn a_versioned_table_keeps_every_version_and_passes_out_of_order_updates_on() {
    let builder = StreamsBuilder::new();
    prices(&builder).to_stream().to("changes", Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("versioned-table")).unwrap();
    let mut input = driver.create_input_topic::<String, Option<String>>("prices", Serdes::string(), Serdes::nullable(Serdes::string()));
    let out = driver.create_output_topic::<String, Option<String>>("changes", Serdes::string(), Serdes::nullable(Serdes::string()));
    for (value, ts) in [(Some("1"), 10_000), (Some("3"), 30_000), (Some("2"), 20_000), (None, 40_000), (Some("0"), 5_000)] {
        input.pipe_input_at("apple".into(), value.map(str::to_string), ts).unwrap();
    }
    // Stream time 40 s, history 60 s: all five are kept, the out-of-order ones included, and
    // `to_stream` sees every update (Kafka Streams forwards out-of-order updates too).
    let changes: Vec<(Option<String>, i64)> = out.read_records_to_list().unwrap().into_iter().map(|r| (r.value, r.timestamp)).collect();
    let expected = [(Some("1"), 10_000), (Some("3"), 30_000), (Some("2"), 20_000), (None, 40_000), (Some("0"), 5_000)];
    assert_eq!(changes, expected.map(|(v, ts)| (v.map(str::to_string), ts)));

    let store: VersionedKeyValueStore<String, String> = driver.versioned_key_value_store("prices").unwrap();
    let apple = "apple".to_string();
    assert_eq!(store.get(&apple).unwrap(), None, "deleted at 40 s");
    assert_eq!(store.get_as_of(&apple, 4_999).unwrap(), None);
    assert_eq!(store.get_as_of(&apple, 5_000).unwrap(), record("0", 5_000, Some(10_000)));
    assert_eq!(store.get_as_of(&apple, 25_000).unwrap(), record("2", 20_000, Some(30_000)));
    assert_eq!(store.get_as_of(&apple, 39_999).unwrap(), record("3", 30_000, Some(40_000)));

    // Stream time moves to 100 s: versions that ended before 40 s are out of the history, and
    // a put before it is refused (and not passed on).
    input.pipe_input_at("pear".into(), Some("9".into()), 100_000).unwrap();
    input.pipe_input_at("apple".into(), Some("late".into()), 39_000).unwrap();
    assert_eq!(out.read_records_to_list().unwrap().len(), 1, "only the pear");
    assert_eq!(store.get_as_of(&apple, 39_999).unwrap(), None, "older than the history");
    assert_eq!(store.put(&apple, Some(&"x".to_string()), 39_999).unwrap(), VersionedKeyValueStore::<String, String>::PUT_RETURN_CODE_NOT_PUT);
    assert_eq!(store.put(&apple, Some(&"y".to_string()), 100_000).unwrap(), -1);
    assert_eq!(store.delete(&apple, 110_000).unwrap(), record("y", 100_000, None));
}

#[test]
fn a_stream_joins_a_versioned_table_as_of_each_record_time() {
    let builder = StreamsBuilder::new();
    let prices = prices(&builder);
    let orders = builder.stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    orders.join_table(&prices, |order, price| format!("{order}@{price}")).to("priced", Produced::with(Serdes::string(), Serdes::string()));
    orders
        .left_join_table(&prices, |order, price: Option<&String>| format!("{order}@{}", price.map_or("none", String::as_str)))
        .to("priced-left", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("versioned-join")).unwrap();
    let mut prices_in = driver.create_input_topic::<String, Option<String>>("prices", Serdes::string(), Serdes::nullable(Serdes::string()));
    let mut orders_in = driver.create_input_topic::<String, String>("orders", Serdes::string(), Serdes::string());
    let inner = driver.create_output_topic::<String, String>("priced", Serdes::string(), Serdes::string());
    let left = driver.create_output_topic::<String, String>("priced-left", Serdes::string(), Serdes::string());
    prices_in.pipe_input_at("apple".into(), Some("1".into()), 10_000).unwrap();
    prices_in.pipe_input_at("apple".into(), Some("3".into()), 30_000).unwrap();
    prices_in.pipe_input_at("apple".into(), Some("2".into()), 20_000).unwrap();
    prices_in.pipe_input_at("apple".into(), None, 40_000).unwrap();
    for (order, ts) in [("a", 5_000), ("b", 15_000), ("c", 25_000), ("d", 35_000), ("e", 45_000)] {
        orders_in.pipe_input_at("apple".into(), order.into(), ts).unwrap();
    }
    // Each order meets the price valid at its own time, not the latest one.
    assert_eq!(inner.read_values_to_list().unwrap(), ["b@1", "c@2", "d@3"]);
    assert_eq!(left.read_values_to_list().unwrap(), ["a@none", "b@1", "c@2", "d@3", "e@none"]);
}

#[test]
fn table_table_joins_skip_out_of_order_updates_of_a_versioned_table() {
    let builder = StreamsBuilder::new();
    let stock = builder.table::<String, String>("stock", Consumed::with(Serdes::string(), Serdes::string()), Materialized::new());
    prices(&builder)
        .join(&stock, |price, stock| format!("{price}/{stock}"))
        .to_stream()
        .to("offers", Produced::with(Serdes::string(), Serdes::nullable(Serdes::string())));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("versioned-table-join")).unwrap();
    let mut prices_in = driver.create_input_topic::<String, Option<String>>("prices", Serdes::string(), Serdes::nullable(Serdes::string()));
    let mut stock_in = driver.create_input_topic::<String, String>("stock", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, Option<String>>("offers", Serdes::string(), Serdes::nullable(Serdes::string()));
    prices_in.pipe_input_at("apple".into(), Some("3".into()), 30_000).unwrap();
    stock_in.pipe_input_at("apple".into(), "7".into(), 31_000).unwrap();
    prices_in.pipe_input_at("apple".into(), Some("2".into()), 20_000).unwrap();
    stock_in.pipe_input_at("apple".into(), "6".into(), 32_000).unwrap();
    // The out-of-order price (2 at 20 s) neither joins nor replaces the latest one.
    assert_eq!(out.read_values_to_list().unwrap(), [Some("3/7".to_string()), Some("3/6".to_string())]);
}

#[test]
fn versioned_stores_materialize_source_tables_only() {
    let builder = StreamsBuilder::new();
    let supplier = Stores::persistent_versioned_key_value_store("counts", RETENTION);
    builder
        .stream::<String, String>("words", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::as_versioned(supplier));
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("only source tables"), "{err}");
}

#[test]
fn with_a_grace_period_stream_records_wait_for_late_table_updates() {
    let builder = StreamsBuilder::new();
    let prices = prices(&builder);
    let orders = builder.stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    let joined = || Joined::with(Serdes::string(), Serdes::string()).with_grace_period(Duration::from_secs(10));
    orders.join_table_with(&prices, |order, price| format!("{order}@{price}"), joined()).to("priced", Produced::with(Serdes::string(), Serdes::string()));
    orders
        .left_join_table_with(&prices, |order, price: Option<&String>| format!("{order}@{}", price.map_or("none", String::as_str)), joined())
        .to("priced-left", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("versioned-grace")).unwrap();
    let mut prices_in = driver.create_input_topic::<String, Option<String>>("prices", Serdes::string(), Serdes::nullable(Serdes::string()));
    let mut orders_in = driver.create_input_topic::<String, String>("orders", Serdes::string(), Serdes::string());
    let inner = driver.create_output_topic::<String, String>("priced", Serdes::string(), Serdes::string());
    let left = driver.create_output_topic::<String, String>("priced-left", Serdes::string(), Serdes::string());
    let apple = || "apple".to_string();
    prices_in.pipe_input_at(apple(), Some("1".into()), 10_000).unwrap();
    orders_in.pipe_input_at(apple(), "a".into(), 15_000).unwrap();
    assert!(inner.read_values_to_list().unwrap().is_empty(), "`a` waits until stream time passes 25 s");
    // A late price, older than the waiting order: the order sees it.
    prices_in.pipe_input_at(apple(), Some("2".into()), 12_000).unwrap();
    orders_in.pipe_input_at(apple(), "b".into(), 30_000).unwrap();
    assert_eq!(inner.read_values_to_list().unwrap(), ["a@2"]);
    // Older than stream time minus the grace period on arrival: joined at once, as of 5 s.
    orders_in.pipe_input_at(apple(), "c".into(), 5_000).unwrap();
    orders_in.pipe_input_at(apple(), "d".into(), 45_000).unwrap();
    assert_eq!(inner.read_values_to_list().unwrap(), ["b@2"]);
    assert_eq!(left.read_values_to_list().unwrap(), ["a@2", "c@none", "b@2"]);
    driver.key_value_store::<Vec<u8>, Vec<u8>>("KSTREAM-JOIN-0000000003-Buffer").expect("the buffer is a store of its own");
}

#[test]
fn a_grace_period_needs_a_versioned_table_with_enough_history() {
    let build = |versioned: bool, grace: Duration| {
        let builder = StreamsBuilder::new();
        let table = match versioned {
            true => prices(&builder),
            false => builder.table("prices", Consumed::with(Serdes::string(), Serdes::string()), Materialized::new()),
        };
        builder
            .stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()))
            .join_table_with(&table, |o, p| format!("{o}@{p}"), Joined::new().with_grace_period(grace))
            .to("priced", Produced::with(Serdes::string(), Serdes::string()));
        builder.build().map(drop).map_err(|e| e.to_string())
    };
    assert!(build(false, Duration::from_secs(1)).unwrap_err().contains("needs a versioned table"));
    assert!(build(true, RETENTION * 2).unwrap_err().contains("must be at least the grace period"));
    build(true, RETENTION).unwrap();
}

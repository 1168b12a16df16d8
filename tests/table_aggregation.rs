//! KTable re-grouping and aggregation with add/subtract, as in the Kafka Streams docs.

mod common;

use std::collections::BTreeMap;

use common::config;
use streams::prelude::*;
use streams::Topology;

fn cache<K, V>(m: Materialized<K, V>, caching: bool) -> Materialized<K, V> {
    if caching {
        m.with_caching_enabled()
    } else {
        m.with_caching_disabled()
    }
}

fn region_sizes(caching: bool) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .table::<String, String>("user-regions", Consumed::with(Serdes::string(), Serdes::string()), cache(Materialized::as_("users"), caching))
        .group_by(|user, region| (region.clone(), user.len() as i64), Grouped::with(Serdes::string(), Serdes::i64()))
        .aggregate(
            || 0,
            |_, size, total| total + size,
            |_, size, total| total - size,
            cache(Materialized::as_("sizes").with_value_serde(Serdes::i64()), caching),
        )
        .to_stream()
        .to("region-sizes", Produced::with(Serdes::string(), Serdes::i64()));
    builder.build().unwrap()
}

type Step = (i64, Option<&'static str>, Option<&'static str>, &'static [(&'static str, i64)]);

const STEPS: &[Step] = &[
    (1, Some("alice"), Some("E"), &[("E", 5)]),
    (2, Some("bob"), Some("A"), &[("A", 3), ("E", 5)]),
    (3, Some("charlie"), Some("A"), &[("A", 10), ("E", 5)]),
    (4, Some("alice"), Some("A"), &[("A", 15), ("E", 0)]),
    (5, Some("charlie"), None, &[("A", 8), ("E", 0)]),
    (6, None, Some("E"), &[("A", 8), ("E", 0)]),
    (7, Some("bob"), Some("E"), &[("A", 5), ("E", 3)]),
];

/// Pipes the steps, checking the aggregate after each one; returns the updates emitted.
fn run(caching: bool) -> Vec<(String, i64)> {
    let driver = TopologyTestDriver::new(region_sizes(caching), config("regions")).unwrap();
    let mut input =
        driver.create_input_topic::<Option<String>, Option<String>>("user-regions", Serdes::string(), Serdes::string());
    let output = driver.create_output_topic::<String, i64>("region-sizes", Serdes::string(), Serdes::i64());
    let store = driver.get_timestamped_key_value_store::<String, i64>("sizes").unwrap();
    for (ts, user, region, expected) in STEPS {
        input.pipe_input_at(user.map(String::from), region.map(String::from), *ts).unwrap();
        let actual: BTreeMap<String, i64> = store.all().unwrap().map(|e| e.unwrap()).map(|(k, v)| (k, v.value)).collect();
        let expected: BTreeMap<String, i64> = expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(actual, expected, "after the record at ts {ts}");
    }
    assert_eq!(driver.metrics().dropped_records, 1, "the null-key record is dropped");
    let updates = output.read_key_values_to_list().unwrap();
    let last: BTreeMap<String, i64> = updates.iter().cloned().collect();
    assert_eq!(last, BTreeMap::from([("A".to_string(), 5), ("E".to_string(), 3)]));
    updates
}

#[test]
fn add_and_subtract_per_step_with_cache_off() {
    // ts 1..5 and 7: alice and bob move regions (two updates each), charlie's delete one.
    assert_eq!(run(false).len(), 8);
}

#[test]
fn a_cache_changes_nothing_when_every_record_commits() {
    // The test driver commits after every record (and every record a re-grouping writes), as
    // Kafka Streams' does: the cache holds nothing between them.
    assert_eq!(run(true), run(false));
}

#[test]
fn table_count_reduce_filter_and_map_values() {
    let builder = StreamsBuilder::new();
    let users = builder.table::<String, String>(
        "user-regions",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("users").with_caching_disabled(),
    );
    users
        .group_by(|_, region| (region.clone(), 1i64), Grouped::with(Serdes::string(), Serdes::i64()))
        .count(Materialized::as_("per-region").with_caching_disabled());
    users
        .group_by(|user, region| (region.clone(), user.len() as i64), Grouped::with(Serdes::string(), Serdes::i64()))
        .reduce(|a, b| a + b, |a, b| a - b, Materialized::as_("name-lengths").with_caching_disabled());
    users
        .filter(|_, region| region != "X")
        .map_values(|region| region.to_lowercase())
        .to_stream()
        .to("lower", Produced::with(Serdes::string(), Serdes::string()));
    let driver = TopologyTestDriver::new(builder.build().unwrap(), config("tables")).unwrap();
    let mut input =
        driver.create_input_topic::<Option<String>, Option<String>>("user-regions", Serdes::string(), Serdes::string());
    let lower = driver.create_output_topic::<String, Option<String>>("lower", Serdes::string(), Serdes::string());
    input.pipe_input_at(Some("ann".into()), Some("EU".into()), 1).unwrap();
    input.pipe_input_at(Some("bo".into()), Some("EU".into()), 2).unwrap();
    input.pipe_input_at(Some("ann".into()), Some("X".into()), 3).unwrap();
    let counts = driver.get_timestamped_key_value_store::<String, i64>("per-region").unwrap();
    assert_eq!(counts.get(&"EU".into()).unwrap().map(|v| v.value), Some(1));
    assert_eq!(counts.get(&"X".into()).unwrap().map(|v| v.value), Some(1));
    let lengths = driver.get_timestamped_key_value_store::<String, i64>("name-lengths").unwrap();
    assert_eq!(lengths.get(&"EU".into()).unwrap().map(|v| v.value), Some(2), "ann (3) left EU, bo (2) stays");
    assert_eq!(lengths.get(&"X".into()).unwrap().map(|v| v.value), Some(3));
    assert_eq!(
        lower.read_key_values_to_list().unwrap(),
        vec![
            ("ann".to_string(), Some("eu".to_string())),
            ("bo".to_string(), Some("eu".to_string())),
            ("ann".to_string(), None), // moved to X: filtered out, so deleted downstream
        ]
    );
}

#[test]
fn cogroup_folds_streams_of_different_types_into_one_table() {
    let builder = StreamsBuilder::new();
    let clicks = builder
        .stream::<String, String>("clicks", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()));
    let purchases = builder
        .stream::<String, i64>("purchases", Consumed::with(Serdes::string(), Serdes::i64()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::i64()));
    clicks
        .cogroup(|_, _page: String, (n, total): (i64, i64)| (n + 1, total))
        .cogroup(&purchases, |_, amount, (n, total)| (n, total + amount))
        .aggregate(|| (0, 0), Materialized::as_("activity").with_value_serde(Serdes::json()).with_caching_disabled())
        .to_stream()
        .to("activity", Produced::with(Serdes::string(), Serdes::json()));
    let topology = builder.build().unwrap();
    assert_eq!(common::subtopologies(&topology), 1, "one store, one task per partition");
    let driver = TopologyTestDriver::new(topology, config("cogroup")).unwrap();
    let mut clicks = driver.create_input_topic::<String, String>("clicks", Serdes::string(), Serdes::string());
    let mut purchases = driver.create_input_topic::<String, i64>("purchases", Serdes::string(), Serdes::i64());
    let out = driver.create_output_topic::<String, Option<(i64, i64)>>("activity", Serdes::string(), Serdes::json());
    clicks.pipe_input_at("ann".into(), "/home".into(), 1).unwrap();
    purchases.pipe_input_at("ann".into(), 30, 2).unwrap();
    clicks.pipe_input_at("ann".into(), "/cart".into(), 3).unwrap();
    purchases.pipe_input_at("bo".into(), 5, 4).unwrap();
    assert_eq!(
        out.read_key_values_to_list().unwrap(),
        vec![
            ("ann".to_string(), Some((1, 0))),
            ("ann".to_string(), Some((1, 30))),
            ("ann".to_string(), Some((2, 30))),
            ("bo".to_string(), Some((0, 5))),
        ]
    );
}

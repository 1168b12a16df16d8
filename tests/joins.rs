//! The join semantics tables of the Kafka Streams docs (../shared/DESIGN.md), record by record:
//! KStream-KStream (window 15 s, grace 5 s), KTable-KTable and KStream-KTable, each inner, left
//! and outer where it exists. One key; `None` inputs are null values (tombstones for tables).

mod common;

use std::time::Duration;

use common::config;
use streams::prelude::*;
use streams::{JoinWindows, StreamJoined, Topology};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    L,
    R,
}
use Side::{L, R};

/// (ts in seconds, side, value); `None` is a null value.
const INPUTS: &[(i64, Side, Option<&str>)] = &[
    (1, L, None),
    (2, R, None),
    (3, L, Some("A")),
    (4, R, Some("a")),
    (5, L, Some("B")),
    (6, R, Some("b")),
    (7, L, None),
    (8, R, None),
    (9, L, Some("C")),
    (10, R, Some("c")),
    (11, R, None),
    (12, L, None),
    (13, R, None),
    (14, R, Some("d")),
    (15, L, Some("D")),
    (40, L, Some("E")),
    (60, L, Some("F")),
    (80, R, Some("f")),
    (100, L, Some("G")),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Inner,
    Left,
    Outer,
}

fn pair(l: Option<&String>, r: Option<&String>) -> String {
    let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "null".into());
    format!("[{},{}]", show(l), show(r))
}

fn strings() -> Consumed<String, Option<String>> {
    Consumed::with(Serdes::string(), Serdes::string())
}

fn stream_stream(kind: Kind) -> Topology {
    let builder = StreamsBuilder::new();
    // Null values do not join: a stream of `Option`s is flattened first.
    let left = builder.stream("left", strings()).flat_map_values(|v| v);
    let right = builder.stream("right", strings()).flat_map_values(|v| v);
    let windows = JoinWindows::of_time_difference_and_grace(Duration::from_secs(15), Duration::from_secs(5));
    let joined = || StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string());
    let out = match kind {
        Kind::Inner => left.join(&right, |l, r| pair(Some(l), Some(r)), windows, joined()),
        Kind::Left => left.left_join(&right, |l, r| pair(Some(l), r), windows, joined()),
        Kind::Outer => left.outer_join(&right, pair, windows, joined()),
    };
    out.to("out", Produced::with(Serdes::string(), Serdes::string()));
    builder.build().unwrap()
}

/// Pipes the inputs up to `until` seconds and returns, per input, what was emitted (values and
/// timestamps in seconds).
fn run<V: Clone + 'static>(
    topology: Topology,
    until: i64,
    out_serde: impl streams::Serde<V>,
    caching_commit: bool,
) -> Vec<(i64, Vec<(V, i64)>)> {
    let driver = TopologyTestDriver::new(topology, config("joins")).unwrap();
    let mut left = driver.create_input_topic::<String, Option<String>>("left", Serdes::string(), Serdes::string());
    let mut right = driver.create_input_topic::<String, Option<String>>("right", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, V>("out", Serdes::string(), out_serde);
    let mut steps = Vec::new();
    for &(ts, side, value) in INPUTS.iter().filter(|(ts, _, _)| *ts <= until) {
        let topic = if side == L { &mut left } else { &mut right };
        topic.pipe_input_at("k".into(), value.map(String::from), ts * 1000).unwrap();
        if caching_commit {
            driver.commit().unwrap();
        }
        let emitted = out.read_records_to_list().unwrap();
        assert!(emitted.iter().all(|r| r.key == "k"));
        steps.push((ts, emitted.into_iter().map(|r| (r.value, r.timestamp / 1000)).collect()));
    }
    steps
}

fn expect_stream_stream(kind: Kind) -> Vec<(i64, Vec<&'static str>)> {
    let mut rows = vec![
        (4, vec!["[A,a]"]),
        (5, vec!["[B,a]"]),
        (6, vec!["[A,b]", "[B,b]"]),
        (9, vec!["[C,a]", "[C,b]"]),
        (10, vec!["[A,c]", "[B,c]", "[C,c]"]),
        (14, vec!["[A,d]", "[B,d]", "[C,d]"]),
        (15, vec!["[D,a]", "[D,b]", "[D,c]", "[D,d]"]),
    ];
    // An unmatched record waits until stream time passes ts + 15 s + 5 s grace: E (40 s) goes
    // out with f at 80 s, F (60 s) with G at 100 s; f (80 s) still waits at 100 s.
    if kind != Kind::Inner {
        rows.push((80, vec!["[E,null]"]));
        rows.push((100, vec!["[F,null]"]));
    }
    rows
}

fn check_stream_stream(kind: Kind) {
    let steps = run::<String>(stream_stream(kind), 100, Serdes::string(), false);
    let expected = expect_stream_stream(kind);
    for (ts, emitted) in &steps {
        let want: Vec<&str> = expected.iter().find(|(t, _)| t == ts).map(|(_, v)| v.clone()).unwrap_or_default();
        let got: Vec<&str> = emitted.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(got, want, "{kind:?} join at ts {ts}");
    }
    // Joined results carry the later timestamp of the pair; unmatched ones their own.
    let ts_of = |value: &str| steps.iter().flat_map(|(_, e)| e).find(|(v, _)| v == value).map(|(_, t)| *t);
    assert_eq!(ts_of("[A,a]"), Some(4));
    assert_eq!(ts_of("[D,a]"), Some(15));
    if kind != Kind::Inner {
        assert_eq!(ts_of("[E,null]"), Some(40));
    }
}

#[test]
fn stream_stream_inner_join() {
    check_stream_stream(Kind::Inner);
}

#[test]
fn stream_stream_left_join() {
    check_stream_stream(Kind::Left);
}

#[test]
fn stream_stream_outer_join() {
    check_stream_stream(Kind::Outer);
}

#[test]
fn a_late_stream_stream_record_still_joins_what_the_other_side_holds() {
    let driver = TopologyTestDriver::new(stream_stream(Kind::Inner), config("late-join")).unwrap();
    let mut left = driver.create_input_topic::<String, Option<String>>("left", Serdes::string(), Serdes::string());
    let mut right = driver.create_input_topic::<String, Option<String>>("right", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, String>("out", Serdes::string(), Serdes::string());
    right.pipe_input_at("k".into(), Some("r90".into()), 90_000).unwrap();
    right.pipe_input_at("k".into(), Some("r100".into()), 100_000).unwrap();
    // Stream time 100 s; a left record at 79 s closed at 79 + 15 + 5 = 99 s, yet it joins the
    // right record at 90 s, which the right side's store still holds (as in Kafka Streams).
    left.pipe_input_at("k".into(), Some("B".into()), 79_000).unwrap();
    left.pipe_input_at("k".into(), Some("C".into()), 85_000).unwrap();
    let joined: Vec<(String, i64)> = out.read_records_to_list().unwrap().into_iter().map(|r| (r.value, r.timestamp)).collect();
    let expected = [("[B,r90]", 90_000), ("[C,r90]", 90_000), ("[C,r100]", 100_000)];
    assert_eq!(joined, expected.map(|(v, t)| (v.to_string(), t)));
    assert_eq!(driver.metrics().dropped_records, 0);
}

fn table_table(kind: Kind, caching: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let materialized = |name: &str| {
        let m = Materialized::as_(name);
        if caching {
            m.with_caching_enabled()
        } else {
            m.with_caching_disabled()
        }
    };
    let consumed = || Consumed::with(Serdes::string(), Serdes::string());
    let left = builder.table::<String, String>("left", consumed(), materialized("left-table"));
    let right = builder.table::<String, String>("right", consumed(), materialized("right-table"));
    let joined = match kind {
        Kind::Inner => left.join(&right, |l, r| pair(Some(l), Some(r))),
        Kind::Left => left.left_join(&right, |l, r| pair(Some(l), r)),
        Kind::Outer => left.outer_join(&right, pair),
    };
    joined.to_stream().to("out", Produced::with(Serdes::string(), Serdes::string()));
    builder.build().unwrap()
}

/// KTable-KTable table; `None` is a tombstone.
fn expect_table_table(kind: Kind) -> Vec<(i64, Option<&'static str>)> {
    match kind {
        Kind::Inner => vec![
            (4, Some("[A,a]")),
            (5, Some("[B,a]")),
            (6, Some("[B,b]")),
            (7, None),
            (10, Some("[C,c]")),
            (11, None),
            (15, Some("[D,d]")),
        ],
        Kind::Left => vec![
            (3, Some("[A,null]")),
            (4, Some("[A,a]")),
            (5, Some("[B,a]")),
            (6, Some("[B,b]")),
            (7, None),
            (9, Some("[C,null]")),
            (10, Some("[C,c]")),
            (11, Some("[C,null]")),
            (12, None),
            (15, Some("[D,d]")),
        ],
        Kind::Outer => vec![
            (3, Some("[A,null]")),
            (4, Some("[A,a]")),
            (5, Some("[B,a]")),
            (6, Some("[B,b]")),
            (7, Some("[null,b]")),
            (8, None),
            (9, Some("[C,null]")),
            (10, Some("[C,c]")),
            (11, Some("[C,null]")),
            (12, None),
            (14, Some("[null,d]")),
            (15, Some("[D,d]")),
        ],
    }
}

fn check_table_table(kind: Kind) {
    let steps = run::<Option<String>>(table_table(kind, false), 15, Serdes::string(), false);
    let expected = expect_table_table(kind);
    for (ts, emitted) in &steps {
        let want: Vec<Option<&str>> = expected.iter().filter(|(t, _)| t == ts).map(|(_, v)| *v).collect();
        let got: Vec<Option<&str>> = emitted.iter().map(|(v, _)| v.as_deref()).collect();
        assert_eq!(got, want, "{kind:?} table-table join at ts {ts}");
        for (_, out_ts) in emitted {
            assert_eq!(out_ts, ts, "the result carries the later input timestamp");
        }
    }
}

#[test]
fn table_table_inner_join() {
    check_table_table(Kind::Inner);
}

#[test]
fn table_table_left_join() {
    check_table_table(Kind::Left);
}

#[test]
fn table_table_outer_join() {
    check_table_table(Kind::Outer);
}

#[test]
fn table_table_joins_with_caches_emit_what_uncached_ones_do_when_each_record_commits() {
    // The test driver commits after every record, as Kafka Streams' does: a cache then holds
    // nothing between records, and cached joins emit what uncached ones do.
    let outputs = |kind: Kind, caching: bool| {
        let driver = TopologyTestDriver::new(table_table(kind, caching), config("cached-join")).unwrap();
        let mut left = driver.create_input_topic::<String, Option<String>>("left", Serdes::string(), Serdes::string());
        let mut right = driver.create_input_topic::<String, Option<String>>("right", Serdes::string(), Serdes::string());
        let out = driver.create_output_topic::<String, Option<String>>("out", Serdes::string(), Serdes::string());
        for &(ts, side, value) in INPUTS.iter().filter(|(ts, _, _)| *ts <= 15) {
            let topic = if side == L { &mut left } else { &mut right };
            topic.pipe_input_at("k".into(), value.map(String::from), ts * 1000).unwrap();
        }
        out.read_records_to_list().unwrap().into_iter().map(|r| (r.value, r.timestamp)).collect::<Vec<_>>()
    };
    for kind in [Kind::Inner, Kind::Left, Kind::Outer] {
        let cached = outputs(kind, true);
        assert_eq!(cached, outputs(kind, false), "{kind:?}");
        assert_eq!(cached.last().and_then(|(v, _)| v.as_deref()), Some("[D,d]"), "{kind:?}");
    }
}

fn stream_table(left: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let stream = builder.stream("left", strings()).flat_map_values(|v| v);
    let table = builder.table::<String, String>(
        "right",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("right-table").with_caching_disabled(),
    );
    let out = if left {
        stream.left_join_table(&table, |l, r| pair(Some(l), r))
    } else {
        stream.join_table(&table, |l, r| pair(Some(l), Some(r)))
    };
    out.to("out", Produced::with(Serdes::string(), Serdes::string()));
    builder.build().unwrap()
}

fn check_stream_table(left: bool) {
    let steps = run::<String>(stream_table(left), 15, Serdes::string(), false);
    let mut expected = vec![(5, "[B,a]"), (15, "[D,d]")];
    if left {
        expected.extend([(3, "[A,null]"), (9, "[C,null]")]);
    }
    for (ts, emitted) in &steps {
        let want: Vec<&str> = expected.iter().filter(|(t, _)| t == ts).map(|(_, v)| *v).collect();
        let got: Vec<&str> = emitted.iter().map(|(v, _)| v.as_str()).collect();
        assert_eq!(got, want, "stream-table {} join at ts {ts}", if left { "left" } else { "inner" });
        for (_, out_ts) in emitted {
            assert_eq!(out_ts, ts, "the stream record's timestamp");
        }
    }
}

#[test]
fn stream_table_inner_join() {
    check_stream_table(false);
}

#[test]
fn stream_table_left_join() {
    check_stream_table(true);
}

fn orders_join_payments(rekey: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let mut left = builder.stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    let right = builder.stream::<String, String>("payments", Consumed::with(Serdes::string(), Serdes::string()));
    if rekey {
        left = left.select_key(|_, v| v.clone());
    }
    left.join(
        &right,
        |a, b| format!("{a}{b}"),
        JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(1)),
        StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string()),
    )
    .to("out", Produced::with(Serdes::string(), Serdes::string()));
    builder.build().unwrap()
}

#[test]
fn join_inputs_must_be_co_partitioned() {
    let topology = orders_join_payments(false);
    let err = TopologyTestDriver::with_partitions(topology, config("app"), &[("payments", 2), ("orders", 4)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Topics not co-partitioned"), "{err}");
    assert!(err.contains("orders (4)") && err.contains("payments (2)"), "{err}");
    let topology = orders_join_payments(false);
    TopologyTestDriver::with_partitions(topology, config("app"), &[("payments", 4), ("orders", 4)]).unwrap();
}

#[test]
fn a_rekeyed_stream_is_repartitioned_to_the_partition_count_of_the_other_side() {
    let topology = orders_join_payments(true);
    let description = topology.describe().to_string();
    assert!(description.contains("-repartition"), "the re-keyed side goes through a repartition topic:\n{description}");
    // Topology internals: the partition counts the runtime gives its internal topics.
    use streams_core::internals::InternalTopologyBuilder;
    let counts = topology.partition_counts("app", |t| if t == "payments" { 4 } else { 8 });
    let repartition: Vec<i32> = counts.repartition_topics.values().copied().collect();
    assert_eq!(repartition, vec![4], "the repartition topic takes the count of the topic it joins");
    TopologyTestDriver::with_partitions(topology, config("app"), &[("payments", 4), ("orders", 8)]).unwrap();
}

fn orders_with_products(left: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let consumed = || Consumed::with(Serdes::string(), Serdes::string());
    let orders = builder.table::<String, String>("orders", consumed(), Materialized::as_("orders").with_caching_disabled());
    let products =
        builder.table::<String, String>("products", consumed(), Materialized::as_("products").with_caching_disabled());
    let result = Materialized::as_("order-products").with_value_serde(Serdes::string()).with_caching_disabled();
    let joined = if left {
        orders.left_join_foreign_key(&products, |product: &String| product.clone(), |p, name| pair(Some(p), name), result)
    } else {
        orders.join_foreign_key(&products, |product: &String| product.clone(), |p, name| pair(Some(p), Some(name)), result)
    };
    joined.to_stream().to("out", Produced::with(Serdes::string(), Serdes::string()));
    builder.build().unwrap()
}

fn check_foreign_key_join(left: bool) {
    let topology = orders_with_products(left);
    assert_eq!(common::subtopologies(&topology), 2, "the right side runs in its own sub-topology");
    let driver = TopologyTestDriver::new(topology, config("fk-join")).unwrap();
    let mut orders = driver.create_input_topic::<String, Option<String>>("orders", Serdes::string(), Serdes::string());
    let mut products = driver.create_input_topic::<String, Option<String>>("products", Serdes::string(), Serdes::string());
    let out = driver.create_output_topic::<String, Option<String>>("out", Serdes::string(), Serdes::string());
    let s = |v: &str| Some(v.to_string());
    let o = |k: &str, v: Option<&str>| (k.to_string(), v.map(String::from));
    type Step<'a> = (&'a str, &'a str, Option<&'a str>, Vec<(String, Option<String>)>, Vec<(String, Option<String>)>);
    // (topic, key, value, inner join output, left join output)
    let steps: Vec<Step> = vec![
        ("products", "p1", Some("apple"), vec![], vec![]),
        ("orders", "o1", Some("p1"), vec![o("o1", Some("[p1,apple]"))], vec![o("o1", Some("[p1,apple]"))]),
        ("orders", "o2", Some("p2"), vec![], vec![o("o2", Some("[p2,null]"))]),
        ("products", "p2", Some("pear"), vec![o("o2", Some("[p2,pear]"))], vec![o("o2", Some("[p2,pear]"))]),
        ("products", "p1", Some("green apple"), vec![o("o1", Some("[p1,green apple]"))], vec![o("o1", Some("[p1,green apple]"))]),
        ("orders", "o1", Some("p2"), vec![o("o1", Some("[p2,pear]"))], vec![o("o1", Some("[p2,pear]"))]),
        // Nobody orders p1 any more.
        ("products", "p1", None, vec![], vec![]),
        ("products", "p2", None, vec![o("o1", None), o("o2", None)], vec![o("o1", Some("[p2,null]")), o("o2", Some("[p2,null]"))]),
        // A deleted row's result goes (again): Kafka Streams answers every delete with a tombstone.
        ("orders", "o2", None, vec![o("o2", None)], vec![o("o2", None)]),
    ];
    for (i, (topic, key, value, inner, left_out)) in steps.into_iter().enumerate() {
        let input = if topic == "orders" { &mut orders } else { &mut products };
        input.pipe_input_at(key.to_string(), value.map(|v| s(v).unwrap()), i as i64 + 1).unwrap();
        let expected = if left { left_out } else { inner };
        assert_eq!(out.read_key_values_to_list().unwrap(), expected, "step {i}: {topic} {key} = {value:?}");
    }
    let results = driver.get_timestamped_key_value_store::<String, String>("order-products").unwrap();
    let remaining: Vec<String> = results.all().unwrap().map(|e| e.unwrap().0).collect();
    assert_eq!(remaining, if left { vec!["o1".to_string()] } else { vec![] });
}

#[test]
fn foreign_key_inner_join() {
    check_foreign_key_join(false);
}

#[test]
fn foreign_key_left_join() {
    check_foreign_key_join(true);
}

fn orders_with_global_products(left: bool) -> Topology {
    let builder = StreamsBuilder::new();
    let products = builder.global_table::<String, String>(
        "products",
        Consumed::with(Serdes::string(), Serdes::string()),
        Materialized::as_("products"),
    );
    let orders = builder.stream::<String, String>("orders", Consumed::with(Serdes::string(), Serdes::string()));
    let out = if left {
        orders.left_join_global(&products, |_, product| product.clone(), |p, name| pair(Some(p), name))
    } else {
        orders.join_global(&products, |_, product| product.clone(), |p, name| pair(Some(p), Some(name)))
    };
    out.to("out", Produced::with(Serdes::string(), Serdes::string()));
    builder.build().unwrap()
}

#[test]
fn stream_global_table_joins_look_up_any_derived_key_without_co_partitioning() {
    for left in [false, true] {
        // Orders have 3 partitions, products 1: a global table needs no co-partitioning.
        let driver =
            TopologyTestDriver::with_partitions(orders_with_global_products(left), config("global"), &[("orders", 3)])
                .unwrap();
        let mut products = driver.create_input_topic::<String, Option<String>>("products", Serdes::string(), Serdes::string());
        let mut orders = driver.create_input_topic::<String, String>("orders", Serdes::string(), Serdes::string());
        let out = driver.create_output_topic::<String, String>("out", Serdes::string(), Serdes::string());
        products.pipe_input_at("p1".into(), Some("apple".into()), 1).unwrap();
        orders.pipe_input_at("o1".into(), "p1".into(), 2).unwrap();
        orders.pipe_input_at("o2".into(), "p2".into(), 3).unwrap();
        products.pipe_input_at("p1".into(), None, 4).unwrap();
        orders.pipe_input_at("o3".into(), "p1".into(), 5).unwrap();
        let records = out.read_records_to_list().unwrap();
        let got: Vec<(String, String, i64)> = records.into_iter().map(|r| (r.key, r.value, r.timestamp)).collect();
        let mut expected = vec![("o1".to_string(), "[p1,apple]".to_string(), 2)];
        if left {
            expected.push(("o2".into(), "[p2,null]".into(), 3));
            expected.push(("o3".into(), "[p1,null]".into(), 5));
        }
        assert_eq!(got, expected, "left: {left}");
        let store = driver.global_store::<String, String>("products", Serdes::string(), Serdes::string()).unwrap();
        assert_eq!(store.all().unwrap().count(), 0);
    }
}

//! The conformance catalogue, this project's side: each topology has a twin of the same name in
//! tests/reference/src/main/java/streams/reference/Catalogue.java, built with the same operators,
//! functions and options. Inputs are strings; every topology writes to `out`.

use std::sync::Arc;
use std::time::Duration;

use streams::prelude::*;
use streams::state::WindowedSerde;
use streams::{
    Branched, BufferConfig, ConsumedRecord, EmitStrategy, FixedKeyProcessor, FixedKeyProcessorContext, FixedKeyRecord, JoinWindows,
    KGroupedStream, KTable, SessionWindows, SlidingWindows, StreamJoined, Suppressed, TimeWindows, Topology,
};
use streams::state::Windowed;

pub(crate) const SIZE: i64 = 10;
pub(crate) const ADVANCE: i64 = 5;
pub(crate) const GRACE: i64 = 5;
pub(crate) const GAP: i64 = 5;
pub(crate) const DIFFERENCE: i64 = 10;
pub(crate) const TIME_LIMIT: i64 = 10;
pub(crate) const HISTORY: i64 = 10;

/// What an input topic holds, which decides what the generator writes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// A record stream: keys and values, no tombstones (a typed `KStream<String, String>` has
    /// no null values).
    Stream,
    /// A changelog read as a table or a global table: tombstones delete.
    Table,
}

/// How the output topic's keys and values are read and printed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Output {
    Strings,
    Counts,
    /// Time-windowed keys of this window size (`key@start/end`).
    Windowed { size: i64, counts: bool },
    /// Session-windowed keys (`key@start/end`).
    Session { counts: bool },
}

pub(crate) struct Entry {
    pub(crate) name: &'static str,
    pub(crate) inputs: &'static [(&'static str, Input)],
    pub(crate) output: Output,
    pub(crate) build: Box<dyn Fn() -> Topology + Send + Sync>,
}

fn ms(ms: i64) -> Duration {
    Duration::from_millis(ms as u64)
}

// The functions both sides share.

/// The first word of a value.
pub(crate) fn first(value: &str) -> String {
    value.split(' ').next().unwrap_or_default().to_string()
}

/// `aggregate` without its first occurrence of `value`.
fn remove(aggregate: String, value: &str) -> String {
    aggregate.replacen(value, "", 1)
}

fn join(left: &str, right: &str) -> String {
    format!("{left}+{right}")
}

/// Java's `String.valueOf` of a nullable value.
fn or_null(value: Option<&String>) -> &str {
    value.map_or("null", String::as_str)
}

fn stream(b: &StreamsBuilder, topic: &str) -> KStream<String, String> {
    b.stream(topic, Consumed::with(Serdes::string(), Serdes::string()))
}

fn table(b: &StreamsBuilder, topic: &str) -> KTable<String, String> {
    b.table(topic, Consumed::with(Serdes::string(), Serdes::string()), Materialized::new())
}

fn grouped(b: &StreamsBuilder) -> KGroupedStream<String, String> {
    stream(b, "in").group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
}

fn cached<V>(m: Materialized<String, V>, cached: bool) -> Materialized<String, V> {
    if cached {
        m.with_caching_enabled()
    } else {
        m.with_caching_disabled()
    }
}

fn strings(cache: bool) -> Materialized<String, String> {
    cached(Materialized::with(Serdes::string(), Serdes::string()), cache)
}

fn longs(cache: bool) -> Materialized<String, i64> {
    cached(Materialized::with(Serdes::string(), Serdes::i64()), cache)
}

/// A table in a versioned store keeping `HISTORY` ms of versions.
fn versioned_table(b: &StreamsBuilder, topic: &str) -> KTable<String, String> {
    let supplier = streams::Stores::persistent_versioned_key_value_store(format!("{topic}-versioned"), ms(HISTORY));
    b.table(topic, Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_versioned(supplier))
}

/// A stream-table join waiting `GRACE` ms for late table updates.
fn grace_joined() -> Joined<String, String> {
    Joined::with(Serdes::string(), Serdes::string()).with_grace_period(ms(GRACE))
}

fn to_out(table: KTable<String, String>) {
    table.to_stream().to("out", Produced::with(Serdes::string(), Serdes::string()));
}

fn counts_out(table: KTable<String, i64>) {
    table.to_stream().to("out", Produced::with(Serdes::string(), Serdes::i64()));
}

fn windowed_serde(size: i64) -> WindowedSerde<String> {
    WindowedSerde::time(Arc::new(Serdes::string()), size)
}

fn session_serde() -> WindowedSerde<String> {
    WindowedSerde::session(Arc::new(Serdes::string()))
}

fn windowed_counts_out(table: KTable<Windowed<String>, i64>, size: i64) {
    table.to_stream().to("out", Produced::with(windowed_serde(size), Serdes::i64()));
}

fn windowed_strings_out(table: KTable<Windowed<String>, String>, size: i64) {
    table.to_stream().to("out", Produced::with(windowed_serde(size), Serdes::string()));
}

fn session_counts_out(table: KTable<Windowed<String>, i64>) {
    table.to_stream().to("out", Produced::with(session_serde(), Serdes::i64()));
}

fn session_strings_out(table: KTable<Windowed<String>, String>) {
    table.to_stream().to("out", Produced::with(session_serde(), Serdes::string()));
}

fn stream_out(stream: KStream<String, String>) {
    stream.to("out", Produced::with(Serdes::string(), Serdes::string()));
}

const IN: &[(&str, Input)] = &[("in", Input::Stream)];
const T: &[(&str, Input)] = &[("t", Input::Table)];
const TU: &[(&str, Input)] = &[("t", Input::Table), ("u", Input::Table)];
const LR: &[(&str, Input)] = &[("l", Input::Stream), ("r", Input::Stream)];
const LT: &[(&str, Input)] = &[("l", Input::Stream), ("t", Input::Table)];
const LG: &[(&str, Input)] = &[("l", Input::Stream), ("g", Input::Table)];

#[derive(Clone, Copy)]
enum JoinKind {
    Inner,
    Left,
    Outer,
}

fn stream_join(b: &StreamsBuilder, windows: JoinWindows, kind: JoinKind) {
    let (l, r) = (stream(b, "l"), stream(b, "r"));
    let joined = || StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string());
    let out = match kind {
        JoinKind::Inner => l.join(&r, |a, b| join(a, b), windows, joined()),
        JoinKind::Left => l.left_join(&r, |a, b| join(a, or_null(b)), windows, joined()),
        JoinKind::Outer => l.outer_join(&r, |a, b| join(or_null(a), or_null(b)), windows, joined()),
    };
    stream_out(out);
}

/// Every topology of the catalogue, in the reference runner's order.
pub(crate) fn catalogue() -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut add = |name: &'static str, inputs: &'static [(&'static str, Input)], output: Output, f: fn(&StreamsBuilder)| {
        entries.push(Entry {
            name,
            inputs,
            output,
            build: Box::new(move || {
                let b = StreamsBuilder::new();
                f(&b);
                b.build().expect("catalogue topology builds")
            }),
        });
    };
    let windowed = |size, counts| Output::Windowed { size, counts };

    add("word-count", IN, Output::Counts, |b| {
        counts_out(
            stream(b, "in")
                .flat_map_values(|v: String| v.split(' ').map(str::to_string).collect::<Vec<_>>())
                .group_by(|_, w| w.clone(), Grouped::with(Serdes::string(), Serdes::string()))
                .count(Materialized::new()),
        )
    });
    macro_rules! cached_pair {
        ($cache:expr, $count:literal, $reduce:literal, $aggregate:literal, $tumbling:literal, $session:literal) => {
            add($count, IN, Output::Counts, |b| counts_out(grouped(b).count(longs($cache))));
            add($reduce, IN, Output::Strings, |b| to_out(grouped(b).reduce(|a, v| format!("{a}|{v}"), strings($cache))));
            add($aggregate, IN, Output::Strings, |b| {
                to_out(grouped(b).aggregate(String::new, |_, v, a| a + &v, strings($cache)))
            });
            add($tumbling, IN, windowed(SIZE, true), |b| {
                windowed_counts_out(
                    grouped(b).windowed_by(TimeWindows::of_size_and_grace(ms(SIZE), ms(GRACE))).count(longs($cache)),
                    SIZE,
                )
            });
            add($session, IN, Output::Session { counts: false }, |b| {
                session_strings_out(
                    grouped(b)
                        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(GAP), ms(GRACE)))
                        .aggregate(String::new, |_, v, a| a + &v, |_, a1, a2| a1 + &a2, strings($cache)),
                )
            });
        };
    }
    cached_pair!(
        true,
        "stream-count-cached",
        "stream-reduce-cached",
        "stream-aggregate-cached",
        "tumbling-count-cached",
        "session-aggregate-cached"
    );
    cached_pair!(
        false,
        "stream-count-uncached",
        "stream-reduce-uncached",
        "stream-aggregate-uncached",
        "tumbling-count-uncached",
        "session-aggregate-uncached"
    );
    add("table-source", T, Output::Strings, |b| to_out(table(b, "t")));
    add("table-source-materialized", T, Output::Strings, |b| {
        to_out(b.table("t", Consumed::with(Serdes::string(), Serdes::string()), strings(true)))
    });
    add("table-filter", T, Output::Strings, |b| to_out(table(b, "t").filter(|_, v| v.len() > 1)));
    add("table-map-values", T, Output::Strings, |b| to_out(table(b, "t").map_values(|v| v + "!")));
    add("table-group-by-count", T, Output::Counts, |b| {
        counts_out(
            table(b, "t")
                .group_by(|_, v| (first(v), v.clone()), Grouped::with(Serdes::string(), Serdes::string()))
                .count(Materialized::new()),
        )
    });
    add("table-group-by-reduce", T, Output::Counts, |b| {
        counts_out(
            table(b, "t")
                .group_by(|_, v| (first(v), v.len() as i64), Grouped::with(Serdes::string(), Serdes::i64()))
                .reduce(|a, v| a + v, |a, v| a - v, longs(true)),
        )
    });
    add("table-group-by-aggregate", T, Output::Strings, |b| {
        to_out(
            table(b, "t")
                .group_by(|k, v| (first(v), k.clone()), Grouped::with(Serdes::string(), Serdes::string()))
                .aggregate(String::new, |_, v, a| a + &v, |_, v, a| remove(a, &v), strings(true)),
        )
    });
    add("hopping-aggregate", IN, windowed(SIZE, false), |b| {
        windowed_strings_out(
            grouped(b)
                .windowed_by(TimeWindows::of_size_and_grace(ms(SIZE), ms(GRACE)).advance_by(ms(ADVANCE)))
                .aggregate(String::new, |_, v, a| a + &v, strings(true)),
            SIZE,
        )
    });
    add("sliding-count", IN, windowed(DIFFERENCE, true), |b| {
        windowed_counts_out(
            grouped(b)
                .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE)))
                .count(Materialized::new()),
            DIFFERENCE,
        )
    });
    add("sliding-aggregate", IN, windowed(DIFFERENCE, false), |b| {
        windowed_strings_out(
            grouped(b)
                .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE)))
                .aggregate(String::new, |_, v, a| a + &v, strings(false)),
            DIFFERENCE,
        )
    });
    add("session-count", IN, Output::Session { counts: true }, |b| {
        session_counts_out(
            grouped(b)
                .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(GAP), ms(GRACE)))
                .count(Materialized::new()),
        )
    });
    add("suppress-tumbling", IN, windowed(SIZE, true), |b| {
        windowed_counts_out(
            grouped(b)
                .windowed_by(TimeWindows::of_size_and_grace(ms(SIZE), ms(GRACE)))
                .count(Materialized::new())
                .suppress(Suppressed::until_window_closes()),
            SIZE,
        )
    });
    add("suppress-session", IN, Output::Session { counts: true }, |b| {
        session_counts_out(
            grouped(b)
                .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(GAP), ms(GRACE)))
                .count(Materialized::new())
                .suppress(Suppressed::until_window_closes()),
        )
    });
    add("suppress-time-limit", IN, Output::Counts, |b| {
        counts_out(
            grouped(b)
                .count(Materialized::new())
                .suppress(Suppressed::until_time_limit(ms(TIME_LIMIT), BufferConfig::unbounded())),
        )
    });
    add("suppress-record-limit", IN, Output::Counts, |b| {
        counts_out(
            grouped(b)
                .count(Materialized::new())
                .suppress(Suppressed::until_time_limit(ms(100), BufferConfig::max_records(2))),
        )
    });
    add("emit-final-tumbling", IN, windowed(SIZE, true), |b| {
        windowed_counts_out(
            grouped(b)
                .windowed_by(TimeWindows::of_size_and_grace(ms(SIZE), ms(GRACE)))
                .emit_strategy(EmitStrategy::OnWindowClose)
                .count(Materialized::new()),
            SIZE,
        )
    });
    add("emit-final-sliding", IN, windowed(DIFFERENCE, true), |b| {
        windowed_counts_out(
            grouped(b)
                .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE)))
                .emit_strategy(EmitStrategy::OnWindowClose)
                .count(Materialized::new()),
            DIFFERENCE,
        )
    });
    add("emit-final-session", IN, Output::Session { counts: true }, |b| {
        session_counts_out(
            grouped(b)
                .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(GAP), ms(GRACE)))
                .emit_strategy(EmitStrategy::OnWindowClose)
                .count(Materialized::new()),
        )
    });
    add("join-inner", LR, Output::Strings, |b| {
        stream_join(b, JoinWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE)), JoinKind::Inner)
    });
    add("join-left", LR, Output::Strings, |b| {
        stream_join(b, JoinWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE)), JoinKind::Left)
    });
    add("join-outer", LR, Output::Strings, |b| {
        stream_join(b, JoinWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE)), JoinKind::Outer)
    });
    add("join-inner-no-grace", LR, Output::Strings, |b| {
        stream_join(b, JoinWindows::of_time_difference_with_no_grace(ms(DIFFERENCE)), JoinKind::Inner)
    });
    add("join-left-no-grace", LR, Output::Strings, |b| {
        stream_join(b, JoinWindows::of_time_difference_with_no_grace(ms(DIFFERENCE)), JoinKind::Left)
    });
    add("join-left-asymmetric", LR, Output::Strings, |b| {
        stream_join(b, JoinWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE)).before(ms(3)), JoinKind::Left)
    });
    add("join-outer-asymmetric", LR, Output::Strings, |b| {
        stream_join(b, JoinWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE)).after(ms(4)), JoinKind::Outer)
    });
    add("stream-table-join", LT, Output::Strings, |b| stream_out(stream(b, "l").join_table(&table(b, "t"), |a, b| join(a, b))));
    add("stream-table-left-join", LT, Output::Strings, |b| {
        stream_out(stream(b, "l").left_join_table(&table(b, "t"), |a, b| join(a, or_null(b))))
    });
    add("table-table-join", TU, Output::Strings, |b| to_out(table(b, "t").join(&table(b, "u"), |a, b| join(a, b))));
    add("table-table-left-join", TU, Output::Strings, |b| {
        to_out(table(b, "t").left_join(&table(b, "u"), |a, b| join(a, or_null(b))))
    });
    add("table-table-outer-join", TU, Output::Strings, |b| {
        to_out(table(b, "t").outer_join(&table(b, "u"), |a, b| join(or_null(a), or_null(b))))
    });
    add("fk-join", TU, Output::Strings, |b| {
        to_out(table(b, "t").join_foreign_key(&table(b, "u"), |v| first(v), |a, b| join(a, b), Materialized::with(Serdes::string(), Serdes::string())))
    });
    add("fk-left-join", TU, Output::Strings, |b| {
        to_out(table(b, "t").left_join_foreign_key(&table(b, "u"), |v| first(v), |a, b| join(a, or_null(b)), Materialized::with(Serdes::string(), Serdes::string())))
    });
    add("global-join", LG, Output::Strings, |b| {
        let g = b.global_table::<String, String>("g", Consumed::with(Serdes::string(), Serdes::string()), Materialized::new());
        stream_out(stream(b, "l").join_global(&g, |_, v| first(v), |a, b| join(a, b)))
    });
    add("global-left-join", LG, Output::Strings, |b| {
        let g = b.global_table::<String, String>("g", Consumed::with(Serdes::string(), Serdes::string()), Materialized::new());
        stream_out(stream(b, "l").left_join_global(&g, |_, v| first(v), |a, b| join(a, or_null(b))))
    });
    add("cogroup", LR, Output::Strings, |b| {
        let right = stream(b, "r").group_by_key(Grouped::with(Serdes::string(), Serdes::string()));
        to_out(
            stream(b, "l")
                .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
                .cogroup(|_, v, a: String| format!("{a}L{v}"))
                .cogroup(&right, |_, v, a| format!("{a}R{v}"))
                .aggregate(String::new, strings(true)),
        )
    });
    add("repartition-count", IN, Output::Counts, |b| {
        counts_out(
            stream(b, "in")
                .group_by(|_, v| first(v), Grouped::with(Serdes::string(), Serdes::string()))
                .count(Materialized::new()),
        )
    });
    add("select-key-reduce", IN, Output::Strings, |b| {
        to_out(
            stream(b, "in")
                .select_key(|_, v| first(v))
                .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
                .reduce(|a, v| format!("{a}|{v}"), strings(false)),
        )
    });
    add("stateless", LR, Output::Strings, |b| {
        stream_out(
            stream(b, "l")
                .merge(&stream(b, "r"))
                .filter(|_, v| v.len() > 1)
                .map_values(|v| v.to_uppercase())
                .flat_map(|k, v| {
                    let other = first(&v).to_lowercase();
                    vec![(k.clone(), v), (other, k)]
                }),
        )
    });
    add("to-table", IN, Output::Strings, |b| to_out(stream(b, "in").select_key(|_, v| first(v)).to_table(None, strings(false))));
    add("repartition-reduce", IN, Output::Strings, |b| {
        to_out(
            stream(b, "in")
                .repartition(Repartitioned::with(Serdes::string(), Serdes::string()))
                .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
                .reduce(|a, v| format!("{a}|{v}"), strings(false)),
        )
    });
    add("process-values", IN, Output::Strings, |b| stream_out(stream(b, "in").process_values(|| Stamp, &[])));
    add("payload-time-tumbling", IN, windowed(SIZE, true), |b| {
        let consumed = Consumed::with(Serdes::string(), Serdes::string()).with_timestamp_extractor(payload_time);
        windowed_counts_out(
            b.stream("in", consumed)
                .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
                .windowed_by(TimeWindows::of_size_and_grace(ms(SIZE), ms(GRACE)))
                .count(longs(false)),
            SIZE,
        )
    });
    add("filtered-tumbling-count", IN, windowed(SIZE, true), |b| {
        windowed_counts_out(
            stream(b, "in")
                .filter(|_, v| !v.starts_with('x'))
                .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
                .windowed_by(TimeWindows::of_size_and_grace(ms(SIZE), ms(GRACE)))
                .count(longs(false)),
            SIZE,
        )
    });
    // Windowed cogroups: each input's processor keeps its own observed stream time.
    fn cogrouped(b: &StreamsBuilder) -> streams::CogroupedKStream<String, String> {
        let right = stream(b, "r").group_by_key(Grouped::with(Serdes::string(), Serdes::string()));
        stream(b, "l")
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .cogroup(|_, v, a: String| format!("{a}L{v}"))
            .cogroup(&right, |_, v, a| format!("{a}R{v}"))
    }
    add("cogroup-tumbling", LR, windowed(SIZE, false), |b| {
        let windows = TimeWindows::of_size_and_grace(ms(SIZE), ms(GRACE));
        windowed_strings_out(cogrouped(b).windowed_by(windows).aggregate(String::new, strings(false)), SIZE)
    });
    add("cogroup-sliding", LR, windowed(DIFFERENCE, false), |b| {
        let windows = SlidingWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE));
        windowed_strings_out(cogrouped(b).windowed_by_sliding(windows).aggregate(String::new, strings(true)), DIFFERENCE)
    });
    add("cogroup-session", LR, Output::Session { counts: false }, |b| {
        let windows = SessionWindows::of_inactivity_gap_and_grace(ms(GAP), ms(GRACE));
        session_strings_out(cogrouped(b).windowed_by_session(windows).aggregate(String::new, |_, a1, a2| a1 + &a2, strings(false)))
    });
    add("split-chained", IN, Output::Strings, |b| {
        let rest = stream(b, "in")
            .split()
            .branch(|_, v| v.len() > 2, Branched::with_function(|s: KStream<String, String>| s.map_values(|v| v.to_uppercase())))
            .branch(|_, v| v.starts_with('a'), Branched::with_consumer(|s: KStream<String, String>| stream_out(s.map_values(|v| v + "!"))))
            .default_branch(Branched::new());
        for branch in rest.into_values() {
            stream_out(branch);
        }
    });
    add("join-outer-with-key", LR, Output::Strings, |b| {
        let windows = JoinWindows::of_time_difference_and_grace(ms(DIFFERENCE), ms(GRACE));
        let joined = StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string());
        let (l, r) = (stream(b, "l"), stream(b, "r"));
        stream_out(l.outer_join_with_key(&r, |k, a, b| format!("{k}:{}", join(or_null(a), or_null(b))), windows, joined))
    });
    add("versioned-table", T, Output::Strings, |b| to_out(versioned_table(b, "t")));
    add("versioned-stream-table-join", LT, Output::Strings, |b| {
        stream_out(stream(b, "l").join_table(&versioned_table(b, "t"), |a, b| join(a, b)))
    });
    add("versioned-stream-table-left-join", LT, Output::Strings, |b| {
        stream_out(stream(b, "l").left_join_table(&versioned_table(b, "t"), |a, b| join(a, or_null(b))))
    });
    add("versioned-table-table-join", TU, Output::Strings, |b| to_out(versioned_table(b, "t").join(&table(b, "u"), |a, b| join(a, b))));
    add("versioned-stream-table-join-grace", LT, Output::Strings, |b| {
        stream_out(stream(b, "l").join_table_with(&versioned_table(b, "t"), |a, b| join(a, b), grace_joined()))
    });
    add("versioned-stream-table-left-join-grace", LT, Output::Strings, |b| {
        stream_out(stream(b, "l").left_join_table_with(&versioned_table(b, "t"), |a, b| join(a, or_null(b)), grace_joined()))
    });
    // A stateful processor over table rows: run once per update, twice (new, then old) where
    // an aggregation asks for old values, once again when materialized.
    add("table-process-values", T, Output::Strings, |b| to_out(table(b, "t").process_values(TableStamp::default, &[])));
    add("table-process-values-group-by", T, Output::Counts, |b| {
        counts_out(
            table(b, "t")
                .process_values(TableStamp::default, &[])
                .group_by(|_, v| (first(v), v.clone()), Grouped::with(Serdes::string(), Serdes::string()))
                .count(Materialized::new()),
        )
    });
    add("table-process-values-materialized-group-by", T, Output::Counts, |b| {
        let rows = Materialized::as_("pv-rows").with_value_serde(Serdes::string()).with_caching_enabled();
        counts_out(
            table(b, "t")
                .process_values_with(TableStamp::default, rows, &[])
                .group_by(|_, v| (first(v), v.clone()), Grouped::with(Serdes::string(), Serdes::string()))
                .count(Materialized::new()),
        )
    });
    entries
}

/// Appends how many times it ran to each row; rows starting with `x` are deleted (nothing forwarded).
#[derive(Default)]
struct TableStamp(u32);

impl FixedKeyProcessor<String, Option<String>, Option<String>> for TableStamp {
    fn process(
        &mut self,
        ctx: &mut FixedKeyProcessorContext<'_, String, Option<String>>,
        r: FixedKeyRecord<String, Option<String>>,
    ) -> streams::Result<()> {
        self.0 += 1;
        match r.value.clone() {
            Some(v) if v.starts_with('x') => Ok(()),
            value => {
                let value = value.map(|v| format!("{v}#{}", self.0));
                ctx.forward(r.with_value(value))
            }
        }
    }
}

/// Event time from the record and its value: values starting with `x` have none (dropped).
fn payload_time(record: &ConsumedRecord<'_, String, String>, _partition_time: i64) -> i64 {
    if record.value.starts_with('x') {
        -1
    } else {
        record.timestamp + record.value.len() as i64
    }
}

/// Appends the record's timestamp and input offset to its value.
struct Stamp;

impl FixedKeyProcessor<String, String, String> for Stamp {
    fn process(&mut self, ctx: &mut FixedKeyProcessorContext<'_, String, String>, r: FixedKeyRecord<String, String>) -> streams::Result<()> {
        let value = format!("{}@{}#{}", r.value, r.timestamp, ctx.record_context().offset);
        ctx.forward(r.with_value(value))
    }
}

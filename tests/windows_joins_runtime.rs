//! Windows and joins through the broker: the stream-stream left join table record by record,
//! and a suppressed windowed count that survives a task move and a restart with exactly the
//! final results. Runs against `STREAMS_BOOTSTRAP_SERVERS` if set, else an embedded broker.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::kafka::{unique, Cluster};
use streams::prelude::*;
use streams::test_utils;
use streams::state::{Windowed, WindowedSerde};
use streams::{JoinWindows, KafkaStreams, RestoreEvent, Serde, State, StreamJoined, Suppressed, TimeWindows, Topology};

fn config(application_id: &str, servers: &str, state_dir: &std::path::Path) -> StreamsConfig {
    common::kafka::for_broker(StreamsConfig::new())
        .with(StreamsConfig::APPLICATION_ID, application_id)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, servers)
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "100")
        .with(StreamsConfig::STATE_DIR, state_dir.to_string_lossy())
}

fn start(topology: Topology, config: StreamsConfig) -> (KafkaStreams, Arc<std::sync::Mutex<Vec<RestoreEvent>>>) {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let mut streams = KafkaStreams::new(topology, config).unwrap();
    let restored = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = restored.clone();
    streams.set_restore_listener(move |e| sink.lock().unwrap().push(e.clone()));
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running, "{:?}", streams.take_error());
    (streams, restored)
}

/// Waits until the application has committed everything in `topics`.
fn wait_for_end(cluster: &Cluster, application_id: &str, topics: &[&str], streams: &KafkaStreams) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while test_utils::group_lag(&cluster.bootstrap_servers(), application_id, topics).unwrap() > 0 {
        assert!(!matches!(streams.state(), State::Error | State::PendingError), "{:?}", streams.take_error());
        assert!(Instant::now() < deadline, "the application did not catch up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn bytes(s: &str) -> Option<Vec<u8>> {
    Some(s.as_bytes().to_vec())
}

#[test]
fn stream_stream_left_join_table_through_the_broker() {
    let cluster = Cluster::new();
    let (left, right, out, app) = (unique("join-l"), unique("join-r"), unique("join-out"), unique("join-app"));
    for topic in [&left, &right, &out] {
        cluster.create_topic(topic, 1);
    }
    let topology = || {
        let builder = StreamsBuilder::new();
        let consumed = || Consumed::<String, String>::with(Serdes::string(), Serdes::string());
        let l = builder.stream(&left, consumed());
        let r = builder.stream(&right, consumed());
        let windows = JoinWindows::of_time_difference_and_grace(Duration::from_secs(15), Duration::from_secs(5));
        l.left_join(
            &r,
            |l, r: Option<&String>| format!("[{l},{}]", r.map_or("null", String::as_str)),
            windows,
            StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string()),
        )
        .to(&out, Produced::with(Serdes::string(), Serdes::string()));
        builder.build().unwrap()
    };
    cluster.prepare(&topology(), &app, 1);
    let dir = tempfile::tempdir().unwrap();
    let (mut streams, _) = start(topology(), config(&app, &cluster.bootstrap_servers(), dir.path()));
    // The table's non-null inputs, one at a time so both topics interleave in timestamp order.
    let inputs = [
        (3, &left, "A"),
        (4, &right, "a"),
        (5, &left, "B"),
        (6, &right, "b"),
        (9, &left, "C"),
        (10, &right, "c"),
        (14, &right, "d"),
        (15, &left, "D"),
        (40, &left, "E"),
        (60, &left, "F"),
        (80, &right, "f"),
        (100, &left, "G"),
    ];
    for (ts, topic, value) in inputs {
        test_utils::produce_at(&cluster.bootstrap_servers(), topic, [(bytes("k"), bytes(value), Some(ts * 1000))]).unwrap();
        wait_for_end(&cluster, &app, &[&left, &right], &streams);
    }
    assert!(streams.close(Duration::from_secs(30)));
    let records = test_utils::read_all(&cluster.bootstrap_servers(), &out, Duration::from_millis(500)).unwrap();
    let values: Vec<String> =
        records.iter().map(|r| Serdes::string().deserialize(&out, r.value.as_deref()).unwrap()).collect();
    let expected = [
        "[A,a]", "[B,a]", "[A,b]", "[B,b]", "[C,a]", "[C,b]", "[A,c]", "[B,c]", "[C,c]", "[A,d]", "[B,d]", "[C,d]", "[D,a]",
        "[D,b]", "[D,c]", "[D,d]", "[E,null]", "[F,null]",
    ];
    assert_eq!(values, expected);
    let timestamps: Vec<i64> = records.iter().map(|r| r.timestamp / 1000).collect();
    assert_eq!(timestamps[..2], [4, 5]);
    assert_eq!(timestamps[16..], [40, 60]);
}

/// A stream-stream join over inputs already on the broker: both sides are fetched at their
/// own pace (one side's backlog may reach the task well before the other's), yet every record
/// finds its partner, because the task waits for an empty input whose records are still on the
/// broker instead of running ahead on the other (KIP-695). Each key once per side, 1 ms apart,
/// in a 100 ms window: processed out of timestamp order, a side's partners would be out of
/// retention already.
#[test]
fn a_stream_stream_join_over_a_backlog_finds_every_partner() {
    join_over_a_backlog(None);
}

/// With room for 5 records per input partition, the task leaves an input in its librdkafka
/// queue each time it waits on the other, and takes it up again after: a record lost or read
/// twice on the way would show as a missing or doubled result.
#[test]
fn a_join_whose_inputs_wait_on_full_buffers_finds_every_partner_once() {
    join_over_a_backlog(Some(5));
}

fn join_over_a_backlog(buffered_records_per_partition: Option<usize>) {
    const N: usize = 20_000;
    let cluster = Cluster::new();
    let (left, right, out, app) = (unique("backlog-l"), unique("backlog-r"), unique("backlog-out"), unique("backlog-app"));
    for topic in [&left, &right, &out] {
        cluster.create_topic(topic, 2);
    }
    let base = base_time();
    for (topic, side) in [(&left, "l"), (&right, "r")] {
        let records = (0..N).map(|i| (bytes(&format!("order-{i}")), bytes(side), Some(base + i as i64)));
        test_utils::produce_at(&cluster.bootstrap_servers(), topic, records).unwrap();
    }
    let builder = StreamsBuilder::new();
    let consumed = || Consumed::<String, String>::with(Serdes::string(), Serdes::string());
    builder
        .stream(&left, consumed())
        .join(
            &builder.stream(&right, consumed()),
            |l: &String, r: &String| format!("{l}{r}"),
            JoinWindows::of_time_difference_with_no_grace(Duration::from_millis(100)),
            StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string()),
        )
        .to(&out, Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build().unwrap();
    cluster.prepare(&topology, &app, 2);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&app, &cluster.bootstrap_servers(), dir.path());
    if let Some(n) = buffered_records_per_partition {
        config = config.with(StreamsConfig::BUFFERED_RECORDS_PER_PARTITION, n.to_string());
    }
    let (mut streams, _) = start(topology, config);
    wait_for_end(&cluster, &app, &[&left, &right], &streams);
    assert!(streams.close(Duration::from_secs(30)));
    let records = test_utils::read_all(&cluster.bootstrap_servers(), &out, Duration::from_millis(500)).unwrap();
    assert_eq!(records.len(), N, "every left record joins its right partner once");
    let keys: HashSet<_> = records.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), N, "no result twice");
    assert!(records.iter().all(|r| r.value.as_deref() == Some(&b"lr"[..])));
}

const KEYS: usize = 8;
const WINDOW_MS: i64 = 10_000;

/// Clicks: every key every 500 ms from 1 ms to 35 s; keys of odd index stop at 24.5 s. Then
/// one record per key at 100 s moves stream time past every window before it. Times are
/// relative to [`base_time`].
/// The time the clicks count from: an hour ago, on a 100 s boundary. Windowed changelogs are
/// `compact,delete` with a retention of window retention plus a day, by record timestamp (as
/// Kafka Streams creates them): records from 1970 would be deleted by the broker's retention
/// check whenever it runs, before a restore reads them.
fn base_time() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    (now - 3_600_000) / 100_000 * 100_000
}

fn clicks() -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for ts in (1..35_000).step_by(500) {
        for k in 0..KEYS {
            if k % 2 == 1 && ts >= 25_000 {
                continue;
            }
            out.push((format!("key-{k}"), ts));
        }
    }
    out
}

#[test]
fn a_suppressed_windowed_count_survives_a_task_move_and_a_restart() {
    let cluster = Cluster::new();
    let (input, output, app) = (unique("clicks"), unique("click-windows"), unique("click-app"));
    cluster.create_topic(&input, 2);
    cluster.create_topic(&output, 2);
    let topology = || {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, String>(&input, Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
            .windowed_by(TimeWindows::of_size_with_no_grace(Duration::from_millis(WINDOW_MS as u64)))
            .count(Materialized::as_("click-counts"))
            .suppress(Suppressed::until_window_closes())
            .to_stream()
            .to(&output, Produced::with(WindowedSerde::time(Arc::new(Serdes::string()), WINDOW_MS), Serdes::i64()));
        builder.build().unwrap()
    };
    cluster.prepare(&topology(), &app, 2);
    let servers = cluster.bootstrap_servers();
    let base = base_time();
    let produce = |records: &[(String, i64)]| {
        let records = records.iter().map(|(k, ts)| (bytes(k), bytes("click"), Some(base + *ts)));
        test_utils::produce_at(&servers, &input, records).unwrap();
    };
    let run = |dir: &std::path::Path| {
        let (mut streams, restored) = start(topology(), config(&app, &servers, dir));
        wait_for_end(&cluster, &app, &[&input], &streams);
        assert!(streams.close(Duration::from_secs(30)));
        let restored: u64 = restored.lock().unwrap().iter().map(|e| e.restored).sum();
        restored
    };
    let all = clicks();
    let (first, rest): (Vec<_>, Vec<_>) = all.iter().cloned().partition(|(_, ts)| *ts < 25_000);
    let (second, third): (Vec<_>, Vec<_>) = rest.into_iter().partition(|(_, ts)| *ts < 30_000);

    // A counts up to 25 s: windows [0, 10 s) and [10 s, 20 s) close and are emitted; [20 s, 30 s)
    // is in the window store and the suppression buffer.
    let dir_a = tempfile::tempdir().unwrap();
    produce(&first);
    assert_eq!(run(dir_a.path()), 0);

    // B, on an empty state dir (a task move), restores both from their changelogs and goes on.
    let dir_b = tempfile::tempdir().unwrap();
    produce(&second);
    assert!(run(dir_b.path()) > 0, "B restores the window store and the suppression buffer");

    // A again, with its old state dir: restores the tail B wrote, then closes every window.
    produce(&third);
    let ticks: Vec<(String, i64)> = (0..KEYS).map(|k| (format!("key-{k}"), 100_000)).collect();
    produce(&ticks);
    assert!(run(dir_a.path()) > 0, "A restores the changelog tail");

    let mut truth: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (key, ts) in &all {
        *truth.entry((key.clone(), ts - ts % WINDOW_MS)).or_default() += 1;
    }
    let serde = WindowedSerde::time(Arc::new(Serdes::string()), WINDOW_MS);
    let mut emitted: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
    for r in test_utils::read_all(&servers, &output, Duration::from_millis(500)).unwrap() {
        let key: Windowed<String> = serde.deserialize(&output, r.key.as_deref()).unwrap();
        let count: i64 = Serdes::i64().deserialize(&output, r.value.as_deref()).unwrap();
        emitted.entry((key.key, key.window.start - base)).or_default().push(count);
    }
    let expected: BTreeMap<(String, i64), Vec<i64>> = truth.into_iter().map(|(k, c)| (k, vec![c])).collect();
    assert_eq!(emitted, expected, "one final count per key and window, equal to the truth");
}

#[test]
fn a_global_table_is_complete_before_the_first_record_is_processed() {
    let cluster = Cluster::new();
    let (orders, products, out, app) = (unique("orders"), unique("products"), unique("enriched"), unique("global-app"));
    cluster.create_topic(&orders, 3);
    cluster.create_topic(&products, 2);
    cluster.create_topic(&out, 3);
    let servers = cluster.bootstrap_servers();
    let product_records = (0..200).map(|i| (bytes(&format!("p{i}")), bytes(&format!("name-{i}")), None));
    test_utils::produce_at(&servers, &products, product_records).unwrap();
    // Orders are there before the application starts: each must find its product.
    let order_records = (0..600).map(|i| (bytes(&format!("o{i}")), bytes(&format!("p{}", i % 200)), None));
    test_utils::produce_at(&servers, &orders, order_records).unwrap();
    let topology = || {
        let builder = StreamsBuilder::new();
        let table = builder.global_table::<String, String>(
            &products,
            Consumed::with(Serdes::string(), Serdes::string()),
            Materialized::as_("products"),
        );
        builder
            .stream::<String, String>(&orders, Consumed::with(Serdes::string(), Serdes::string()))
            .join_global(&table, |_, product| product.clone(), |product, name| format!("{product}={name}"))
            .to(&out, Produced::with(Serdes::string(), Serdes::string()));
        builder.build().unwrap()
    };
    cluster.prepare(&topology(), &app, 3);
    let dir = tempfile::tempdir().unwrap();
    let (mut streams, _) = start(topology(), config(&app, &servers, dir.path()));
    wait_for_end(&cluster, &app, &[&orders], &streams);
    // The global thread keeps the table current while the application runs.
    test_utils::produce_at(&servers, &products, [(bytes("p0"), bytes("renamed"), None)]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    test_utils::produce_at(&servers, &orders, [(bytes("late-order"), bytes("p0"), None)]).unwrap();
    wait_for_end(&cluster, &app, &[&orders], &streams);
    assert!(streams.close(Duration::from_secs(30)));
    let records = test_utils::read_all(&servers, &out, Duration::from_millis(500)).unwrap();
    let values: BTreeMap<String, String> = records
        .iter()
        .map(|r| {
            let key = Serdes::string().deserialize(&out, r.key.as_deref()).unwrap();
            (key, Serdes::string().deserialize(&out, r.value.as_deref()).unwrap())
        })
        .collect();
    assert_eq!(values.len(), 601, "every order joined");
    assert_eq!(values["o7"], "p7=name-7");
    assert_eq!(values["late-order"], "p0=renamed");
    assert!(dir.path().join(&app).join("global").join(".checkpoint").exists());
}

//! Interactive queries against running applications: key-value, window and session stores read
//! from outside the topology, the errors of stores that are not (or no longer) queryable, and
//! scans that stream. Runs against `STREAMS_BOOTSTRAP_SERVERS` if set, else an embedded broker.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::kafka::{unique, Cluster};
use common::truth;
use streams::prelude::*;
use streams::query::{QueryableStoreTypes, StoreQueryParameters};
use streams::state::Windowed;
use streams::topologies::{random_lines, word_count_between};
use streams::{test_utils, InvalidStateStoreReason, KafkaStreams, State, TimeWindows, SessionWindows};

fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}

fn config(application_id: &str, cluster: &Cluster, state_dir: &std::path::Path) -> StreamsConfig {
    common::kafka::for_broker(StreamsConfig::new())
        .with(StreamsConfig::APPLICATION_ID, application_id)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, cluster.bootstrap_servers())
        .with(StreamsConfig::NUM_STREAM_THREADS, cluster.threads().to_string())
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "200")
        .with(StreamsConfig::STATE_DIR, state_dir.to_string_lossy())
}

fn reason(error: &StreamsError) -> InvalidStateStoreReason {
    match error {
        StreamsError::InvalidStateStore { reason, .. } => *reason,
        other => panic!("not an InvalidStateStore error: {other}"),
    }
}

/// Waits until `streams` has processed and committed all of `topics`.
fn wait_for_end(cluster: &Cluster, group: &str, topics: &[&str], streams: &KafkaStreams) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let lag = test_utils::group_lag(&cluster.bootstrap_servers(), group, topics).unwrap();
        if lag == 0 {
            return;
        }
        assert!(!matches!(streams.state(), State::Error | State::PendingError), "stopped: {:?}", streams.take_error());
        assert!(Instant::now() < deadline, "{lag} records left");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_running_word_count_answers_key_value_queries_from_every_local_task() {
    init_tracing();
    let cluster = Cluster::new();
    let (input, output, app) = (unique("iq-in"), unique("iq-out"), unique("iq-app"));
    let partitions = 3;
    cluster.create_topic(&input, partitions);
    cluster.create_topic(&output, partitions);
    let topology = || word_count_between(&input, &output, Materialized::as_("counts"));
    cluster.prepare(&topology(), &app, partitions);
    let lines = random_lines(3_000, 400, 5);
    let truth: BTreeMap<String, i64> = truth(&lines).into_iter().collect();
    test_utils::produce(&cluster.bootstrap_servers(), &input, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())))).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology(), config(&app, &cluster, dir.path())).unwrap();
    let params = || StoreQueryParameters::from_name_and_type("counts", QueryableStoreTypes::key_value::<String, i64>());
    let early = streams.store(params()).unwrap_err();
    assert_eq!(reason(&early), InvalidStateStoreReason::NotStarted);
    assert!(early.is_retriable());

    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running, "{:?}", streams.take_error());
    wait_for_end(&cluster, &app, &[&input, &format!("{app}-counts-repartition")], &streams);
    // The last commit's cache flush is in; the store holds every count.
    let counts = streams.store(params()).unwrap();

    for (word, count) in &truth {
        assert_eq!(counts.get(word).unwrap(), Some(*count), "{word}");
    }
    assert_eq!(counts.get(&"not-a-word".to_string()).unwrap(), None);

    let all: BTreeMap<String, i64> = counts.all().unwrap().map(Result::unwrap).collect();
    assert_eq!(all, truth);
    assert_eq!(counts.all().unwrap().count(), truth.len(), "each key from one task only");

    // Ranges: the right keys, in key order within each task (tasks one after the other).
    let (from, to) = ("w1".to_string(), "w25".to_string());
    let expected: BTreeMap<String, i64> = truth.range(from.clone()..=to.clone()).map(|(k, v)| (k.clone(), *v)).collect();
    let ranged: Vec<(String, i64)> = counts.range(&from, &to).unwrap().map(Result::unwrap).collect();
    assert_eq!(ranged.iter().cloned().collect::<BTreeMap<_, _>>(), expected);
    let reversed: Vec<(String, i64)> = counts.reverse_range(&from, &to).unwrap().map(Result::unwrap).collect();
    assert_eq!(reversed.len(), ranged.len());
    assert_eq!(reversed.iter().cloned().collect::<BTreeMap<_, _>>(), expected);
    let descending_runs = reversed.windows(2).filter(|w| w[0].0 < w[1].0).count();
    assert!(descending_runs < partitions as usize, "descending within each task: {reversed:?}");
    let reverse_all: BTreeMap<String, i64> = counts.reverse_all().unwrap().map(Result::unwrap).collect();
    assert_eq!(reverse_all, truth);

    let prefixed: BTreeMap<String, i64> =
        counts.prefix_scan(&"w12".to_string(), &Serdes::string()).unwrap().map(Result::unwrap).collect();
    let expected: BTreeMap<String, i64> = truth.iter().filter(|(k, _)| k.starts_with("w12")).map(|(k, v)| (k.clone(), *v)).collect();
    assert!(!expected.is_empty());
    assert_eq!(prefixed, expected);
    assert!(counts.approximate_num_entries().unwrap() > 0);

    // The timestamped view of the same store, and one partition at a time.
    let timestamped = streams
        .store(StoreQueryParameters::from_name_and_type("counts", QueryableStoreTypes::timestamped_key_value::<String, i64>()))
        .unwrap();
    let (word, count) = truth.iter().next().unwrap();
    let with_time = timestamped.get(word).unwrap().unwrap();
    assert_eq!(with_time.value, *count);
    assert!(with_time.timestamp > 0);
    let mut union = BTreeMap::new();
    for p in 0..partitions {
        let one = streams.store(params().with_partition(p)).unwrap();
        let entries: Vec<(String, i64)> = one.all().unwrap().map(Result::unwrap).collect();
        assert!(!entries.is_empty(), "partition {p} holds words");
        union.extend(entries);
    }
    assert_eq!(union, truth);

    // Stores that do not exist, or not with that type, or that partition.
    let unknown = streams.store(StoreQueryParameters::from_name_and_type("nope", QueryableStoreTypes::key_value::<String, i64>())).unwrap_err();
    assert_eq!(reason(&unknown), InvalidStateStoreReason::UnknownStore);
    assert!(!unknown.is_retriable());
    let wrong = streams.store(StoreQueryParameters::from_name_and_type("counts", QueryableStoreTypes::key_value::<String, String>())).unwrap_err();
    assert_eq!(reason(&wrong), InvalidStateStoreReason::UnknownStore, "{wrong}");
    let window = streams.store(StoreQueryParameters::from_name_and_type("counts", QueryableStoreTypes::window::<String, i64>())).unwrap_err();
    assert_eq!(reason(&window), InvalidStateStoreReason::UnknownStore);
    let partition = streams.store(params().with_partition(partitions)).unwrap_err();
    assert_eq!(reason(&partition), InvalidStateStoreReason::UnknownPartition);

    // Views are Send + Sync: other threads query concurrently while the app runs.
    std::thread::scope(|s| {
        for _ in 0..3 {
            let counts = counts.clone();
            let truth = &truth;
            s.spawn(move || {
                for (word, count) in truth.iter().take(50) {
                    assert_eq!(counts.get(word).unwrap(), Some(*count));
                }
            });
        }
    });

    assert!(streams.close(Duration::from_secs(60)));
    let closed = counts.get(word).unwrap_err();
    assert_eq!(reason(&closed), InvalidStateStoreReason::NotRunning);
    assert!(!closed.is_retriable());
}

#[test]
fn window_and_session_stores_answer_time_range_queries_in_order() {
    init_tracing();
    let cluster = Cluster::new();
    let (input, app) = (unique("iqw-in"), unique("iqw-app"));
    let partitions = 2;
    cluster.create_topic(&input, partitions);
    let topology = || {
        let builder = StreamsBuilder::new();
        let grouped = builder
            .stream::<String, String>(&input, Consumed::with(Serdes::string(), Serdes::string()))
            .group_by_key(Grouped::with(Serdes::string(), Serdes::string()));
        grouped
            .windowed_by(TimeWindows::of_size_and_grace(Duration::from_secs(10), Duration::from_secs(3600)))
            .count(Materialized::as_("per-window"));
        grouped
            .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(Duration::from_secs(5), Duration::from_secs(3600)))
            .count(Materialized::as_("per-session"));
        builder.build().unwrap()
    };
    cluster.prepare(&topology(), &app, partitions);
    // Key `k<i>` gets records at 1, 2, ... 2i seconds past `base` (windows of 10 s, one session).
    let base = 1_700_000_000_000i64;
    let mut records = Vec::new();
    let mut expected: HashMap<String, BTreeMap<i64, i64>> = HashMap::new();
    for i in 1..=6 {
        let key = format!("k{i}");
        for s in 1..=(4 * i) {
            let ts = base + s * 1_000;
            records.push((Some(key.as_bytes().to_vec()), Some(b"x".to_vec()), Some(ts)));
            *expected.entry(key.clone()).or_default().entry(ts - ts % 10_000).or_insert(0) += 1;
        }
    }
    test_utils::produce_at(&cluster.bootstrap_servers(), &input, records).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology(), config(&app, &cluster, dir.path())).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running, "{:?}", streams.take_error());
    wait_for_end(&cluster, &app, &[&input], &streams);

    let windows = streams
        .store(StoreQueryParameters::from_name_and_type("per-window", QueryableStoreTypes::window::<String, i64>()))
        .unwrap();
    for (key, per_window) in &expected {
        let fetched: Vec<(i64, i64)> = windows.fetch_range(key, base, base + 60_000).unwrap().map(Result::unwrap).collect();
        assert_eq!(fetched, per_window.iter().map(|(s, c)| (*s, *c)).collect::<Vec<_>>(), "{key}, earliest window first");
        let backward: Vec<(i64, i64)> = windows.backward_fetch_range(key, base, base + 60_000).unwrap().map(Result::unwrap).collect();
        assert_eq!(backward, fetched.iter().rev().cloned().collect::<Vec<_>>(), "{key}, latest first");
        let (first_start, first_count) = per_window.iter().next().unwrap();
        assert_eq!(windows.fetch(key, *first_start).unwrap(), Some(*first_count));
        // A time range that holds only the second window.
        let second: Vec<(i64, i64)> =
            windows.fetch_range(key, first_start + 10_000, first_start + 10_000).unwrap().map(Result::unwrap).collect();
        assert_eq!(second, per_window.iter().nth(1).map(|(s, c)| (*s, *c)).into_iter().collect::<Vec<_>>());
    }
    let timestamped = streams
        .store(StoreQueryParameters::from_name_and_type("per-window", QueryableStoreTypes::timestamped_window::<String, i64>()))
        .unwrap();
    let (start, _) = expected["k1"].iter().next().unwrap();
    let value = timestamped.fetch(&"k1".to_string(), *start).unwrap().unwrap();
    assert!(value.timestamp >= *start && value.timestamp < start + 10_000);
    let everything: Vec<(Windowed<String>, i64)> = windows.all().unwrap().map(Result::unwrap).collect();
    assert_eq!(everything.len(), expected.values().map(BTreeMap::len).sum::<usize>());
    let in_range = windows.fetch_all(base, base + 9_999).unwrap().count();
    assert_eq!(in_range, expected.values().filter(|w| w.contains_key(&(base - base % 10_000))).count());

    let sessions = streams
        .store(StoreQueryParameters::from_name_and_type("per-session", QueryableStoreTypes::session::<String, i64>()))
        .unwrap();
    for i in 1..=6 {
        let key = format!("k{i}");
        let found: Vec<(Windowed<String>, i64)> = sessions.fetch(&key).unwrap().map(Result::unwrap).collect();
        assert_eq!(found.len(), 1, "{key}: one session, records 1 s apart with a 5 s gap");
        let (session, count) = &found[0];
        assert_eq!((session.window.start, session.window.end, *count), (base + 1_000, base + 4 * i * 1_000, 4 * i));
        assert_eq!(sessions.fetch_session(&key, session.window.start, session.window.end).unwrap(), Some(4 * i));
        assert_eq!(sessions.find_sessions(&key, base + 4 * i * 1_000 + 1, i64::MAX).unwrap().count(), 0);
    }
    assert!(streams.close(Duration::from_secs(60)));
}

#[test]
fn a_scan_of_a_large_store_streams_a_page_at_a_time() {
    init_tracing();
    let cluster = Cluster::new();
    let (input, app) = (unique("iqs-in"), unique("iqs-app"));
    cluster.create_topic(&input, 1);
    let topology = || {
        let builder = StreamsBuilder::new();
        builder.table::<String, String>(&input, Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("big"));
        builder.build().unwrap()
    };
    cluster.prepare(&topology(), &app, 1);
    // A million entries on a real broker; the embedded one keeps only 5 MB per partition.
    let n = if cluster.supports_several_members() { 1_000_000 } else { 30_000 };
    let records = (0..n).map(|i| (Some(format!("key-{i:07}").into_bytes()), Some(vec![b'v'; 100])));
    test_utils::produce(&cluster.bootstrap_servers(), &input, records).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut streams = KafkaStreams::new(topology(), config(&app, &cluster, dir.path())).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running);
    wait_for_end(&cluster, &app, &[&input], &streams);
    let big = streams
        .store(StoreQueryParameters::from_name_and_type("big", QueryableStoreTypes::key_value::<String, String>()))
        .unwrap();
    let started = Instant::now();
    let mut iter = big.all().unwrap();
    let (mut seen, mut most_buffered, mut last) = (0usize, 0usize, String::new());
    while let Some(entry) = iter.next() {
        let (key, value) = entry.unwrap();
        assert!(key > last, "key order");
        assert_eq!(value.len(), 100);
        last = key;
        seen += 1;
        most_buffered = most_buffered.max(iter.buffered());
    }
    assert_eq!(seen, n);
    assert!(most_buffered <= 4096, "at most one page held at a time, held {most_buffered}");
    let secs = started.elapsed().as_secs_f64();
    eprintln!("scanned {n} entries in {secs:.2} s ({:.0}/s), at most {most_buffered} held at a time", n as f64 / secs);
    assert!(streams.close(Duration::from_secs(60)));
}

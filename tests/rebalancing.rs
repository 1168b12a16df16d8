//! Rebalances under both group protocols: the classic one closes every task of every member
//! (eager), KIP-848's consumer protocol closes only the tasks that move; co-partitioned joins
//! stay correct under either; instance metadata follows the group; inputs held back in queues of
//! their own (a full task buffer) go on after an eager rebalance. And restoration that does
//! not stop the thread: a long restore runs on the state updater while the thread's other tasks
//! keep processing and the member stays in the group; a restore cut short keeps its progress.
//! Needs a real broker.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{unique, Cluster};
use common::truth;
use streams::prelude::*;
use streams::topologies::{random_lines, word_count_between};
use streams::query::StreamsMetadata;
use streams::{test_utils, KafkaStreams, State};

fn config(app: &str, cluster: &Cluster, dir: &std::path::Path, protocol: &str) -> StreamsConfig {
    StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, app)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, cluster.bootstrap_servers())
        .with(StreamsConfig::STATE_DIR, dir.to_string_lossy())
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "200")
        .with(StreamsConfig::GROUP_PROTOCOL, protocol)
}

fn start(topology: streams::Topology, config: StreamsConfig) -> KafkaStreams {
    let mut streams = KafkaStreams::new(topology, config).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(120)), State::Running, "{:?}", streams.take_error());
    streams
}

fn thread_total(streams: &KafkaStreams, name: &str) -> f64 {
    streams.metrics().sum("stream-thread-metrics", name)
}

/// Tasks an instance holds now (one `dropped-records-total` per task).
fn tasks(streams: &KafkaStreams) -> usize {
    streams.metrics().find("stream-task-metrics", "dropped-records-total").count()
}

fn wait_caught_up(cluster: &Cluster, app: &str, topics: &[&str], instances: &[&KafkaStreams]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let settled = instances.iter().all(|s| s.state() == State::Running);
        if settled && test_utils::group_lag(&cluster.bootstrap_servers(), app, topics).unwrap() == 0 {
            return;
        }
        for s in instances {
            assert!(!matches!(s.state(), State::Error | State::PendingError), "{:?}", s.take_error());
        }
        assert!(Instant::now() < deadline, "not caught up");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The count partitions an instance owns (its consumer's `records-lag` rows of `topic`).
fn owned(streams: &KafkaStreams, topic: &str) -> Vec<i32> {
    let metrics = streams.metrics();
    metrics
        .find("consumer-fetch-manager-metrics", "records-lag")
        .filter(|m| m.name.tags.get("topic").map(String::as_str) == Some(topic))
        .filter_map(|m| m.name.tags.get("partition")?.parse().ok())
        .collect()
}

/// Scale-out 2 -> 3 on a word count of 6 partitions while lines keep coming; returns, for each
/// of the first two instances, (tasks before, tasks closed by the rebalance), and the longest
/// pause of the output of a partition that stayed with its instance; checks the counts.
fn scale_out(protocol: &str) -> (Vec<(usize, f64)>, Duration) {
    let cluster = Cluster::new();
    let (input, output, app) = (unique("rb-in"), unique("rb-out"), unique(&format!("rb-{protocol}")));
    cluster.create_topic(&input, 6);
    cluster.create_topic(&output, 6);
    let topology = || word_count_between(&input, &output, Materialized::as_("counts"));
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let produce = |lines: &[String]| {
        test_utils::produce(&cluster.bootstrap_servers(), &input, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())))).unwrap();
    };
    let repartition = format!("{app}-counts-repartition");
    let topics = [input.as_str(), repartition.as_str()];
    let first = random_lines(2_000, 300, 1);
    produce(&first);
    let a = start(topology(), config(&app, &cluster, dirs[0].path(), protocol));
    let b = start(topology(), config(&app, &cluster, dirs[1].path(), protocol));
    wait_caught_up(&cluster, &app, &topics, &[&a, &b]);
    // Let the group settle: both instances hold tasks.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tasks(&a) + tasks(&b) != 12 || tasks(&a) == 0 || tasks(&b) == 0 {
        assert!(Instant::now() < deadline, "tasks {} + {}", tasks(&a), tasks(&b));
        std::thread::sleep(Duration::from_millis(200));
    }
    let before: Vec<(usize, f64)> = [&a, &b].iter().map(|s| (tasks(s), thread_total(s, "task-closed-total"))).collect();
    let owners_before: Vec<Vec<i32>> = [&a, &b].iter().map(|s| owned(s, &repartition)).collect();

    // Lines keep coming, and every output record's arrival is noted, through the scale-out.
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let servers = cluster.bootstrap_servers();
    let producer = {
        let (servers, input, stop) = (servers.clone(), input.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut sent = Vec::new();
            for seed in 100.. {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let lines = random_lines(20, 300, seed);
                test_utils::produce(&servers, &input, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())))).unwrap();
                sent.extend(lines);
                std::thread::sleep(Duration::from_millis(50));
            }
            sent
        })
    };
    let watcher = {
        use rdkafka::Message;
        let consumer = common::kafka::tail(&servers, &output, 6);
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut arrivals: HashMap<i32, Vec<Instant>> = HashMap::new();
            while !stop.load(Ordering::Acquire) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(20)) {
                    arrivals.entry(m.partition()).or_default().push(Instant::now());
                }
            }
            arrivals
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let joined = Instant::now();

    let c = start(topology(), config(&app, &cluster, dirs[2].path(), protocol));
    let second = random_lines(2_000, 300, 2);
    produce(&second);
    wait_caught_up(&cluster, &app, &topics, &[&a, &b, &c]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while tasks(&c) == 0 || tasks(&a) + tasks(&b) + tasks(&c) != 12 {
        assert!(Instant::now() < deadline, "tasks {} + {} + {}", tasks(&a), tasks(&b), tasks(&c));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Release);
    let during = producer.join().unwrap();
    let arrivals = watcher.join().unwrap();
    wait_caught_up(&cluster, &app, &topics, &[&a, &b, &c]);
    // Partitions that stayed with their instance, and the longest gap in their output since
    // just before the third instance started.
    let owners_after: Vec<Vec<i32>> = [&a, &b].iter().map(|s| owned(s, &repartition)).collect();
    let staying: Vec<i32> = (0..6).filter(|p| (0..2).any(|i| owners_before[i].contains(p) && owners_after[i].contains(p))).collect();
    let longest = staying
        .iter()
        .filter_map(|p| arrivals.get(p))
        .flat_map(|times| {
            let since: Vec<Instant> = times.iter().copied().filter(|t| *t >= joined).collect();
            let first = since.first().map(|t| t.duration_since(joined));
            since.windows(2).map(|w| w[1] - w[0]).chain(first).collect::<Vec<_>>()
        })
        .max()
        .unwrap_or_default();
    eprintln!("{protocol}: partitions {staying:?} stayed with their instance; their output paused at most {longest:?} during the scale-out");
    let closed: Vec<(usize, f64)> = [&a, &b]
        .iter()
        .zip(&before)
        .map(|(s, (held, closed_before))| (*held, thread_total(s, "task-closed-total") - closed_before))
        .collect();
    for mut s in [a, b, c] {
        assert!(s.close(Duration::from_secs(60)));
    }
    let all: Vec<String> = first.iter().chain(&second).chain(&during).cloned().collect();
    let counts = common::final_counts(&cluster.bootstrap_servers(), &output);
    assert_eq!(counts, truth(&all), "exact counts after the rebalance ({protocol})");
    (closed, longest)
}

#[test]
fn the_consumer_protocol_closes_only_the_tasks_that_move() {
    if !Cluster::new().runs_several_members() {
        return;
    }
    let (classic, classic_pause) = scale_out("classic");
    eprintln!("classic protocol: (tasks held, tasks closed by the scale-out) per instance: {classic:?}; longest pause of a staying partition {classic_pause:?}");
    for (held, closed) in &classic {
        assert!(*closed >= *held as f64, "eager: every task closes ({held} held, {closed} closed)");
    }
    let (consumer, consumer_pause) = scale_out("consumer");
    eprintln!("consumer protocol: (tasks held, tasks closed by the scale-out) per instance: {consumer:?}; longest pause of a staying partition {consumer_pause:?}");
    let (held, closed): (usize, f64) = consumer.iter().fold((0, 0.0), |(h, c), (held, closed)| (h + held, c + closed));
    assert!(closed < held as f64, "incremental: tasks that stay are not closed ({closed} of {held} closed)");
    assert!(closed > 0.0, "the new instance took tasks from the others");
}

/// With a small task buffer over a backlog, input partitions wait in queues of their own and are
/// given back to the consumer's once caught up; an eager rebalance then stops and restarts every
/// partition's fetch (librdkafka drops the forwarding of those given back), and those that stay
/// with the instance must go on.
#[test]
fn partitions_held_for_a_full_buffer_go_on_after_an_eager_rebalance() {
    let cluster = Cluster::new();
    if !cluster.runs_several_members() {
        return;
    }
    let (input, output, app) = (unique("held-in"), unique("held-out"), unique("held"));
    cluster.create_topic(&input, 4);
    cluster.create_topic(&output, 4);
    let produce = |lines: &[String]| {
        test_utils::produce(&cluster.bootstrap_servers(), &input, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())))).unwrap();
    };
    let topology = || word_count_between(&input, &output, Materialized::as_("counts"));
    let config = |dir: &std::path::Path| config(&app, &cluster, dir, "classic").with(StreamsConfig::BUFFERED_RECORDS_PER_PARTITION, "5");
    let repartition = format!("{app}-counts-repartition");
    let topics = [input.as_str(), repartition.as_str()];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = random_lines(5_000, 300, 1);
    produce(&first);
    let a = start(topology(), config(dir_a.path()));
    wait_caught_up(&cluster, &app, &topics, &[&a]);
    let b = start(topology(), config(dir_b.path()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while tasks(&a) == 0 || tasks(&b) == 0 || tasks(&a) + tasks(&b) != 8 {
        assert!(Instant::now() < deadline, "tasks {} + {}", tasks(&a), tasks(&b));
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = random_lines(2_000, 300, 2);
    produce(&second);
    wait_caught_up(&cluster, &app, &topics, &[&a, &b]);
    for mut s in [a, b] {
        assert!(s.close(Duration::from_secs(60)));
    }
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(common::final_counts(&cluster.bootstrap_servers(), &output), truth(&all));
}

#[test]
fn co_partitioned_joins_stay_correct_under_the_consumer_protocol() {
    let cluster = Cluster::new();
    if !cluster.runs_several_members() {
        return;
    }
    let (orders, customers, output, app) = (unique("cp-orders"), unique("cp-customers"), unique("cp-out"), unique("cp-app"));
    for topic in [&orders, &customers, &output] {
        cluster.create_topic(topic, 6);
    }
    let topology = || {
        let builder = StreamsBuilder::new();
        let customers = builder.table::<String, String>(&customers, Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("customers"));
        builder
            .stream::<String, String>(&orders, Consumed::with(Serdes::string(), Serdes::string()))
            .join_table(&customers, |order, customer| format!("{order}@{customer}"))
            .to(&output, Produced::with(Serdes::string(), Serdes::string()));
        builder.build().unwrap()
    };
    let servers = cluster.bootstrap_servers();
    let keys: Vec<String> = (0..300).map(|i| format!("c{i}")).collect();
    test_utils::produce(&servers, &customers, keys.iter().map(|k| (Some(k.clone().into_bytes()), Some(format!("name-{k}").into_bytes())))).unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let instances: Vec<KafkaStreams> = dirs.iter().map(|d| start(topology(), config(&app, &cluster, d.path(), "consumer"))).collect();
    let refs: Vec<&KafkaStreams> = instances.iter().collect();
    wait_caught_up(&cluster, &app, &[&customers], &refs);
    // Every instance holds tasks; each task holds both inputs of its partition.
    let deadline = Instant::now() + Duration::from_secs(60);
    while refs.iter().any(|s| tasks(s) == 0) {
        assert!(Instant::now() < deadline, "tasks {:?}", refs.iter().map(|s| tasks(s)).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(200));
    }
    test_utils::produce(&servers, &orders, keys.iter().map(|k| (Some(k.clone().into_bytes()), Some(format!("order-{k}").into_bytes())))).unwrap();
    wait_caught_up(&cluster, &app, &[&customers, &orders], &refs);
    for mut s in instances {
        assert!(s.close(Duration::from_secs(60)));
    }
    let joined: HashMap<String, String> = test_utils::read_all(&servers, &output, Duration::from_millis(500))
        .unwrap()
        .into_iter()
        .map(|r| (String::from_utf8(r.key.unwrap()).unwrap(), String::from_utf8(r.value.unwrap()).unwrap()))
        .collect();
    assert_eq!(joined.len(), keys.len(), "every order joined its customer");
    for k in &keys {
        assert_eq!(joined[k], format!("order-{k}@name-{k}"));
    }
}

#[test]
fn instance_metadata_follows_the_group_under_either_protocol() {
    let cluster = Cluster::new();
    if !cluster.runs_several_members() {
        return;
    }
    for protocol in ["classic", "consumer"] {
        let (input, output, app) = (unique("md-in"), unique("md-out"), unique(&format!("md-{protocol}")));
        cluster.create_topic(&input, 4);
        cluster.create_topic(&output, 4);
        let topology = || word_count_between(&input, &output, Materialized::as_("counts"));
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let instances: Vec<KafkaStreams> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| start(topology(), config(&app, &cluster, d.path(), protocol).with(StreamsConfig::APPLICATION_SERVER, format!("host-{i}:80"))))
            .collect();
        // Both instances start at once and create the repartition topic as they start, so a
        // first stable generation may assign only the input topic (the group learns of the new
        // topic a metadata refresh later) and the next one the rest: the view must converge to
        // every partition of both sub-topologies with one owner, each instance hosting a share
        // of the counts (range assignment of 4 partitions over 2 members).
        let complete = |all: &[StreamsMetadata]| {
            let owned: Vec<&(String, i32)> = all.iter().flat_map(|m| &m.topic_partitions).collect();
            let unique: HashSet<&&(String, i32)> = owned.iter().collect();
            all.len() == 2
                && owned.len() == 8
                && unique.len() == 8
                && owned.iter().filter(|(t, _)| *t == input).count() == 4
                && all.iter().all(|m| m.state_store_names.contains("counts"))
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        let all = loop {
            match instances[0].metadata_for_all_streams_clients() {
                Ok(all) if complete(&all) => break all,
                Ok(all) => last = Some(all),
                Err(e) => assert!(e.is_retriable(), "{protocol}: {e}"),
            }
            assert!(Instant::now() < deadline, "{protocol}: the metadata never covered both sub-topologies: {last:?}");
            std::thread::sleep(Duration::from_millis(200));
        };
        // Each instance describes the group on its own schedule: the second may still have the
        // previous generation's view, which is a retriable answer, as a caller would treat it.
        let owner = retrying(|| instances[1].query_metadata_for_key("counts", &"kafka".to_string(), &Serdes::string()));
        assert!(all.iter().any(|m| m.host_info == owner.active_host));
        for mut s in instances {
            assert!(s.close(Duration::from_secs(60)));
        }
    }
}

#[test]
fn a_long_restore_runs_on_the_state_updater_while_the_other_tasks_process_and_the_member_stays() {
    let cluster = Cluster::new();
    if !cluster.runs_on_a_real_broker("needs a broker that enforces group session timeouts") {
        return;
    }
    let servers = cluster.bootstrap_servers();
    let (big, small, out, app) = (unique("lr-big"), unique("lr-small"), unique("lr-out"), unique("lr-app"));
    for topic in [&big, &small, &out] {
        cluster.create_topic(topic, 1);
    }
    let processed_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let topology = || {
        let builder = StreamsBuilder::new();
        builder.table::<String, String>(&big, Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("big"));
        let seen = processed_at.clone();
        builder
            .stream::<String, String>(&small, Consumed::with(Serdes::string(), Serdes::string()))
            .peek(move |_, _| seen.lock().unwrap().push(Instant::now()))
            .to(&out, Produced::with(Serdes::string(), Serdes::string()));
        builder.build().unwrap()
    };
    let n = 5_000_000;
    test_utils::produce(&servers, &big, (0..n).map(|i| (Some(format!("k{i:07}").into_bytes()), Some(vec![b'v'; 20])))).unwrap();
    let first = tempfile::tempdir().unwrap();
    let mut one = start(topology(), config(&app, &cluster, first.path(), "classic"));
    wait_caught_up(&cluster, &app, &[&big], &[&one]);
    assert!(one.close(Duration::from_secs(60)));

    // A fresh state directory restores the whole changelog; the restore consumer fetches 64 KB
    // at a time and buffers no more, so that the restore surely outlasts max.poll.interval.ms.
    let poll_interval = Duration::from_secs(6);
    let second = tempfile::tempdir().unwrap();
    let config = config(&app, &cluster, second.path(), "classic")
        .with("consumer.session.timeout.ms", "6000")
        .with("consumer.heartbeat.interval.ms", "1000")
        .with("consumer.max.poll.interval.ms", poll_interval.as_millis().to_string())
        .with("restore.consumer.max.partition.fetch.bytes", "65536")
        .with("restore.consumer.queued.max.messages.kbytes", "64");
    let restored: Arc<Mutex<Vec<(Instant, streams::RestoreEvent)>>> = Arc::default();
    let mut two = KafkaStreams::new(topology(), config).unwrap();
    let sink = restored.clone();
    two.set_restore_listener(move |e| sink.lock().unwrap().push((Instant::now(), e.clone())));
    let started = Instant::now();
    two.start().unwrap();
    // Input for the other task keeps arriving while the big store restores.
    let producing = {
        let (servers, small) = (servers.clone(), small.clone());
        let restored = restored.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while restored.lock().unwrap().is_empty() && started.elapsed() < Duration::from_secs(120) {
                test_utils::produce(&servers, &small, [(Some(format!("s{i}").into_bytes()), Some(b"x".to_vec()))]).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            i
        })
    };
    let sent = producing.join().unwrap();
    assert_eq!(two.wait_until_running(Duration::from_secs(60)), State::Running, "{:?}", two.take_error());
    let (restored_at, event) = restored.lock().unwrap()[0].clone();
    let restore_time = restored_at - started;
    assert_eq!(event.restored, n as u64, "the whole changelog");
    let during = processed_at.lock().unwrap().iter().filter(|t| **t < restored_at).count();
    eprintln!(
        "restored {} records in {:.1} s (max.poll.interval.ms {} s); {during} of {sent} records of the other task processed meanwhile",
        event.restored,
        restore_time.as_secs_f64(),
        poll_interval.as_secs()
    );
    assert!(restore_time > poll_interval, "the restore outlasts max.poll.interval.ms ({restore_time:?})");
    assert!(during >= 10, "the other task kept processing during the restore: {during}");
    // Still the first member: no task was closed and re-created by a rebalance.
    assert_eq!(thread_total(&two, "task-created-total"), 2.0, "each task created once");
    assert_eq!(thread_total(&two, "task-closed-total"), 0.0);
    assert_eq!(restored.lock().unwrap().len(), 1, "restored once");
    // By the state updater thread, not the stream thread, and counted for the stream thread too.
    let by_updater = two.metrics().sum("stream-state-updater-metrics", "restore-records-total");
    assert_eq!(by_updater, n as f64, "the state updater restored the changelog");
    assert_eq!(thread_total(&two, "restore-total"), n as f64);
    assert!(two.close(Duration::from_secs(60)));
}

#[test]
fn a_restore_cut_short_by_close_keeps_what_it_restored() {
    let cluster = Cluster::new();
    if !cluster.runs_on_a_real_broker("restores a changelog large enough to interrupt") {
        return;
    }
    let servers = cluster.bootstrap_servers();
    let (big, app) = (unique("cut-big"), unique("cut-app"));
    cluster.create_topic(&big, 1);
    let topology = || {
        let builder = StreamsBuilder::new();
        builder.table::<String, String>(&big, Consumed::with(Serdes::string(), Serdes::string()), Materialized::as_("big"));
        builder.build().unwrap()
    };
    let n: u64 = 400_000;
    test_utils::produce(&servers, &big, (0..n).map(|i| (Some(format!("k{i:07}").into_bytes()), Some(vec![b'v'; 20])))).unwrap();
    let first = tempfile::tempdir().unwrap();
    let mut one = start(topology(), config(&app, &cluster, first.path(), "classic"));
    wait_caught_up(&cluster, &app, &[&big], &[&one]);
    assert!(one.close(Duration::from_secs(60)));

    // A fresh state directory restores slowly (small fetches, nothing buffered); close it
    // part-way.
    let second = tempfile::tempdir().unwrap();
    let slow = || {
        config(&app, &cluster, second.path(), "classic")
            .with("restore.consumer.max.partition.fetch.bytes", "16384")
            .with("restore.consumer.queued.max.messages.kbytes", "16")
    };
    let mut two = KafkaStreams::new(topology(), slow()).unwrap();
    two.start().unwrap();
    let started = Instant::now();
    let restored = |s: &KafkaStreams| s.metrics().sum("stream-state-updater-metrics", "restore-records-total") as u64;
    while restored(&two) < 20_000 {
        assert!(started.elapsed() < Duration::from_secs(120), "the restore never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(two.close(Duration::from_secs(60)));
    let before = restored(&two);
    assert!(before < n, "closed before the end: {before} of {n}");

    // Started again on that directory, it restores only the rest.
    let events: Arc<Mutex<Vec<streams::RestoreEvent>>> = Arc::default();
    let mut three = KafkaStreams::new(topology(), config(&app, &cluster, second.path(), "classic")).unwrap();
    let sink = events.clone();
    three.set_restore_listener(move |e| sink.lock().unwrap().push(e.clone()));
    three.start().unwrap();
    assert_eq!(three.wait_until_running(Duration::from_secs(120)), State::Running, "{:?}", three.take_error());
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let start = events[0].start_offset.expect("from the checkpoint the interrupted restore wrote") as u64;
    eprintln!("interrupted after {before} records; the next start restored {} from offset {start}", events[0].restored);
    assert!(start >= before, "the checkpoint covers what was restored: {start} < {before}");
    assert_eq!(start + events[0].restored, n, "the rest, and only the rest");
    let store = three.store(streams::query::StoreQueryParameters::from_name_and_type("big", streams::query::QueryableStoreTypes::key_value::<String, String>())).unwrap();
    for key in ["k0000000", "k0200000", "k0399999"] {
        assert_eq!(store.get(&key.to_string()).unwrap(), Some("v".repeat(20)), "{key}");
    }
    assert!(three.close(Duration::from_secs(60)));
}

#[test]
fn standbys_are_placed_on_the_other_instance_kept_warm_and_queryable() {
    use streams::query::{QueryableStoreTypes, StoreQueryParameters};
    let cluster = Cluster::new();
    if !cluster.runs_several_members() {
        return;
    }
    let (input, output, app) = (unique("sb-in"), unique("sb-out"), unique("sb-app"));
    cluster.create_topic(&input, 4);
    cluster.create_topic(&output, 4);
    let lines = random_lines(3_000, 500, 5);
    let truth: HashMap<String, i64> = truth(&lines).into_iter().collect();
    test_utils::produce(&cluster.bootstrap_servers(), &input, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())))).unwrap();
    let topology = || word_count_between(&input, &output, Materialized::as_("counts"));
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let instances: Vec<KafkaStreams> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let config = config(&app, &cluster, d.path(), "classic")
                .with(StreamsConfig::APPLICATION_SERVER, format!("host-{i}:80"))
                .with(StreamsConfig::NUM_STANDBY_REPLICAS, "1");
            start(topology(), config)
        })
        .collect();
    let refs: Vec<&KafkaStreams> = instances.iter().collect();
    let repartition = format!("{app}-counts-repartition");
    wait_caught_up(&cluster, &app, &[&input, &repartition], &refs);
    // Each instance keeps a standby of every count task the other one runs, caught up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let standby_tasks: Vec<f64> = refs.iter().map(|s| thread_total(s, "standby-updating-tasks")).collect();
        // (standby changelog partitions, their summed lag)
        let (lagging, lag): (usize, f64) = refs
            .iter()
            .map(|s| {
                let m = s.metrics();
                let rows: Vec<f64> = m
                    .find("consumer-fetch-manager-metrics", "records-lag")
                    .filter(|m| m.name.tags.get("topic").is_some_and(|t| t.ends_with("-changelog")))
                    .map(|m| m.value)
                    .collect();
                (rows.len(), rows.iter().sum::<f64>())
            })
            .fold((0, 0.0), |(n, l), (rows, lag)| (n + rows, l + lag));
        let active: Vec<usize> = refs.iter().map(|s| owned(s, &repartition).len()).collect();
        let settled = active.iter().all(|n| *n > 0) && active.iter().sum::<usize>() == 4;
        if settled && standby_tasks.iter().zip(&active).all(|(s, a)| *s as usize == 4 - a) && lagging == 4 && lag == 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "standbys {standby_tasks:?}, active {active:?}, lag {lag}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // (The first instance ran every task before the second joined: its standbys start from its own checkpoints.)
    assert!(refs.iter().any(|s| thread_total(s, "update-total") > 0.0), "standbys applied changelog records");

    // Instance metadata names the standbys: each instance's standby partitions are the other's active ones.
    let all = retrying(|| instances[0].metadata_for_all_streams_clients());
    assert_eq!(all.len(), 2);
    for (me, other) in [(&all[0], &all[1]), (&all[1], &all[0])] {
        let actives: std::collections::BTreeSet<_> = other.topic_partitions.iter().filter(|(t, _)| *t == repartition).collect();
        let standbys: std::collections::BTreeSet<_> = me.standby_topic_partitions.iter().filter(|(t, _)| *t == repartition).collect();
        assert_eq!(standbys, actives, "{} keeps standbys of {}'s tasks", me.host_info, other.host_info);
        assert!(me.standby_state_store_names.contains("counts"));
    }
    // And every word reads the same from its active task and, stale, from its standby.
    let serde = Serdes::string();
    for (word, expected) in truth.iter().take(200) {
        let meta = instances[0].query_metadata_for_key("counts", word, &serde).unwrap();
        assert_eq!(meta.standby_hosts.len(), 1, "{word}: {meta:?}");
        assert_ne!(meta.standby_hosts[0], meta.active_host);
        let on = |host: &streams::query::HostInfo| &instances[all.iter().position(|m| &m.host_info == host).unwrap()];
        let params = || StoreQueryParameters::from_name_and_type("counts", QueryableStoreTypes::key_value::<String, i64>()).with_partition(meta.partition);
        let active = on(&meta.active_host).store(params()).unwrap().get(word).unwrap();
        let standby = on(&meta.standby_hosts[0]).store(params().enable_stale_stores()).unwrap().get(word).unwrap();
        assert_eq!(active, Some(*expected), "{word} on its active task");
        assert_eq!(standby, Some(*expected), "{word} on its standby");
        let not_stale = on(&meta.standby_hosts[0]).store(params()).and_then(|s| s.get(word));
        assert!(not_stale.is_err_and(|e| e.is_retriable()), "{word}: a standby serves only stale reads");
    }
    for mut s in instances {
        assert!(s.close(Duration::from_secs(60)));
    }
}

/// `f`'s answer once it is not a retriable error (each instance describes the group on its own
/// schedule, so one may still hold the previous generation's view), within 30 s.
fn retrying<T>(f: impl Fn() -> streams::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Ok(t) => return t,
            Err(e) => assert!(e.is_retriable() && Instant::now() < deadline, "{e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

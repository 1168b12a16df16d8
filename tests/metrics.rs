//! Metrics of a running application: Kafka Streams' names, the levels that add them, and the
//! Prometheus rendering a scraper reads. Runs against `STREAMS_BOOTSTRAP_SERVERS` if set, else
//! an embedded broker.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::kafka::{unique, Cluster};
use streams::prelude::*;
use streams::topologies::{random_lines, word_count_between};
use streams::{test_utils, KafkaStreams, State};

fn samples(text: &str) -> Vec<prometheus_parse::Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format").samples
}

fn value(sample: &prometheus_parse::Sample) -> f64 {
    match sample.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("not a scalar: {sample:?}"),
    }
}

#[test]
fn a_running_app_reports_kafka_streams_metrics_in_prometheus_format() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let cluster = Cluster::new();
    let (input, output, app) = (unique("m-in"), unique("m-out"), unique("m-app"));
    let partitions = 2;
    cluster.create_topic(&input, partitions);
    cluster.create_topic(&output, partitions);
    let topology = word_count_between(&input, &output, Materialized::as_("counts"));
    cluster.prepare(&topology, &app, partitions);
    let dir = tempfile::tempdir().unwrap();
    let config = common::kafka::for_broker(StreamsConfig::new())
        .with(StreamsConfig::APPLICATION_ID, &app)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, cluster.bootstrap_servers())
        .with(StreamsConfig::STATE_DIR, dir.path().to_string_lossy())
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "500")
        .with(StreamsConfig::METRICS_RECORDING_LEVEL, "DEBUG");
    let mut streams = KafkaStreams::new(topology, config).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running, "{:?}", streams.take_error());

    // Input flows for a few seconds: the process rate is above zero meanwhile.
    let servers = cluster.bootstrap_servers();
    let producer = {
        let input = input.clone();
        std::thread::spawn(move || {
            for round in 0..8 {
                let lines = random_lines(500, 300, round + 1);
                test_utils::produce(&servers, &input, lines.iter().map(|l| (None, Some(l.as_bytes().to_vec())))).unwrap();
                std::thread::sleep(Duration::from_millis(400));
            }
        })
    };
    let mut highest_rate = 0f64;
    while !producer.is_finished() {
        highest_rate = highest_rate.max(streams.metrics().sum("stream-thread-metrics", "process-rate"));
        std::thread::sleep(Duration::from_millis(300));
    }
    producer.join().unwrap();
    assert!(highest_rate > 0.0, "process-rate while input flows");

    // Caught up: the consumer lag metric of every input partition comes down to zero.
    let deadline = Instant::now() + Duration::from_secs(120);
    let repartition = format!("{app}-counts-repartition");
    loop {
        let metrics = streams.metrics();
        let lags: Vec<f64> = metrics.find("consumer-fetch-manager-metrics", "records-lag").map(|m| m.value).collect();
        let caught_up = test_utils::group_lag(&cluster.bootstrap_servers(), &app, &[&input, &repartition]).unwrap() == 0;
        if caught_up && lags.len() == 2 * partitions as usize && lags.iter().all(|l| *l == 0.0) {
            break;
        }
        assert!(Instant::now() < deadline, "lag metrics {lags:?}, caught up: {caught_up}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // RocksDB properties are sampled every few seconds.
    std::thread::sleep(Duration::from_secs(6));

    let snapshot = streams.metrics();
    let processed = snapshot.sum("stream-thread-metrics", "process-total");
    assert!(processed >= 4_000.0 * 10.0, "each word goes through the repartition topic: {processed}");
    assert!(snapshot.sum("stream-thread-metrics", "commit-total") > 0.0);
    assert!(snapshot.sum("stream-thread-metrics", "poll-total") > 0.0);
    assert_eq!(snapshot.sum("stream-metrics", "alive-stream-threads"), 1.0);
    assert_eq!(snapshot.sum("stream-task-metrics", "process-total"), processed, "per-task counts at DEBUG add up");
    assert_eq!(snapshot.sum("stream-task-metrics", "dropped-records-total"), 0.0);
    let nodes: Vec<_> = snapshot.find("stream-processor-node-metrics", "process-total").collect();
    assert!(nodes.len() >= 4, "DEBUG: per processor node, per task: {nodes:?}");
    assert!(nodes.iter().any(|m| m.name.tags["processor-node-id"].starts_with("KSTREAM-SOURCE-") && m.value > 0.0), "{nodes:?}");
    let keys = snapshot.sum("stream-state-metrics", "estimate-num-keys");
    assert!(keys > 0.0, "RocksDB estimate-num-keys of the counts store");
    assert!(snapshot.find("stream-state-metrics", "put-latency-avg").count() >= 2, "DEBUG store latencies per task");
    let hit_ratio: Vec<f64> = snapshot.find("stream-record-cache-metrics", "hit-ratio-avg").map(|m| m.value).collect();
    assert!(!hit_ratio.is_empty() && hit_ratio.iter().all(|r| (0.0..=1.0).contains(r)), "{hit_ratio:?}");

    // The Prometheus text parses, and carries the same values.
    let text = snapshot.to_prometheus();
    let parsed = samples(&text);
    let by_name = |name: &str| parsed.iter().filter(|s| s.metric == name).collect::<Vec<_>>();
    let process: f64 = by_name("kafka_streams_stream_thread_metrics_process_total").iter().map(|s| value(s)).sum();
    assert_eq!(process, processed, "{text}");
    let lag = by_name("kafka_streams_consumer_fetch_manager_metrics_records_lag");
    assert_eq!(lag.len(), 2 * partitions as usize);
    let topics: HashMap<String, usize> = lag.iter().fold(HashMap::new(), |mut m, s| {
        *m.entry(s.labels.get("topic").unwrap().to_string()).or_default() += 1;
        m
    });
    assert_eq!(topics.get(&input), Some(&(partitions as usize)));
    assert!(!by_name("kafka_streams_stream_state_metrics_estimate_num_keys").is_empty());
    assert!(streams.close(Duration::from_secs(60)));
}

#[test]
fn the_info_level_leaves_out_the_debug_metrics() {
    let cluster = Cluster::new();
    let (input, output, app) = (unique("mi-in"), unique("mi-out"), unique("mi-app"));
    cluster.create_topic(&input, 1);
    cluster.create_topic(&output, 1);
    let topology = word_count_between(&input, &output, Materialized::as_("counts"));
    cluster.prepare(&topology, &app, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = common::kafka::for_broker(StreamsConfig::new())
        .with(StreamsConfig::APPLICATION_ID, &app)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, cluster.bootstrap_servers())
        .with(StreamsConfig::STATE_DIR, dir.path().to_string_lossy());
    let mut streams = KafkaStreams::new(topology, config).unwrap();
    streams.start().unwrap();
    assert_eq!(streams.wait_until_running(Duration::from_secs(60)), State::Running);
    let snapshot = streams.metrics();
    assert_eq!(snapshot.find("stream-task-metrics", "dropped-records-total").count(), 2, "INFO: two tasks");
    assert_eq!(snapshot.find("stream-task-metrics", "process-total").count(), 0, "DEBUG only");
    assert_eq!(snapshot.find("stream-state-metrics", "put-latency-avg").count(), 0, "DEBUG only");
    assert_eq!(snapshot.find("stream-processor-node-metrics", "process-total").count(), 0, "DEBUG only");
    assert!(StreamsConfig::new().with(StreamsConfig::METRICS_RECORDING_LEVEL, "LOUD").validate().is_err());
    assert!(streams.close(Duration::from_secs(60)));
}

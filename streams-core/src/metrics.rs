//! Metrics with Kafka Streams' names, groups and tags: a [`MetricsSnapshot`] from
//! [`KafkaStreams::metrics`](crate::KafkaStreams::metrics), in Prometheus text format through
//! [`MetricsSnapshot::to_prometheus`].
//!
//! | group | tags | metrics | level |
//! |---|---|---|---|
//! | `stream-metrics` | `client-id` | `alive-stream-threads`, `client-state` | INFO |
//! | `stream-thread-metrics` | `thread-id` | `process-`, `poll-`, `commit-`, `punctuate-` `rate`/`total`/`latency-avg`/`latency-max`; `restore-`, `update-` (standby), `task-created-`, `task-closed-` `rate`/`total`; `restore-remaining-records-total`, `standby-updating-tasks` | INFO |
//! | `stream-state-updater-metrics` | `thread-id` | `restore-records-rate`/`-total`, `active-restoring-tasks` | INFO |
//! | `stream-task-metrics` | `thread-id`, `task-id` | `dropped-records-rate`/`-total` | INFO |
//! | `stream-task-metrics` | `thread-id`, `task-id` | `process-rate`/`-total`, `enforced-processing-rate`/`-total`, `punctuate-rate`/`-total` | DEBUG |
//! | `stream-processor-node-metrics` | `thread-id`, `task-id`, `processor-node-id` | `process-rate`/`-total` | DEBUG |
//! | `stream-state-metrics` | `thread-id`, `task-id`, `<type>-state-id` | RocksDB properties: `cur-size-all-mem-tables`, `size-all-mem-tables`, `estimate-num-keys`, `block-cache-capacity`, `block-cache-usage`, `block-cache-pinned-usage`, `estimate-table-readers-mem`, `total-sst-files-size`, `live-sst-files-size`, `num-running-compactions`, `estimate-pending-compaction-bytes` | INFO |
//! | `stream-state-metrics` | as above | `get-`, `put-`, `range-`, `flush-` `rate`/`latency-avg`/`latency-max` | DEBUG |
//! | `stream-record-cache-metrics` | `thread-id`, `task-id`, `record-cache-id` | `hit-ratio-avg` | DEBUG |
//! | `consumer-fetch-manager-metrics` | `client-id`, `topic`, `partition` | `records-lag` (input partitions; standby changelogs under the standby consumer's client id) | INFO |
//!
//! Rates and latencies cover the last 30 seconds (Kafka Streams' default sample window);
//! latencies are in milliseconds, as Kafka Streams reports them. `metrics.recording.level =
//! DEBUG` adds the DEBUG rows (they cost a clock read per store operation).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::record::TaskId;
use crate::runtime::State;

/// How far back rates and latencies look.
const WINDOW: Duration = Duration::from_secs(30);

/// A metric's identity, as Kafka's `MetricName`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MetricName {
    /// The group (`stream-thread-metrics`, ...).
    pub group: String,
    /// The name (`process-rate`, ...).
    pub name: String,
    /// Tags (`thread-id`, `task-id`, ...).
    pub tags: BTreeMap<String, String>,
}

/// Whether a metric only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// A cumulative count (`-total`).
    Counter,
    /// A value that goes up and down (rates, latencies, sizes).
    Gauge,
}

/// One metric's value at snapshot time.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Identity.
    pub name: MetricName,
    /// Kind.
    pub kind: MetricKind,
    /// Value.
    pub value: f64,
    /// What it measures.
    pub description: &'static str,
}

/// Every metric of a client at one moment.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    metrics: Vec<Metric>,
}

impl MetricsSnapshot {
    /// The metrics, ordered by group, name and tags.
    pub fn iter(&self) -> impl Iterator<Item = &Metric> {
        self.metrics.iter()
    }

    /// The metrics of `group` named `name` (one per tag set).
    pub fn find<'a>(&'a self, group: &'a str, name: &'a str) -> impl Iterator<Item = &'a Metric> + 'a {
        self.metrics.iter().filter(move |m| m.name.group == group && m.name.name == name)
    }

    /// The sum of [`find`](Self::find) (a client-wide total of per-thread or per-task metrics);
    /// 0 when there are none (`f64`'s own `sum` of nothing is -0, which prints as "-0").
    pub fn sum(&self, group: &str, name: &str) -> f64 {
        self.find(group, name).fold(0.0, |total, m| total + m.value)
    }

    /// Prometheus text format: `kafka_streams_<group>_<name>` with `-` as `_`, tags as labels,
    /// counters with their `_total` suffix.
    pub fn to_prometheus(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(PrometheusCollector(self.metrics.clone())));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

#[derive(Debug)]
struct PrometheusCollector(Vec<Metric>);

impl prometheus_client::collector::Collector for PrometheusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut families: BTreeMap<String, Vec<&Metric>> = BTreeMap::new();
        for m in &self.0 {
            let name = match m.kind {
                MetricKind::Counter => m.name.name.strip_suffix("-total").unwrap_or(&m.name.name),
                MetricKind::Gauge => &m.name.name,
            };
            families.entry(format!("kafka_streams_{}_{}", m.name.group, name).replace(['-', '.'], "_")).or_default().push(m);
        }
        for (name, metrics) in families {
            let first = metrics[0];
            let kind = if first.kind == MetricKind::Counter { MetricType::Counter } else { MetricType::Gauge };
            let mut family = encoder.encode_descriptor(&name, first.description, None, kind)?;
            for m in metrics {
                let labels: Vec<(String, String)> =
                    m.name.tags.iter().map(|(k, v)| (k.replace(['-', '.'], "_"), v.clone())).collect();
                let metric = family.encode_family(&labels)?;
                match m.kind {
                    MetricKind::Counter => ConstCounter::new(m.value).encode(metric)?,
                    MetricKind::Gauge => ConstGauge::new(m.value).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts events and their latencies; rates and averages over [`WINDOW`] are computed when a
/// snapshot reads it. Recording is three relaxed atomics.
#[derive(Debug)]
pub(crate) struct Sensor {
    count: AtomicU64,
    latency_ns: AtomicU64,
    max_ns: AtomicU64,
    /// `(when, count, latency_ns, max_ns since the previous sample)`, taken by readers.
    samples: Mutex<VecDeque<(Instant, u64, u64, u64)>>,
}

impl Default for Sensor {
    fn default() -> Self {
        Sensor {
            count: AtomicU64::new(0),
            latency_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::from([(Instant::now(), 0, 0, 0)])),
        }
    }
}

/// What a sensor says at one moment.
struct Reading {
    total: u64,
    rate: f64,
    latency_avg_ms: f64,
    latency_max_ms: f64,
}

impl Sensor {
    /// `n` events that took `elapsed` in all.
    pub(crate) fn record(&self, n: u64, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.count.fetch_add(n, Ordering::Relaxed);
        self.latency_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns / n.max(1), Ordering::Relaxed);
    }

    /// `n` events, no latency.
    pub(crate) fn add(&self, n: u64) {
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// The count is `total` (mirrors a counter kept elsewhere).
    pub(crate) fn set_total(&self, total: u64) {
        self.count.store(total, Ordering::Relaxed);
    }

    fn read(&self) -> Reading {
        let now = Instant::now();
        let (count, latency) = (self.count.load(Ordering::Relaxed), self.latency_ns.load(Ordering::Relaxed));
        let max = self.max_ns.swap(0, Ordering::Relaxed);
        let mut samples = lock(&self.samples);
        // Frequent readers share a sample: at most one per second is kept.
        let shared = samples.len() > 1;
        match samples.back_mut() {
            Some(last) if shared && now.duration_since(last.0) < Duration::from_secs(1) => {
                *last = (last.0, count, latency, last.3.max(max));
            }
            _ => samples.push_back((now, count, latency, max)),
        }
        // Keep one sample at or before the window's start as the baseline.
        while samples.len() > 2 && now.duration_since(samples[1].0) >= WINDOW {
            samples.pop_front();
        }
        let (t0, c0, l0, _) = samples[0];
        let elapsed = now.duration_since(t0).as_secs_f64();
        let events = count.saturating_sub(c0);
        let window_max = samples.iter().skip(1).map(|s| s.3).max().unwrap_or(0);
        Reading {
            total: count,
            rate: if elapsed > 0.0 { events as f64 / elapsed } else { 0.0 },
            latency_avg_ms: if events > 0 { latency.saturating_sub(l0) as f64 / events as f64 / 1e6 } else { 0.0 },
            latency_max_ms: window_max as f64 / 1e6,
        }
    }
}

/// A stream thread's sensors.
#[derive(Debug, Default)]
pub(crate) struct ThreadMetrics {
    pub(crate) process: Sensor,
    pub(crate) poll: Sensor,
    pub(crate) commit: Sensor,
    pub(crate) punctuate: Sensor,
    pub(crate) restore: Sensor,
    pub(crate) restore_remaining: AtomicI64,
    pub(crate) task_created: Sensor,
    pub(crate) task_closed: Sensor,
    /// `records-lag` per input partition of the thread's consumer.
    pub(crate) lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// The consumer's client id.
    pub(crate) consumer_client_id: Mutex<String>,
    /// Changelog records applied to standby tasks.
    pub(crate) standby_update: Sensor,
    /// The thread's standby tasks.
    pub(crate) standby_tasks: AtomicI64,
    /// The standby consumer's client id, and `records-lag` per standby changelog partition.
    pub(crate) standby_lag: Mutex<(String, BTreeMap<(String, i32), i64>)>,
}

/// The state updater's sensors.
#[derive(Debug, Default)]
pub(crate) struct UpdaterMetrics {
    /// Changelog records the updater restored.
    pub(crate) restored: Arc<Sensor>,
    /// Tasks the updater is restoring or has queued.
    pub(crate) restoring_tasks: AtomicI64,
}

/// A task's sensors.
#[derive(Debug, Default)]
pub(crate) struct TaskSensors {
    pub(crate) process: Sensor,
    pub(crate) dropped: Sensor,
    pub(crate) enforced: Sensor,
    pub(crate) punctuate: Sensor,
    /// Records processed per processor node (DEBUG).
    pub(crate) nodes: Mutex<BTreeMap<String, Sensor>>,
}

/// A store's sensors: operation latencies and cache hits (DEBUG), RocksDB properties (INFO).
#[derive(Debug, Default)]
pub(crate) struct StoreSensors {
    pub(crate) get: Sensor,
    pub(crate) put: Sensor,
    pub(crate) range: Sensor,
    pub(crate) flush: Sensor,
    pub(crate) cache_hits: Sensor,
    pub(crate) cache_misses: Sensor,
    /// The latest RocksDB properties (`rocksdb.` removed), summed over the store's instances.
    pub(crate) properties: Mutex<Vec<(&'static str, u64)>>,
    /// Whether latencies are recorded (`metrics.recording.level = DEBUG`).
    pub(crate) debug: bool,
}

/// A store's identity in metrics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StoreKey {
    pub(crate) thread: String,
    pub(crate) task: TaskId,
    /// `rocksdb-state-id`, `in-memory-window-state-id`, ...
    pub(crate) scope: &'static str,
    pub(crate) name: String,
}

/// The RocksDB properties reported per store (`rocksdb.<name>`), as Kafka Streams' `RocksDBMetrics`.
pub(crate) const ROCKSDB_PROPERTIES: [&str; 11] = [
    "cur-size-all-mem-tables",
    "size-all-mem-tables",
    "estimate-num-keys",
    "block-cache-capacity",
    "block-cache-usage",
    "block-cache-pinned-usage",
    "estimate-table-readers-mem",
    "total-sst-files-size",
    "live-sst-files-size",
    "num-running-compactions",
    "estimate-pending-compaction-bytes",
];

/// Every sensor of a client, by owner; tasks and stores are added when created and removed
/// when closed.
#[derive(Debug)]
pub(crate) struct MetricsRegistry {
    client_id: String,
    debug: bool,
    threads: Mutex<BTreeMap<String, Arc<ThreadMetrics>>>,
    updater: Mutex<Option<(String, Arc<UpdaterMetrics>)>>,
    tasks: Mutex<BTreeMap<(String, TaskId), Arc<TaskSensors>>>,
    stores: Mutex<BTreeMap<StoreKey, Arc<StoreSensors>>>,
}

impl MetricsRegistry {
    pub(crate) fn new(client_id: String, debug: bool) -> Self {
        MetricsRegistry {
            client_id,
            debug,
            threads: Mutex::default(),
            updater: Mutex::default(),
            tasks: Mutex::default(),
            stores: Mutex::default(),
        }
    }

    /// Whether DEBUG metrics are recorded.
    pub(crate) fn debug(&self) -> bool {
        self.debug
    }

    /// A (re)started thread's sensors.
    pub(crate) fn thread(&self, name: &str) -> Arc<ThreadMetrics> {
        let sensors = Arc::new(ThreadMetrics::default());
        lock(&self.threads).insert(name.to_string(), sensors.clone());
        sensors
    }

    /// The state updater thread's sensors.
    pub(crate) fn state_updater(&self, name: &str) -> Arc<UpdaterMetrics> {
        let sensors = Arc::new(UpdaterMetrics::default());
        *lock(&self.updater) = Some((name.to_string(), sensors.clone()));
        sensors
    }

    pub(crate) fn remove_thread(&self, name: &str) {
        lock(&self.threads).remove(name);
        lock(&self.tasks).retain(|(t, _), _| t != name);
        lock(&self.stores).retain(|k, _| k.thread != name);
    }

    pub(crate) fn task(&self, thread: &str, task: TaskId) -> Arc<TaskSensors> {
        lock(&self.tasks).entry((thread.to_string(), task)).or_default().clone()
    }

    pub(crate) fn store(&self, key: StoreKey) -> Arc<StoreSensors> {
        let debug = self.debug;
        lock(&self.stores).entry(key).or_insert_with(|| Arc::new(StoreSensors { debug, ..Default::default() })).clone()
    }

    /// A task closed: its metrics and its stores' go.
    pub(crate) fn remove_task(&self, thread: &str, task: TaskId) {
        lock(&self.tasks).remove(&(thread.to_string(), task));
        lock(&self.stores).retain(|k, _| !(k.thread == thread && k.task == task));
    }

    /// Every metric now; `client_state` and `alive_threads` are the client-level ones.
    pub(crate) fn snapshot(&self, client_state: State, alive_threads: usize) -> MetricsSnapshot {
        let mut out = Vec::new();
        let mut push = |group: &str, name: &str, tags: &[(&str, &str)], kind: MetricKind, value: f64, description: &'static str| {
            out.push(Metric {
                name: MetricName {
                    group: group.to_string(),
                    name: name.to_string(),
                    tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                },
                kind,
                value,
                description,
            })
        };
        let client = [("client-id", self.client_id.as_str())];
        push("stream-metrics", "alive-stream-threads", &client, MetricKind::Gauge, alive_threads as f64, "Stream threads running.");
        let state_code = match client_state {
            State::Created => 0,
            State::Rebalancing => 1,
            State::Running => 2,
            State::PendingShutdown => 3,
            State::NotRunning => 4,
            State::PendingError => 5,
            State::Error => 6,
        };
        push(
            "stream-metrics",
            "client-state",
            &client,
            MetricKind::Gauge,
            state_code as f64,
            "The client state: 0 created, 1 rebalancing, 2 running, 3 pending shutdown, 4 not running, 5 pending error, 6 error.",
        );

        let with_latency = |push: &mut dyn FnMut(&str, MetricKind, f64, &'static str), prefix: &str, s: &Sensor, what: &'static str| {
            let r = s.read();
            push(&format!("{prefix}-total"), MetricKind::Counter, r.total as f64, what);
            push(&format!("{prefix}-rate"), MetricKind::Gauge, r.rate, what);
            push(&format!("{prefix}-latency-avg"), MetricKind::Gauge, r.latency_avg_ms, what);
            push(&format!("{prefix}-latency-max"), MetricKind::Gauge, r.latency_max_ms, what);
        };
        let counted = |push: &mut dyn FnMut(&str, MetricKind, f64, &'static str), prefix: &str, s: &Sensor, what: &'static str| {
            let r = s.read();
            push(&format!("{prefix}-total"), MetricKind::Counter, r.total as f64, what);
            push(&format!("{prefix}-rate"), MetricKind::Gauge, r.rate, what);
        };

        for (thread, m) in lock(&self.threads).iter() {
            let tags = [("thread-id", thread.as_str())];
            let mut p = |name: &str, kind, value, what| push("stream-thread-metrics", name, &tags, kind, value, what);
            with_latency(&mut p, "process", &m.process, "Records processed by the thread (latency per record, ms).");
            with_latency(&mut p, "poll", &m.poll, "Consumer polls of the thread (latency per poll, ms).");
            with_latency(&mut p, "commit", &m.commit, "Commits of the thread (latency per commit, ms).");
            with_latency(&mut p, "punctuate", &m.punctuate, "Punctuations of the thread's tasks (latency per punctuation, ms).");
            counted(&mut p, "restore", &m.restore, "Changelog records restored into the thread's stores.");
            counted(&mut p, "task-created", &m.task_created, "Tasks the thread created (assigned).");
            counted(&mut p, "task-closed", &m.task_closed, "Tasks the thread closed (revoked, or on shutdown).");
            p(
                "restore-remaining-records-total",
                MetricKind::Gauge,
                m.restore_remaining.load(Ordering::Relaxed) as f64,
                "Changelog records the thread's restoring tasks have still to restore.",
            );
            counted(&mut p, "update", &m.standby_update, "Changelog records applied to the thread's standby tasks.");
            p(
                "standby-updating-tasks",
                MetricKind::Gauge,
                m.standby_tasks.load(Ordering::Relaxed) as f64,
                "Standby tasks the thread keeps up to date.",
            );
            let client_id = lock(&m.consumer_client_id).clone();
            let standby = lock(&m.standby_lag);
            let standby_lag = standby.1.iter().map(|tp_lag| (standby.0.as_str(), tp_lag));
            for (client_id, ((topic, partition), lag)) in lock(&m.lag).iter().map(|tp_lag| (client_id.as_str(), tp_lag)).chain(standby_lag) {
                let partition = partition.to_string();
                let tags = [("client-id", client_id), ("topic", topic.as_str()), ("partition", partition.as_str())];
                push(
                    "consumer-fetch-manager-metrics",
                    "records-lag",
                    &tags,
                    MetricKind::Gauge,
                    *lag as f64,
                    "Records in the partition after the consumer's position (librdkafka statistics).",
                );
            }
        }

        if let Some((thread, m)) = lock(&self.updater).as_ref() {
            let tags = [("thread-id", thread.as_str())];
            let mut p = |name: &str, kind, value, what| push("stream-state-updater-metrics", name, &tags, kind, value, what);
            counted(&mut p, "restore-records", &m.restored, "Changelog records the state updater restored.");
            p(
                "active-restoring-tasks",
                MetricKind::Gauge,
                m.restoring_tasks.load(Ordering::Relaxed) as f64,
                "Active tasks the state updater is restoring.",
            );
        }

        for ((thread, task), m) in lock(&self.tasks).iter() {
            let task = task.to_string();
            let tags = [("thread-id", thread.as_str()), ("task-id", task.as_str())];
            let mut p = |name: &str, kind, value, what| push("stream-task-metrics", name, &tags, kind, value, what);
            counted(&mut p, "dropped-records", &m.dropped, "Records the task dropped (undeserializable, null keys, bad timestamps).");
            if self.debug {
                counted(&mut p, "process", &m.process, "Records the task processed.");
                counted(&mut p, "enforced-processing", &m.enforced, "Records processed while an input partition was empty (max.task.idle.ms).");
                counted(&mut p, "punctuate", &m.punctuate, "Punctuations of the task.");
                for (node, sensor) in lock(&m.nodes).iter() {
                    let tags = [("thread-id", thread.as_str()), ("task-id", task.as_str()), ("processor-node-id", node.as_str())];
                    let mut p = |name: &str, kind, value, what| push("stream-processor-node-metrics", name, &tags, kind, value, what);
                    counted(&mut p, "process", sensor, "Records the processor node processed.");
                }
            }
        }

        for (key, m) in lock(&self.stores).iter() {
            let task = key.task.to_string();
            let tags = [("thread-id", key.thread.as_str()), ("task-id", task.as_str()), (key.scope, key.name.as_str())];
            let mut p = |name: &str, kind, value, what| push("stream-state-metrics", name, &tags, kind, value, what);
            for (property, value) in lock(&m.properties).iter() {
                p(property, MetricKind::Gauge, *value as f64, "A RocksDB property of the store (summed over its segments).");
            }
            if self.debug {
                for (op, sensor) in [("get", &m.get), ("put", &m.put), ("range", &m.range), ("flush", &m.flush)] {
                    let r = sensor.read();
                    p(&format!("{op}-rate"), MetricKind::Gauge, r.rate, "Store operations per second.");
                    p(&format!("{op}-latency-avg"), MetricKind::Gauge, r.latency_avg_ms, "Store operation latency (ms).");
                    p(&format!("{op}-latency-max"), MetricKind::Gauge, r.latency_max_ms, "Store operation latency (ms).");
                }
                let (hits, misses) = (m.cache_hits.read(), m.cache_misses.read());
                if hits.total + misses.total > 0 {
                    let window = hits.rate + misses.rate;
                    let ratio = if window > 0.0 { hits.rate / window } else { hits.total as f64 / (hits.total + misses.total) as f64 };
                    let tags = [("thread-id", key.thread.as_str()), ("task-id", task.as_str()), ("record-cache-id", key.name.as_str())];
                    push("stream-record-cache-metrics", "hit-ratio-avg", &tags, MetricKind::Gauge, ratio, "Share of cache reads that hit.");
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        MetricsSnapshot { metrics: out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensors_give_totals_rates_and_latencies() {
        let sensor = Sensor::default();
        sensor.record(4, Duration::from_millis(8));
        sensor.record(1, Duration::from_millis(6));
        std::thread::sleep(Duration::from_millis(20));
        let r = sensor.read();
        assert_eq!(r.total, 5);
        assert!(r.rate > 0.0 && r.rate < 5.0 / 0.02 + 1.0, "{}", r.rate);
        assert!((r.latency_avg_ms - 14.0 / 5.0).abs() < 1e-9);
        assert!((r.latency_max_ms - 6.0).abs() < 1e-9, "the slowest event: {}", r.latency_max_ms);
        let again = sensor.read();
        assert_eq!(again.total, 5);
        assert_eq!(again.latency_max_ms, 6.0, "the window still holds it");
    }

    #[test]
    fn snapshots_render_as_prometheus_text() {
        let registry = MetricsRegistry::new("app-1".into(), true);
        let thread = registry.thread("app-1-StreamThread-1");
        thread.process.record(10, Duration::from_millis(1));
        thread.lag.lock().unwrap().insert(("in".into(), 0), 3);
        registry.task("app-1-StreamThread-1", TaskId::new(0, 0)).dropped.add(2);
        let store = registry.store(StoreKey { thread: "app-1-StreamThread-1".into(), task: TaskId::new(0, 0), scope: "rocksdb-state-id", name: "counts".into() });
        store.properties.lock().unwrap().push(("estimate-num-keys", 7));
        let snapshot = registry.snapshot(State::Running, 1);
        assert_eq!(snapshot.sum("stream-thread-metrics", "process-total"), 10.0);
        assert_eq!(snapshot.sum("stream-task-metrics", "dropped-records-total"), 2.0);
        assert_eq!(snapshot.sum("stream-metrics", "client-state"), 2.0);
        let text = snapshot.to_prometheus();
        assert!(text.contains("# TYPE kafka_streams_stream_thread_metrics_process counter"), "{text}");
        assert!(text.contains("kafka_streams_stream_thread_metrics_process_total{thread_id=\"app-1-StreamThread-1\"} 10"), "{text}");
        assert!(text.contains("kafka_streams_consumer_fetch_manager_metrics_records_lag{client_id=\"\",partition=\"0\",topic=\"in\"} 3.0"), "{text}");
        assert!(text.contains("kafka_streams_stream_state_metrics_estimate_num_keys{rocksdb_state_id=\"counts\",task_id=\"0_0\",thread_id=\"app-1-StreamThread-1\"} 7.0"), "{text}");
        assert_eq!(snapshot.find("stream-state-updater-metrics", "restore-records-total").count(), 0, "no updater yet");
        let none = snapshot.sum("stream-state-updater-metrics", "restore-records-total");
        assert!(none == 0.0 && none.is_sign_positive(), "a sum of nothing prints as 0, not -0: {none}");
        let updater = registry.state_updater("app-1-StateUpdater-1");
        updater.restored.add(5);
        updater.restoring_tasks.store(2, Ordering::Relaxed);
        let snapshot = registry.snapshot(State::Running, 1);
        assert_eq!(snapshot.sum("stream-state-updater-metrics", "restore-records-total"), 5.0);
        assert_eq!(snapshot.sum("stream-state-updater-metrics", "active-restoring-tasks"), 2.0);
        registry.remove_task("app-1-StreamThread-1", TaskId::new(0, 0));
        assert_eq!(registry.snapshot(State::Running, 1).find("stream-state-metrics", "estimate-num-keys").count(), 0);
    }
}

//! `StreamThread`: one consumer (a group member) and one producer, running its tasks in a
//! loop of poll -> restore -> process -> punctuate -> commit.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, RebalanceProtocol};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::statistics::Statistics;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, TopicPartitionList};
use tracing::{error, info, warn};

use super::changelog_reader::{is_transient, ChangelogReader};
use super::input_queues::InputQueues;
use super::native;
use super::offset_reset::OffsetResets;
use super::query::QUERY_POLL_SLICE;
use super::collector::KafkaRecordCollector;
use super::state_directory::StateDirectory;
use super::standby::StandbyTasks;
use super::task_manager::{partitions_of, StandbyRole, TaskManager, UpdaterLink};
use super::{ClientShared, StreamThreadExceptionResponse};
use crate::config::{GroupProtocol, Settings};
use crate::metrics::ThreadMetrics;
use crate::error::{Result, StreamsError};
use crate::record::ConsumerRecord;
use crate::state::builder::StoreMetricsContext;
use crate::state::{GlobalStores, ThreadCache};
use crate::task::TaskEnv;
use crate::topology::Topology;

thread_local! {
    /// The task manager of the stream thread running on this OS thread. Rebalance callbacks run
    /// inside `poll` on this same thread, so they reach the tasks here without sharing them.
    static TASK_MANAGER: RefCell<Option<TaskManager>> = const { RefCell::new(None) };
}

fn with_task_manager<R>(f: impl FnOnce(&mut TaskManager) -> R) -> Option<R> {
    TASK_MANAGER.with(|tm| tm.borrow_mut().as_mut().map(f))
}

/// Consumer callbacks: commit and close tasks before partitions are revoked, create them on
/// assignment; consumer lag from librdkafka's statistics.
pub(crate) struct StreamsConsumerContext {
    metrics: Arc<ThreadMetrics>,
    read_committed: bool,
    resets: OffsetResets,
}

impl ClientContext for StreamsConsumerContext {
    fn stats(&self, statistics: Statistics) {
        // Java's `records-lag`: the partition's end (the last stable offset under
        // read_committed) less the consumer's position (after the last record handed to the
        // thread, or its last commit, which is past any transaction markers).
        let mut lag = BTreeMap::new();
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values().filter(|p| p.partition >= 0 && p.desired) {
                let end = if self.read_committed { p.ls_offset } else { p.hi_offset };
                let position = p.app_offset.max(p.committed_offset);
                if end >= 0 && position >= 0 {
                    lag.insert((topic.clone(), p.partition), (end - position).max(0));
                }
            }
        }
        *self.metrics.lag.lock().unwrap_or_else(|e| e.into_inner()) = lag;
        *self.metrics.consumer_client_id.lock().unwrap_or_else(|e| e.into_inner()) = statistics.client_id;
    }
}

impl ConsumerContext for StreamsConsumerContext {
    /// rdkafka's rebalance (pre-rebalance, assign or unassign, post-rebalance), with the start
    /// offsets of partitions whose source has a reset policy of its own set before assigning.
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let assigning = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assigning {
            if let Err(e) = self.resets.position(consumer, tpl) {
                with_task_manager(|tm| {
                    tm.callback_error.get_or_insert(e);
                });
            }
        }
        let rebalance = match err {
            _ if assigning => Rebalance::Assign(tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Rebalance::Revoke(tpl),
            _ => Rebalance::Error(KafkaError::Rebalance(err.into())),
        };
        self.pre_rebalance(consumer, &rebalance);
        let incremental = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let done = match (assigning, incremental) {
            (true, true) => consumer.incremental_assign(tpl),
            (true, false) => consumer.assign(tpl),
            (false, true) => consumer.incremental_unassign(tpl),
            (false, false) => consumer.unassign(),
        };
        if let Err(e) = done {
            warn!(error = %e, "applying the rebalance to the consumer failed");
        }
        self.post_rebalance(consumer, &rebalance);
    }

    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Eager (classic protocol): everything is revoked, every task closes. Incremental
            // (the KIP-848 consumer protocol): only the tasks of the revoked partitions close;
            // the others keep running, with their stores and caches, through the rebalance.
            let incremental = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
            let revoked = partitions_of(tpl);
            with_task_manager(|tm| {
                tm.shared.thread_rebalancing(tm.thread_index, true);
                let done = if incremental {
                    // No assignment may follow a revocation alone: the loop ends the rebalance.
                    tm.assignment_pending = true;
                    let kept = consumer.assignment().map(|a| partitions_of(&a)).unwrap_or_default();
                    tm.shared.metadata.set_assignment(tm.thread_index, kept.into_iter().filter(|tp| !revoked.contains(tp)));
                    tm.revoke(consumer, &revoked)
                } else {
                    tm.shared.metadata.set_assignment(tm.thread_index, Vec::new());
                    tm.revoke_all(consumer)
                };
                if let Err(e) = done {
                    warn!(error = %e, "commit on revocation failed; the next owner reprocesses uncommitted records");
                }
            });
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // The whole assignment, also when this one only adds partitions (incremental):
                // a task exists for every assigned partition before any of its records arrive.
                let assigned = consumer.assignment().unwrap_or_else(|_| (*tpl).clone());
                let partitions = partitions_of(&assigned);
                with_task_manager(|tm| {
                    tm.shared.thread_rebalancing(tm.thread_index, true);
                    tm.shared.metadata.set_assignment(tm.thread_index, partitions.clone());
                    if let Err(e) = tm.assign(&partitions) {
                        tm.callback_error.get_or_insert(e);
                    }
                });
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => warn!(error = %e, "rebalance error"),
        }
    }
}

const GROUP_INSTANCE_ID: &str = "group.instance.id";

/// How long a thread applies standby changelog records between two polls, at most.
const STANDBY_SLICE: Duration = Duration::from_millis(50);

/// Runs one stream thread until shutdown or a fatal error. After an error the client's
/// uncaught-exception handler decides: replace the thread (fresh clients and tasks, rejoining
/// the group) or shut the client down.
pub(crate) fn run(index: usize, topology: Arc<Topology>, settings: Arc<Settings>, shared: Arc<ClientShared>, global: GlobalStores) {
    let mut generation = 0;
    loop {
        let name = match generation {
            0 => format!("{}-StreamThread-{}", shared.client_id(), index + 1),
            n => format!("{}-StreamThread-{}-r{n}", shared.client_id(), index + 1),
        };
        let span = tracing::info_span!("stream-thread", thread = %name);
        let _entered = span.enter();
        let result = run_loop(index, &name, topology.clone(), &settings, &shared, global.clone());
        shared.metrics.remove_thread(&name);
        shared.metadata.set_assignment(index, Vec::new());
        let clean = result.is_ok();
        if let Some(Err(e)) = with_task_manager(|tm| tm.close_all(clean).and(tm.close_standbys())) {
            warn!(error = %e, "error closing tasks");
        }
        TASK_MANAGER.with(|tm| tm.borrow_mut().take());
        match result {
            Ok(()) => info!("stream thread stopped"),
            Err(e) => match shared.on_uncaught(&e) {
                StreamThreadExceptionResponse::ReplaceThread if !shared.shutdown.load(Ordering::Acquire) => {
                    error!(error = %e, "stream thread failed; replacing it (uncaught exception handler)");
                    shared.thread_rebalancing(index, true);
                    generation += 1;
                    continue;
                }
                _ => {
                    error!(error = %e, "stream thread failed; shutting down the client");
                    shared.fail(e);
                }
            },
        }
        break;
    }
    shared.thread_stopped(index);
}

fn run_loop(
    index: usize,
    name: &str,
    topology: Arc<Topology>,
    settings: &Arc<Settings>,
    shared: &Arc<ClientShared>,
    global: GlobalStores,
) -> Result<()> {
    let application_id = settings.application_id.clone();
    let eos = settings.exactly_once();
    let state_dir = StateDirectory::new(&settings.state_dir, &application_id)?;

    let mut defaults = vec![
        ("group.id", application_id.clone()),
        ("client.id", format!("{name}-consumer")),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("auto.offset.reset", "earliest".into()),
        ("allow.auto.create.topics", "false".into()),
        ("isolation.level", if eos { "read_committed" } else { "read_uncommitted" }.into()),
        // librdkafka prefetches until a queue holds this many records (100,000 by default):
        // the consumer's queue, and each held partition's (see `InputQueues`). A tenth of
        // that keeps the memory near Kafka Streams' one fetch per partition.
        ("queued.min.messages", "10000".into()),
    ];
    // Range assignment keeps co-partitioned topics together (the same partitions of topics
    // with equal partition counts go to the same member): on the client in the classic
    // protocol, on the broker in the consumer protocol.
    match settings.group_protocol {
        GroupProtocol::Classic => defaults.push(("partition.assignment.strategy", "range".into())),
        GroupProtocol::Consumer => {
            defaults.push(("group.protocol", "consumer".into()));
            defaults.push(("group.remote.assignor", "range".into()));
        }
    }
    let mut consumer_config = settings.client_config("consumer.", &defaults);
    super::consumer_defaults(&mut consumer_config, None);
    if let Some(instance) = settings.client_setting("consumer.", GROUP_INSTANCE_ID) {
        // Static membership (KIP-345), as Kafka Streams: each thread's consumer is a static
        // member named by the configured id and its thread index, so a restarted instance gets
        // its partitions back without a rebalance if it returns within the session timeout.
        consumer_config.set(GROUP_INSTANCE_ID, format!("{instance}-{}", index + 1));
    }
    if settings.client_setting("consumer.", "statistics.interval.ms").is_none() {
        consumer_config.set("statistics.interval.ms", "1000");
    }
    let metrics = shared.metrics.thread(name);
    let resets = OffsetResets::new(topology.offset_resets(&application_id), consumer_config.get("auto.offset.reset"));
    let context = StreamsConsumerContext { metrics: metrics.clone(), read_committed: eos, resets };
    let mut consumer: BaseConsumer<StreamsConsumerContext> = consumer_config
        .create_with_context(context)
        .map_err(|e| StreamsError::kafka("create consumer", e))?;
    // Declared before the consumer, so dropped after it: the last of its queues closes it.
    let mut inputs = InputQueues::new(&mut consumer);
    let consumer = Arc::new(consumer);

    let mut producer_defaults = vec![
        ("client.id", format!("{name}-producer")),
        ("partitioner", "murmur2_random".into()),
        ("acks", "all".into()),
        ("linger.ms", "5".into()),
        // Retries never duplicate or reorder records.
        ("enable.idempotence", "true".into()),
    ];
    if eos {
        // One transactional producer per thread; the id is stable across restarts of this
        // instance (its process id lives in the state directory), so a restart fences a zombie.
        let transactional_id = format!("{application_id}-{}-{}", state_dir.process_id(), index + 1);
        producer_defaults.push(("transactional.id", transactional_id));
        producer_defaults.push(("transaction.timeout.ms", "10000".into()));
    }
    let producer_config = settings.client_config("producer.", &producer_defaults);
    let collector = Rc::new(RefCell::new(KafkaRecordCollector::new(
        &producer_config,
        settings.task_timeout,
        settings.handlers.production.clone(),
    )?));

    let restore_config =
        settings.client_config("restore.consumer.", &[("client.id", format!("{name}-restore-consumer"))]);
    let reader = ChangelogReader::new(&restore_config, Duration::from_secs(300))?;

    let env = TaskEnv {
        application_id: application_id.clone(),
        app_dir: state_dir.app_dir().to_path_buf(),
        collector: collector.clone(),
        thread_cache: Rc::new(RefCell::new(ThreadCache::new(settings.cache_max_bytes / settings.num_stream_threads))),
        deserialization_handler: settings.handlers.deserialization.clone(),
        processing_handler: settings.handlers.processing.clone(),
        timestamp_extractor: settings.timestamp_extractor,
        global_stores: global,
        exactly_once: eos,
        max_task_idle_ms: settings.max_task_idle_ms,
        metrics: Some(StoreMetricsContext { registry: shared.metrics.clone(), thread: name.to_string() }),
        rocksdb_config: settings.rocksdb_config.clone(),
    };
    let standby = if settings.num_standby_replicas > 0 {
        let config = settings.client_config("restore.consumer.", &[("client.id", format!("{name}-standby-consumer"))]);
        let claims = (settings.group_protocol == GroupProtocol::Consumer).then_some((index, settings.num_stream_threads));
        Some(StandbyRole {
            tasks: StandbyTasks::new(&config, eos)?,
            replicas: settings.num_standby_replicas,
            key: match claims {
                Some(_) => state_dir.process_id(),
                None => consumer_config.get("client.id").unwrap_or_default().to_string(),
            },
            claims,
            planned: Default::default(),
            last_plan: None,
        })
    } else {
        None
    };
    let mut manager = TaskManager::new(index, topology, env, collector, state_dir, reader, shared.clone(), settings.task_timeout);
    manager.standby = standby;
    manager.max_buffered = settings.buffered_records_per_partition;
    manager.updater = shared.state_updater.get().cloned().map(UpdaterLink::new);
    manager.metrics = Some((name.to_string(), metrics.clone()));
    manager.queries = Some(shared.router.register_thread(index));
    let topics = manager.source_topics();
    TASK_MANAGER.with(|tm| *tm.borrow_mut() = Some(manager));

    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs).map_err(|e| StreamsError::kafka("subscribe", e))?;
    info!(topics = ?topics, "subscribed");

    let result = drive(&consumer, &mut inputs, settings, shared, &metrics);
    if result.is_err() {
        // Close dirty: no commit on the way out (also when leaving the group revokes partitions).
        with_task_manager(|tm| tm.failed = true);
    }
    result
}

fn drive(
    consumer: &Arc<BaseConsumer<StreamsConsumerContext>>,
    inputs: &mut InputQueues<StreamsConsumerContext>,
    settings: &Settings,
    shared: &Arc<ClientShared>,
    metrics: &ThreadMetrics,
) -> Result<()> {
    let (poll, commit_interval) = (settings.poll, settings.commit_interval);
    let mut last_commit = Instant::now();
    // Short waits, so that queries for this thread's tasks wait at most a slice.
    let poll = poll.min(QUERY_POLL_SLICE);
    let mut busy = false;
    while !shared.shutdown.load(Ordering::Acquire) {
        // Nothing came in and nothing was processed last pass: wait for a record or an event.
        if !busy {
            inputs.wait(poll);
        }
        let polled = Instant::now();
        // The consumer's queue first: rebalance events, and the records of every input
        // partition not held in a queue of its own. Records go to their tasks as they arrive: a
        // rebalance callback inside a later poll then sees them queued (unprocessed, so not
        // committed) in the tasks it closes.
        let mut drained = false;
        let mut records = 0;
        for _ in 0..1000 {
            match consumer.poll(Duration::ZERO) {
                None => {
                    drained = true;
                    break;
                }
                Some(Ok(message)) => {
                    records += 1;
                    with_task_manager(|tm| tm.add_message(&message));
                }
                Some(Err(e)) if is_transient(&e) => warn!(error = %e, "transient consumer error"),
                Some(Err(e)) => return Err(StreamsError::kafka("poll", e)),
            }
        }
        // Then the held partitions' queues, for as many records as their tasks have room for;
        // only after the consumer's queue was drained, which may hold their earlier records.
        if drained {
            let taken = with_task_manager(|tm| inputs.poll(tm)).expect("installed");
            let taken = taken.map_err(|e| StreamsError::kafka("poll", e))?;
            records += taken.records;
            drained = taken.complete;
        }
        metrics.poll.record(1, polled.elapsed());
        let step = with_task_manager(|tm| -> Result<u64> {
            if let Some(e) = tm.callback_error.take() {
                return Err(e);
            }
            // Restoration goes a slice at a time: the consumer keeps polling (the member stays
            // in the group) and restored tasks process while others restore.
            if tm.assignment_pending && tm.restore()? {
                tm.assignment_pending = false;
                tm.shared.thread_rebalancing(tm.thread_index, false);
            }
            tm.maintain_standbys(STANDBY_SLICE)?;
            tm.serve_queries();
            let started = Instant::now();
            let processed = tm.process(consumer, drained)?;
            if processed > 0 {
                metrics.process.record(processed, started.elapsed());
            }
            inputs.hold(consumer, &tm.held_inputs(), tm);
            let started = Instant::now();
            let punctuations = tm.punctuate()?;
            if punctuations > 0 {
                metrics.punctuate.record(punctuations, started.elapsed());
            }
            tm.serve_queries();
            if last_commit.elapsed() >= commit_interval || tm.commit_requested() {
                let started = Instant::now();
                tm.commit(consumer, false)?;
                metrics.commit.record(1, started.elapsed());
                last_commit = Instant::now();
            }
            tm.sample_store_metrics();
            Ok(processed)
        });
        busy = records > 0;
        match step.expect("the task manager is installed for the thread's lifetime") {
            Ok(processed) => busy |= processed > 0,
            // Exactly-once: the open transaction is lost, not the thread.
            Err(e @ (StreamsError::TransactionAborted(_) | StreamsError::TaskMigrated(_))) => {
                with_task_manager(|tm| tm.recover(consumer, &e)).expect("installed")?;
            }
            Err(e) => return Err(e),
        }
    }
    info!("shutting down: committing and leaving the group");
    with_task_manager(|tm| tm.commit(consumer, true)).expect("installed")?;
    with_task_manager(|tm| tm.close_all(true)).expect("installed")?;
    consumer.unsubscribe();
    Ok(())
}

/// Copies a consumed message into a [`ConsumerRecord`].
#[cfg(feature = "test-utils")]
pub(crate) fn to_record(message: &BorrowedMessage<'_>) -> ConsumerRecord {
    to_record_of(message, message.topic().into())
}

/// Copies a consumed message of `topic` into a [`ConsumerRecord`].
pub(crate) fn to_record_of(message: &BorrowedMessage<'_>, topic: Arc<str>) -> ConsumerRecord {
    let headers = native::headers_of(message)
        .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
        .unwrap_or_default();
    ConsumerRecord {
        topic,
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis().unwrap_or(-1),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

//! Input partitions a stream thread holds back in librdkafka queues of their own, instead of
//! pausing them.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use tracing::{debug, warn};

use super::changelog_reader::is_transient;
use super::native;

/// The input partitions of a stream thread's consumer held in queues of their own.
///
/// A consumer hands out every partition's records through one queue, so a thread that needs
/// one partition's records (the one its task waits on) takes the others' too. Kafka Streams
/// pauses a partition whose task is full, and the Java consumer keeps what it fetched; but
/// librdkafka drops what it prefetched for a paused partition and fetches it again on resume,
/// so a join whose inputs ran at different speeds fetched and parsed each record about seven
/// times. Instead, a partition whose task is full (or not running) is split off the
/// consumer's queue ([`hold`](Self::hold)) and polled only while its task has room; librdkafka
/// stops fetching it once its queue holds `queued.min.messages`, and keeps what it fetched.
/// Partitions that keep up stay on the consumer's queue, where librdkafka fetches them together.
///
/// - A held partition's records fetched before its split are on the consumer's queue, so its
///   own queue is polled a pass later, and only once the consumer's queue was drained.
/// - A partition no longer held goes back on the consumer's queue only once its own was found
///   empty, so its records keep their order, and once it handed over a record: its fetch has
///   started, so no stop of an earlier one (see below) can clear the forwarding afterwards.
/// - A held partition stays held while it is revoked and assigned again within one rebalance:
///   librdkafka keeps an application's forwarding across unassign and assign. One that no task
///   of the thread reads any more goes back at once: its queue holds only records of the
///   old assignment, which librdkafka drops on the consumer's queue.
/// - A partition given back is held again whenever the thread takes an assignment: librdkafka
///   clears a partition's forwarding when it stops fetching it (a revocation) and restores it
///   on the next assignment only where the application never set it, so the records of a
///   partition given back and assigned anew would stay in its own queue, read by no one.
/// - The consumer's queue and every held one wake the thread ([`wait`](Self::wait)) when a
///   record or event arrives on an empty one.
pub(crate) struct InputQueues<C: ConsumerContext + 'static> {
    queues: Vec<Input<C>>,
    /// Partitions given back to the consumer's queue, to be held again on an assignment.
    given_back: Vec<(String, i32)>,
    /// The thread's assignments when they were last looked at.
    assignments: u64,
    wakeup: Arc<Wakeup>,
}

struct Input<C: ConsumerContext + 'static> {
    topic: String,
    partition: i32,
    queue: PartitionQueue<C>,
    /// Split in this pass: its earlier records may still be on the consumer's queue.
    fresh: bool,
    /// Its last poll found it empty.
    drained: bool,
    /// It handed over a record since it was split.
    delivered: bool,
}

/// Where polled records go: the thread's tasks.
pub(crate) trait InputSink {
    /// Whether one of the tasks reads `topic`'s `partition` (it is assigned to the thread).
    fn reads(&self, topic: &str, partition: i32) -> bool;
    /// How many assignments the thread has taken.
    fn assignments(&self) -> u64;
    /// How many more records of `topic`'s `partition` are taken now.
    fn room(&self, topic: &str, partition: i32) -> usize;
    /// Takes a polled record.
    fn deliver(&mut self, message: &BorrowedMessage<'_>);
}

/// What one [`poll`](InputQueues::poll) took.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Polled {
    pub(crate) records: usize,
    /// Every held partition with room was polled (none was split off in this pass).
    pub(crate) complete: bool,
}

impl<C: ConsumerContext + 'static> InputQueues<C> {
    /// No partition held yet; `consumer`'s own queue wakes [`wait`](Self::wait) too.
    pub(crate) fn new(consumer: &mut BaseConsumer<C>) -> Self {
        let wakeup = Arc::new(Wakeup::default());
        let woken = wakeup.clone();
        consumer.set_nonempty_callback(move || woken.notify());
        InputQueues { queues: Vec::new(), given_back: Vec::new(), assignments: 0, wakeup }
    }

    /// Holds the `wanted` partitions in queues of their own (splitting those not held yet),
    /// and gives back the held ones no longer wanted once their queue, having handed over a
    /// record, was found empty, or at once if none of `tasks` reads them: their records go
    /// through the consumer's queue again. After an assignment, the partitions given back
    /// earlier that `tasks` read are held again.
    pub(crate) fn hold(&mut self, consumer: &Arc<BaseConsumer<C>>, wanted: &[(&str, i32)], tasks: &impl InputSink) {
        let given_back = &mut self.given_back;
        self.queues.retain(|input| {
            let (topic, partition) = (input.topic.as_str(), input.partition);
            let done = input.drained && input.delivered;
            if wanted.contains(&(topic, partition)) || (!done && tasks.reads(topic, partition)) {
                return true;
            }
            if native::join_partition_queue(consumer.client(), topic, partition) {
                debug!(topic, partition, "input partition back on the consumer's queue");
            } else {
                warn!(topic, partition, "librdkafka has no such partition");
            }
            given_back.push((input.topic.clone(), partition));
            false
        });
        let mut again = Vec::new();
        if std::mem::replace(&mut self.assignments, tasks.assignments()) != self.assignments {
            again = self.given_back.extract_if(.., |(topic, partition)| tasks.reads(topic, *partition)).collect();
        }
        let again = again.iter().map(|(topic, partition)| (topic.as_str(), *partition));
        for (topic, partition) in wanted.iter().copied().chain(again) {
            if self.queues.iter().any(|q| q.partition == partition && q.topic == topic) {
                continue;
            }
            let Some(mut queue) = consumer.split_partition_queue(topic, partition) else {
                // Only for a topic name with a NUL byte, which no broker has.
                warn!(topic, partition, "cannot hold the partition in a queue of its own");
                continue;
            };
            let woken = self.wakeup.clone();
            queue.set_nonempty_callback(move || woken.notify());
            debug!(topic, partition, "input partition held in a queue of its own");
            self.queues.push(Input { topic: topic.to_string(), partition, queue, fresh: true, drained: false, delivered: false });
            self.given_back.retain(|(t, p)| t != topic || *p != partition);
        }
    }

    /// Polls each held partition's queue for as many records as `tasks` has room for, handing
    /// them over. Transient errors are logged; another ends the poll.
    pub(crate) fn poll(&mut self, tasks: &mut impl InputSink) -> Result<Polled, KafkaError> {
        let mut polled = Polled { records: 0, complete: true };
        for input in &mut self.queues {
            if std::mem::take(&mut input.fresh) {
                polled.complete = false;
                continue;
            }
            let room = tasks.room(&input.topic, input.partition);
            input.drained = false;
            for _ in 0..room {
                match input.queue.poll(Duration::ZERO) {
                    None => {
                        input.drained = true;
                        break;
                    }
                    Some(Ok(message)) => {
                        tasks.deliver(&message);
                        input.delivered = true;
                        polled.records += 1;
                    }
                    Some(Err(e)) if is_transient(&e) => {
                        warn!(topic = %input.topic, partition = input.partition, error = %e, "transient consumer error")
                    }
                    Some(Err(e)) => return Err(e),
                }
            }
        }
        Ok(polled)
    }

    /// Waits until a queue that was empty receives something, or `timeout` passes.
    pub(crate) fn wait(&self, timeout: Duration) {
        self.wakeup.wait(timeout);
    }
}

/// A flag that librdkafka's threads raise when a queue becomes non-empty.
#[derive(Default)]
struct Wakeup {
    raised: Mutex<bool>,
    cond: Condvar,
}

impl Wakeup {
    fn notify(&self) {
        *self.raised.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_one();
    }

    fn wait(&self, timeout: Duration) {
        let raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        let (mut raised, _) =
            self.cond.wait_timeout_while(raised, timeout, |raised| !*raised).unwrap_or_else(|e| e.into_inner());
        *raised = false;
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::time::Instant;

    use rdkafka::consumer::{Consumer, DefaultConsumerContext};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

    use super::*;

    const TOPIC: &str = "input";

    /// A mock cluster whose two-partition topic holds `records` records in each partition.
    fn cluster(records: usize) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 2, 1).unwrap();
        for partition in 0..2 {
            produce(&cluster, partition, 0..records);
        }
        cluster
    }

    /// Produces `payloads` (their numbers as text) to `partition`, and waits for them.
    fn produce(cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>, partition: i32, payloads: Range<usize>) {
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().unwrap();
        for i in payloads {
            producer.send(BaseRecord::<(), str>::to(TOPIC).partition(partition).payload(&i.to_string())).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
    }

    fn consumer(servers: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", servers)
            .set("group.id", "input-queues")
            .set("enable.auto.commit", "false")
            .set("queued.min.messages", "20")
            .create()
            .unwrap()
    }

    /// A consumer assigned `partitions` of the cluster's topic from offset 0, each held.
    fn held(
        cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        partitions: &[i32],
    ) -> (Arc<BaseConsumer>, InputQueues<DefaultConsumerContext>) {
        let mut consumer = consumer(&cluster.bootstrap_servers());
        let mut queues = InputQueues::new(&mut consumer);
        let consumer = Arc::new(consumer);
        assign(&consumer, partitions, 0);
        let wanted: Vec<_> = partitions.iter().map(|p| (TOPIC, *p)).collect();
        queues.hold(&consumer, &wanted, &FIRST);
        (consumer, queues)
    }

    /// Tasks that read every partition or none, after `assignments` assignments; they take no
    /// records.
    struct Tasks {
        reads: bool,
        assignments: u64,
    }

    /// The tasks of the first assignment.
    const FIRST: Tasks = Tasks { reads: true, assignments: 0 };

    impl InputSink for Tasks {
        fn reads(&self, _: &str, _: i32) -> bool {
            self.reads
        }
        fn assignments(&self) -> u64 {
            self.assignments
        }
        fn room(&self, _: &str, _: i32) -> usize {
            0
        }
        fn deliver(&mut self, _: &BorrowedMessage<'_>) {}
    }

    fn assign(consumer: &BaseConsumer, partitions: &[i32], offset: i64) {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(TOPIC, *p, Offset::Offset(offset)).unwrap();
        }
        consumer.assign(&tpl).unwrap();
    }

    /// `(partition, offset, read from the consumer's queue)` of each record taken.
    type Taken = Vec<(i32, i64, bool)>;

    /// Polls until `until` holds of what was taken, or 10 s pass; each partition gets `room(p)`
    /// records a pass. The consumer's own queue is polled first, as the stream thread does.
    fn poll_until(
        consumer: &BaseConsumer,
        queues: &mut InputQueues<DefaultConsumerContext>,
        room: impl Fn(i32) -> usize,
        until: impl Fn(&Taken) -> bool,
    ) -> Taken {
        let mut taken = Taken::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !until(&taken) && Instant::now() < deadline {
            queues.wait(Duration::from_millis(100));
            while let Some(message) = consumer.poll(Duration::ZERO) {
                let message = message.unwrap();
                taken.push((message.partition(), message.offset(), true));
            }
            queues.poll(&mut Sink { room: &room, taken: &mut taken }).unwrap();
        }
        taken
    }

    /// Takes records while a partition has room, `room(partition)` a pass.
    struct Sink<'a, R: Fn(i32) -> usize> {
        room: R,
        taken: &'a mut Taken,
    }

    impl<R: Fn(i32) -> usize> InputSink for Sink<'_, R> {
        fn reads(&self, _: &str, _: i32) -> bool {
            true
        }
        fn assignments(&self) -> u64 {
            0
        }
        fn room(&self, _: &str, partition: i32) -> usize {
            (self.room)(partition)
        }
        fn deliver(&mut self, m: &BorrowedMessage<'_>) {
            self.taken.push((m.partition(), m.offset(), false));
        }
    }

    fn offsets_of(taken: &Taken, partition: i32) -> Vec<i64> {
        taken.iter().filter(|(p, ..)| *p == partition).map(|(_, o, _)| *o).collect()
    }

    #[test]
    fn a_partition_without_room_waits_in_its_queue_while_the_other_is_read() {
        let cluster = cluster(100);
        let (consumer, mut queues) = held(&cluster, &[0, 1]);
        // Partition 0 has no room: its records wait; partition 1 is read to its end.
        let taken = poll_until(&consumer, &mut queues, |p| if p == 0 { 0 } else { 7 }, |t| offsets_of(t, 1).len() == 100);
        assert_eq!(offsets_of(&taken, 1), (0..100).collect::<Vec<_>>());
        let held = offsets_of(&taken, 0);
        assert!(held.iter().copied().eq(0..held.len() as i64), "only records fetched before the split: {held:?}");
        // Given room, partition 0 goes on where it stopped: nothing dropped, nothing twice.
        let rest = poll_until(&consumer, &mut queues, |_| 3, |t| held.len() + offsets_of(t, 0).len() == 100);
        let all: Vec<i64> = held.iter().copied().chain(offsets_of(&rest, 0)).collect();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_split_partition_assigned_again_is_read_from_its_queue() {
        let cluster = cluster(10);
        let (consumer, mut queues) = held(&cluster, &[0]);
        let taken = poll_until(&consumer, &mut queues, |_| 4, |t| t.len() == 10);
        assert_eq!(offsets_of(&taken, 0), (0..10).collect::<Vec<_>>());
        consumer.unassign().unwrap();
        assign(&consumer, &[0], 5);
        queues.hold(&consumer, &[(TOPIC, 0)], &FIRST);
        let taken = poll_until(&consumer, &mut queues, |_| 4, |t| t.len() == 5);
        assert_eq!(offsets_of(&taken, 0), (5..10).collect::<Vec<_>>());
        assert!(taken.iter().all(|(.., from_consumer)| !from_consumer), "the split outlives the assignment: {taken:?}");
    }

    #[test]
    fn a_partition_let_go_goes_on_through_the_consumers_queue_in_order() {
        let cluster = cluster(100);
        let (consumer, mut queues) = held(&cluster, &[0]);
        let mut taken = poll_until(&consumer, &mut queues, |_| 3, |t| t.len() >= 30);
        // Not wanted any more: let go only once its queue is found empty.
        queues.hold(&consumer, &[], &FIRST);
        assert_eq!(queues.queues.len(), 1, "held until its queue is found empty");
        taken.extend(poll_until(&consumer, &mut queues, |_| 1000, |t| t.len() + 30 >= 100));
        queues.poll(&mut Sink { room: |_| 1000, taken: &mut taken }).unwrap();
        assert!(queues_drained(&queues));
        queues.hold(&consumer, &[], &FIRST);
        assert!(queues.queues.is_empty());
        produce(&cluster, 0, 100..150);
        let before = taken.len();
        taken.extend(poll_until(&consumer, &mut queues, |_| 1000, |t| before + t.len() == 150));
        assert_eq!(offsets_of(&taken, 0), (0..150).collect::<Vec<_>>());
        assert!(taken[100..].iter().all(|r| r.2), "records after the release come through the consumer's queue");
        // Revoked and assigned anew: librdkafka no longer forwards the partition's records to
        // the consumer's queue, so it is held again, and its records go on.
        consumer.unassign().unwrap();
        assign(&consumer, &[0], 150);
        queues.hold(&consumer, &[], &Tasks { reads: true, assignments: 1 });
        produce(&cluster, 0, 150..200);
        let before = taken.len();
        taken.extend(poll_until(&consumer, &mut queues, |_| 1000, |t| before + t.len() == 200));
        assert_eq!(offsets_of(&taken, 0), (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_revoked_partition_is_given_back_at_once_and_held_again_when_assigned_anew() {
        let cluster = cluster(100);
        let (consumer, mut queues) = held(&cluster, &[0]);
        // Some records read, the rest wait in the held queue (no room): then the partition is
        // revoked, and no task reads it any more.
        let taken = poll_until(&consumer, &mut queues, |_| 3, |t| t.len() >= 9);
        std::thread::sleep(Duration::from_millis(200));
        assert!(!queues_drained(&queues));
        consumer.unassign().unwrap();
        queues.hold(&consumer, &[], &Tasks { reads: false, assignments: 0 });
        assert!(queues.queues.is_empty(), "given back although records of the old assignment wait");
        // Assigned again where it stopped: held again, read in order, the records of the old
        // assignment dropped.
        let next = taken.len() as i64;
        assign(&consumer, &[0], next);
        queues.hold(&consumer, &[], &Tasks { reads: true, assignments: 1 });
        assert_eq!(queues.queues.len(), 1, "held again on the assignment");
        let rest = poll_until(&consumer, &mut queues, |_| 1000, |t| t.len() as i64 + next >= 100);
        assert_eq!(offsets_of(&rest, 0), (next..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_held_partition_is_given_back_only_after_it_handed_over_a_record() {
        let cluster = cluster(0);
        let (consumer, mut queues) = held(&cluster, &[0]);
        // Empty: its fetch may not have started, so it stays held however often it is found empty.
        let mut taken = Taken::new();
        for _ in 0..5 {
            queues.wait(Duration::from_millis(50));
            queues.poll(&mut Sink { room: |_| 10, taken: &mut taken }).unwrap();
        }
        assert!(taken.is_empty() && queues_drained(&queues));
        queues.hold(&consumer, &[], &FIRST);
        assert_eq!(queues.queues.len(), 1);
        produce(&cluster, 0, 0..5);
        let taken = poll_until(&consumer, &mut queues, |_| 10, |t| t.len() == 5);
        assert_eq!(offsets_of(&taken, 0), (0..5).collect::<Vec<_>>());
        queues.poll(&mut Sink { room: |_| 10, taken: &mut Taken::new() }).unwrap();
        queues.hold(&consumer, &[], &FIRST);
        assert!(queues.queues.is_empty(), "given back once a record came and the queue was found empty");
    }

    fn queues_drained(queues: &InputQueues<DefaultConsumerContext>) -> bool {
        queues.queues.iter().all(|q| q.drained)
    }

    #[test]
    fn a_record_on_an_empty_queue_ends_the_wait() {
        let wakeup = Arc::new(Wakeup::default());
        let notifier = wakeup.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            notifier.notify();
        });
        wakeup.wait(Duration::from_secs(10));
        assert!(started.elapsed() < Duration::from_secs(5));
        thread.join().unwrap();
        // The flag is lowered by the wait that saw it.
        let started = Instant::now();
        wakeup.wait(Duration::from_millis(100));
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
}


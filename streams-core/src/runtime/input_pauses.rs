//! Which input partitions of a stream thread's consumer are paused, kept in step with librdkafka.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::TopicPartitionList;
use tracing::debug;

use crate::error::{Result, StreamsError};
use crate::record::TaskId;

/// The input partitions a stream thread has paused, each with its task.
///
/// librdkafka applies a pause or resume on its own thread, tagged with a per-partition version,
/// and silently drops an operation that another thread's newer one overtook. Its own such
/// operations are the fetch start of a newly assigned partition and the pause of the whole
/// assignment when a rebalance begins. Hence three rules:
/// - a partition is paused only once it has delivered a record, so its fetch has started (a
///   pause racing with the fetch start can drop the start, and the partition is never fetched);
/// - after every rebalance callback the thread applies its pauses and resumes again
///   ([`reapply`](Self::reapply)): one that raced with the rebalance's own pause may be lost;
/// - a partition is resumed before its task closes ([`release`](Self::release)): librdkafka
///   keeps an application's pause across unassign and assign, so a partition revoked while
///   paused would never be fetched again when it came back.
#[derive(Default)]
pub(crate) struct InputPauses {
    paused: BTreeMap<(String, i32), TaskId>,
    /// Every partition paused at least once while its task lives on this thread.
    touched: BTreeMap<(String, i32), TaskId>,
    /// A rebalance callback ran since the last [`reapply`](Self::reapply).
    pub(crate) rebalanced: bool,
}

impl InputPauses {
    /// Pauses the partitions in `wanted` and resumes the paused ones not in it.
    pub(crate) fn set<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, wanted: BTreeMap<(String, i32), TaskId>) -> Result<()> {
        if wanted.is_empty() && self.paused.is_empty() {
            return Ok(());
        }
        let resume = list(self.paused.keys().filter(|tp| !wanted.contains_key(*tp)));
        let pause = list(wanted.keys().filter(|tp| !self.paused.contains_key(*tp)));
        self.touched.extend(wanted.iter().map(|(tp, id)| (tp.clone(), *id)));
        self.paused = wanted;
        if resume.count() > 0 {
            debug!(partitions = ?resume, "resuming inputs");
            consumer.resume(&resume).map_err(|e| StreamsError::kafka("resume inputs", e))?;
        }
        if pause.count() > 0 {
            debug!(partitions = ?pause, "pausing inputs");
            consumer.pause(&pause).map_err(|e| StreamsError::kafka("pause inputs", e))?;
        }
        Ok(())
    }

    /// After a rebalance callback: pauses the paused partitions and resumes the others touched,
    /// again.
    pub(crate) fn reapply<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<()> {
        if !std::mem::take(&mut self.rebalanced) || self.touched.is_empty() {
            return Ok(());
        }
        let resume = list(self.touched.keys().filter(|tp| !self.paused.contains_key(*tp)));
        let pause = list(self.paused.keys());
        debug!(paused = ?pause, resumed = ?resume, "applying input pauses again after a rebalance");
        if resume.count() > 0 {
            consumer.resume(&resume).map_err(|e| StreamsError::kafka("resume inputs after a rebalance", e))?;
        }
        if pause.count() > 0 {
            consumer.pause(&pause).map_err(|e| StreamsError::kafka("pause inputs after a rebalance", e))?;
        }
        Ok(())
    }

    /// Resumes every partition of these tasks ever paused (they close while assigned), and
    /// forgets them.
    pub(crate) fn release<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>, ids: &[TaskId]) -> Result<()> {
        let resume = list(self.touched.iter().filter(|(_, id)| ids.contains(id)).map(|(tp, _)| tp));
        self.forget(ids);
        if resume.count() > 0 {
            debug!(partitions = ?resume, "resuming the inputs of closing tasks");
            consumer.resume(&resume).map_err(|e| StreamsError::kafka("resume the inputs of closing tasks", e))?;
        }
        Ok(())
    }

    /// Forgets the partitions of these tasks (the consumer goes away with them).
    pub(crate) fn forget(&mut self, ids: &[TaskId]) {
        self.paused.retain(|_, id| !ids.contains(id));
        self.touched.retain(|_, id| !ids.contains(id));
    }

    /// Whether this thread holds `topic`'s `partition` paused.
    #[cfg(test)]
    pub(crate) fn is_paused(&self, topic: &str, partition: i32) -> bool {
        self.paused.contains_key(&(topic.to_string(), partition))
    }
}

fn list<'a>(partitions: impl Iterator<Item = &'a (String, i32)>) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    tpl
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;

    const TOPIC: &str = "input";

    /// A mock cluster whose one-partition topic holds 10 records.
    fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 1, 1).unwrap();
        let producer: BaseProducer = ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().unwrap();
        for i in 0..10 {
            producer.send(BaseRecord::<(), str>::to(TOPIC).partition(0).payload(&i.to_string())).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        cluster
    }

    fn consumer(servers: &str) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", servers)
            .set("group.id", "input-pauses")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    }

    fn assign_from(consumer: &BaseConsumer, offset: i64) {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Offset(offset)).unwrap();
        consumer.assign(&tpl).unwrap();
    }

    /// The offset of the next record polled within `wait`.
    fn next_offset(consumer: &BaseConsumer, wait: Duration) -> Option<i64> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                return Some(rdkafka::Message::offset(&message.unwrap()));
            }
        }
        None
    }

    /// Pauses the partition once it has delivered a record, then takes it away and gives it
    /// back, as a revocation and a later assignment do; `release`: as a revoked task does.
    fn paused_unassigned_and_assigned_again(release: bool) -> Option<i64> {
        let cluster = cluster();
        let consumer = consumer(&cluster.bootstrap_servers());
        assign_from(&consumer, 0);
        assert_eq!(next_offset(&consumer, Duration::from_secs(10)), Some(0));
        let task = TaskId::new(0, 0);
        let mut pauses = InputPauses::default();
        pauses.set(&consumer, BTreeMap::from([((TOPIC.to_string(), 0), task)])).unwrap();
        if release {
            pauses.release(&consumer, &[task]).unwrap();
        }
        consumer.unassign().unwrap();
        assign_from(&consumer, 1);
        next_offset(&consumer, Duration::from_secs(if release { 10 } else { 3 }))
    }

    #[test]
    fn librdkafka_keeps_an_application_pause_across_unassign_and_assign() {
        assert_eq!(paused_unassigned_and_assigned_again(false), None);
    }

    #[test]
    fn a_partition_released_before_it_goes_is_fetched_when_it_comes_back() {
        assert_eq!(paused_unassigned_and_assigned_again(true), Some(1));
    }

    #[test]
    fn set_pauses_what_is_wanted_and_remembers_what_it_ever_paused() {
        let cluster = cluster();
        let consumer = consumer(&cluster.bootstrap_servers());
        let (a, b) = (TaskId::new(0, 0), TaskId::new(0, 1));
        let mut pauses = InputPauses::default();
        let tp = |p: i32| (TOPIC.to_string(), p);
        pauses.set(&consumer, BTreeMap::from([(tp(0), a), (tp(1), b)])).unwrap();
        pauses.set(&consumer, BTreeMap::from([(tp(1), b)])).unwrap();
        assert!(!pauses.is_paused(TOPIC, 0) && pauses.is_paused(TOPIC, 1));
        assert_eq!(pauses.touched.len(), 2, "a resumed partition is resumed again after a rebalance");
        pauses.forget(&[b]);
        assert!(!pauses.is_paused(TOPIC, 1));
        assert_eq!(pauses.touched.keys().collect::<Vec<_>>(), [&tp(0)]);
        pauses.release(&consumer, &[a]).unwrap();
        assert!(pauses.touched.is_empty());
    }
}

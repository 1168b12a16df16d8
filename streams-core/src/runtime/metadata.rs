//! Instance metadata without a custom assignor: who hosts which partitions, and at which
//! `application.server`.
//!
//! Kafka Streams carries each instance's endpoint and tasks in its group-protocol assignment;
//! librdkafka has no hook for a custom assignor, so two sources are combined instead:
//!
//! - **Endpoints**: each instance writes `process id -> host:port` to the compacted topic
//!   `<application.id>-instance-metadata` when it starts (a tombstone when it closes cleanly),
//!   and every instance reads that topic from the beginning, continuously.
//! - **Ownership**: the consumer group itself, described through the group API
//!   (DescribeGroups) every second and right after each local assignment: its state, its
//!   members (whose client ids carry their instance's process id, as Kafka Streams' do) and each
//!   member's assignment from the current generation.
//!
//! Ownership is never taken from anything an instance says about itself, so it cannot go stale
//! across a crash: a dead instance's members leave the group and its endpoint record is merely
//! unused. While the group is not `Stable` no owner is given (the answer is a retriable
//! [`StreamsError::MetadataUnavailable`]); a view read just before a rebalance may name the
//! previous owner, which then answers with a retriable "migrated" error, never with data it no
//! longer owns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::shared::{lock, ClientShared};
use crate::error::{Result, StreamsError};
use crate::query::{HostInfo, StreamsMetadata};

/// How often the group is described when nothing asks sooner.
const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// The compacted topic of instance endpoints.
pub(crate) fn metadata_topic(application_id: &str) -> String {
    format!("{application_id}-instance-metadata")
}

/// A member of the group as the last description showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    client_id: String,
    partitions: Vec<(String, i32)>,
}

/// What an instance knows of the others.
#[derive(Debug, Default)]
struct ClusterView {
    /// Process id -> endpoint, from the metadata topic.
    servers: HashMap<String, HostInfo>,
    /// The group's members, from the last description.
    members: Vec<Member>,
    /// The group's state then (`Stable`, `PreparingRebalance`, ...).
    group_state: String,
    refreshed: Option<Instant>,
}

/// The instance metadata a client shares with its metadata thread and its query callers.
#[derive(Debug, Default)]
pub(crate) struct InstanceMetadata {
    view: Mutex<ClusterView>,
    refresh: AtomicBool,
}

impl InstanceMetadata {
    /// Asks for a new description of the group (after an assignment changed).
    pub(crate) fn request_refresh(&self) {
        self.refresh.store(true, Ordering::Release);
    }

    /// The instances and their input partitions, when the group is stable; `stores_of` gives
    /// the stores that read a topic-partition.
    pub(crate) fn instances(
        &self,
        stores_of: impl Fn(&str) -> Vec<String>,
    ) -> Result<Vec<StreamsMetadata>> {
        let view = lock(&self.view);
        if view.refreshed.is_none() {
            return Err(StreamsError::MetadataUnavailable("the consumer group has not been described yet".into()));
        }
        if view.group_state != "Stable" {
            return Err(StreamsError::MetadataUnavailable(format!("the consumer group is {}", view.group_state)));
        }
        let mut by_process: BTreeMap<&str, StreamsMetadata> = BTreeMap::new();
        for member in &view.members {
            let Some((pid, host)) = view.servers.iter().find(|(pid, _)| member.client_id.contains(pid.as_str())) else {
                return Err(StreamsError::MetadataUnavailable(format!(
                    "the endpoint of group member `{}` is not known yet",
                    member.client_id
                )));
            };
            let entry = by_process.entry(pid).or_insert_with(|| StreamsMetadata {
                host_info: host.clone(),
                process_id: pid.clone(),
                state_store_names: BTreeSet::new(),
                topic_partitions: BTreeSet::new(),
                standby_state_store_names: BTreeSet::new(),
                standby_topic_partitions: BTreeSet::new(),
            });
            for (topic, p) in &member.partitions {
                entry.topic_partitions.insert((topic.clone(), *p));
                entry.state_store_names.extend(stores_of(topic));
            }
        }
        let mut all: Vec<StreamsMetadata> = by_process.into_values().collect();
        all.sort_by(|a, b| a.host_info.cmp(&b.host_info));
        Ok(all)
    }
}

/// Publishes this instance's endpoint and keeps the view of the group fresh, until shutdown.
pub(crate) struct MetadataThread {
    group: String,
    topic: String,
    process_id: String,
    server: HostInfo,
    consumer: BaseConsumer,
    producer: BaseProducer,
}

impl MetadataThread {
    pub(crate) fn new(
        application_id: &str,
        process_id: &str,
        server: HostInfo,
        consumer_config: &ClientConfig,
        producer_config: &ClientConfig,
    ) -> Result<Self> {
        let consumer: BaseConsumer =
            consumer_config.create().map_err(|e| StreamsError::kafka("create the metadata consumer", e))?;
        let producer: BaseProducer =
            producer_config.create().map_err(|e| StreamsError::kafka("create the metadata producer", e))?;
        Ok(MetadataThread {
            group: application_id.to_string(),
            topic: metadata_topic(application_id),
            process_id: process_id.to_string(),
            server,
            consumer,
            producer,
        })
    }

    pub(crate) fn spawn(self, name: String, shared: Arc<ClientShared>) -> Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _span = tracing::info_span!("metadata-thread", thread = %name).entered();
                if let Err(e) = self.run(&shared) {
                    warn!(error = %e, "instance metadata thread stopped; metadata queries will fail");
                }
            })
            .map_err(|e| StreamsError::io("the metadata thread (spawn)", e))
    }

    fn publish(&self, value: Option<&str>) -> Result<()> {
        let record = BaseRecord::<str, str>::to(&self.topic).key(&self.process_id);
        let record = match value {
            Some(v) => record.payload(v),
            None => record,
        };
        self.producer.send(record).map_err(|(e, _)| StreamsError::kafka("publish instance metadata", e))?;
        self.producer.flush(Duration::from_secs(10)).map_err(|e| StreamsError::kafka("publish instance metadata", e))
    }

    fn run(self, shared: &ClientShared) -> Result<()> {
        let metadata = &shared.metadata;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&self.topic, 0, Offset::Beginning)
            .map_err(|e| StreamsError::kafka("assign the metadata topic", e))?;
        self.consumer.assign(&assignment).map_err(|e| StreamsError::kafka("assign the metadata topic", e))?;
        let endpoint = self.server.to_string();
        let mut published = false;
        let mut last_refresh: Option<Instant> = None;
        while !shared.shutdown.load(Ordering::Acquire) {
            if !published {
                match self.publish(Some(&endpoint)) {
                    Ok(()) => {
                        info!(server = %endpoint, "published this instance's endpoint");
                        published = true;
                    }
                    Err(e) => warn!(error = %e, "publishing this instance's endpoint failed; retrying"),
                }
            }
            while let Some(message) = self.consumer.poll(Duration::from_millis(50)) {
                match message {
                    Ok(m) => {
                        let Some(pid) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                        let mut view = lock(&metadata.view);
                        match m.payload().and_then(|v| std::str::from_utf8(v).ok()).map(str::parse::<HostInfo>) {
                            Some(Ok(host)) => {
                                view.servers.insert(pid.to_string(), host);
                            }
                            Some(Err(e)) => warn!(process = pid, error = %e, "ignoring an unreadable endpoint record"),
                            None => {
                                view.servers.remove(pid);
                            }
                        }
                    }
                    Err(e) => debug!(error = %e, "metadata consumer"),
                }
            }
            let due = last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_INTERVAL);
            if due || metadata.refresh.swap(false, Ordering::AcqRel) {
                last_refresh = Some(Instant::now());
                match self.describe_group() {
                    Ok((state, members)) => {
                        let mut view = lock(&metadata.view);
                        view.group_state = state;
                        view.members = members;
                        view.refreshed = Some(Instant::now());
                    }
                    Err(e) => debug!(error = %e, "describing the group failed; keeping the last view"),
                }
            }
        }
        if let Err(e) = self.publish(None) {
            warn!(error = %e, "could not withdraw this instance's endpoint");
        }
        Ok(())
    }

    fn describe_group(&self) -> Result<(String, Vec<Member>)> {
        let groups = self
            .consumer
            .fetch_group_list(Some(&self.group), Duration::from_secs(5))
            .map_err(|e| StreamsError::kafka("describe the consumer group", e))?;
        let Some(group) = groups.groups().iter().find(|g| g.name() == self.group) else {
            return Ok(("Empty".into(), Vec::new()));
        };
        let members = group
            .members()
            .iter()
            .map(|m| Member {
                client_id: m.client_id().to_string(),
                partitions: m.assignment().map(parse_assignment).unwrap_or_default(),
            })
            .collect();
        Ok((group.state().to_string(), members))
    }
}

/// The partitions of a member's assignment in the classic consumer protocol
/// (`ConsumerProtocolAssignment`: version, then `[topic, [partition]]`, then user data);
/// empty if the bytes do not parse.
fn parse_assignment(bytes: &[u8]) -> Vec<(String, i32)> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (bytes.len() >= n).then(|| bytes.split_at(n))?;
        *bytes = tail;
        Some(head)
    }
    fn i16_(bytes: &mut &[u8]) -> Option<i16> {
        take(bytes, 2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32_(bytes: &mut &[u8]) -> Option<i32> {
        take(bytes, 4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn parse(mut bytes: &[u8]) -> Option<Vec<(String, i32)>> {
        let bytes = &mut bytes;
        let _version = i16_(bytes)?;
        let mut out = Vec::new();
        for _ in 0..i32_(bytes)?.max(0) {
            let len = usize::try_from(i16_(bytes)?).ok()?;
            let topic = std::str::from_utf8(take(bytes, len)?).ok()?.to_string();
            for _ in 0..i32_(bytes)?.max(0) {
                out.push((topic.clone(), i32_(bytes)?));
            }
        }
        Some(out)
    }
    parse(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = 1i16.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn assignments_parse_from_the_consumer_protocol() {
        let bytes = assignment(&[("input", &[0, 2]), ("app-x-repartition", &[1])]);
        assert_eq!(
            parse_assignment(&bytes),
            vec![("input".into(), 0), ("input".into(), 2), ("app-x-repartition".into(), 1)]
        );
        assert_eq!(parse_assignment(&bytes[..7]), Vec::<(String, i32)>::new());
        assert_eq!(parse_assignment(&[]), Vec::<(String, i32)>::new());
    }

    #[test]
    fn owners_are_given_only_for_a_stable_group_with_known_endpoints() {
        let metadata = InstanceMetadata::default();
        assert!(metadata.instances(|_| vec![]).unwrap_err().is_retriable());
        {
            let mut view = lock(&metadata.view);
            view.refreshed = Some(Instant::now());
            view.group_state = "PreparingRebalance".into();
            view.members = vec![
                Member { client_id: "app-p1-StreamThread-1-consumer".into(), partitions: vec![("in".into(), 0)] },
                Member { client_id: "app-p2-StreamThread-1-consumer".into(), partitions: vec![("in".into(), 1)] },
            ];
            view.servers.insert("p1".into(), HostInfo::new("a", 1));
        }
        assert!(metadata.instances(|_| vec![]).unwrap_err().is_retriable());
        lock(&metadata.view).group_state = "Stable".into();
        assert!(metadata.instances(|_| vec![]).unwrap_err().is_retriable(), "p2's endpoint is unknown");
        lock(&metadata.view).servers.insert("p2".into(), HostInfo::new("b", 2));
        let all = metadata.instances(|t| vec![format!("{t}-store")]).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].host_info, HostInfo::new("b", 2));
        assert!(all[1].topic_partitions.contains(&("in".to_string(), 1)));
        assert!(all[0].state_store_names.contains("in-store"));
    }
}

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
//!
//! Under the KIP-848 consumer protocol the classic group API does not describe the group (it
//! reports it `Dead`), and librdkafka's ConsumerGroupDescribe is not in the Rust client. There
//! each instance's record also carries its current input partitions, republished after every
//! rebalance, and a partition's owner is the instance whose latest record (by offset in the
//! single-partition topic) claims it. The protocol revokes a partition from its old owner before
//! it assigns it to the new one, so the new owner's claim is the later one; until it is
//! published, the old owner is named and answers "migrated" (or, if it died, cannot be reached):
//! retriable either way.

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
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) client_id: String,
    pub(crate) partitions: Vec<(String, i32)>,
}

/// What an instance knows of the others.
#[derive(Debug, Default)]
struct ClusterView {
    /// Process id -> endpoint, from the metadata topic.
    servers: HashMap<String, HostInfo>,
    /// Process id -> (offset of its latest record, the input partitions it claims).
    claims: HashMap<String, (i64, BTreeSet<(String, i32)>)>,
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
    /// Owners come from the instances' claims (the consumer protocol), not the group description.
    from_claims: AtomicBool,
    /// Each local stream thread's input partitions.
    assigned: Mutex<BTreeMap<usize, BTreeSet<(String, i32)>>>,
}

/// A record of the metadata topic: an instance's endpoint (empty without
/// `application.server`) and input partitions.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct InstanceRecord {
    server: String,
    #[serde(default)]
    partitions: BTreeSet<(String, i32)>,
}

impl InstanceMetadata {
    /// `thread` of this instance now holds `partitions`.
    pub(crate) fn set_assignment(&self, thread: usize, partitions: impl IntoIterator<Item = (String, i32)>) {
        lock(&self.assigned).insert(thread, partitions.into_iter().collect());
    }

    /// This instance's input partitions, over all its threads.
    pub(crate) fn local_partitions(&self) -> BTreeSet<(String, i32)> {
        lock(&self.assigned).values().flatten().cloned().collect()
    }

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
        if self.from_claims.load(Ordering::Acquire) {
            return Ok(view.claimed_metadata(stores_of));
        }
        if view.refreshed.is_none() {
            return Err(StreamsError::MetadataUnavailable("the consumer group has not been described yet".into()));
        }
        if view.group_state != "Stable" {
            return Err(StreamsError::MetadataUnavailable(format!("the consumer group is {}", view.group_state)));
        }
        let mut owned = Vec::new();
        for member in &view.members {
            let Some((pid, _)) = view.servers.iter().find(|(pid, _)| member.client_id.contains(pid.as_str())) else {
                return Err(StreamsError::MetadataUnavailable(format!(
                    "the endpoint of group member `{}` is not known yet",
                    member.client_id
                )));
            };
            owned.push((pid.as_str(), member.partitions.iter()));
        }
        Ok(view.by_instance(owned, stores_of))
    }
}

impl InstanceMetadata {
    /// The group's members for standby placement (see [`super::standby`]): under the classic
    /// protocol the members of the group's current generation with their process ids (parsed
    /// from client ids `<application_id>-<pid>-StreamThread-<n>-...`); under the consumer
    /// protocol one pseudo-member per instance, by its latest claims. `None` while the group is
    /// not described or not stable.
    pub(crate) fn plan_members(&self, application_id: &str) -> Option<Vec<super::standby::PlanMember>> {
        use super::standby::PlanMember;
        let view = lock(&self.view);
        if self.from_claims.load(Ordering::Acquire) {
            if view.claims.is_empty() {
                return None;
            }
            return Some(
                view.claims
                    .iter()
                    .map(|(pid, (_, partitions))| PlanMember {
                        member_id: pid.clone(),
                        process: pid.clone(),
                        key: pid.clone(),
                        partitions: partitions.iter().cloned().collect(),
                    })
                    .collect(),
            );
        }
        if view.refreshed.is_none() || view.group_state != "Stable" {
            return None;
        }
        let prefix = format!("{application_id}-");
        let members = view
            .members
            .iter()
            .filter_map(|m| {
                let pid = m.client_id.strip_prefix(&prefix)?.split_once("-StreamThread-")?.0;
                Some(PlanMember {
                    member_id: m.member_id.clone(),
                    process: pid.to_string(),
                    key: m.client_id.clone(),
                    partitions: m.partitions.clone(),
                })
            })
            .collect();
        Some(members)
    }
}

impl ClusterView {
    /// The instances by their claims: each partition goes to its latest claimant.
    fn claimed_metadata(&self, stores_of: impl Fn(&str) -> Vec<String>) -> Vec<StreamsMetadata> {
        let mut owner: BTreeMap<&(String, i32), (&str, i64)> = BTreeMap::new();
        for (pid, (offset, partitions)) in &self.claims {
            if !self.servers.contains_key(pid) {
                continue;
            }
            for tp in partitions {
                if owner.get(tp).is_none_or(|(_, o)| offset > o) {
                    owner.insert(tp, (pid, *offset));
                }
            }
        }
        let mut owned: BTreeMap<&str, Vec<&(String, i32)>> = BTreeMap::new();
        for (tp, (pid, _)) in owner {
            owned.entry(pid).or_default().push(tp);
        }
        self.by_instance(owned, stores_of)
    }

    /// Each instance in `owned` (by process id, which must have an endpoint; several entries
    /// may name one instance, such as its threads) with its partitions and the stores that read
    /// them, ordered by endpoint.
    fn by_instance<'a, P: IntoIterator<Item = &'a (String, i32)>>(
        &self,
        owned: impl IntoIterator<Item = (&'a str, P)>,
        stores_of: impl Fn(&str) -> Vec<String>,
    ) -> Vec<StreamsMetadata> {
        let mut by_process: BTreeMap<&str, StreamsMetadata> = BTreeMap::new();
        for (pid, partitions) in owned {
            let entry = by_process.entry(pid).or_insert_with(|| StreamsMetadata {
                host_info: self.servers[pid].clone(),
                process_id: pid.to_string(),
                state_store_names: BTreeSet::new(),
                topic_partitions: BTreeSet::new(),
                standby_state_store_names: BTreeSet::new(),
                standby_topic_partitions: BTreeSet::new(),
            });
            for (topic, p) in partitions {
                entry.topic_partitions.insert((topic.clone(), *p));
                entry.state_store_names.extend(stores_of(topic));
            }
        }
        let mut all: Vec<StreamsMetadata> = by_process.into_values().collect();
        all.sort_by(|a, b| a.host_info.cmp(&b.host_info));
        all
    }
}

/// Publishes this instance's endpoint and keeps the view of the group fresh, until shutdown.
pub(crate) struct MetadataThread {
    group: String,
    topic: String,
    process_id: String,
    server: Option<HostInfo>,
    consumer: BaseConsumer,
    producer: BaseProducer,
}

impl MetadataThread {
    pub(crate) fn new(
        application_id: &str,
        process_id: &str,
        server: Option<HostInfo>,
        consumer_config: &ClientConfig,
        producer_config: &ClientConfig,
        from_claims: bool,
        metadata: &InstanceMetadata,
    ) -> Result<Self> {
        metadata.from_claims.store(from_claims, Ordering::Release);
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
        // (Flushed at once: the record goes out before the caller moves on.)
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
        let endpoint = self.server.as_ref().map(ToString::to_string).unwrap_or_default();
        let mut published: Option<BTreeSet<(String, i32)>> = None;
        let mut last_refresh: Option<Instant> = None;
        while !shared.shutdown.load(Ordering::Acquire) {
            let partitions = metadata.local_partitions();
            if published.as_ref() != Some(&partitions) {
                let record = InstanceRecord { server: endpoint.clone(), partitions: partitions.clone() };
                let value = serde_json::to_string(&record).expect("an instance record serializes");
                match self.publish(Some(&value)) {
                    Ok(()) => {
                        info!(server = %endpoint, partitions = partitions.len(), "published this instance's endpoint and partitions");
                        published = Some(partitions);
                    }
                    Err(e) => warn!(error = %e, "publishing this instance's endpoint failed; retrying"),
                }
            }
            while let Some(message) = self.consumer.poll(Duration::from_millis(50)) {
                match message {
                    Ok(m) => {
                        let Some(pid) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                        let mut view = lock(&metadata.view);
                        let record = m.payload().map(|v| {
                            serde_json::from_slice::<InstanceRecord>(v)
                                .map_err(|e| e.to_string())
                                .and_then(|r| {
                                    let host = match r.server.as_str() {
                                        "" => None,
                                        server => Some(server.parse::<HostInfo>().map_err(|e| e.to_string())?),
                                    };
                                    Ok((host, r.partitions))
                                })
                        });
                        match record {
                            Some(Ok((host, partitions))) => {
                                match host {
                                    Some(host) => view.servers.insert(pid.to_string(), host),
                                    None => view.servers.remove(pid),
                                };
                                view.claims.insert(pid.to_string(), (m.offset(), partitions));
                            }
                            Some(Err(e)) => warn!(process = pid, error = %e, "ignoring an unreadable instance record"),
                            None => {
                                view.servers.remove(pid);
                                view.claims.remove(pid);
                            }
                        }
                    }
                    Err(e) => debug!(error = %e, "metadata consumer"),
                }
            }
            let due = last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_INTERVAL);
            let refresh = metadata.refresh.swap(false, Ordering::AcqRel);
            if !metadata.from_claims.load(Ordering::Acquire) && (due || refresh) {
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
                member_id: m.id().to_string(),
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
    fn under_claims_the_latest_claimant_owns_a_partition() {
        let metadata = InstanceMetadata::default();
        metadata.from_claims.store(true, Ordering::Release);
        {
            let mut view = lock(&metadata.view);
            view.servers.insert("old".into(), HostInfo::new("a", 1));
            view.servers.insert("new".into(), HostInfo::new("b", 2));
            let claim = |ps: &[i32]| ps.iter().map(|p| ("in".to_string(), *p)).collect::<BTreeSet<_>>();
            // `old` died holding 0 and 1; `new` was assigned 1 afterwards.
            view.claims.insert("old".into(), (5, claim(&[0, 1])));
            view.claims.insert("new".into(), (9, claim(&[1, 2])));
            view.claims.insert("gone".into(), (12, claim(&[0])));
        }
        let all = metadata.instances(|_| vec!["s".into()]).unwrap();
        let owners: Vec<(String, Vec<i32>)> =
            all.iter().map(|m| (m.process_id.clone(), m.topic_partitions.iter().map(|(_, p)| *p).collect())).collect();
        assert_eq!(owners, vec![("old".into(), vec![0]), ("new".into(), vec![1, 2])], "a claimant without an endpoint is ignored");
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
                Member { member_id: String::new(), client_id: "app-p1-StreamThread-1-consumer".into(), partitions: vec![("in".into(), 0)] },
                Member { member_id: String::new(), client_id: "app-p2-StreamThread-1-consumer".into(), partitions: vec![("in".into(), 1)] },
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

//! The foreign-key table-table join, as in Kafka Streams: the left table subscribes each row to
//! the right row of its foreign key through a subscription topic keyed by that key; the right
//! side keeps the subscriptions and answers through a response topic keyed by the left key;
//! the left side joins an answer only if the row still has the value it subscribed with (a
//! hash of its bytes), so answers to outdated subscriptions are dropped.

use std::sync::Arc;

use streams_core::{
    KeyValueStore, Processor, ProcessorContext, Record, Result, Serde, SerdeError, SerdeRef, StreamsError,
    TimestampedKeyValueStore,
};

use super::table::TableForwarder;
use super::Stateful;
use crate::change::Change;

/// FNV-1a over a value's bytes: stable across builds, as it travels between instances.
pub(crate) fn value_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A foreign-key joiner; `None` deletes the result (inner join without a right value).
pub(crate) type FkJoiner<V, VO, VR> = Arc<dyn Fn(&V, Option<&VO>) -> Option<VR> + Send + Sync>;

/// A left row's request to the right side: register (and answer) or unregister.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subscription<K> {
    pub(crate) pk: K,
    pub(crate) hash: Option<u64>,
    pub(crate) register: bool,
    /// The row changed its foreign key or was deleted: the answer comes even without a match,
    /// so a result the row had is deleted.
    pub(crate) update: bool,
    /// The answer carries the subscription's timestamp, not the later of it and the right row's.
    pub(crate) own_time: bool,
}

/// The right side's answer: the right value for the subscribed hash.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Response<VO> {
    pub(crate) hash: Option<u64>,
    pub(crate) value: Option<VO>,
    /// A missing result is forwarded as a tombstone even if there was none before.
    pub(crate) propagate_null: bool,
}

fn flags_and_hash(flags: u8, hash: Option<u64>) -> Vec<u8> {
    let mut out = vec![flags | if hash.is_some() { 2 } else { 0 }];
    if let Some(h) = hash {
        out.extend_from_slice(&h.to_be_bytes());
    }
    out
}

fn read_flags_and_hash(bytes: &[u8]) -> std::result::Result<(u8, Option<u64>, &[u8]), SerdeError> {
    let (&flags, rest) = bytes.split_first().ok_or_else(|| SerdeError::new("empty join message"))?;
    if flags & 2 == 0 {
        return Ok((flags, None, rest));
    }
    let hash = rest.get(..8).ok_or_else(|| SerdeError::new("truncated join message hash"))?;
    Ok((flags, Some(u64::from_be_bytes(hash.try_into().expect("8 bytes"))), &rest[8..]))
}

/// Serde of [`Subscription`]: flags (bit 0 register, bit 1 hash), hash, primary key bytes.
pub(crate) struct SubscriptionSerde<K>(pub(crate) SerdeRef<K>);

impl<K: 'static> Serde<Subscription<K>> for SubscriptionSerde<K> {
    fn serialize(&self, topic: &str, data: &Subscription<K>) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        let flags = u8::from(data.register) | if data.update { 4 } else { 0 } | if data.own_time { 8 } else { 0 };
        let mut out = flags_and_hash(flags, data.hash);
        out.extend(self.0.serialize(topic, &data.pk)?.ok_or_else(|| SerdeError::null("join key"))?);
        Ok(Some(out))
    }
    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> std::result::Result<Subscription<K>, SerdeError> {
        let (flags, hash, rest) = read_flags_and_hash(data.ok_or_else(|| SerdeError::null("subscription"))?)?;
        Ok(Subscription {
            pk: self.0.deserialize(topic, Some(rest))?,
            hash,
            register: flags & 1 != 0,
            update: flags & 4 != 0,
            own_time: flags & 8 != 0,
        })
    }
}

/// Serde of [`Response`]: flags (bit 0 value, bit 1 hash), hash, value bytes.
pub(crate) struct ResponseSerde<VO>(pub(crate) SerdeRef<VO>);

impl<VO: 'static> Serde<Response<VO>> for ResponseSerde<VO> {
    fn serialize(&self, topic: &str, data: &Response<VO>) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        let value = data.value.as_ref().map(|v| self.0.serialize(topic, v)).transpose()?.flatten();
        let mut out = flags_and_hash(u8::from(value.is_some()) | if data.propagate_null { 4 } else { 0 }, data.hash);
        out.extend(value.unwrap_or_default());
        Ok(Some(out))
    }
    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> std::result::Result<Response<VO>, SerdeError> {
        let (flags, hash, rest) = read_flags_and_hash(data.ok_or_else(|| SerdeError::null("response"))?)?;
        let value = if flags & 1 != 0 { Some(self.0.deserialize(topic, Some(rest))?) } else { None };
        Ok(Response { hash, value, propagate_null: flags & 4 != 0 })
    }
}

/// Key of the subscription store: foreign key, then primary key, so one prefix scan finds
/// every subscriber of a foreign key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CombinedKey<KO, K> {
    pub(crate) fk: KO,
    pub(crate) pk: K,
}

/// Serde of [`CombinedKey`]: 4-byte big-endian length of the foreign key, its bytes, then the
/// primary key's bytes.
pub(crate) struct CombinedKeySerde<KO, K>(pub(crate) SerdeRef<KO>, pub(crate) SerdeRef<K>);

/// The serialized prefix of every [`CombinedKey`] of one foreign key.
pub(crate) struct ForeignKeyPrefix<KO>(pub(crate) SerdeRef<KO>);

fn prefix_bytes<KO: 'static>(serde: &SerdeRef<KO>, topic: &str, fk: &KO) -> std::result::Result<Vec<u8>, SerdeError> {
    let fk = serde.serialize(topic, fk)?.ok_or_else(|| SerdeError::null("foreign key"))?;
    let len = u32::try_from(fk.len()).map_err(|_| SerdeError::new("foreign key larger than 4 GiB"))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend(fk);
    Ok(out)
}

impl<KO: 'static> Serde<KO> for ForeignKeyPrefix<KO> {
    fn serialize(&self, topic: &str, data: &KO) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        prefix_bytes(&self.0, topic, data).map(Some)
    }
    fn deserialize(&self, _: &str, _: Option<&[u8]>) -> std::result::Result<KO, SerdeError> {
        Err(SerdeError::new("a foreign-key prefix is only serialized"))
    }
}

impl<KO: 'static, K: 'static> Serde<CombinedKey<KO, K>> for CombinedKeySerde<KO, K> {
    fn serialize(&self, topic: &str, data: &CombinedKey<KO, K>) -> std::result::Result<Option<Vec<u8>>, SerdeError> {
        let mut out = prefix_bytes(&self.0, topic, &data.fk)?;
        out.extend(self.1.serialize(topic, &data.pk)?.ok_or_else(|| SerdeError::null("join key"))?);
        Ok(Some(out))
    }
    fn deserialize(&self, topic: &str, data: Option<&[u8]>) -> std::result::Result<CombinedKey<KO, K>, SerdeError> {
        let bytes = data.ok_or_else(|| SerdeError::null("combined key"))?;
        let len = bytes.get(..4).ok_or_else(|| SerdeError::new("truncated combined key"))?;
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let fk = bytes.get(4..4 + len).ok_or_else(|| SerdeError::new("truncated combined key"))?;
        Ok(CombinedKey {
            fk: self.0.deserialize(topic, Some(fk))?,
            pk: self.1.deserialize(topic, Some(&bytes[4 + len..]))?,
        })
    }
}

fn hash_of<V: 'static>(serde: &SerdeRef<V>, value: &V) -> Result<u64> {
    let bytes = serde
        .serialize("", value)
        .map_err(|e| StreamsError::serde("foreign-key join value hash", e))?
        .unwrap_or_default();
    Ok(value_hash(&bytes))
}

/// Left side: turns each row change into subscriptions keyed by foreign key.
pub(crate) struct SubscriptionSend<K, V, KO> {
    extractor: Arc<dyn Fn(&V) -> KO + Send + Sync>,
    value_serde: SerdeRef<V>,
    left_join: bool,
    _key: std::marker::PhantomData<fn(K)>,
}

impl<K, V, KO> SubscriptionSend<K, V, KO> {
    pub(crate) fn new(extractor: Arc<dyn Fn(&V) -> KO + Send + Sync>, value_serde: SerdeRef<V>, left_join: bool) -> Self {
        SubscriptionSend { extractor, value_serde, left_join, _key: std::marker::PhantomData }
    }
}

impl<K: Clone + 'static, V: Clone + 'static, KO: Clone + PartialEq + 'static> Processor<K, Change<V>, KO, Subscription<K>>
    for SubscriptionSend<K, V, KO>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, KO, Subscription<K>>, record: Record<K, Change<V>>) -> Result<()> {
        if !record.value.is_latest {
            return Ok(()); // an out-of-order update of a versioned table (KIP-914)
        }
        let new_fk = record.value.new_value.as_ref().map(|v| (self.extractor)(v));
        let old_fk = record.value.old_value.as_ref().map(|v| (self.extractor)(v));
        let hash = record.value.new_value.as_ref().map(|v| hash_of(&self.value_serde, v)).transpose()?;
        // A row moving to another foreign key must delete a result it had if the new key has
        // no match (with the same key, the result stands or never was).
        let update = old_fk.is_some() && old_fk != new_fk;
        let send = |ctx: &mut ProcessorContext<'_, KO, Subscription<K>>, fk: KO, register: bool| {
            let subscription = Subscription { pk: record.key.clone(), hash, register, update, own_time: false };
            ctx.forward(Record { key: fk, value: subscription, timestamp: record.timestamp, headers: record.headers.clone() })
        };
        if let Some(old) = old_fk.clone().filter(|old| Some(old) != new_fk.as_ref()) {
            // A deleted row unsubscribes and is answered (with no value), so its result is
            // deleted in order with the answers before it; a moved row only unsubscribes.
            let deleted = new_fk.is_none();
            // A left join's delete is answered at its own time (Kafka Streams subscribes it to no
            // foreign key); an inner join's at the later of it and the right row.
            let own_time = deleted && self.left_join;
            let subscription = Subscription { pk: record.key.clone(), hash: None, register: false, update: deleted, own_time };
            ctx.forward(Record { key: old, value: subscription, timestamp: record.timestamp, headers: record.headers.clone() })?;
        }
        if let Some(new) = new_fk {
            send(ctx, new, true)?;
        }
        Ok(())
    }
}

/// Right side: keeps subscriptions and answers them with the right table's value.
pub(crate) struct SubscriptionReceive<KO, K, VO> {
    subscriptions: KeyValueStore<CombinedKey<KO, K>, u64>,
    right: TimestampedKeyValueStore<KO, VO>,
}

impl<KO: Clone + 'static, K: Clone + 'static, VO: Clone + 'static> SubscriptionReceive<KO, K, VO> {
    pub(crate) fn processor(subscriptions_store: &str, right_store: &str) -> impl Processor<KO, Subscription<K>, K, Response<VO>> {
        let (subscriptions_store, right_store) = (subscriptions_store.to_string(), right_store.to_string());
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Response<VO>>| {
            Ok(SubscriptionReceive {
                subscriptions: ctx.key_value_store(&subscriptions_store)?,
                right: ctx.key_value_store(&right_store)?,
            })
        })
    }
}

impl<KO: Clone + 'static, K: Clone + 'static, VO: Clone + 'static> Processor<KO, Subscription<K>, K, Response<VO>>
    for SubscriptionReceive<KO, K, VO>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Response<VO>>, record: Record<KO, Subscription<K>>) -> Result<()> {
        let subscriptions = &self.subscriptions;
        let Record { key: fk, value: sub, timestamp, headers } = record;
        let key = CombinedKey { fk: fk.clone(), pk: sub.pk.clone() };
        match (sub.register, sub.hash) {
            (true, Some(hash)) => subscriptions.put(&key, &hash)?,
            _ => {
                subscriptions.delete(&key)?;
                if !sub.update {
                    return Ok(());
                }
            }
        }
        let right = self.right.get(&fk)?;
        let timestamp = match &right {
            Some(r) if !sub.own_time => r.timestamp.max(timestamp),
            _ => timestamp,
        };
        let value = if sub.register { right.map(|r| r.value) } else { None };
        let response = Response { hash: sub.hash, value, propagate_null: sub.update };
        ctx.forward(Record { key: sub.pk, value: response, timestamp, headers })
    }
}

/// Right side: a change of a right row answers every subscriber of its key again.
pub(crate) struct RightChange<KO, K> {
    prefix: SerdeRef<KO>,
    subscriptions: KeyValueStore<CombinedKey<KO, K>, u64>,
}

impl<KO: Clone + 'static, K: Clone + 'static> RightChange<KO, K> {
    pub(crate) fn processor<VO: Clone + 'static>(
        subscriptions_store: &str,
        fk_serde: SerdeRef<KO>,
    ) -> impl Processor<KO, Change<VO>, K, Response<VO>> {
        let subscriptions_store = subscriptions_store.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Response<VO>>| {
            Ok(RightChange { prefix: fk_serde.clone(), subscriptions: ctx.key_value_store(&subscriptions_store)? })
        })
    }
}

impl<KO: Clone + 'static, K: Clone + 'static, VO: Clone + 'static> Processor<KO, Change<VO>, K, Response<VO>>
    for RightChange<KO, K>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Response<VO>>, record: Record<KO, Change<VO>>) -> Result<()> {
        if record.value.is_noop() || !record.value.is_latest {
            return Ok(()); // no result changes (or an out-of-order update of a versioned table)
        }
        let subscriptions = &self.subscriptions;
        let prefix = ForeignKeyPrefix(self.prefix.clone());
        for entry in subscriptions.prefix_scan(&record.key, &prefix)? {
            let (key, hash) = entry?;
            let response = Response { hash: Some(hash), value: record.value.new_value.clone(), propagate_null: true };
            ctx.forward(Record { key: key.pk, value: response, timestamp: record.timestamp, headers: record.headers.clone() })?;
        }
        Ok(())
    }
}

/// Left side: joins an answer with the row's current value if it is still the subscribed one.
pub(crate) struct ResponseJoin<K, V, VO, VR> {
    value_serde: SerdeRef<V>,
    joiner: FkJoiner<V, VO, VR>,
    left: TimestampedKeyValueStore<K, V>,
    results: TableForwarder<K, VR>,
}

impl<K: Clone + 'static, V: Clone + 'static, VO: 'static, VR: Clone + 'static> ResponseJoin<K, V, VO, VR> {
    pub(crate) fn processor(
        left_store: &str,
        result_store: &str,
        value_serde: SerdeRef<V>,
        joiner: FkJoiner<V, VO, VR>,
    ) -> impl Processor<K, Response<VO>, K, Change<VR>> {
        let (left_store, result_store) = (left_store.to_string(), result_store.to_string());
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Change<VR>>| {
            Ok(ResponseJoin {
                value_serde: value_serde.clone(),
                joiner: joiner.clone(),
                left: ctx.key_value_store(&left_store)?,
                results: TableForwarder::init(ctx, &result_store)?,
            })
        })
    }
}

impl<K: Clone + 'static, V: Clone + 'static, VO: 'static, VR: Clone + 'static> Processor<K, Response<VO>, K, Change<VR>>
    for ResponseJoin<K, V, VO, VR>
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>, record: Record<K, Response<VO>>) -> Result<()> {
        let current = self.left.get(&record.key)?;
        let current_hash = current.as_ref().map(|v| hash_of(&self.value_serde, &v.value)).transpose()?;
        if current_hash != record.value.hash {
            return Ok(()); // an answer to a subscription the row has since replaced
        }
        let Some(current) = current else {
            // The answer to the row's delete: its result goes, as a tombstone even if it had none.
            let old = self.results.get(&record.key)?.map(|r| r.value);
            return self.results.update(ctx, record.with_value(()), None, old);
        };
        let new = (self.joiner)(&current.value, record.value.value.as_ref());
        let results = &self.results;
        let old = results.get(&record.key)?.map(|r| r.value);
        if new.is_none() && old.is_none() && !record.value.propagate_null {
            return Ok(()); // a new row without a match: no result, and none before
        }
        // The result carries the response's timestamp: the update that caused it.
        results.update(ctx, record.with_value(()), new, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams_core::Serdes;

    #[test]
    fn join_messages_round_trip_and_keys_group_by_foreign_key() {
        let s = SubscriptionSerde::<String>(Arc::new(Serdes::string()));
        for sub in [
            Subscription { pk: "p".to_string(), hash: Some(7), register: true, update: false, own_time: false },
            Subscription { pk: "p".to_string(), hash: None, register: false, update: true, own_time: true },
        ] {
            let bytes = s.serialize("t", &sub).unwrap();
            assert_eq!(s.deserialize("t", bytes.as_deref()).unwrap(), sub);
        }
        let r = ResponseSerde::<i64>(Arc::new(Serdes::i64()));
        for resp in
            [Response { hash: Some(1), value: Some(5), propagate_null: false }, Response { hash: None, value: None, propagate_null: true }]
        {
            let bytes = r.serialize("t", &resp).unwrap();
            assert_eq!(r.deserialize("t", bytes.as_deref()).unwrap(), resp);
        }
        assert!(r.deserialize("t", Some(&[2, 1])).is_err());
        let k = CombinedKeySerde::<String, String>(Arc::new(Serdes::string()), Arc::new(Serdes::string()));
        let key = CombinedKey { fk: "ab".to_string(), pk: "c".to_string() };
        let bytes = k.serialize("t", &key).unwrap().unwrap();
        assert_eq!(k.deserialize("t", Some(&bytes)).unwrap(), key);
        let prefix = ForeignKeyPrefix::<String>(Arc::new(Serdes::string())).serialize("t", &"ab".to_string()).unwrap().unwrap();
        assert!(bytes.starts_with(&prefix));
        let other = k.serialize("t", &CombinedKey { fk: "abc".to_string(), pk: String::new() }).unwrap().unwrap();
        assert!(!other.starts_with(&prefix), "the length keeps `ab` and `abc` apart");
        assert_ne!(value_hash(b"a"), value_hash(b"b"));
    }
}

//! `KSTREAM-AGGREGATE` / `KSTREAM-REDUCE`: folds a grouped stream into a KTable.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Processor, ProcessorContext, Record, Result};

use super::table::TableForwarder;
use super::Stateful;
use crate::change::Change;

/// Folds each record into its key's aggregate (`None` before the first record of a key).
/// The result's timestamp is the largest of the record's and the previous aggregate's.
pub(crate) struct StreamAggregate<K, V, VA, F> {
    combine: Arc<F>,
    forwarder: TableForwarder<K, VA>,
    _types: PhantomData<fn(V)>,
}

impl<K, V, VA, F> StreamAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA,
{
    pub(crate) fn processor(store_name: &str, combine: Arc<F>) -> impl Processor<K, V, K, Change<VA>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, K, Change<VA>>| {
            let forwarder = TableForwarder::init(ctx, &store_name)?;
            Ok(StreamAggregate { combine: combine.clone(), forwarder, _types: PhantomData })
        })
    }
}

impl<K, V, VA, F> Processor<K, V, K, Change<VA>> for StreamAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>, record: Record<K, V>) -> Result<()> {
        let forwarder = &self.forwarder;
        let old = forwarder.get(&record.key)?;
        let timestamp = old.as_ref().map_or(record.timestamp, |o| o.timestamp.max(record.timestamp));
        let old = old.map(|o| o.value);
        let (key, value) = (record.key.clone(), record.value);
        let new = (self.combine)(&key, value, old.clone());
        let record = Record { key, value: (), timestamp, headers: record.headers };
        forwarder.update(ctx, record, Some(new), old)
    }
}

//! `KSTREAM-AGGREGATE` / `KSTREAM-REDUCE`: folds a grouped stream into a KTable.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::{Processor, ProcessorContext, Record, Result};

use super::table::TableForwarder;
use crate::change::Change;

/// Folds each record into its key's aggregate (`None` before the first record of a key).
/// The result's timestamp is the largest of the record's and the previous aggregate's.
pub(crate) struct StreamAggregate<K, V, VA, F> {
    store_name: String,
    combine: Arc<F>,
    forwarder: Option<TableForwarder<K, VA>>,
    _types: PhantomData<fn(V)>,
}

impl<K, V, VA, F> StreamAggregate<K, V, VA, F> {
    pub(crate) fn new(store_name: &str, combine: Arc<F>) -> Self {
        StreamAggregate { store_name: store_name.to_string(), combine, forwarder: None, _types: PhantomData }
    }
}

impl<K, V, VA, F> Processor<K, V, K, Change<VA>> for StreamAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>) -> Result<()> {
        self.forwarder = Some(TableForwarder::init(ctx, &self.store_name)?);
        Ok(())
    }

    fn process(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VA>>, record: Record<K, V>) -> Result<()> {
        let forwarder = self.forwarder.as_ref().expect("initialized");
        let old = forwarder.get(&record.key)?;
        let timestamp = old.as_ref().map_or(record.timestamp, |o| o.timestamp.max(record.timestamp));
        let old = old.map(|o| o.value);
        let (key, value) = (record.key.clone(), record.value);
        let new = (self.combine)(&key, value, old.clone());
        let record = Record { key, value: (), timestamp, headers: record.headers };
        forwarder.update(ctx, record, Some(new), old)
    }
}

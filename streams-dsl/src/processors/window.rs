//! `KSTREAM-AGGREGATE` over time and session windows.

use std::marker::PhantomData;
use std::sync::Arc;

use streams_core::internals::{CacheFlush, CachedStateStore};
use streams_core::state::{SessionStore, Window, WindowStore, Windowed};
use streams_core::{Processor, ProcessorContext, Record, Result, ValueAndTimestamp};
use tracing::debug;

use super::table::{forward_flush, timestamped};
use super::Stateful;
use crate::change::Change;
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows};

/// Drops a record whose windows have all closed, counting it.
fn drop_late<K, V>(ctx: &mut ProcessorContext<'_, K, V>, timestamp: i64, close_time: i64) {
    debug!(node = %ctx.node_name(), timestamp, close_time, "dropping late record: its windows have closed");
    ctx.record_dropped();
}

/// Folds records into every time window that contains them and is still open.
pub(crate) struct TimeWindowAggregate<K, V, VA, F> {
    windows: TimeWindows,
    combine: Arc<F>,
    store: WindowStore<K, ValueAndTimestamp<VA>>,
    caching: bool,
    _types: PhantomData<fn(V)>,
}

impl<K, V, VA, F> TimeWindowAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA,
{
    pub(crate) fn processor(store_name: &str, windows: TimeWindows, combine: Arc<F>) -> impl Processor<K, V, Windowed<K>, Change<VA>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>| {
            let store: WindowStore<K, ValueAndTimestamp<VA>> = ctx.window_store(&store_name)?;
            let caching = store.set_flush_listener(ctx, |ctx, flushed| forward_flush(ctx, timestamped(flushed)))?;
            Ok(TimeWindowAggregate { windows, combine: combine.clone(), store, caching, _types: PhantomData })
        })
    }
}

impl<K, V, VA, F> Processor<K, V, Windowed<K>, Change<VA>> for TimeWindowAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>, record: Record<K, V>) -> Result<()> {
        let store = &self.store;
        let close_time = ctx.stream_time() - self.windows.grace_ms;
        let mut open = false;
        for window in self.windows.windows_for(record.timestamp) {
            if window.end <= close_time {
                continue;
            }
            open = true;
            let old = store.fetch(&record.key, window.start)?;
            let timestamp = old.as_ref().map_or(record.timestamp, |o| o.timestamp.max(record.timestamp));
            let old = old.map(|o| o.value);
            let new = (self.combine)(&record.key, record.value.clone(), old.clone());
            store.put(&record.key, Some(&ValueAndTimestamp { value: new.clone(), timestamp }), window.start)?;
            if !self.caching {
                let key = Windowed::new(record.key.clone(), window);
                let out = Record { key, value: Change::new(Some(new), old), timestamp, headers: record.headers.clone() };
                ctx.forward(out)?;
            }
        }
        if !open {
            drop_late(ctx, record.timestamp, close_time);
        }
        Ok(())
    }
}

/// The functions of a session aggregation: fold a record into the (merged) aggregate, which is
/// `None` for a new session; merge the aggregates of two sessions.
pub(crate) struct SessionFunctions<K, V, VA> {
    pub(crate) aggregator: SessionAggregator<K, V, VA>,
    pub(crate) merger: SessionMerger<K, VA>,
}

/// Folds a record into a session's aggregate (`None` for a new session).
pub(crate) type SessionAggregator<K, V, VA> = Box<dyn Fn(&K, V, Option<VA>) -> VA + Send + Sync>;

/// Merges a session's aggregate into the aggregate so far (`None` before the first session:
/// the aggregation's initial value, as Kafka Streams merges into `initializer()`).
pub(crate) type SessionMerger<K, VA> = Box<dyn Fn(&K, Option<VA>, VA) -> VA + Send + Sync>;

/// Merges each record with the sessions of its key within the gap into one session.
pub(crate) struct SessionWindowAggregate<K, V, VA> {
    windows: SessionWindows,
    functions: Arc<SessionFunctions<K, V, VA>>,
    store: SessionStore<K, VA>,
    caching: bool,
    /// The largest timestamp this processor has seen.
    stream_time: i64,
}

impl<K, V, VA> SessionWindowAggregate<K, V, VA>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
{
    pub(crate) fn processor(
        store_name: &str,
        windows: SessionWindows,
        functions: Arc<SessionFunctions<K, V, VA>>,
    ) -> impl Processor<K, V, Windowed<K>, Change<VA>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>| {
            let store: SessionStore<K, VA> = ctx.session_store(&store_name)?;
            // A session's updates carry its end time, flushed from a cache too.
            let caching = store.set_flush_listener(ctx, |ctx, flushed: CacheFlush<Windowed<K>, VA>| {
                let end = flushed.key.window.end;
                forward_flush(ctx, CacheFlush { timestamp: end, ..flushed })
            })?;
            Ok(SessionWindowAggregate { windows, functions: functions.clone(), store, caching, stream_time: i64::MIN })
        })
    }
}

impl<K, V, VA> Processor<K, V, Windowed<K>, Change<VA>> for SessionWindowAggregate<K, V, VA>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>, record: Record<K, V>) -> Result<()> {
        let store = &self.store;
        let f = &self.functions;
        let ts = record.timestamp;
        self.stream_time = self.stream_time.max(ts);
        // A session may still grow until stream time passes its end plus the gap plus grace.
        let close_time = self.stream_time - self.windows.grace_ms - self.windows.gap_ms;
        // The sessions this record merges: one key's, around one record, so few.
        let overlapping = store
            .find_sessions(&record.key, ts - self.windows.gap_ms, ts + self.windows.gap_ms)?
            .collect::<Result<Vec<_>>>()?;
        let new_session = Window::new(ts, ts);
        let mut window = new_session;
        let mut agg: Option<VA> = None;
        for (session, value) in &overlapping {
            window = Window::new(window.start.min(session.window.start), window.end.max(session.window.end));
            agg = Some((f.merger)(&record.key, agg, value.clone()));
        }
        if window.end < close_time {
            drop_late(ctx, ts, close_time);
            return Ok(());
        }
        // As in Kafka Streams, every session the record lands in is retracted (at its own end
        // time) and the merged one emitted anew, even when the window did not change.
        let mut forwards = Vec::new();
        let mut same_session_old = None;
        for (session, value) in overlapping {
            if window == new_session {
                same_session_old = Some(value);
                continue;
            }
            store.remove(&session)?;
            let end = session.window.end;
            forwards.push(Record::new(session, Change::new(None, Some(value)), end));
        }
        let agg = (f.aggregator)(&record.key, record.value, agg);
        let merged = Windowed::new(record.key, window);
        store.put(&merged, Some(&agg))?;
        if self.caching {
            return Ok(());
        }
        forwards.push(Record::new(merged, Change::new(Some(agg), same_session_old), window.end));
        forwards.into_iter().try_for_each(|r| ctx.forward(r))
    }
}

/// Sliding windows of size `d` (both bounds inclusive), one per distinct set of records: the
/// window ending at each record, `[t - d, t]`, and the window starting just after it,
/// `[t + 1, t + 1 + d]`, when a later record falls in it. Windows never start before 0.
///
/// Existing windows that contain a new record fold it in; windows the record creates are
/// computed from a change-logged buffer of the key's recent records (`records_store`).
pub(crate) struct SlidingWindowAggregate<K, V, VA, F> {
    windows: SlidingWindows,
    combine: Arc<F>,
    store: WindowStore<K, ValueAndTimestamp<VA>>,
    records: WindowStore<K, V>,
}

impl<K, V, VA, F> SlidingWindowAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA,
{
    pub(crate) fn processor(
        store_name: &str,
        records_store: &str,
        windows: SlidingWindows,
        combine: Arc<F>,
    ) -> impl Processor<K, V, Windowed<K>, Change<VA>> {
        let (store_name, records_store) = (store_name.to_string(), records_store.to_string());
        Stateful::new(move |ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>| {
            Ok(SlidingWindowAggregate {
                windows,
                combine: combine.clone(),
                store: ctx.window_store(&store_name)?,
                records: ctx.window_store(&records_store)?,
            })
        })
    }
}

impl<K, V, VA, F> Processor<K, V, Windowed<K>, Change<VA>> for SlidingWindowAggregate<K, V, VA, F>
where
    K: Clone + 'static,
    V: Clone + 'static,
    VA: Clone + 'static,
    F: Fn(&K, V, Option<VA>) -> VA,
{
    fn process(&mut self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>, record: Record<K, V>) -> Result<()> {
        let (store, records) = (&self.store, &self.records);
        let d = self.windows.time_difference_ms;
        let t = record.timestamp;
        let close_time = ctx.stream_time() - self.windows.grace_ms;
        if t + d < close_time {
            drop_late(ctx, t, close_time);
            return Ok(());
        }
        records.put(&record.key, Some(&record.value), t)?;
        // Every record that can bound a window containing t, in time order.
        let nearby = records.fetch_range(&record.key, (t - d - 1).max(0), t + d + 1)?.collect::<Result<Vec<_>>>()?;
        let left_start = |r: i64| (r - d).max(0);
        let mut starts = std::collections::BTreeSet::new();
        // Whether a record follows `r` closely enough to give it a right window.
        let has_right = |r: i64| {
            let next = nearby.partition_point(|&(q, _)| q <= r);
            nearby.get(next).is_some_and(|&(q, _)| q <= r + 1 + d)
        };
        for &(r, _) in &nearby {
            if (t..=t + d).contains(&r) && left_start(r) <= t {
                starts.insert(left_start(r));
            }
            if r < t && t <= r + 1 + d && has_right(r) {
                starts.insert(r + 1);
            }
        }
        if has_right(t) {
            // The record's own right window does not contain it: only created, never updated.
            starts.insert(t + 1);
        }
        for start in starts {
            let window = Window::new(start, start + d);
            if window.end < close_time {
                continue;
            }
            let old = store.fetch(&record.key, start)?;
            let (new, timestamp) = match &old {
                // An existing window: fold the record in (unless it lies outside, as for t's right window).
                Some(old) if window.start <= t => (
                    (self.combine)(&record.key, record.value.clone(), Some(old.value.clone())),
                    old.timestamp.max(t),
                ),
                Some(_) => continue,
                // A new window: fold its records, in time order.
                None => {
                    let mut agg = None;
                    let mut max_ts = start;
                    for (r, v) in nearby.iter().filter(|(r, _)| window.start <= *r && *r <= window.end) {
                        agg = Some((self.combine)(&record.key, v.clone(), agg));
                        max_ts = max_ts.max(*r);
                    }
                    let Some(agg) = agg else { continue };
                    (agg, max_ts)
                }
            };
            store.put(&record.key, Some(&ValueAndTimestamp { value: new.clone(), timestamp }), start)?;
            let old = old.map(|o| o.value);
            ctx.forward(Record::new(Windowed::new(record.key.clone(), window), Change::new(Some(new), old), timestamp))?;
        }
        Ok(())
    }
}

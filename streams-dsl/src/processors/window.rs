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

/// Folds records into every time window that contains them and is still open. Windows close
/// by the time this processor observed (the latest record it aggregated), as Kafka Streams'
/// `observedStreamTime`: records an upstream filter dropped do not close them.
pub(crate) struct TimeWindowAggregate<K, V, VA, F> {
    windows: TimeWindows,
    combine: Arc<F>,
    store: WindowStore<K, ValueAndTimestamp<VA>>,
    caching: bool,
    observed: i64,
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
            Ok(TimeWindowAggregate { windows, combine: combine.clone(), store, caching, observed: i64::MIN, _types: PhantomData })
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
        self.observed = self.observed.max(record.timestamp);
        let store = &self.store;
        let close_time = self.observed - self.windows.grace_ms;
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
    /// Under emit-final, Kafka Streams keeps sessions in a time-ordered store that no longer
    /// finds a session a full retention (this long) behind the latest session end written.
    time_ordered_retention: Option<i64>,
    /// The latest session end written.
    written_time: i64,
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
        time_ordered_retention: Option<i64>,
    ) -> impl Processor<K, V, Windowed<K>, Change<VA>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>| {
            let store: SessionStore<K, VA> = ctx.session_store(&store_name)?;
            // A session's updates carry its end time, flushed from a cache too.
            let caching = store.set_flush_listener(ctx, |ctx, flushed: CacheFlush<Windowed<K>, VA>| {
                let end = flushed.key.window.end;
                forward_flush(ctx, CacheFlush { timestamp: end, ..flushed })
            })?;
            Ok(SessionWindowAggregate {
                windows,
                functions: functions.clone(),
                store,
                caching,
                stream_time: i64::MIN,
                time_ordered_retention,
                written_time: i64::MIN,
            })
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
        let mut overlapping = store
            .find_sessions(&record.key, ts - self.windows.gap_ms, ts + self.windows.gap_ms)?
            .collect::<Result<Vec<_>>>()?;
        if let (Some(retention), true) = (self.time_ordered_retention, self.written_time != i64::MIN) {
            let live_from = self.written_time - retention + 1;
            overlapping.retain(|(session, _)| session.window.end >= live_from);
        }
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
        self.written_time = self.written_time.max(window.end);
        if self.caching {
            return Ok(());
        }
        forwards.push(Record::new(merged, Change::new(Some(agg), same_session_old), window.end));
        forwards.into_iter().try_for_each(|r| ctx.forward(r))
    }
}

/// Sliding windows of size `d` (both bounds inclusive), one per distinct set of records, as
/// Kafka Streams computes them: the window ending at each record, `[t - d, t]`, and the window
/// starting just after it, `[t + 1, t + 1 + d]`, when a later record falls in it. A record
/// updates the windows that contain it (newest first), then creates the right window of the
/// record before it, its own left window (from the aggregate of the window before it) and its
/// own right window (the aggregate of the window after it). Records earlier than `d` share the
/// window `[0, d]`.
pub(crate) struct SlidingWindowAggregate<K, V, VA, F> {
    windows: SlidingWindows,
    combine: Arc<F>,
    store: WindowStore<K, ValueAndTimestamp<VA>>,
    /// Whether the store's cache forwards the updates (when it writes them down).
    caching: bool,
    /// The largest timestamp this processor has seen.
    stream_time: i64,
    _values: PhantomData<fn(V)>,
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
        windows: SlidingWindows,
        combine: Arc<F>,
    ) -> impl Processor<K, V, Windowed<K>, Change<VA>> {
        let store_name = store_name.to_string();
        Stateful::new(move |ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>| {
            let store: WindowStore<K, ValueAndTimestamp<VA>> = ctx.window_store(&store_name)?;
            let caching = store.set_flush_listener(ctx, |ctx, flushed| forward_flush(ctx, timestamped(flushed)))?;
            Ok(SlidingWindowAggregate {
                windows,
                combine: combine.clone(),
                store,
                caching,
                stream_time: i64::MIN,
                _values: PhantomData,
            })
        })
    }

    /// Folds the record into the window (`agg` is its aggregate so far, `None` for a new one)
    /// and forwards the update, unless the window has closed.
    fn update(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
        start: i64,
        agg: Option<ValueAndTimestamp<VA>>,
        record: &Record<K, V>,
        close_time: i64,
    ) -> Result<()> {
        let window = Window::new(start, start + self.windows.time_difference_ms);
        if window.end < close_time {
            drop_late(ctx, record.timestamp, close_time);
            return Ok(());
        }
        let timestamp = agg.as_ref().map_or(record.timestamp, |a| a.timestamp.max(record.timestamp));
        let old = agg.map(|a| a.value);
        let new = (self.combine)(&record.key, record.value.clone(), old.clone());
        self.store.put(&record.key, Some(&ValueAndTimestamp { value: new.clone(), timestamp }), start)?;
        if self.caching {
            return Ok(());
        }
        ctx.forward(Record::new(Windowed::new(record.key.clone(), window), Change::new(Some(new), old), timestamp))
    }

    /// The record's right window, holding what the window after it holds (not the record).
    fn create_right_window(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>,
        record: &Record<K, V>,
        right: ValueAndTimestamp<VA>,
    ) -> Result<()> {
        let start = record.timestamp + 1;
        let window = Window::new(start, start + self.windows.time_difference_ms);
        self.store.put(&record.key, Some(&right), start)?;
        if self.caching {
            return Ok(());
        }
        ctx.forward(Record::new(Windowed::new(record.key.clone(), window), Change::new(Some(right.value), None), right.timestamp))
    }

    /// The windows of the key with a start in `[from, to]`, newest first.
    fn windows_newest_first(&self, key: &K, from: i64, to: i64) -> Result<Vec<(i64, ValueAndTimestamp<VA>)>> {
        // One key's windows within 2d + 1: few. (A reverse scan would spare the reversal.)
        let mut windows = self.store.fetch_range(key, from, to)?.collect::<Result<Vec<_>>>()?;
        windows.reverse();
        Ok(windows)
    }

    fn process_early(&self, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<VA>>, record: &Record<K, V>, close_time: i64) -> Result<()> {
        let t = record.timestamp;
        let mut combined: Option<ValueAndTimestamp<VA>> = None;
        let mut right: Option<ValueAndTimestamp<VA>> = None;
        let mut right_exists = false;
        let mut starts = std::collections::BTreeSet::new();
        let mut previous = None;
        let mut windows = self.store.fetch_range(&record.key, 0, t + 1)?.collect::<Result<Vec<_>>>()?;
        for (start, agg) in windows.drain(..) {
            starts.insert(start);
            if start == 0 {
                if agg.timestamp < t {
                    previous = Some(agg.timestamp);
                }
                combined = Some(agg);
            } else if start <= t {
                right = Some(agg.clone());
                self.update(ctx, start, Some(agg), record, close_time)?;
            } else if start == t + 1 {
                right_exists = true;
            }
        }
        if right.is_none() {
            right = combined.clone().filter(|c| c.timestamp > t);
        }
        if let Some(r) = right.filter(|r| !right_exists && r.timestamp > t) {
            self.create_right_window(ctx, record, r)?;
        }
        if let Some(p) = previous.filter(|p| !starts.contains(&(p + 1))) {
            self.update(ctx, p + 1, None, record, close_time)?;
        }
        self.update(ctx, 0, combined, record, close_time)
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
        let d = self.windows.time_difference_ms;
        let t = record.timestamp;
        self.stream_time = self.stream_time.max(t);
        let close_time = self.stream_time - self.windows.grace_ms;
        if t + 1 + d <= close_time {
            drop_late(ctx, t, close_time);
            return Ok(());
        }
        if t < d {
            return self.process_early(ctx, &record, close_time);
        }
        let mut starts = std::collections::BTreeSet::new();
        let (mut left_agg, mut right_agg) = (None, None);
        let (mut left_exists, mut right_exists) = (false, false);
        let mut previous = None;
        for (start, agg) in self.windows_newest_first(&record.key, (t - 2 * d).max(0), t + 1)? {
            starts.insert(start);
            let end = start + d;
            if start == t + 1 {
                right_exists = true;
            } else if end > t {
                if right_agg.is_none() {
                    right_agg = Some(agg.clone());
                }
                self.update(ctx, start, Some(agg), &record, close_time)?;
            } else if end == t {
                left_exists = true;
                let latest = agg.timestamp;
                self.update(ctx, start, Some(agg), &record, close_time)?;
                if latest < t {
                    previous = Some(latest);
                } else {
                    // A record at t already made every window: nothing to create.
                    return Ok(());
                }
            } else {
                previous = Some(agg.timestamp);
                left_agg = Some(agg);
                break;
            }
        }
        // The right window of the record before, if this record falls in it.
        if let Some(p) = previous {
            if !starts.contains(&(p + 1)) && p + 1 + d >= t {
                self.update(ctx, p + 1, None, &record, close_time)?;
            }
        }
        if !left_exists {
            // The record's left window holds what the window before it holds, if the record
            // before is within d.
            let agg = left_agg
                .filter(|_| previous.is_some_and(|p| t - d <= p))
                .map(|a| ValueAndTimestamp { value: a.value, timestamp: t });
            self.update(ctx, t - d, agg, &record, close_time)?;
        }
        if let Some(r) = right_agg.filter(|r| !right_exists && r.timestamp > t) {
            self.create_right_window(ctx, &record, r)?;
        }
        Ok(())
    }
}


//! Window specifications: [`TimeWindows`], [`SessionWindows`] and [`JoinWindows`].
//!
//! Time is in milliseconds of event time. A record is late, and dropped, once stream time has
//! passed the end of every window it belongs to plus the grace period.

use std::time::Duration;

use streams_core::state::Window;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Tumbling (`advance == size`) or hopping (`advance < size`) windows, aligned to the epoch and
/// half-open: `[start, start + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    /// Window size.
    pub size_ms: i64,
    /// Distance between window starts.
    pub advance_ms: i64,
    /// How long after a window ends it still accepts out-of-order records.
    pub grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` that close as soon as stream time passes their end.
    pub fn of_size_with_no_grace(size: Duration) -> Self {
        Self::of_size_and_grace(size, Duration::ZERO)
    }

    /// Tumbling windows of `size` that accept records up to `grace` after their end.
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Self {
        let size_ms = ms(size).max(1);
        TimeWindows { size_ms, advance_ms: size_ms, grace_ms: ms(grace) }
    }

    /// Hopping windows: a new window every `advance` (at most the size, at least 1 ms).
    pub fn advance_by(self, advance: Duration) -> Self {
        TimeWindows { advance_ms: ms(advance).clamp(1, self.size_ms), ..self }
    }

    /// The windows that contain `timestamp`, earliest first.
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        let last_start = timestamp - timestamp.rem_euclid(self.advance_ms);
        // The earliest window ending after `timestamp`, aligned up to the advance grid.
        let mut start = (timestamp - self.size_ms + 1).max(0);
        start += (self.advance_ms - start.rem_euclid(self.advance_ms)) % self.advance_ms;
        let mut windows = Vec::new();
        while start <= last_start {
            windows.push(Window::new(start, start + self.size_ms));
            start += self.advance_ms;
        }
        windows
    }
}

/// Sliding windows: a window of `time_difference` for each distinct set of records of a key
/// that lie at most that far apart, both bounds inclusive, as Kafka Streams' `SlidingWindows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    /// The largest time difference between records of one window.
    pub time_difference_ms: i64,
    /// How long after a window ends it still accepts out-of-order records.
    pub grace_ms: i64,
}

impl SlidingWindows {
    /// Windows of `difference` that close as soon as stream time passes their end.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }

    /// Windows of `difference` accepting records up to `grace` after their end.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        SlidingWindows { time_difference_ms: ms(difference), grace_ms: ms(grace) }
    }
}

/// Session windows: records of a key less than `gap` apart belong to one session
/// `[first, last]`; a record between two sessions merges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    /// The inactivity gap that ends a session.
    pub gap_ms: i64,
    /// How long after a session ends it still accepts out-of-order records.
    pub grace_ms: i64,
}

impl SessionWindows {
    /// Sessions ended by `gap` of inactivity, closed as soon as stream time passes their end.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Self {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    /// Sessions ended by `gap` of inactivity, accepting records up to `grace` after their end.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Self {
        SessionWindows { gap_ms: ms(gap), grace_ms: ms(grace) }
    }
}

/// How far apart in time two records of a stream-stream join may be: a left record at `t`
/// joins right records in `[t - before, t + after]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    /// How much earlier a right record may be.
    pub before_ms: i64,
    /// How much later a right record may be.
    pub after_ms: i64,
    /// How long after the window ends out-of-order records still join.
    pub grace_ms: i64,
}

impl JoinWindows {
    /// Records at most `difference` apart join; no grace.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Self {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }

    /// Records at most `difference` apart join; out-of-order records up to `grace` late.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Self {
        JoinWindows { before_ms: ms(difference), after_ms: ms(difference), grace_ms: ms(grace) }
    }

    /// Sets how much earlier than a left record a right record may be.
    pub fn before(self, before: Duration) -> Self {
        JoinWindows { before_ms: ms(before), ..self }
    }

    /// Sets how much later than a left record a right record may be.
    pub fn after(self, after: Duration) -> Self {
        JoinWindows { after_ms: ms(after), ..self }
    }

    /// The window seen from the right side: before and after swapped.
    pub(crate) fn reversed(self) -> Self {
        JoinWindows { before_ms: self.after_ms, after_ms: self.before_ms, grace_ms: self.grace_ms }
    }

    /// The span of the window.
    pub(crate) fn size_ms(&self) -> i64 {
        self.before_ms + self.after_ms
    }
}

/// Milliseconds of stream time (never negative) as a `Duration`, for the `Stores` builders.
pub(crate) fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_windows_are_epoch_aligned_and_half_open() {
        let w = TimeWindows::of_size_with_no_grace(Duration::from_millis(5000)).advance_by(Duration::from_millis(3000));
        assert_eq!(w.windows_for(0), vec![Window::new(0, 5000)]);
        assert_eq!(w.windows_for(3000), vec![Window::new(0, 5000), Window::new(3000, 8000)]);
        assert_eq!(w.windows_for(4999), vec![Window::new(0, 5000), Window::new(3000, 8000)]);
        assert_eq!(w.windows_for(5000), vec![Window::new(3000, 8000)]);
        assert_eq!(w.windows_for(6000), vec![Window::new(3000, 8000), Window::new(6000, 11000)]);
    }

    #[test]
    fn tumbling_windows_hold_each_record_once() {
        let w = TimeWindows::of_size_with_no_grace(Duration::from_millis(10));
        for ts in 0..50 {
            let windows = w.windows_for(ts);
            assert_eq!(windows.len(), 1);
            assert!(windows[0].start <= ts && ts < windows[0].end);
            assert_eq!(windows[0].start % 10, 0);
        }
    }
}


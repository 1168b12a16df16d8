//! `KTable::suppress` options: hold back updates until a window closes or a time limit passes
//! (the processor is `processors::suppress`).

use std::time::Duration;


/// What a suppression buffer may hold: a number of keys, a number of bytes (each key's
/// serialized key and buffered entry), or both; and what happens when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferConfig {
    pub(crate) max_records: Option<usize>,
    pub(crate) max_bytes: Option<usize>,
    pub(crate) emit_early_when_full: bool,
}

impl BufferConfig {
    /// No limit: the buffer grows with the number of open windows (or keys).
    pub fn unbounded() -> Self {
        BufferConfig { max_records: None, max_bytes: None, emit_early_when_full: false }
    }

    /// At most `n` keys; when full, the oldest update is emitted early.
    pub fn max_records(n: usize) -> Self {
        BufferConfig { max_records: Some(n), max_bytes: None, emit_early_when_full: true }
    }

    /// At most `n` bytes; when full, the oldest updates are emitted early.
    pub fn max_bytes(n: usize) -> Self {
        BufferConfig { max_records: None, max_bytes: Some(n), emit_early_when_full: true }
    }

    /// Also at most `n` keys.
    pub fn with_max_records(self, n: usize) -> Self {
        BufferConfig { max_records: Some(n), ..self }
    }

    /// Also at most `n` bytes.
    pub fn with_max_bytes(self, n: usize) -> Self {
        BufferConfig { max_bytes: Some(n), ..self }
    }

    /// When full, emit the oldest updates early (the default of a bounded buffer).
    pub fn emit_early_when_full(self) -> Self {
        BufferConfig { emit_early_when_full: true, ..self }
    }

    /// When full, stop the application with an error instead of emitting early (strict
    /// "final result only" semantics).
    pub fn shut_down_when_full(self) -> Self {
        BufferConfig { emit_early_when_full: false, ..self }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Once stream time reaches the window's end plus grace (`Suppressed::until_window_closes`).
    WindowCloses,
    /// Once stream time is past the window's end plus grace (`EmitStrategy::OnWindowClose` of
    /// session and sliding windows, whose ends are inclusive).
    WindowClosed,
    TimeLimit(i64),
}

/// How [`KTable::suppress`](crate::KTable::suppress) holds updates back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    pub(crate) until: Until,
    pub(crate) buffer: BufferConfig,
    pub(crate) name: Option<String>,
}

impl Suppressed {
    /// Emits only the final result of each window, once stream time reaches its end plus the
    /// grace period (windowed tables only; the buffer is unbounded).
    pub fn until_window_closes() -> Self {
        Suppressed { until: Until::WindowCloses, buffer: BufferConfig::unbounded(), name: None }
    }

    /// Emits each window's final result once stream time is past its end plus grace, as
    /// `EmitStrategy::OnWindowClose` of windows with inclusive ends does.
    pub(crate) fn after_window_closed() -> Self {
        Suppressed { until: Until::WindowClosed, buffer: BufferConfig::unbounded(), name: None }
    }

    /// Emits the latest update of a key once stream time is `limit` past the first update
    /// buffered for it (rate limiting).
    pub fn until_time_limit(limit: Duration, buffer: BufferConfig) -> Self {
        let limit = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
        Suppressed { until: Until::TimeLimit(limit), buffer, name: None }
    }

    /// Names the suppression node (and its buffer's changelog).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

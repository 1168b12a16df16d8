//! The `.checkpoint` file: the changelog offset each store of a task is known to contain.
//!
//! Format (as Kafka Streams' `OffsetCheckpoint`): a version line `0`, a count line, then one
//! `<topic> <partition> <offset>` line per changelog partition. Written atomically (temp file,
//! fsync, rename).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, StreamsError};

/// Changelog offsets by (topic, partition): the offset of the last record the store holds.
pub(super) type Offsets = BTreeMap<(String, i32), i64>;

/// A task's checkpoint file.
#[derive(Debug, Clone)]
pub(super) struct OffsetCheckpoint {
    path: PathBuf,
}

impl OffsetCheckpoint {
    /// The checkpoint in a task directory.
    pub(super) fn in_dir(task_dir: &Path) -> Self {
        OffsetCheckpoint { path: task_dir.join(".checkpoint") }
    }

    /// Reads the offsets; a missing file is empty, a malformed one an error.
    pub(super) fn read(&self) -> Result<Offsets> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Offsets::new()),
            Err(e) => return Err(StreamsError::io(&self.path, e)),
        };
        parse(&text).map_err(|message| StreamsError::StateDir { path: self.path.display().to_string(), message })
    }

    /// Replaces the file with `offsets`.
    pub(super) fn write(&self, offsets: &Offsets) -> Result<()> {
        let mut text = format!("0\n{}\n", offsets.len());
        for ((topic, partition), offset) in offsets {
            text.push_str(&format!("{topic} {partition} {offset}\n"));
        }
        let tmp = self.path.with_extension("tmp");
        let io = |e| StreamsError::io(&tmp, e);
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| StreamsError::io(&self.path, e))
    }

}

fn parse(text: &str) -> std::result::Result<Offsets, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some("0") => {}
        other => return Err(format!("unknown checkpoint version {other:?}")),
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| "missing or bad entry count".to_string())?;
    let mut offsets = Offsets::new();
    for line in lines.by_ref().take(count) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [topic, partition, offset] = parts[..] else {
            return Err(format!("bad checkpoint line `{line}`"));
        };
        let partition = partition.parse().map_err(|_| format!("bad partition in `{line}`"))?;
        let offset: i64 = offset.parse().map_err(|_| format!("bad offset in `{line}`"))?;
        if offset < -1 {
            return Err(format!("negative offset in `{line}`"));
        }
        offsets.insert((topic.to_string(), partition), offset);
    }
    if offsets.len() != count || lines.any(|l| !l.trim().is_empty()) {
        return Err(format!("expected {count} entries"));
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let cp = OffsetCheckpoint::in_dir(dir.path());
        assert!(cp.read().unwrap().is_empty());
        let offsets = Offsets::from([(("app-s-changelog".to_string(), 3), 41), (("app-t-changelog".to_string(), 3), 0)]);
        cp.write(&offsets).unwrap();
        assert_eq!(cp.read().unwrap(), offsets);
        for garbage in ["", "1\n0\n", "0\n2\na 1 2\n", "0\n1\na b 2\n", "0\n1\na 1 x\n", "0\n1\na 1 2 3\n", "0\n1\na 1 2\nextra\n"] {
            assert!(parse(garbage).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn arbitrary_text_never_panics() {
        let mut state = 0x1234_5678_9abc_def1u64;
        let alphabet = b"0123456789 -\nab\t";
        for len in 0..40 {
            for _ in 0..300 {
                let text: String = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize] as char
                    })
                    .collect();
                let _ = parse(&text);
            }
        }
    }
}

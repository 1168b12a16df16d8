//! Helpers shared by the semantics and runtime tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use streams::prelude::*;
use streams::topologies::words;

pub(crate) mod kafka;

#[allow(unused_imports)]
pub(crate) use streams::topologies::word_count;

pub(crate) fn config(app: &str) -> StreamsConfig {
    StreamsConfig::new().with(StreamsConfig::APPLICATION_ID, app)
}

/// Word counts of `lines`, counted here: what a word count must output.
pub(crate) fn truth(lines: &[String]) -> HashMap<String, i64> {
    let mut counts = HashMap::new();
    for line in lines {
        for word in words(line.clone()) {
            *counts.entry(word).or_insert(0) += 1;
        }
    }
    counts
}

/// Paths of the files named `name` below `dir`.
pub(crate) fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

/// The last count per word in a word count's `output` (read with read_committed).
pub(crate) fn final_counts(servers: &str, output: &str) -> HashMap<String, i64> {
    let records = streams::test_utils::read_all(servers, output, std::time::Duration::from_millis(500)).unwrap();
    let mut counts = HashMap::new();
    for r in records {
        let word: String = Serdes::string().deserialize(output, r.key.as_deref()).unwrap();
        let count: i64 = Serdes::i64().deserialize(output, r.value.as_deref()).unwrap();
        counts.insert(word, count);
    }
    counts
}

/// The number of sub-topologies in a topology's description.
pub(crate) fn subtopologies(topology: &streams::Topology) -> usize {
    topology.describe().to_string().matches("Sub-topology:").count()
}

//! Helpers shared by the semantics tests.
#![allow(dead_code)]

use streams::prelude::*;

pub(crate) mod kafka;

#[allow(unused_imports)]
pub(crate) use streams::topologies::word_count;

pub(crate) fn config(app: &str) -> StreamsConfig {
    StreamsConfig::new().with(StreamsConfig::APPLICATION_ID, app)
}

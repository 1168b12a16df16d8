//! Topologies and helpers shared by the semantics tests.
#![allow(dead_code)]

use streams::prelude::*;
use streams::Topology;

/// Splits a line into lower-case words on runs of non-word characters (Java's `\W+`).
pub(crate) fn words(line: String) -> Vec<String> {
    line.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The Kafka Streams WordCount: `flatMapValues -> groupBy(word) -> count -> toStream -> to`.
pub(crate) fn word_count(materialized: Materialized<String, i64>) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<Option<String>, String>("streams-plaintext-input", Consumed::with(Serdes::string(), Serdes::string()))
        .flat_map_values(words)
        .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(materialized)
        .to_stream()
        .to("streams-wordcount-output", Produced::with(Serdes::string(), Serdes::i64()));
    builder.build().expect("valid topology")
}

pub(crate) fn config(app: &str) -> StreamsConfig {
    StreamsConfig::new().with(StreamsConfig::APPLICATION_ID, app)
}

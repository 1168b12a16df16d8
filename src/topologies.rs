//! Ready-made topologies from the Kafka Streams documentation, used by the examples, the
//! semantics tests and the benchmarks.

use streams_core::{Serdes, Topology};
use streams_dsl::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};

/// The word count's input topic.
pub const WORD_COUNT_INPUT: &str = "streams-plaintext-input";
/// The word count's output topic.
pub const WORD_COUNT_OUTPUT: &str = "streams-wordcount-output";

/// Splits a line into lower-case words on runs of non-word characters (Java's `\W+`).
pub fn words(line: String) -> Vec<String> {
    line.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// WordCount: `flat_map_values(words) -> group_by(word) -> count -> to_stream -> to`, from
/// [`WORD_COUNT_INPUT`] (keys ignored) to [`WORD_COUNT_OUTPUT`] (word -> count as big-endian i64).
pub fn word_count(materialized: Materialized<String, i64>) -> Topology {
    word_count_between(WORD_COUNT_INPUT, WORD_COUNT_OUTPUT, materialized)
}

/// [`word_count`] between other topics.
pub fn word_count_between(input: &str, output: &str, materialized: Materialized<String, i64>) -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<Option<String>, String>(input, Consumed::with(Serdes::string(), Serdes::string()))
        .flat_map_values(words)
        .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(materialized)
        .to_stream()
        .to(output, Produced::with(Serdes::string(), Serdes::i64()));
    builder.build().expect("the word count topology is valid")
}

/// `n` lines of ten words `w<i>` drawn from a vocabulary of `vocabulary` words by a seeded
/// xorshift generator: reproducible test and benchmark input.
pub fn random_lines(n: usize, vocabulary: u64, seed: u64) -> Vec<String> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n).map(|_| (0..10).map(|_| format!("w{}", next() % vocabulary)).collect::<Vec<_>>().join(" ")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_like_java_non_word_runs() {
        assert_eq!(super::words("Using  \t\t Kafka-Streams_1!".into()), vec!["using", "kafka", "streams_1"]);
    }
}

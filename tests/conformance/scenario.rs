//! Scenarios: what is piped into a topology, generated from a seed, and shrunk when the two
//! implementations disagree on one.

use serde::{Deserialize, Serialize};

use crate::catalogue::{Entry, Input};

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Event {
    /// A record piped into an input topic (a `None` value is a tombstone).
    Record { topic: String, key: String, value: Option<String>, ts: i64 },
    /// The mocked wall clock moves on (wall-clock punctuation, commits).
    Advance { advance: i64 },
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Scenario {
    pub(crate) topology: String,
    pub(crate) events: Vec<Event>,
}

/// One record a topology wrote, read after the event it followed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub(crate) struct Output {
    pub(crate) event: usize,
    pub(crate) topic: String,
    pub(crate) key: String,
    pub(crate) value: Option<String>,
    pub(crate) ts: i64,
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.value.as_deref().unwrap_or("<null>");
        write!(f, "after #{}: {} {} -> {} @{}", self.event, self.topic, self.key, value, self.ts)
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "topology {}", self.topology)?;
        for (i, event) in self.events.iter().enumerate() {
            match event {
                Event::Record { topic, key, value, ts } => {
                    writeln!(f, "  #{i}: {topic} {key} -> {} @{ts}", value.as_deref().unwrap_or("<null>"))?
                }
                Event::Advance { advance } => writeln!(f, "  #{i}: wall clock +{advance} ms")?,
            }
        }
        Ok(())
    }
}

/// SplitMix64: small, seedable, and the same on every platform.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const KEYS: &[&str] = &["a", "b", "c", "d"];
/// Values are words; the first word doubles as a key (foreign keys, re-grouping).
const WORDS: &[&str] = &["a", "b", "c", "d", "x"];

/// A random scenario for `entry`: few keys (collisions), timestamps that mostly advance but
/// also repeat, go back within the grace periods and arrive after windows closed, tombstones
/// on tables, and wall-clock advances.
pub(crate) fn generate(entry: &Entry, seed: u64) -> Scenario {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ name_hash(entry.name));
    let keys = &KEYS[..1 + rng.below(KEYS.len() as u64) as usize];
    let length = 1 + rng.below(30);
    let mut now = rng.below(20) as i64;
    let mut events = Vec::new();
    for _ in 0..length {
        if rng.chance(5) {
            events.push(Event::Advance { advance: 1 + rng.below(3) as i64 * 10_000 });
            continue;
        }
        let (topic, input) = entry.inputs[rng.below(entry.inputs.len() as u64) as usize];
        let ts = match rng.below(100) {
            0..=54 => {
                now += rng.below(8) as i64;
                now
            }
            55..=74 => now,
            75..=92 => (now - rng.below(8) as i64).max(0),
            _ => (now - rng.below(40) as i64).max(0),
        };
        let value = if input == Input::Table && rng.chance(15) {
            None
        } else {
            let words = 1 + rng.below(3);
            Some((0..words).map(|_| rng.pick(WORDS)).collect::<Vec<_>>().join(" "))
        };
        events.push(Event::Record { topic: topic.to_string(), key: rng.pick(keys).to_string(), value, ts });
    }
    Scenario { topology: entry.name.to_string(), events }
}

fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The smallest scenario found (by removing events, in chunks and then one by one) for which
/// `differs` still holds.
pub(crate) fn shrink(scenario: &Scenario, mut differs: impl FnMut(&Scenario) -> bool) -> Scenario {
    let mut best = scenario.clone();
    let mut chunk = best.events.len().div_ceil(2).max(1);
    loop {
        let mut removed = false;
        let mut start = 0;
        while start < best.events.len() {
            let mut candidate = best.clone();
            let end = (start + chunk).min(candidate.events.len());
            candidate.events.drain(start..end);
            if !candidate.events.is_empty() && differs(&candidate) {
                best = candidate;
                removed = true;
            } else {
                start += chunk;
            }
        }
        if chunk == 1 && !removed {
            return best;
        }
        if !removed {
            chunk = (chunk / 2).max(1);
        }
    }
}

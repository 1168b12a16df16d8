//! Side-by-side measurement shared by the benchmarks.

use std::time::Duration;

/// Runs every variant once per round, interleaved, `rounds` times; returns the median of
/// records/s per variant. `run` does one pass and returns the records it processed and the time
/// they took (setting up and tearing down, a driver's close say, stay outside it).
pub(crate) fn median_rates<V: Copy>(variants: &[V], rounds: usize, mut run: impl FnMut(V) -> (u64, Duration)) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, variant) in variants.iter().enumerate() {
            let (records, took) = run(*variant);
            samples[i].push(records as f64 / took.as_secs_f64());
        }
    }
    samples
        .iter_mut()
        .map(|s| {
            s.sort_by(|a, b| a.total_cmp(b));
            s[s.len() / 2]
        })
        .collect()
}

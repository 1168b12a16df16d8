//! Side-by-side measurement shared by the benchmarks.

use std::time::Instant;

/// Runs every variant once per round, interleaved, `rounds` times; returns the median of
/// records/s per variant. `run` does one pass (its setup is measured too, so keep it outside)
/// and returns the records it processed.
pub(crate) fn median_rates<V: Copy>(variants: &[V], rounds: usize, mut run: impl FnMut(V) -> (u64, Instant)) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, variant) in variants.iter().enumerate() {
            let (records, started) = run(*variant);
            samples[i].push(records as f64 / started.elapsed().as_secs_f64());
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

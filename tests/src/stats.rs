//! Summaries of measured durations for benchmarks.

use std::time::Duration;

/// The `q`-quantile of `values` (sorted in place), in milliseconds; NaN when empty.
pub fn quantile_ms(values: &mut [Duration], q: f64) -> f64 {
    values.sort();
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values
        .get(index)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

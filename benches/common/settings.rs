//! The measurement settings every benchmark binary shares.

use std::time::Duration;

use criterion::Criterion;

/// Criterion as the benchmarks run it: short samples, and shorter still with
/// `KEYLOCK_BENCH_QUICK=1`; command-line arguments (a filter) applied.
pub fn criterion() -> Criterion {
    let quick = std::env::var_os("KEYLOCK_BENCH_QUICK").is_some();
    let (warm_up, measure) = if quick {
        (Duration::from_millis(200), Duration::from_millis(700))
    } else {
        (Duration::from_millis(500), Duration::from_secs(2))
    };
    Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .sample_size(20)
        .configure_from_args()
}

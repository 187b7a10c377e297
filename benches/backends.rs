//! Locks shared across processes through the file backend, against the
//! code written by hand with the same OS file locks, in the same run.
//! `BENCHMARKS.md` records the ratios; reproduce them with
//!
//! ```text
//! cargo bench --bench backends            # KEYLOCK_BENCH_QUICK=1 for a short run
//! ```
//!
//! - `uncontended`: one thread locks and unlocks one key, over and over.
//!   By hand: a lock file opened once and kept, `flock` and unlock on it
//!   (no fencing token, no clean-up of lock files, one file per key kept
//!   open for the life of the process).
//! - `hot_key_4_threads`: four threads of one process on one key. By hand:
//!   a process-wide mutex per key plus the file lock for each holder, as a
//!   hand-written two-tier lock would do; keylock passes its file lock
//!   along the chain of local holders instead.

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::Criterion;
use keylock::{write_lock, FileBackend, Registry};

#[path = "common/settings.rs"]
mod settings;

const THREADS: usize = 4;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keylock-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    dir
}

fn bound_registry(dir: &PathBuf) -> Registry {
    Registry::builder()
        .backend("jobs", FileBackend::new(dir).expect("file backend"))
        .build()
}

#[write_lock("jobs", key = key, registry = registry)]
fn job(registry: &Registry, key: u64) {
    std::hint::black_box(key);
}

fn uncontended(c: &mut Criterion) {
    let dir = temp_dir("uncontended");
    let registry = bound_registry(&dir);
    let by_hand = File::create(dir.join("by-hand.lock")).expect("lock file");
    let mut group = c.benchmark_group("file_uncontended");
    group.bench_function("keylock_attribute", |b| b.iter(|| job(&registry, 7)));
    group.bench_function("flock_by_hand", |b| {
        b.iter(|| {
            by_hand.lock().expect("flock");
            std::hint::black_box(7);
            by_hand.unlock().expect("unlock");
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Times `iters` acquisitions spread over [`THREADS`] threads.
fn threads(iters: u64, op: impl Fn() + Sync) -> Duration {
    let per_thread = iters.div_ceil(THREADS as u64);
    let start = Barrier::new(THREADS + 1);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                start.wait();
                for _ in 0..per_thread {
                    op();
                }
            });
        }
        start.wait();
        let started = Instant::now();
        // The scope joins the threads before returning.
        started
    })
    .elapsed()
}

fn hot_key(c: &mut Criterion) {
    let dir = temp_dir("hot");
    let registry = bound_registry(&dir);
    let path = dir.join("by-hand.lock");
    let local = Arc::new(parking_lot::Mutex::new(()));
    let mut group = c.benchmark_group("hot_key_4_threads");
    group.bench_function("keylock_attribute", |b| {
        b.iter_custom(|iters| threads(iters, || job(&registry, 7)))
    });
    group.bench_function("mutex_and_flock_by_hand", |b| {
        b.iter_custom(|iters| {
            threads(iters, || {
                let _local = local.lock();
                // Each holder its own open file, as separate callers have.
                let file = File::create(&path).expect("lock file");
                file.lock().expect("flock");
                std::hint::black_box(7);
                drop(file);
            })
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut criterion = settings::criterion();
    uncontended(&mut criterion);
    hot_key(&mut criterion);
    criterion.final_summary();
}

//! The workload users have, not one hot key: a bot touches a thousand
//! channels in no particular order, two worker threads handle disjoint sets
//! of channels, and a stream of event ids arrives with repeats. keylock
//! through its attributes against the code written by hand, in the same
//! run. `BENCHMARKS.md` records the ratios; reproduce them with
//!
//! ```text
//! cargo bench --bench workload            # KEYLOCK_BENCH_QUICK=1 for a short run
//! ```

use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use criterion::Criterion;

#[path = "common/settings.rs"]
mod settings;
use dashmap::DashMap;
use keylock::{dedup, write_lock, Registry};
use tokio::runtime::Runtime;

/// A fixed pseudo-random sequence of `len` indices below `keys`, the same
/// in every run (xorshift64*).
fn shuffled(keys: u64, len: usize) -> Arc<[u64]> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D) % keys
        })
        .collect()
}

/// Key sequences long enough that the loop does not fit in a branch
/// predictor's history, short enough to stay in cache.
const SEQUENCE: usize = 1 << 16;

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Times `iters` sequential calls of `op` with the keys of `sequence`, in
/// order, on one task.
fn async_keys<F, Fut>(
    runtime: &Runtime,
    sequence: Arc<[u64]>,
    op: F,
) -> impl FnMut(u64) -> Duration + '_
where
    F: Fn(u64) -> Fut + 'static,
    Fut: Future<Output = ()>,
{
    move |iters| {
        runtime.block_on(async {
            let started = Instant::now();
            for i in 0..iters as usize {
                op(sequence[i % SEQUENCE]).await;
            }
            started.elapsed()
        })
    }
}

static ASYNC_1K: LazyLock<Registry> = LazyLock::new(Registry::new);
static ASYNC_100K: LazyLock<Registry> = LazyLock::new(Registry::new);
static ASYNC_STR: LazyLock<Registry> = LazyLock::new(Registry::new);
static SYNC: LazyLock<Registry> = LazyLock::new(Registry::new);
static DEDUP: LazyLock<Registry> = LazyLock::new(Registry::new);

#[write_lock("channels", key = channel, registry = ASYNC_1K)]
async fn handle_1k(channel: u64) {
    black_box(channel);
}

#[write_lock("channels", key = channel, registry = ASYNC_100K)]
async fn handle_100k(channel: u64) {
    black_box(channel);
}

#[write_lock("channels", key = channel, registry = ASYNC_STR)]
async fn handle_str(channel: &str) {
    black_box(channel);
}

#[write_lock("channels", key = channel, registry = SYNC)]
fn handle_sync(channel: u64) {
    black_box(channel);
}

#[dedup("events", id, registry = DEDUP)]
fn on_event(id: u64) {
    black_box(id);
}

/// The bot pattern: a map of per-key tokio mutexes, never freed.
type TokioMap = Arc<DashMap<u64, Arc<tokio::sync::Mutex<()>>>>;

fn keyed_async(c: &mut Criterion, keys: u64) {
    let runtime = current_thread();
    let sequence = shuffled(keys, SEQUENCE);
    let mut group = c.benchmark_group(format!("keyed_random_{keys}_async"));
    let map = TokioMap::default();
    group.bench_function("dashmap_tokio_mutex", |b| {
        let map = map.clone();
        b.iter_custom(async_keys(&runtime, sequence.clone(), move |key| {
            let lock = map.entry(key).or_default().clone();
            async move { drop(black_box(lock.lock().await)) }
        }));
    });
    let pool = Arc::new(lockable::LockPool::<u64>::new());
    group.bench_function("lockable_lockpool", |b| {
        let pool = pool.clone();
        b.iter_custom(async_keys(&runtime, sequence.clone(), move |key| {
            let pool = pool.clone();
            async move { drop(black_box(pool.async_lock(key).await)) }
        }));
    });
    group.bench_function("keylock_attribute", |b| {
        if keys > 1_000 {
            b.iter_custom(async_keys(&runtime, sequence.clone(), handle_100k));
        } else {
            b.iter_custom(async_keys(&runtime, sequence.clone(), handle_1k));
        }
    });
    group.finish();
}

fn keyed_str_async(c: &mut Criterion) {
    let runtime = current_thread();
    let names: Arc<[String]> = (0..1_000).map(|k| format!("channel-{k}")).collect();
    let sequence = shuffled(1_000, SEQUENCE);
    let mut group = c.benchmark_group("keyed_random_1000_str_async");
    let map: Arc<DashMap<String, Arc<tokio::sync::Mutex<()>>>> = Arc::default();
    group.bench_function("dashmap_tokio_mutex", |b| {
        let (map, names) = (map.clone(), names.clone());
        b.iter_custom(async_keys(&runtime, sequence.clone(), move |key| {
            let name = &names[key as usize];
            let lock = match map.get(name.as_str()) {
                Some(lock) => lock.clone(),
                None => map.entry(name.clone()).or_default().clone(),
            };
            async move { drop(black_box(lock.lock().await)) }
        }));
    });
    group.bench_function("keylock_attribute", |b| {
        let names = names.clone();
        b.iter_custom(async_keys(&runtime, sequence.clone(), move |key| {
            let names = names.clone();
            async move { handle_str(&names[key as usize]).await }
        }));
    });
    group.bench_function("keylock_attribute_u64", |b| {
        b.iter_custom(async_keys(&runtime, sequence.clone(), handle_1k));
    });
    group.finish();
}

fn keyed_sync(c: &mut Criterion) {
    let sequence = shuffled(1_000, SEQUENCE);
    let mut group = c.benchmark_group("keyed_random_1000_sync");
    let map: DashMap<u64, Arc<parking_lot::Mutex<()>>> = DashMap::new();
    let mut i = 0;
    group.bench_function("dashmap_parking_lot", |b| {
        b.iter(|| {
            i += 1;
            let lock = map.entry(sequence[i % SEQUENCE]).or_default().clone();
            drop(black_box(lock.lock()));
        });
    });
    let mut i = 0;
    group.bench_function("keylock_attribute", |b| {
        b.iter(|| {
            i += 1;
            handle_sync(sequence[i % SEQUENCE]);
        });
    });
    group.finish();
}

/// Runs `op` on `threads` threads, each with its own half of the key
/// space, `iters` operations per thread; returns the wall time.
fn disjoint_threads(threads: u64, iters: u64, op: Arc<dyn Fn(u64) + Send + Sync>) -> Duration {
    let sequence = shuffled(500, SEQUENCE);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let (op, sequence) = (op.clone(), sequence.clone());
            std::thread::spawn(move || {
                for i in 0..iters as usize {
                    op(thread * 500 + sequence[i % SEQUENCE]);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("bench thread");
    }
    started.elapsed()
}

fn disjoint_halves(c: &mut Criterion) {
    let mut group = c.benchmark_group("disjoint_halves_1000_sync");
    let map: Arc<DashMap<u64, Arc<parking_lot::Mutex<()>>>> = Arc::default();
    let by_hand: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(move |key| {
        let lock = map.entry(key).or_default().clone();
        drop(black_box(lock.lock()));
    });
    let annotated: Arc<dyn Fn(u64) + Send + Sync> = Arc::new(handle_sync);
    for (name, op) in [
        ("dashmap_parking_lot", by_hand),
        ("keylock_attribute", annotated),
    ] {
        for threads in [1u64, 2] {
            let op = op.clone();
            // The time per iteration is the time for `threads` operations,
            // so a ratio of 1 between the two is perfect scaling.
            group.bench_function(format!("{name}_{threads}_threads"), move |b| {
                let op = op.clone();
                b.iter_custom(|iters| disjoint_threads(threads, iters, op.clone()));
            });
        }
    }
    group.finish();
}

fn dedup_stream(c: &mut Criterion) {
    // A stream of 1,000,000 ids where about one delivery in four repeats a
    // recent id, as redelivered events do.
    let fresh = shuffled(u64::MAX, 1_000_000);
    let repeats = shuffled(64, 1_000_000);
    let stream: Arc<[u64]> = (0..1_000_000usize)
        .map(|i| {
            if repeats[i] < 16 && i > 64 {
                fresh[i - 1 - repeats[i] as usize]
            } else {
                fresh[i]
            }
        })
        .collect();
    let mut group = c.benchmark_group("dedup_stream_1m");
    let set = parking_lot::Mutex::new(rustc_hash::FxHashSet::<u64>::default());
    let mut i = 0;
    group.bench_function("mutex_fxhashset", |b| {
        b.iter(|| {
            i += 1;
            black_box(set.lock().insert(stream[i % stream.len()]))
        });
    });
    let mut i = 0;
    group.bench_function("keylock_attribute", |b| {
        b.iter(|| {
            i += 1;
            on_event(stream[i % stream.len()]);
        });
    });
    group.finish();
}

fn main() {
    let mut criterion = settings::criterion();
    keyed_async(&mut criterion, 1_000);
    keyed_async(&mut criterion, 100_000);
    keyed_str_async(&mut criterion);
    keyed_sync(&mut criterion);
    disjoint_halves(&mut criterion);
    dedup_stream(&mut criterion);
    criterion.final_summary();
}

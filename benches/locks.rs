//! Benchmarks: keylock against the code users write by hand, in the same
//! run. `BENCHMARKS.md` records the ratios; reproduce them with
//! `cargo bench --bench locks` (set `KEYLOCK_BENCH_QUICK=1` for a short run).

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use criterion::Criterion;

#[path = "common/settings.rs"]
mod settings;
use dashmap::DashMap;

#[path = "common/by_hand.rs"]
mod by_hand;
use keylock::{write_lock, Registry};
use tokio::runtime::Runtime;

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Times `iters` sequential calls of an async operation on one task.
fn async_loop<F, Fut>(runtime: &Runtime, mut op: F) -> impl FnMut(u64) -> Duration + '_
where
    F: FnMut() -> Fut + 'static,
    Fut: Future<Output = ()>,
{
    move |iters| {
        runtime.block_on(async {
            let started = Instant::now();
            for _ in 0..iters {
                op().await;
            }
            started.elapsed()
        })
    }
}

// Annotated functions, each on a registry of its own.

static NAMED: LazyLock<Registry> = LazyLock::new(Registry::new);
static KEYED: LazyLock<Registry> = LazyLock::new(Registry::new);
static SYNC_KEYED: LazyLock<Registry> = LazyLock::new(Registry::new);

#[write_lock("db", registry = NAMED)]
async fn annotated_named() {
    black_box(());
}

#[write_lock("sessions", key = id, registry = KEYED)]
async fn annotated_keyed(id: u64) {
    black_box(id);
}

#[write_lock("sessions", key = id, registry = SYNC_KEYED)]
fn annotated_keyed_sync(id: u64) {
    black_box(id);
}

static DEDUP: LazyLock<Registry> = LazyLock::new(Registry::new);

#[keylock::dedup(id, registry = DEDUP)]
fn deduplicated(id: u64) {
    black_box(id);
}

fn named_write_async(c: &mut Criterion) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("named_write_async");
    let rwlock = Arc::new(tokio::sync::RwLock::new(()));
    group.bench_function("tokio_rwlock_write", |b| {
        let rwlock = rwlock.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let rwlock = rwlock.clone();
            async move {
                drop(black_box(rwlock.write().await));
            }
        }));
    });
    let mutex = Arc::new(tokio::sync::Mutex::new(()));
    group.bench_function("tokio_mutex", |b| {
        let mutex = mutex.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let mutex = mutex.clone();
            async move {
                drop(black_box(mutex.lock().await));
            }
        }));
    });
    let parking = parking_lot::Mutex::new(());
    group.bench_function("parking_lot_mutex_sync", |b| {
        b.iter(|| drop(black_box(parking.lock())));
    });
    let db = Registry::new().resource("db");
    group.bench_function("keylock_api", |b| {
        let db = db.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let acquire = db.write();
            async move {
                drop(black_box(acquire.await));
            }
        }));
    });
    group.bench_function("keylock_attribute", |b| {
        b.iter_custom(async_loop(&runtime, annotated_named));
    });
    group.bench_function("keylock_by_hand_cached", |b| {
        b.iter_custom(async_loop(&runtime, by_hand::named));
    });
    group.finish();
}

fn keyed_u64_async(c: &mut Criterion) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("keyed_u64_async");
    // The bot pattern: a map of per-key mutexes, never freed.
    let map: Arc<DashMap<u64, Arc<tokio::sync::Mutex<()>>>> = Arc::default();
    group.bench_function("dashmap_tokio_mutex", |b| {
        let map = map.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let lock = map.entry(black_box(7)).or_default().clone();
            async move {
                drop(black_box(lock.lock().await));
            }
        }));
    });
    // The same, removing the key when nobody else uses it.
    let map: Arc<DashMap<u64, Arc<tokio::sync::Mutex<()>>>> = Arc::default();
    group.bench_function("dashmap_tokio_mutex_removing", |b| {
        let map = map.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let map = map.clone();
            async move {
                let key = black_box(7);
                let lock = map.entry(key).or_default().clone();
                drop(black_box(lock.lock().await));
                drop(lock);
                map.remove_if(&key, |_, lock| Arc::strong_count(lock) == 1);
            }
        }));
    });
    let pool = Arc::new(lockable::LockPool::<u64>::new());
    group.bench_function("lockable_lockpool", |b| {
        let pool = pool.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let pool = pool.clone();
            async move {
                drop(black_box(pool.async_lock(black_box(7)).await));
            }
        }));
    });
    let keys = Registry::new().keyed::<u64>("sessions");
    group.bench_function("keylock_api", |b| {
        let keys = keys.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let acquire = keys.write(&black_box(7));
            async move {
                drop(black_box(acquire.await));
            }
        }));
    });
    let present = keys.key(&8);
    group.bench_function("keylock_api_key_present", |b| {
        let keys = keys.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let acquire = keys.write(&black_box(8));
            async move {
                drop(black_box(acquire.await));
            }
        }));
    });
    drop(present);
    let quiet = Registry::builder()
        .statistics(false)
        .build()
        .keyed::<u64>("sessions");
    group.bench_function("keylock_api_statistics_off", |b| {
        let keys = quiet.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let acquire = keys.write(&black_box(7));
            async move {
                drop(black_box(acquire.await));
            }
        }));
    });
    group.bench_function("keylock_attribute", |b| {
        b.iter_custom(async_loop(&runtime, || annotated_keyed(black_box(7))));
    });
    group.bench_function("keylock_by_hand_cached", |b| {
        b.iter_custom(async_loop(&runtime, || by_hand::keyed(black_box(7))));
    });
    group.finish();
}

fn keyed_str_async(c: &mut Criterion) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("keyed_str_async");
    let map: Arc<DashMap<String, Arc<tokio::sync::Mutex<()>>>> = Arc::default();
    map.insert("general".to_owned(), Arc::default());
    group.bench_function("dashmap_tokio_mutex_str", |b| {
        let map = map.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let key: &str = black_box("general");
            let lock = match map.get(key) {
                Some(lock) => lock.clone(),
                None => map.entry(key.to_owned()).or_default().clone(),
            };
            async move {
                drop(black_box(lock.lock().await));
            }
        }));
    });
    let keys = Registry::new().keyed::<String>("channels");
    group.bench_function("keylock_api", |b| {
        let keys = keys.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let acquire = keys.write(black_box("general"));
            async move {
                drop(black_box(acquire.await));
            }
        }));
    });
    let present = keys.key("random");
    group.bench_function("keylock_api_key_present", |b| {
        let keys = keys.clone();
        b.iter_custom(async_loop(&runtime, move || {
            let acquire = keys.write(black_box("random"));
            async move {
                drop(black_box(acquire.await));
            }
        }));
    });
    drop(present);
    group.finish();
}

fn keyed_u64_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed_u64_sync");
    let map: DashMap<u64, Arc<parking_lot::Mutex<()>>> = DashMap::new();
    group.bench_function("dashmap_parking_lot", |b| {
        b.iter(|| {
            let lock = map.entry(black_box(7)).or_default().clone();
            drop(black_box(lock.lock()));
        });
    });
    let keys = Registry::new().keyed::<u64>("sessions");
    group.bench_function("keylock_api", |b| {
        b.iter(|| drop(black_box(keys.write_blocking(&black_box(7)))));
    });
    let present = keys.key(&8);
    group.bench_function("keylock_api_key_present", |b| {
        b.iter(|| drop(black_box(keys.write_blocking(&black_box(8)))));
    });
    drop(present);
    group.bench_function("keylock_attribute", |b| {
        b.iter(|| annotated_keyed_sync(black_box(7)));
    });
    group.bench_function("keylock_by_hand_cached", |b| {
        b.iter(|| by_hand::keyed_sync(black_box(7)));
    });
    group.finish();
}

/// Runs `op` on `threads` OS threads, `iters` times in all; returns the
/// wall time.
fn on_threads(threads: u64, iters: u64, op: impl Fn(u64) + Send + Sync + 'static) -> Duration {
    let op = Arc::new(op);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let op = op.clone();
            std::thread::spawn(move || {
                for _ in 0..iters / threads {
                    op(thread);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("bench thread");
    }
    started.elapsed()
}

fn contended_two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_key_2_threads_sync");
    let parking = Arc::new(parking_lot::Mutex::new(()));
    group.bench_function("parking_lot_mutex", |b| {
        let parking = parking.clone();
        b.iter_custom(|iters| {
            let parking = parking.clone();
            on_threads(2, iters, move |_| drop(black_box(parking.lock())))
        });
    });
    let tokio_mutex = Arc::new(tokio::sync::Mutex::new(()));
    group.sample_size(10);
    group.bench_function("tokio_mutex_blocking", |b| {
        let tokio_mutex = tokio_mutex.clone();
        b.iter_custom(|iters| {
            let tokio_mutex = tokio_mutex.clone();
            on_threads(2, iters, move |_| {
                drop(black_box(tokio_mutex.blocking_lock()))
            })
        });
    });
    // What users write by hand for keyed locks, under the same contention.
    let map: Arc<DashMap<u64, Arc<parking_lot::Mutex<()>>>> = Arc::default();
    group.bench_function("dashmap_parking_lot", |b| {
        let map = map.clone();
        b.iter_custom(|iters| {
            let map = map.clone();
            on_threads(2, iters, move |_| {
                let lock = map.entry(7).or_default().clone();
                drop(black_box(lock.lock()));
            })
        });
    });
    let keys = Registry::new().keyed::<u64>("k");
    group.bench_function("keylock", |b| {
        let keys = keys.clone();
        b.iter_custom(|iters| {
            let keys = keys.clone();
            on_threads(2, iters, move |_| drop(black_box(keys.write_blocking(&7))))
        });
    });
    // The same lock without the key lookup: a handle fetched once.
    let lock = Registry::new().lock("db");
    group.bench_function("keylock_named_handle", |b| {
        let lock = lock.clone();
        b.iter_custom(|iters| {
            let lock = lock.clone();
            on_threads(2, iters, move |_| drop(black_box(lock.write_blocking())))
        });
    });
    // Strict first-come, first-served: every contended release is a
    // hand-off to the parked thread.
    let strict = Registry::builder()
        .fairness_bound(Duration::ZERO)
        .build()
        .lock("db");
    group.bench_function("keylock_named_handle_strict", |b| {
        let lock = strict.clone();
        b.iter_custom(|iters| {
            let lock = lock.clone();
            on_threads(2, iters, move |_| drop(black_box(lock.write_blocking())))
        });
    });
    group.finish();
}

fn contended_tasks(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("one_key_64_tasks_2_workers");
    const TASKS: u64 = 64;
    let tokio_mutex = Arc::new(tokio::sync::Mutex::new(()));
    group.bench_function("tokio_mutex", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|_| {
                        let mutex = tokio_mutex.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters.div_ceil(TASKS) {
                                drop(black_box(mutex.lock().await));
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
                started.elapsed()
            })
        });
    });
    let keys = Registry::new().keyed::<u64>("k");
    group.bench_function("keylock", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let started = Instant::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|_| {
                        let keys = keys.clone();
                        tokio::spawn(async move {
                            for _ in 0..iters.div_ceil(TASKS) {
                                drop(black_box(keys.write(&7).await));
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

fn distinct_keys_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("distinct_keys_sync");
    let keys = Registry::new().keyed::<u64>("k");
    for threads in [1u64, 2] {
        let keys = keys.clone();
        group.bench_function(format!("keylock_{threads}_threads"), move |b| {
            let keys = keys.clone();
            b.iter_custom(|iters| {
                let keys = keys.clone();
                // Each thread does `iters` operations on its own key: the
                // time per iteration is the time for `threads` operations.
                on_threads(threads, iters * threads, move |thread| {
                    drop(black_box(keys.write_blocking(&thread)));
                })
            });
        });
    }
    group.finish();
}

fn dedup_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedup_check");
    let set = parking_lot::Mutex::new(rustc_hash::FxHashSet::<u64>::default());
    let mut next = 0u64;
    group.bench_function("mutex_fxhashset_new_id", |b| {
        b.iter(|| {
            next += 1;
            black_box(set.lock().insert(black_box(next)))
        });
    });
    group.bench_function("mutex_fxhashset_duplicate", |b| {
        b.iter(|| black_box(set.lock().insert(black_box(1))));
    });
    let mut next = 0u64;
    group.bench_function("keylock_attribute_new_id", |b| {
        b.iter(|| {
            next += 1;
            deduplicated(black_box(next));
        });
    });
    deduplicated(u64::MAX);
    group.bench_function("keylock_attribute_duplicate", |b| {
        b.iter(|| deduplicated(black_box(u64::MAX)));
    });
    let seen = Registry::new().dedup::<u64>("events");
    seen.claim(&1).expect("fresh").commit();
    group.bench_function("keylock_api_claim_duplicate_described", |b| {
        b.iter(|| black_box(seen.claim(&black_box(1)).is_err()));
    });
    group.finish();
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Figures that are not a time per operation.
fn reports() {
    // 1,000,000 distinct keys, each locked once.
    let keys = Registry::new().keyed::<u64>("k");
    let before = resident_bytes();
    let started = Instant::now();
    for key in 0..1_000_000u64 {
        drop(keys.write_blocking(&key));
    }
    let elapsed = started.elapsed();
    let after = resident_bytes();
    let growth = match (before, after) {
        (Some(before), Some(after)) => {
            format!("{:.1} MB", (after.saturating_sub(before)) as f64 / 1e6)
        }
        _ => "unknown".to_owned(),
    };
    println!(
        "report: 1,000,000 distinct keys locked once: {:.0} ns/key, live entries after: {}, resident memory growth: {growth}",
        elapsed.as_nanos() as f64 / 1e6,
        keys.live_keys()
    );

    // Memory per remembered dedup key, at capacity.
    let before = resident_bytes();
    let seen = Registry::new()
        .dedup_with::<u64>("memory", keylock::DedupOptions::new().capacity(1_000_000));
    for id in 0..3_000_000u64 {
        if let Ok(claim) = seen.claim(&id) {
            claim.commit();
        }
    }
    let after = resident_bytes();
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "report: dedup at capacity 1,000,000 after 3,000,000 ids: {} remembered, {:.0} bytes per remembered id (resident growth)",
            seen.len(),
            after.saturating_sub(before) as f64 / seen.len() as f64
        );
    }
    drop(seen);

    // Worst wait of any acquisition while two threads hammer one key.
    for (name, op) in [
        ("keylock", {
            let keys = Registry::new().keyed::<u64>("k");
            Arc::new(move || drop(black_box(keys.write_blocking(&7))))
                as Arc<dyn Fn() + Send + Sync>
        }),
        ("parking_lot", {
            let mutex = Arc::new(parking_lot::Mutex::new(()));
            Arc::new(move || drop(black_box(mutex.lock()))) as Arc<dyn Fn() + Send + Sync>
        }),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let run = Duration::from_millis(500);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let op = op.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut worst = Duration::ZERO;
                    let mut count = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        op();
                        worst = worst.max(started.elapsed());
                        count += 1;
                    }
                    (worst, count)
                })
            })
            .collect();
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
        let results: Vec<(Duration, u64)> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let worst = results.iter().map(|r| r.0).max().unwrap_or_default();
        let ops: u64 = results.iter().map(|r| r.1).sum();
        println!(
            "report: one key, 2 threads, {name}: {:.1} M ops/s, worst single wait {worst:?} (includes preemption of the holder)",
            ops as f64 / run.as_secs_f64() / 1e6
        );
    }
}

fn main() {
    let mut criterion = settings::criterion();
    named_write_async(&mut criterion);
    keyed_u64_async(&mut criterion);
    keyed_str_async(&mut criterion);
    keyed_u64_sync(&mut criterion);
    contended_two_threads(&mut criterion);
    contended_tasks(&mut criterion);
    distinct_keys_scaling(&mut criterion);
    dedup_check(&mut criterion);
    criterion.final_summary();
    if std::env::args().all(|arg| arg != "--list") {
        reports();
    }
}

//! Stress: readers, writers, timeouts, non-waiting attempts and cancelled
//! waits from threads and tasks at once, on a few keys; every critical
//! section checks the read/write invariant and violations are counted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keylock::Registry;

const KEYS: u64 = 3;

/// Per key: writers inside (0 or 1) and readers inside.
struct Occupancy {
    writers: [AtomicUsize; KEYS as usize],
    readers: [AtomicUsize; KEYS as usize],
    violations: AtomicUsize,
    sections: AtomicUsize,
}

impl Occupancy {
    fn new() -> Self {
        Occupancy {
            writers: std::array::from_fn(|_| AtomicUsize::new(0)),
            readers: std::array::from_fn(|_| AtomicUsize::new(0)),
            violations: AtomicUsize::new(0),
            sections: AtomicUsize::new(0),
        }
    }

    fn write(&self, key: u64) {
        let k = key as usize;
        if self.writers[k].fetch_add(1, Ordering::SeqCst) != 0
            || self.readers[k].load(Ordering::SeqCst) != 0
        {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        std::hint::spin_loop();
        self.writers[k].fetch_sub(1, Ordering::SeqCst);
        self.sections.fetch_add(1, Ordering::SeqCst);
    }

    fn read(&self, key: u64) {
        let k = key as usize;
        self.readers[k].fetch_add(1, Ordering::SeqCst);
        if self.writers[k].load(Ordering::SeqCst) != 0 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        std::hint::spin_loop();
        self.readers[k].fetch_sub(1, Ordering::SeqCst);
        self.sections.fetch_add(1, Ordering::SeqCst);
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn run(fairness: Duration) {
    let registry = Registry::builder().fairness_bound(fairness).build();
    let keys = registry.keyed::<u64>("stress");
    let occupancy = Arc::new(Occupancy::new());

    let threads: Vec<_> = (0..3u64)
        .map(|seed| {
            let keys = keys.clone();
            let occupancy = occupancy.clone();
            std::thread::spawn(move || {
                let mut rng = Rng(seed + 1);
                for _ in 0..20_000 {
                    let key = rng.next() % KEYS;
                    let lock = keys.key(&key);
                    match rng.next() % 5 {
                        0 | 1 => {
                            let _guard = lock.write_blocking();
                            occupancy.write(key);
                        }
                        2 => {
                            let _guard = lock.read_blocking();
                            occupancy.read(key);
                        }
                        3 => {
                            if let Ok(_guard) = lock.try_write() {
                                occupancy.write(key);
                            }
                        }
                        _ => {
                            if let Ok(_guard) =
                                lock.read_blocking_timeout(Duration::from_micros(50))
                            {
                                occupancy.read(key);
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..6u64)
            .map(|seed| {
                let keys = keys.clone();
                let occupancy = occupancy.clone();
                tokio::spawn(async move {
                    let mut rng = Rng(seed + 100);
                    for _ in 0..10_000 {
                        let key = rng.next() % KEYS;
                        match rng.next() % 5 {
                            0 | 1 => {
                                let _guard = keys.write(&key).await;
                                occupancy.write(key);
                                tokio::task::yield_now().await;
                            }
                            2 => {
                                let _guard = keys.read(&key).await;
                                occupancy.read(key);
                            }
                            3 => {
                                // Cancelled mid-wait, possibly after being
                                // handed the lock.
                                let _ = tokio::time::timeout(
                                    Duration::from_micros(rng.next() % 100),
                                    keys.write(&key),
                                )
                                .await;
                            }
                            _ => {
                                if let Ok(_guard) = keys
                                    .key(&key)
                                    .write_timeout(Duration::from_micros(100))
                                    .await
                                {
                                    occupancy.write(key);
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    for thread in threads {
        thread.join().unwrap();
    }

    assert_eq!(occupancy.violations.load(Ordering::SeqCst), 0);
    assert!(occupancy.sections.load(Ordering::SeqCst) > 50_000);
    for key in 0..KEYS {
        assert!(!keys.is_locked(&key), "key {key} left locked");
        assert_eq!(keys.waiters(&key), 0, "key {key} left waiters");
    }
    assert_eq!(keys.live_keys(), 0);
    let stats = registry.stats();
    let stress = stats.resource("stress").unwrap();
    assert_eq!((stress.holders, stress.waiters), (0, 0));
}

#[test]
fn mixed_load_with_default_fairness_has_no_violations() {
    run(keylock::DEFAULT_FAIRNESS_BOUND);
}

#[test]
fn mixed_load_with_strict_hand_off_has_no_violations() {
    run(Duration::ZERO);
}

#[test]
fn mixed_load_with_competing_wakeups_only_has_no_violations() {
    run(Duration::MAX);
}

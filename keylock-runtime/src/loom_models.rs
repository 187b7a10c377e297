//! loom models of the lock core and of the key entry lifetime.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p keylock-runtime --release --lib loom`
//! (`.ci/run` does, with bounded preemptions).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;

use crate::raw::model_clock;
use crate::Registry;

/// Marks a critical section: fails the model if anyone else is inside.
fn alone(inside: &AtomicUsize) {
    assert_eq!(
        inside.fetch_add(1, Ordering::SeqCst),
        0,
        "two holders at once"
    );
    inside.fetch_sub(1, Ordering::SeqCst);
}

/// Builds a registry whose fairness decision needs no clock: hand the lock
/// over always (`ZERO`) or only let waiters compete (`MAX`).
fn registry(bound: Duration) -> Registry {
    Registry::builder().fairness_bound(bound).build()
}

/// Lookup racing removal: the releasing holder removes the entry while a
/// newcomer looks the key up. Mutual exclusion holds, and no entry is left.
#[test]
fn lookup_races_removal() {
    for bound in [Duration::ZERO, Duration::MAX] {
        loom::model(move || {
            let keys = registry(bound).keyed::<u64>("k");
            let inside = Arc::new(AtomicUsize::new(0));
            let first = keys.write_blocking(&1);
            let handle = {
                let keys = keys.clone();
                let inside = inside.clone();
                thread::spawn(move || {
                    let _guard = keys.write_blocking(&1);
                    alone(&inside);
                })
            };
            alone(&inside);
            drop(first);
            // The sweep races the other thread's lookup.
            keys.sweep();
            handle.join().unwrap();
            assert_eq!(keys.live_keys(), 0);
            assert!(!keys.is_locked(&1));
            keys.sweep();
            assert_eq!(keys.entries_in_memory(), 0);
        });
    }
}

/// The eviction sequence of RELIABILITY item 4: A holds, B looks the key
/// up, A releases (and may remove the entry), C arrives. B and C never hold
/// the key together: removal can never leave B on a lock C cannot find.
#[test]
fn removal_never_doubles_a_live_lock() {
    loom::model(|| {
        let keys = registry(Duration::ZERO).keyed::<u64>("k");
        let inside = Arc::new(AtomicUsize::new(0));
        let a = keys.write_blocking(&1);
        let b = {
            let keys = keys.clone();
            let inside = inside.clone();
            thread::spawn(move || {
                let _guard = keys.write_blocking(&1);
                alone(&inside);
            })
        };
        drop(a);
        // A sweep may run at any point; it must never remove B's entry.
        keys.sweep();
        {
            let _c = keys.write_blocking(&1);
            alone(&inside);
        }
        b.join().unwrap();
        assert_eq!(keys.live_keys(), 0);
    });
}

/// Threads compete for one lock that only ever notifies its head (never
/// hands off): no wake-up is lost, so every thread finishes, and holders
/// never overlap.
#[test]
fn notified_head_never_loses_a_wakeup() {
    loom::model(|| {
        let db = registry(Duration::MAX).resource("db");
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let db = db.clone();
                let inside = inside.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        let _guard = db.lock().write_blocking();
                        alone(&inside);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(!db.lock().is_locked());
        assert_eq!(db.lock().waiters(), 0);
    });
}

/// Two newcomers race to create the entry of one key: they get one lock.
#[test]
fn concurrent_creation_yields_one_lock() {
    loom::model(|| {
        let keys = registry(Duration::ZERO).keyed::<u64>("k");
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let keys = keys.clone();
                let inside = inside.clone();
                thread::spawn(move || {
                    let _guard = keys.write_blocking(&9);
                    alone(&inside);
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(keys.live_keys(), 0);
    });
}

/// An acquisition polled once (so possibly queued) and then dropped while
/// the holder releases concurrently: nothing is left behind and the lock is
/// free.
#[test]
fn acquire_polled_once_then_dropped() {
    for bound in [Duration::ZERO, Duration::MAX] {
        loom::model(move || {
            let keys = registry(bound).keyed::<u64>("k");
            let held = keys.write_blocking(&1);
            let releaser = thread::spawn(move || drop(held));
            {
                let mut acquire = pin!(keys.write(&1));
                let mut cx = Context::from_waker(futures::task::noop_waker_ref());
                let _ = acquire.as_mut().poll(&mut cx);
            }
            releaser.join().unwrap();
            assert!(!keys.is_locked(&1));
            assert_eq!(keys.waiters(&1), 0);
            assert_eq!(keys.live_keys(), 0);
            drop(keys.try_write(&1).expect("lock left free"));
        });
    }
}

/// An async waiter and a blocking thread share one lock: the task waits for
/// the thread's guard and is woken by its release.
#[test]
fn task_waits_for_thread() {
    for bound in [Duration::ZERO, Duration::MAX] {
        loom::model(move || {
            let db = registry(bound).resource("db");
            let inside = Arc::new(AtomicUsize::new(0));
            let thread_side = {
                let db = db.clone();
                let inside = inside.clone();
                thread::spawn(move || {
                    let _guard = db.lock().write_blocking();
                    alone(&inside);
                })
            };
            loom::future::block_on(async {
                let _guard = db.write().await;
                alone(&inside);
            });
            thread_side.join().unwrap();
            assert!(!db.lock().is_locked());
        });
    }
}

/// A writer queued behind a reader is not overtaken by a later reader, and
/// readers and writers never overlap.
#[test]
fn reader_writer_exclusion() {
    loom::model(|| {
        let db = registry(Duration::ZERO).resource("db");
        let writers = Arc::new(AtomicUsize::new(0));
        let reader = {
            let db = db.clone();
            let writers = writers.clone();
            thread::spawn(move || {
                let _guard = db.lock().read_blocking();
                assert_eq!(writers.load(Ordering::SeqCst), 0);
            })
        };
        {
            let _guard = db.lock().write_blocking();
            alone(&writers);
        }
        reader.join().unwrap();
        assert!(!db.lock().is_locked());
    });
}

/// The fairness bound enforced while the head is notified: an async writer
/// queues, is notified by a release within the bound, and has not run again
/// when the bound passes; a thread then takes the free lock. Whichever of
/// the two gets the lock, once the thread's release comes after the bound,
/// the lock is the head's: the thread cannot take it again at once unless
/// the head has already had its turn.
#[test]
fn release_past_the_bound_hands_over_to_notified_head() {
    loom::model(|| {
        model_clock::reset();
        let db = registry(Duration::from_millis(1)).resource("db");
        let lock = db.lock();
        let inside = Arc::new(AtomicUsize::new(0));
        let head_done = Arc::new(AtomicBool::new(false));
        let first = lock.write_blocking();
        let mut head = pin!(lock.write());
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(head.as_mut().poll(&mut cx).is_pending());
        // Within the bound: the head is notified, the lock left free.
        drop(first);
        model_clock::advance(Duration::from_millis(2));
        let looping = {
            let lock = lock.clone();
            let inside = inside.clone();
            let head_done = head_done.clone();
            thread::spawn(move || {
                drop({
                    let guard = lock.write_blocking();
                    alone(&inside);
                    guard
                });
                if let Ok(again) = lock.try_write() {
                    assert!(
                        head_done.load(Ordering::SeqCst),
                        "re-took the lock past the bound before the head ran"
                    );
                    drop(again);
                }
            })
        };
        loom::future::block_on(async {
            let _guard = head.await;
            alone(&inside);
            head_done.store(true, Ordering::SeqCst);
        });
        looping.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.waiters(), 0);
    });
}

/// Two deliveries of one id race while a commit at capacity evicts another:
/// the id runs once, whichever claims first, and its failure lets the
/// other delivery run; the scope ends holding exactly the capacity.
#[test]
fn dedup_claim_races_commit_and_eviction() {
    loom::model(|| {
        let seen = Registry::new().dedup_with::<u64>("d", crate::DedupOptions::new().capacity(1));
        seen.claim(&0).unwrap().commit();
        let inside = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|fail| {
                let seen = seen.clone();
                let (inside, runs) = (inside.clone(), runs.clone());
                thread::spawn(move || {
                    if let Ok(claim) = seen.claim(&1) {
                        alone(&inside);
                        runs.fetch_add(1, Ordering::SeqCst);
                        claim.finish(fail == 0);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let runs = runs.load(Ordering::SeqCst);
        assert!((1..=2).contains(&runs));
        assert!(!seen.is_in_flight(&1));
        // Committed once (evicting 0), or failed every time it ran.
        assert_eq!(seen.is_remembered(&1), !seen.is_remembered(&0));
        assert_eq!(seen.len(), 1);
    });
}

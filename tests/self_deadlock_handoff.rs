//! Regression tests for L14 of `docs/guarantees.md`: a sync function that
//! hands its guard to another thread (`guard = name`) is not recorded as
//! the holder, so its thread may wait for the lock as usual afterwards.

use std::sync::mpsc;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use keylock::{read_lock, write_lock, Error, ReadGuard, Registry, WriteGuard};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Runs `body` on its own thread; fails the test if it hangs, returns its
/// result or its panic message.
fn run<R: Send + 'static>(body: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        let _ = done.send(result.map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        }));
    });
    outcome
        .recv_timeout(Duration::from_secs(20))
        .expect("the call hung")
}

// A sync function that takes the lock and hands its guard to a worker
// thread, which finishes the job and releases it. The guard is `Send` and
// `'static`; the function does not hold anything once it has returned.
#[write_lock("handoff", registry = REGISTRY, guard = held)]
fn start_job(to_worker: mpsc::Sender<WriteGuard>) {
    to_worker.send(held).unwrap();
}

#[write_lock("handoff", registry = REGISTRY)]
fn next_job() -> u32 {
    7
}

/// Expected: the second call waits until the worker drops the guard
/// (about 200 ms), then runs. Actual: it panics with "would wait for
/// itself", although the lock is held by another thread that will release
/// it.
#[test]
fn write_guard_handed_to_another_thread_is_not_a_self_deadlock() {
    let outcome = run(|| {
        let (to_worker, from_caller) = mpsc::channel::<WriteGuard>();
        let worker = std::thread::spawn(move || {
            let guard = from_caller.recv().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(guard);
        });
        start_job(to_worker);
        let started = Instant::now();
        let value = next_job();
        worker.join().unwrap();
        (value, started.elapsed())
    });
    let (value, waited) = outcome.expect("a correct program panicked");
    assert_eq!(value, 7);
    assert!(waited >= Duration::from_millis(150));
}

// The same with a read guard: the worker's release does not clear the
// recorded holder (it is not the recording thread), so the stale record
// stays after every guard is gone, for good.
#[read_lock("stale", registry = REGISTRY, guard = held)]
fn share(to_worker: mpsc::Sender<ReadGuard>) {
    to_worker.send(held).unwrap();
}

#[read_lock("stale", registry = REGISTRY)]
fn read_stale() -> u32 {
    3
}

/// Expected: once the worker dropped the read guard, nothing is held by
/// this thread; a later read that has to wait for an unrelated writer (an
/// API holder on another thread, holding 100 ms) waits, then runs.
/// Actual: it panics with a self-deadlock naming `share` as the holder.
#[test]
fn read_guard_handed_to_another_thread_leaves_a_stale_holder_for_good() {
    let outcome = run(|| {
        let (to_worker, from_caller) = mpsc::channel::<ReadGuard>();
        let worker = std::thread::spawn(move || drop(from_caller.recv().unwrap()));
        share(to_worker);
        worker.join().unwrap();
        // Nothing is held now.
        assert!(!REGISTRY.lock("stale").is_locked());
        // An unrelated writer on another thread holds for a while.
        let (held_tx, held_rx) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            let guard = REGISTRY.lock("stale").write_blocking();
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            drop(guard);
        });
        held_rx.recv().unwrap();
        let value = read_stale();
        writer.join().unwrap();
        value
    });
    assert_eq!(outcome.expect("a correct program panicked"), 3);
}

// The error path of the same false positive, through the return type.
#[write_lock("handoff2", registry = REGISTRY, guard = held)]
fn start_job2(to_worker: mpsc::Sender<WriteGuard>) {
    to_worker.send(held).unwrap();
}

#[write_lock("handoff2", registry = REGISTRY, timeout = "5s")]
fn next_job2() -> Result<u32, Error> {
    Ok(7)
}

/// Expected: `Ok(7)` after ~200 ms. Actual: `Err(WouldDeadlock)` at once.
#[test]
fn write_guard_handed_off_gives_a_false_would_deadlock_error() {
    let outcome = run(|| {
        let (to_worker, from_caller) = mpsc::channel::<WriteGuard>();
        let worker = std::thread::spawn(move || {
            let guard = from_caller.recv().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            drop(guard);
        });
        start_job2(to_worker);
        let result = next_job2();
        worker.join().unwrap();
        result.map_err(|e| e.to_string())
    });
    assert_eq!(outcome.unwrap(), Ok(7));
}

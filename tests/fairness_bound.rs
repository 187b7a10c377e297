//! RELIABILITY item 7a: the fairness bound holds for tasks as for threads.
//!
//! A holder that releases and re-takes the lock in a loop may overtake the
//! queue's head only while the head has waited less than the bound; after
//! that the head is handed the lock. Each test keeps the loop running far
//! longer than the bound (a second) and asserts the queued waiter got the
//! lock within a small multiple of it, with room for a loaded machine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keylock::{Lock, Registry};

const BOUND: Duration = Duration::from_millis(1);
/// How long the looping holders keep going.
const LOOP: Duration = Duration::from_secs(1);
/// The most the queued waiter may wait: the bound, plus slack for a busy
/// two-core machine; far below `LOOP`.
const LIMIT: Duration = Duration::from_millis(100);

fn lock() -> Lock {
    Registry::builder()
        .fairness_bound(BOUND)
        .build()
        .lock("hot")
}

/// About two microseconds of work inside the critical section.
fn work() {
    let started = Instant::now();
    while started.elapsed() < Duration::from_micros(2) {
        std::hint::spin_loop();
    }
}

/// Takes the lock in `access` mode in a loop, after dropping `first` (the
/// guard that held the lock while the writer queued), until `stop` is set or
/// `LOOP` has passed. Never yields on its own while the lock is free.
async fn hold_in_a_loop<G>(lock: Lock, write: bool, first: Option<G>, stop: Arc<AtomicBool>) {
    drop(first);
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOOP {
        if write {
            let _guard = lock.write().await;
            work();
        } else {
            let _guard = lock.read().await;
            work();
        }
    }
}

/// Queues a writer task while `guard` holds the lock, then starts `loops`
/// tasks that take the lock in a loop (the first of them drops `guard`), and
/// returns how long the queued writer waited.
async fn queued_writer_wait<G: Send + 'static>(
    lock: &Lock,
    guard: G,
    write: bool,
    loops: usize,
) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let waited = Arc::new(Mutex::new(None));
    let writer = {
        let lock = lock.clone();
        let stop = stop.clone();
        let waited = waited.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let _guard = lock.write().await;
            *waited.lock().unwrap() = Some(started.elapsed());
            stop.store(true, Ordering::Relaxed);
        })
    };
    while lock.waiters() == 0 {
        tokio::task::yield_now().await;
    }
    // The first loop releases the guard, so the writer's wake-up comes from
    // a task that goes on running (on a worker, into that worker's LIFO slot).
    let mut guard = Some(guard);
    let loops: Vec<_> = (0..loops)
        .map(|_| {
            tokio::spawn(hold_in_a_loop(
                lock.clone(),
                write,
                guard.take(),
                stop.clone(),
            ))
        })
        .collect();
    writer.await.unwrap();
    for task in loops {
        task.await.unwrap();
    }
    let waited = waited.lock().unwrap().expect("the writer ran");
    waited
}

/// The queued `who` got the lock within a small multiple of the bound.
fn assert_within_bound(who: &str, waited: Duration) {
    assert!(
        waited < LIMIT,
        "the queued {who} waited {waited:?} (bound {BOUND:?})"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn looping_writer_task_yields_to_queued_writer_on_current_thread() {
    let lock = lock();
    let guard = lock.write().await;
    let waited = queued_writer_wait(&lock, guard, true, 1).await;
    assert_within_bound("writer", waited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_writer_task_yields_to_queued_writer_on_two_workers() {
    let lock = lock();
    let guard = lock.write().await;
    let waited = queued_writer_wait(&lock, guard, true, 1).await;
    assert_within_bound("writer", waited);
}

#[tokio::test(flavor = "current_thread")]
async fn looping_reader_tasks_yield_to_queued_writer() {
    let lock = lock();
    let guard = lock.read().await;
    let waited = queued_writer_wait(&lock, guard, false, 4).await;
    assert_within_bound("writer", waited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_reader_tasks_yield_to_queued_writer_on_two_workers() {
    let lock = lock();
    let guard = lock.read().await;
    let waited = queued_writer_wait(&lock, guard, false, 4).await;
    assert_within_bound("writer", waited);
}

#[test]
fn looping_threads_yield_to_queued_thread() {
    let lock = lock();
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let lock = lock.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) && started.elapsed() < LOOP {
                    let _guard = lock.write_blocking();
                    work();
                }
            })
        })
        .collect();
    // Let the loops get going, then queue behind them.
    std::thread::sleep(Duration::from_millis(20));
    let started = Instant::now();
    let guard = lock.write_blocking();
    let waited = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    drop(guard);
    for handle in loops {
        handle.join().unwrap();
    }
    assert_within_bound("thread", waited);
}

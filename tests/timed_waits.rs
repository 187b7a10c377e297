//! RELIABILITY item 7b: what a timed wait costs while it is queued, and
//! that it works on any executor.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;
use keylock::{Error, Registry};

/// The tests here count the process's threads: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Threads of this process, from `/proc/self/task`.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

#[test]
fn queued_timed_waits_outside_tokio_share_one_timer_thread() {
    let _serial = serial();
    let lock = Registry::new().lock("db");
    let guard = lock.write_blocking();
    let before = threads();

    // 500 long timed waits, all queued behind the guard.
    let mut pool = LocalPool::new();
    for _ in 0..500 {
        let wait = lock.write_timeout(Duration::from_secs(20));
        pool.spawner()
            .spawn_local(async move {
                let _ = wait.await;
            })
            .unwrap();
    }
    pool.run_until_stalled();
    assert_eq!(lock.waiters(), 500);
    let during = threads();
    assert!(
        during <= before + 2,
        "{} threads for 500 queued timed waits (was {before})",
        during
    );
    // Dropping the waits leaves nothing queued.
    drop(pool);
    assert_eq!(lock.waiters(), 0);

    // Short timed waits still time out, each after its timeout.
    let mut pool = LocalPool::new();
    let started = Instant::now();
    let results: Vec<_> = (0..500)
        .map(|i| {
            let timeout = Duration::from_millis(20 + i % 30);
            let wait = lock.write_timeout(timeout);
            pool.spawner()
                .spawn_local_with_handle(async move { (timeout, wait.await.map(drop)) })
                .unwrap()
        })
        .collect();
    let results = pool.run_until(futures::future::join_all(results));
    assert!(started.elapsed() < Duration::from_secs(10));
    for (timeout, result) in results {
        match result {
            Err(Error::Timeout { waited, .. }) => assert!(waited >= timeout, "{waited:?}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert!(threads() <= before + 2);
    assert_eq!(lock.waiters(), 0);
    drop(guard);
}

#[test]
fn timed_wait_in_tokio_runtime_without_time_driver_times_out() {
    let _serial = serial();
    for runtime in [
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap(),
    ] {
        runtime.block_on(async {
            let lock = Registry::new().lock("db");
            let guard = lock.write().await;
            let err = lock
                .write_timeout(Duration::from_millis(20))
                .await
                .unwrap_err();
            assert!(err.is_timeout(), "{err}");
            assert_eq!(lock.waiters(), 0);
            drop(guard);
            // Uncontended, a timed wait never needed a timer at all.
            drop(lock.read_timeout(Duration::from_millis(20)).await.unwrap());
        });
    }
}

#[test]
fn queued_timed_waits_in_tokio_without_time_driver_share_one_timer_thread() {
    let _serial = serial();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let lock = Registry::new().lock("db");
        let guard = lock.write().await;
        let before = threads();
        let waits: Vec<_> = (0..500)
            .map(|i| {
                let wait =
                    lock.write_timeout(Duration::from_millis(if i % 2 == 0 { 20 } else { 20_000 }));
                tokio::spawn(async move { wait.await.map(drop) })
            })
            .collect();
        while lock.waiters() < 500 {
            tokio::task::yield_now().await;
        }
        assert!(threads() <= before + 2, "{} threads", threads());
        // The short half time out and leave the queue; the long half then
        // gets the lock in turn.
        let started = Instant::now();
        while lock.waiters() > 250 && started.elapsed() < Duration::from_secs(10) {
            tokio::task::yield_now().await;
        }
        assert_eq!(lock.waiters(), 250);
        drop(guard);
        let mut timed_out = 0;
        for wait in waits {
            match wait.await.unwrap() {
                Ok(()) => {}
                Err(error) => {
                    assert!(error.is_timeout(), "{error}");
                    timed_out += 1;
                }
            }
        }
        assert_eq!(timed_out, 250);
        assert_eq!(lock.waiters(), 0);
    });
}

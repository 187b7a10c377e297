//! The file backend's two tiers: a hot key costs one file lock per chain of
//! holders in a process, not one per holder, and the chain neither keeps
//! the lock from other processes nor leaks it when its next holder gives
//! up. Two registries bound to one directory stand for two processes
//! (`tests/across_processes.rs` runs real ones).

#![cfg(unix)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keylock::{FileBackend, Registry, Target};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keylock-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn process(dir: &PathBuf) -> Registry {
    Registry::builder()
        .backend("hot", FileBackend::new(dir).unwrap())
        .build()
}

#[test]
fn a_hot_key_takes_one_file_lock_per_chain_and_fences_still_increase() {
    const THREADS: usize = 4;
    const ROUNDS: usize = 300;
    const OTHER_ROUNDS: usize = 20;
    let dir = temp_dir("chain");
    let (busy, other) = (process(&dir), process(&dir));
    // Every grant's fence, in the order the grants happened.
    let fences = Arc::new(Mutex::new(Vec::new()));
    let mut other_waits = Vec::new();
    let start = std::sync::Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            let (busy, fences, start) = (&busy, &fences, &start);
            scope.spawn(move || {
                let hot = busy.keyed::<u64>("hot");
                start.wait();
                for _ in 0..ROUNDS {
                    let guard = hot.write_blocking(&1);
                    fences.lock().unwrap().push((0, guard.fence().unwrap()));
                    // Long enough that the other threads queue meanwhile.
                    std::thread::sleep(Duration::from_micros(50));
                }
            });
        }
        // The other process gets its turns while the queue here never
        // empties.
        let hot = other.keyed::<u64>("hot").key(&1);
        for _ in 0..OTHER_ROUNDS {
            let started = Instant::now();
            let guard = hot.write_blocking_timeout(Duration::from_secs(5)).unwrap();
            other_waits.push(started.elapsed());
            fences.lock().unwrap().push((1, guard.fence().unwrap()));
            drop(guard);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let fences = fences.lock().unwrap();
    assert_eq!(fences.len(), THREADS * ROUNDS + OTHER_ROUNDS);
    for pair in fences.windows(2) {
        assert!(
            pair[1].1 > pair[0].1,
            "fence {:?} after {:?}",
            pair[1],
            pair[0]
        );
    }
    // Grants of one file lock share the high bits of their fences.
    let mut file_locks: Vec<u64> = fences.iter().map(|(_, fence)| fence >> 16).collect();
    file_locks.dedup();
    assert!(
        file_locks.len() * 3 < fences.len(),
        "{} file locks for {} grants",
        file_locks.len(),
        fences.len()
    );
    let longest = other_waits.iter().max().unwrap();
    assert!(
        *longest < Duration::from_secs(1),
        "the other process waited {longest:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_parked_lease_goes_back_when_its_next_holder_gives_up() {
    let dir = temp_dir("linger");
    let (here, other) = (process(&dir), process(&dir));
    let lock = here.keyed::<u64>("hot").key(&1);
    let holder = lock.write_blocking();
    // A waiter of this process queues, then gives up before it runs again.
    let mut waiter = Box::pin(lock.write());
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    assert_eq!(lock.waiters(), 1);
    // Released with a waiter queued: the file lock is parked for it.
    drop(holder);
    drop(waiter);
    let started = Instant::now();
    let theirs = other
        .keyed::<u64>("hot")
        .key(&1)
        .write_blocking_timeout(Duration::from_secs(2))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    drop(theirs);
    // Nobody holds the file: a new backend removes it as idle.
    let backend = FileBackend::new(&dir).unwrap();
    assert!(!backend.path_of(&Target::new("hot", Some("1"))).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_directory_is_an_error_naming_backend_and_resource() {
    let dir = temp_dir("gone");
    let registry = process(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let error = registry
        .keyed::<u64>("hot")
        .key(&7)
        .write_blocking_timeout(Duration::from_millis(100))
        .unwrap_err();
    assert!(error.is_backend(), "{error}");
    let message = error.to_string();
    assert!(message.contains("file backend"), "{message}");
    assert!(message.contains("`hot` (key 7)"), "{message}");
    let busy = registry.keyed::<u64>("hot").try_write(&7).unwrap_err();
    assert!(busy.is_backend(), "{busy}");
    // The in-process lock was not kept by the failed attempts.
    assert!(!registry.keyed::<u64>("hot").is_locked(&7));
}

#[test]
fn a_lock_file_removed_from_outside_invalidates_the_guard() {
    let dir = temp_dir("removed");
    let registry = process(&dir);
    let guard = registry.keyed::<u64>("hot").write_blocking(&3);
    assert!(guard.is_valid());
    let backend = FileBackend::new(&dir).unwrap();
    std::fs::remove_file(backend.path_of(&Target::new("hot", Some("3")))).unwrap();
    assert!(!guard.is_valid());
    let lost = guard.check().unwrap_err();
    assert!(lost.is_lease_lost(), "{lost}");
    drop(guard);
    assert!(registry.stats().resource("hot").unwrap().leases_lost >= 1);
}

/// The registry of the lease-loss tests, and its directory (shared by
/// those tests, as the attributes name one registry).
static LOST: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
static LOST_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn lost_registry() -> (&'static Registry, &'static PathBuf) {
    let dir = LOST_DIR.get_or_init(|| temp_dir("lost"));
    (LOST.get_or_init(|| process(dir)), dir)
}

#[keylock::write_lock("hot", key = key, registry = LOST.get().unwrap())]
async fn long_job(
    key: u64,
    finished: Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), keylock::Error> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

#[tokio::test]
async fn an_async_body_whose_lock_is_lost_is_cancelled_and_returns_the_loss() {
    let (registry, dir) = lost_registry();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let job = tokio::spawn(long_job(5, Arc::clone(&finished)));
    let path = FileBackend::new(dir)
        .unwrap()
        .path_of(&Target::new("hot", Some("5")));
    // Once the job holds the lock, its file is removed from outside.
    while !registry.keyed::<u64>("hot").is_locked(&5) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    std::fs::remove_file(&path).unwrap();
    let error = job.await.unwrap().unwrap_err();
    assert!(error.is_lease_lost(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        !finished.load(std::sync::atomic::Ordering::SeqCst),
        "the body ran on"
    );
    assert!(!registry.keyed::<u64>("hot").is_locked(&5));
    assert!(registry.stats().resource("hot").unwrap().leases_lost >= 1);
}

#[keylock::write_lock("hot", key = key, registry = LOST.get().unwrap())]
async fn long_job_plain_error(key: u64) -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok(())
}

#[tokio::test]
async fn a_lost_lease_whose_error_type_cannot_carry_it_panics_naming_it() {
    let (registry, dir) = lost_registry();
    let job = tokio::spawn(long_job_plain_error(6));
    while !registry.keyed::<u64>("hot").is_locked(&6) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let path = FileBackend::new(dir)
        .unwrap()
        .path_of(&Target::new("hot", Some("6")));
    std::fs::remove_file(&path).unwrap();
    let panic = job.await.unwrap_err().into_panic();
    let message = panic.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("lost the lock on `hot` (key 6)"),
        "{message}"
    );
    assert!(message.contains("cannot carry the error"), "{message}");
    assert!(!registry.keyed::<u64>("hot").is_locked(&6));
}

//! What every backend promises, checked against each: the in-process
//! locks (no backend) and the file backend. A "process" here is a registry:
//! for the in-process case every process gets the same registry; for a
//! backend each gets a registry of its own bound to the same backend
//! storage, so only the backend can make them exclude each other (file
//! locks exclude open files, not processes, so this is what separate
//! processes see; `tests/across_processes.rs` runs real ones).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keylock::{write_lock, Registry};

const RESOURCE: &str = "conformance";

/// How a backend under test makes the registries of its "processes".
trait Backend: Send + Sync + 'static {
    /// A registry for one more process.
    fn process(&self) -> Registry;
    /// Whether grants carry fencing tokens.
    fn fenced(&self) -> bool;
    /// Checks that nothing is left held or stored once every guard is gone.
    fn assert_clean(&self) {}
}

struct InProcess(Registry);

impl Backend for InProcess {
    fn process(&self) -> Registry {
        self.0.clone()
    }

    fn fenced(&self) -> bool {
        false
    }
}

#[cfg(unix)]
struct Files(std::path::PathBuf);

#[cfg(unix)]
impl Backend for Files {
    fn process(&self) -> Registry {
        Registry::builder()
            .backend(RESOURCE, keylock::FileBackend::new(&self.0).unwrap())
            .build()
    }

    fn fenced(&self) -> bool {
        true
    }

    /// No lock file is held: every one left for reuse can be removed.
    fn assert_clean(&self) {
        keylock::FileBackend::new(&self.0)
            .unwrap()
            .remove_idle()
            .unwrap();
        let left: Vec<_> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "lock files still held: {left:?}");
    }
}

#[cfg(unix)]
impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn exclusion_per_key(backend: &dyn Backend) {
    const PROCESSES: usize = 4;
    const ROUNDS: usize = 200;
    let inside = Arc::new(AtomicUsize::new(0));
    let violations = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for process in 0..PROCESSES {
            let registry = backend.process();
            let (inside, violations, done) = (&inside, &violations, &done);
            let critical = move || {
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    violations.fetch_add(1, Ordering::SeqCst);
                }
                std::thread::yield_now();
                inside.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
            };
            scope.spawn(move || {
                let keyed = registry.keyed::<u64>(RESOURCE);
                if process % 2 == 0 {
                    for _ in 0..ROUNDS {
                        let _guard = keyed.write_blocking(&1);
                        critical();
                    }
                } else {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        for _ in 0..ROUNDS {
                            let _guard = keyed.write(&1).await;
                            critical();
                        }
                    });
                }
            });
        }
    });
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert_eq!(done.load(Ordering::SeqCst), PROCESSES * ROUNDS);
    backend.assert_clean();
}

fn different_keys_do_not_exclude(backend: &dyn Backend) {
    let (a, b) = (backend.process(), backend.process());
    let held = a.keyed::<u64>(RESOURCE).write_blocking(&1);
    let other = b.keyed::<u64>(RESOURCE).try_write(&2).unwrap();
    assert!(b
        .keyed::<u64>(RESOURCE)
        .try_write(&1)
        .unwrap_err()
        .is_busy());
    drop((held, other));
    backend.assert_clean();
}

fn readers_share_and_exclude_writers(backend: &dyn Backend) {
    let (a, b, c) = (backend.process(), backend.process(), backend.process());
    let first = a.keyed::<u64>(RESOURCE).read_blocking(&1);
    let second = b.keyed::<u64>(RESOURCE).try_read(&1).unwrap();
    assert!(c
        .keyed::<u64>(RESOURCE)
        .try_write(&1)
        .unwrap_err()
        .is_busy());
    drop(first);
    assert!(c
        .keyed::<u64>(RESOURCE)
        .try_write(&1)
        .unwrap_err()
        .is_busy());
    drop(second);
    drop(c.keyed::<u64>(RESOURCE).try_write(&1).unwrap());
    backend.assert_clean();
}

fn try_and_timeouts_report_the_holder(backend: &dyn Backend) {
    let (a, b) = (backend.process(), backend.process());
    let held = a.keyed::<u64>(RESOURCE).write_blocking(&1);
    let lock = b.keyed::<u64>(RESOURCE).key(&1);
    let busy = lock.try_write().unwrap_err();
    assert!(busy.is_busy(), "{busy}");
    let started = Instant::now();
    let timeout = lock
        .write_blocking_timeout(Duration::from_millis(50))
        .unwrap_err();
    assert!(timeout.is_timeout(), "{timeout}");
    assert!(started.elapsed() >= Duration::from_millis(50));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let timeout = runtime
        .block_on(lock.write_timeout(Duration::from_millis(50)))
        .unwrap_err();
    assert!(timeout.is_timeout(), "{timeout}");
    drop(held);
    // Free again: the waits that gave up left nothing behind.
    drop(lock.try_write().unwrap());
    backend.assert_clean();
}

fn sets_exclude_their_keys(backend: &dyn Backend) {
    let (a, b) = (backend.process(), backend.process());
    let set = a.keyed::<u64>(RESOURCE).write_many_blocking(&[&2, &1]);
    assert!(set.is_valid() && set.check().is_ok());
    assert_eq!(
        set.fences().iter().all(Option::is_some),
        backend.fenced(),
        "{:?}",
        set.fences()
    );
    assert!(b
        .keyed::<u64>(RESOURCE)
        .try_write(&1)
        .unwrap_err()
        .is_busy());
    assert!(b
        .keyed::<u64>(RESOURCE)
        .try_write(&2)
        .unwrap_err()
        .is_busy());
    drop(b.keyed::<u64>(RESOURCE).try_write(&3).unwrap());
    drop(set);
    drop(b.keyed::<u64>(RESOURCE).try_write_many(&[&1, &2]).unwrap());
    backend.assert_clean();
}

fn fences_increase(backend: &dyn Backend) {
    let processes = [backend.process(), backend.process()];
    let mut last = None;
    for round in 0..40 {
        let registry = &processes[round % 2];
        let guard = registry.keyed::<u64>(RESOURCE).write_blocking(&1);
        let fence = guard.fence();
        assert_eq!(fence.is_some(), backend.fenced());
        if let (Some(fence), Some(last)) = (fence, last) {
            assert!(fence > last, "{fence} after {last}");
        }
        last = fence;
        let read = registry.keyed::<u64>(RESOURCE).key(&1);
        drop(guard);
        // Shared grants are fenced too: never below the last write grant's
        // backend token, never above the next write grant's.
        let reader = read.read_blocking();
        if let (Some(fence), Some(previous)) = (reader.fence(), last) {
            assert!(fence >> 16 >= previous >> 16, "{fence} after {previous}");
        }
        drop(reader);
    }
    backend.assert_clean();
}

fn release_on_drop_and_panic(backend: &dyn Backend) {
    let (a, b) = (backend.process(), backend.process());
    let keyed = a.keyed::<u64>(RESOURCE);
    let panicked = std::thread::spawn(move || {
        let _guard = keyed.write_blocking(&1);
        panic!("the holder panics");
    })
    .join();
    assert!(panicked.is_err());
    drop(b.keyed::<u64>(RESOURCE).try_write(&1).unwrap());
    let early = || -> Result<(), ()> {
        let _guard = a.keyed::<u64>(RESOURCE).write_blocking(&1);
        Err(())
    };
    assert!(early().is_err());
    drop(b.keyed::<u64>(RESOURCE).try_write(&1).unwrap());
    backend.assert_clean();
}

fn no_lock_leaks_after_abandoned_waits(backend: &dyn Backend) {
    let (a, b) = (backend.process(), backend.process());
    let held = a.keyed::<u64>(RESOURCE).write_blocking(&1);
    let lock = b.keyed::<u64>(RESOURCE).key(&1);
    for _ in 0..500 {
        let error = lock
            .write_blocking_timeout(Duration::from_micros(200))
            .unwrap_err();
        assert!(error.is_timeout());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        for round in 0..500 {
            if round % 2 == 0 {
                let error = lock
                    .write_timeout(Duration::from_micros(200))
                    .await
                    .unwrap_err();
                assert!(error.is_timeout());
            } else {
                // Cancelled by the caller rather than timed out.
                let cancelled =
                    tokio::time::timeout(Duration::from_micros(200), lock.write()).await;
                assert!(cancelled.is_err());
            }
        }
    });
    drop(held);
    drop(lock.try_write().unwrap());
    assert_eq!(b.stats().resource(RESOURCE).unwrap().waiters, 0);
    backend.assert_clean();
}

fn annotations_see_the_fence(backend: &dyn Backend) {
    #[write_lock("conformance", key = key, registry = registry, guard = lock)]
    fn fenced(registry: &Registry, key: u64) -> Option<u64> {
        lock.fence()
    }

    #[write_lock("conformance", key = key, registry = registry, guard = lock)]
    async fn fenced_async(registry: &Registry, key: u64) -> Option<u64> {
        assert!(lock.is_valid());
        lock.check().unwrap();
        lock.fence()
    }

    let process = backend.process();
    let first = fenced(&process, 3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let second = runtime.block_on(fenced_async(&process, 3));
    assert_eq!(first.is_some(), backend.fenced());
    if let (Some(first), Some(second)) = (first, second) {
        assert!(second > first);
    }
    backend.assert_clean();
}

macro_rules! conformance {
    ($($backend:ident: $make:expr;)*) => {$(
        mod $backend {
            use super::*;

            #[test]
            fn exclusion_per_key() {
                super::exclusion_per_key(&$make);
            }

            #[test]
            fn different_keys_do_not_exclude() {
                super::different_keys_do_not_exclude(&$make);
            }

            #[test]
            fn readers_share_and_exclude_writers() {
                super::readers_share_and_exclude_writers(&$make);
            }

            #[test]
            fn try_and_timeouts_report_the_holder() {
                super::try_and_timeouts_report_the_holder(&$make);
            }

            #[test]
            fn sets_exclude_their_keys() {
                super::sets_exclude_their_keys(&$make);
            }

            #[test]
            fn fences_increase() {
                super::fences_increase(&$make);
            }

            #[test]
            fn release_on_drop_and_panic() {
                super::release_on_drop_and_panic(&$make);
            }

            #[test]
            fn no_lock_leaks_after_abandoned_waits() {
                super::no_lock_leaks_after_abandoned_waits(&$make);
            }

            #[test]
            fn annotations_see_the_fence() {
                super::annotations_see_the_fence(&$make);
            }
        }
    )*};
}

/// A fresh directory for one test of the file backend.
#[cfg(unix)]
fn files(test: &str) -> Files {
    let dir =
        std::env::temp_dir().join(format!("keylock-conformance-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Files(dir)
}

conformance! {
    in_process: InProcess(Registry::new());
}

#[cfg(unix)]
mod file {
    use super::*;

    conformance! {
        backend: files(&format!("{:?}", std::thread::current().name()).replace([':', '"', ' ', '(', ')'], "_"));
    }
}

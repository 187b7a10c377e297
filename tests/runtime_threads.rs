//! Guarantee L13 of `docs/guarantees.md`: a sync function that blocks on a
//! lock while running on a Tokio runtime thread never hangs the runtime
//! silently. On a multi-thread runtime the runtime moves its other tasks
//! off the blocked worker, so the async holder runs and releases; on a
//! `current_thread` runtime, where the holder could never run, the call
//! panics naming the lock, its call site and the fix.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::LazyLock;
use std::time::Duration;

use keylock::{write_lock, Registry};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

#[write_lock("sessions", key = channel, registry = REGISTRY)]
fn handle_sync(channel: u64) -> u64 {
    channel
}

#[write_lock("sessions", key = channel, registry = REGISTRY)]
async fn handle_async(channel: u64, hold: Duration) {
    tokio::time::sleep(hold).await;
}

/// Runs `body` on its own thread; `None` if it has not finished in `limit`.
fn within<R: Send + 'static>(
    limit: Duration,
    body: impl FnOnce() -> R + Send + 'static,
) -> Option<R> {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(body());
    });
    outcome.recv_timeout(limit).ok()
}

/// Runs `body` on a new `current_thread` runtime; the message of the panic
/// it must end in.
fn refusal_on_current_thread<F>(body: impl FnOnce() -> F + Send + 'static) -> String
where
    F: std::future::Future<Output = ()>,
{
    let outcome = within(Duration::from_secs(20), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        catch_unwind(AssertUnwindSafe(|| runtime.block_on(body())))
    });
    let payload = outcome
        .expect("the runtime hung")
        .expect_err("the call blocked");
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn sync_callers_on_every_worker_do_not_hang_a_multi_thread_runtime() {
    let finished = within(Duration::from_secs(20), || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // An async task holds the key across an await...
            let holder = tokio::spawn(handle_async(1, Duration::from_millis(200)));
            tokio::time::sleep(Duration::from_millis(50)).await;
            // ...while two tasks, one per worker, call the sync twin.
            let callers: Vec<_> = (0..2)
                .map(|_| tokio::spawn(async { handle_sync(1) }))
                .collect();
            for caller in callers {
                assert_eq!(caller.await.unwrap(), 1);
            }
            holder.await.unwrap();
        });
    });
    assert!(finished.is_some(), "the runtime hung");
}

#[test]
fn a_sync_caller_on_a_current_thread_runtime_panics_naming_the_lock_and_the_fix() {
    let message = refusal_on_current_thread(|| async {
        let holder = tokio::spawn(handle_async(2, Duration::from_millis(200)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        handle_sync(2);
        holder.await.unwrap();
    });
    assert!(message.contains("resource \"sessions\""), "{message}");
    assert!(message.contains("key 2"), "{message}");
    assert!(message.contains("runtime_threads.rs"), "{message}");
    assert!(message.contains("spawn_blocking"), "{message}");
}

#[test]
fn a_sync_caller_in_spawn_blocking_of_a_current_thread_runtime_waits() {
    let finished = within(Duration::from_secs(20), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let holder = tokio::spawn(handle_async(3, Duration::from_millis(100)));
            tokio::time::sleep(Duration::from_millis(20)).await;
            let caller = tokio::task::spawn_blocking(|| handle_sync(3));
            assert_eq!(caller.await.unwrap(), 3);
            holder.await.unwrap();
        });
    });
    assert!(finished.is_some(), "the runtime hung");
}

#[test]
fn an_uncontended_sync_call_on_a_current_thread_runtime_just_runs() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(async { handle_sync(4) }), 4);
}

#[test]
fn a_sync_dedup_waiter_on_a_current_thread_runtime_panics_instead_of_hanging() {
    static DEDUP: LazyLock<Registry> = LazyLock::new(Registry::new);
    #[keylock::dedup("replies", id, in_flight = "wait", registry = DEDUP)]
    fn handle_once(id: u64) -> Option<u64> {
        Some(id)
    }
    let message = refusal_on_current_thread(|| async {
        let claim = DEDUP.dedup::<u64>("replies").claim(&5).unwrap();
        let holder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            claim.release();
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle_once(5);
        holder.await.unwrap();
    });
    assert!(message.contains("dedup scope"), "{message}");
    assert!(message.contains("spawn_blocking"), "{message}");
}

#[write_lock("sessions", key = channel, registry = REGISTRY, timeout = "5s")]
fn handle_sync_timed(channel: u64) -> Result<u64, keylock::Error> {
    Ok(channel)
}

#[test]
fn a_timed_sync_caller_on_a_current_thread_runtime_waits_for_a_thread_holder() {
    let outcome = within(Duration::from_secs(20), || {
        let holder = REGISTRY.key_lock("sessions", &6u64).write_blocking();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(holder);
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let outcome = runtime.block_on(async { handle_sync_timed(6) });
        release.join().unwrap();
        outcome
    });
    assert_eq!(outcome.expect("the runtime hung").unwrap(), 6);
}

#[test]
fn a_refused_wait_leaves_no_waiter_behind() {
    static TRACKED: LazyLock<Registry> =
        LazyLock::new(|| Registry::builder().track_holders(true).build());
    #[write_lock("tracked", key = channel, registry = TRACKED)]
    fn tracked_sync(channel: u64) -> u64 {
        channel
    }
    #[write_lock("tracked", key = channel, registry = TRACKED)]
    async fn tracked_async(channel: u64) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message = refusal_on_current_thread(|| async {
        let holder = tokio::spawn(tracked_async(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        tracked_sync(1);
        holder.await.unwrap();
    });
    assert!(message.contains("spawn_blocking"), "{message}");
    // The holder task was dropped with its runtime; nothing is left.
    let stats = TRACKED.stats();
    let stats = stats.resource("tracked").unwrap();
    assert!(stats.live.is_empty(), "{:?}", stats.live);
    assert_eq!(stats.waiters, 0);
    assert_eq!(tracked_sync(1), 1);
}

//! Guarantee L14 of `docs/guarantees.md`: a sync annotated function that
//! holds a lock, and asks for it again on its thread (a nested or recursive
//! annotated call, a read inside a write, an upgrade from read to write, a
//! read while a writer queues behind its own read, a nested `block_on`),
//! gets `Error::WouldDeadlock` through its return type or a panic that says
//! so, instead of waiting for itself forever. Correct programs never see it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::LazyLock;
use std::time::Duration;

use keylock::{read_lock, write_lock, Error, Registry};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Runs `body` on its own thread and returns its panic message; fails the
/// test if `body` hangs or returns normally.
fn panic_of(body: impl FnOnce() + Send + 'static) -> String {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let result = catch_unwind(AssertUnwindSafe(body));
        std::panic::set_hook(hook);
        let _ = done.send(result);
    });
    let payload = outcome
        .recv_timeout(Duration::from_secs(20))
        .expect("the call hung")
        .expect_err("the call returned instead of reporting a deadlock");
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

/// Runs `body` on its own thread; fails the test if it hangs.
fn finishes<R: Send + 'static>(body: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(body());
    });
    outcome
        .recv_timeout(Duration::from_secs(20))
        .expect("the call hung")
}

#[write_lock("sessions", key = channel, registry = REGISTRY)]
fn outer(channel: u64) -> u64 {
    inner(channel)
}

#[write_lock("sessions", key = channel, registry = REGISTRY)]
fn inner(channel: u64) -> u64 {
    channel
}

#[test]
fn nested_write_on_the_same_key_panics_naming_both_call_sites() {
    let message = panic_of(|| {
        outer(1);
    });
    assert!(message.contains("would deadlock"), "{message}");
    assert!(message.contains("`sessions` (key 1)"), "{message}");
    assert_eq!(message.matches("self_deadlock.rs").count(), 2, "{message}");
    assert!(message.contains("not re-entrant"), "{message}");
    // Nothing stays locked: the panic released the outer lock.
    assert_eq!(finishes(|| inner(1)), 1);
    // Different keys nest fine.
    assert_eq!(finishes(|| outer_other(2)), 3);
}

#[write_lock("sessions", key = channel, registry = REGISTRY)]
fn outer_other(channel: u64) -> u64 {
    inner(channel + 1)
}

#[derive(Debug)]
enum AppError {
    Lock(Error),
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        AppError::Lock(error)
    }
}

#[write_lock("accounts", key = id, registry = REGISTRY)]
fn transfer(id: u64) -> Result<u64, AppError> {
    audit(id)
}

#[write_lock("accounts", key = id, registry = REGISTRY, timeout = "5s")]
fn audit(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

#[test]
fn a_function_that_can_return_the_error_returns_it() {
    let outcome = finishes(|| transfer(7));
    let Err(AppError::Lock(error)) = outcome else {
        panic!("expected WouldDeadlock, got {outcome:?}");
    };
    assert!(error.is_would_deadlock(), "{error}");
    assert_eq!(error.resource(), "accounts");
    assert_eq!(error.key(), Some("7"));
    let Error::WouldDeadlock {
        held_at,
        requested_at,
        ..
    } = &error
    else {
        unreachable!()
    };
    assert!(held_at
        .as_deref()
        .is_some_and(|at| at.contains("self_deadlock.rs")));
    assert!(requested_at.contains("self_deadlock.rs"));
    assert_ne!(held_at.as_deref(), Some(requested_at.as_str()));
}

#[write_lock("db", registry = REGISTRY)]
fn write_db() -> u64 {
    read_db()
}

#[read_lock("db", registry = REGISTRY)]
fn read_db() -> u64 {
    1
}

#[test]
fn a_read_inside_a_write_of_the_same_resource_panics() {
    let message = panic_of(|| {
        write_db();
    });
    assert!(message.contains("would deadlock"), "{message}");
    assert!(message.contains("read lock on `db`"), "{message}");
}

#[write_lock("tree", key = depth % 2, registry = REGISTRY)]
fn recurse(depth: u64) -> u64 {
    if depth == 0 {
        0
    } else {
        // depth - 2 has the same key: the recursion asks for its own lock.
        recurse(depth.saturating_sub(2)) + 1
    }
}

#[test]
fn recursion_on_the_same_key_panics() {
    let message = panic_of(|| {
        recurse(4);
    });
    assert!(message.contains("`tree` (key 0)"), "{message}");
}

#[read_lock("config", registry = REGISTRY)]
fn read_then_write() {
    drop(REGISTRY.lock("config").write_blocking());
}

#[test]
fn upgrading_a_read_to_a_write_panics() {
    let message = panic_of(read_then_write);
    assert!(message.contains("write lock on `config`"), "{message}");
}

static QUEUE: LazyLock<Registry> = LazyLock::new(Registry::new);

#[read_lock("rows", registry = QUEUE)]
fn read_twice(writer_queued: mpsc::Receiver<()>) -> u64 {
    writer_queued.recv().unwrap();
    // A writer waits behind this thread's read, so a second read queues
    // behind the writer: it would wait for itself.
    read_once()
}

#[read_lock("rows", registry = QUEUE)]
fn read_once() -> u64 {
    1
}

#[test]
fn a_read_while_a_writer_queues_behind_ones_own_read_panics() {
    let (queued, writer_queued) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = catch_unwind(AssertUnwindSafe(|| read_twice(writer_queued)));
        std::panic::set_hook(hook);
        outcome
    });
    let rows = QUEUE.lock("rows");
    while !rows.is_locked() {
        std::thread::yield_now();
    }
    let writer = {
        let rows = rows.clone();
        std::thread::spawn(move || drop(rows.write_blocking()))
    };
    while rows.waiters() == 0 {
        std::thread::yield_now();
    }
    queued.send(()).unwrap();
    let payload = reader
        .join()
        .unwrap()
        .expect_err("the second read was granted");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("would deadlock"), "{message}");
    // The reader's panic released its read; the writer gets the lock.
    finishes(move || writer.join().unwrap());
}

#[write_lock("jobs", key = id, registry = REGISTRY)]
async fn run_job(id: u64) -> u64 {
    id
}

#[write_lock("jobs", key = id, registry = REGISTRY)]
fn schedule(id: u64) -> u64 {
    // A future polled to completion on this very thread, inside the
    // function that holds the key.
    futures::executor::block_on(run_job(id))
}

#[test]
fn an_async_waiter_nested_in_a_sync_holder_panics() {
    let message = panic_of(|| {
        schedule(3);
    });
    assert!(message.contains("`jobs` (key 3)"), "{message}");
}

#[test]
fn holders_on_other_threads_are_waited_for_as_usual() {
    let (held, wait_for_it) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || hold_and_signal(held, released));
    wait_for_it.recv().unwrap();
    let waiter = std::thread::spawn(|| inner(9));
    std::thread::sleep(Duration::from_millis(20));
    release.send(()).unwrap();
    assert_eq!(finishes(move || waiter.join().unwrap()), 9);
    holder.join().unwrap();
}

#[write_lock("sessions", key = 9u64, registry = REGISTRY)]
fn hold_and_signal(held: mpsc::Sender<()>, release: mpsc::Receiver<()>) {
    held.send(()).unwrap();
    release.recv().unwrap();
}

#[test]
fn sibling_futures_of_one_task_wait_for_each_other_without_error() {
    let results = finishes(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(futures::future::join_all((0..4).map(|_| slow_job(11))))
    });
    assert_eq!(results, vec![11; 4]);
}

#[write_lock("jobs", key = id, registry = REGISTRY)]
async fn slow_job(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    id
}

static UNCHECKED: LazyLock<Registry> =
    LazyLock::new(|| Registry::builder().self_deadlock_check(false).build());

#[write_lock("accounts", key = id, registry = UNCHECKED)]
fn unchecked_transfer(id: u64) -> Result<u64, AppError> {
    unchecked_audit(id)
}

#[write_lock("accounts", key = id, registry = UNCHECKED, timeout = "50ms")]
fn unchecked_audit(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

#[test]
fn with_the_check_off_the_nested_call_just_waits() {
    let outcome = finishes(|| unchecked_transfer(1));
    let Err(AppError::Lock(error)) = outcome else {
        panic!("expected a timeout, got {outcome:?}");
    };
    assert!(error.is_timeout(), "{error}");
}

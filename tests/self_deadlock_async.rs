//! Guarantee L14 for async functions: an annotated `async fn` that holds a
//! lock and awaits, inside its body, a wait for the same lock (a nested or
//! recursive annotated call, a read inside a write, the read / queued
//! writer / read-again sequence on one task) fails with
//! `Error::WouldDeadlock` or a panic that names both call sites, instead of
//! hanging; also after the task moved between worker threads. Sibling
//! futures of one task (`join!`) and other tasks wait as usual.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use keylock::{read_lock, write_lock, Error, Registry};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Runs `future` on a two-worker runtime in a task, bounded by 20 s; the
/// task's panic message, or `Ok` with its output.
fn run<F>(future: F) -> Result<F::Output, String>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let task = tokio::spawn(future);
        match tokio::time::timeout(Duration::from_secs(20), task).await {
            Err(_) => panic!("the task hung"),
            Ok(Ok(output)) => Ok(output),
            Ok(Err(error)) => {
                let payload = error.into_panic();
                Err(payload
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_default())
            }
        }
    })
}

#[write_lock("sessions", key = channel, registry = REGISTRY)]
async fn outer(channel: u64) -> u64 {
    tokio::task::yield_now().await;
    inner(channel).await
}

#[write_lock("sessions", key = channel, registry = REGISTRY)]
async fn inner(channel: u64) -> u64 {
    channel
}

#[test]
fn nested_async_write_on_the_same_key_panics_naming_both_call_sites() {
    let message = run(outer(1)).expect_err("the nested call did not report");
    assert!(message.contains("would deadlock"), "{message}");
    assert!(message.contains("`sessions` (key 1)"), "{message}");
    assert_eq!(
        message.matches("self_deadlock_async.rs").count(),
        2,
        "{message}"
    );
    // Nothing stays locked.
    assert_eq!(run(inner(1)).unwrap(), 1);
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
async fn transfer(id: u64) -> Result<u64, AppError> {
    audit(id).await
}

#[write_lock("accounts", key = id, registry = REGISTRY, timeout = "5s")]
async fn audit(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

#[test]
fn a_nested_call_that_can_return_the_error_returns_it() {
    let outcome = run(transfer(3)).unwrap();
    let Err(AppError::Lock(error)) = outcome else {
        panic!("expected WouldDeadlock, got {outcome:?}");
    };
    assert!(error.is_would_deadlock(), "{error}");
}

#[write_lock("db", registry = REGISTRY)]
async fn write_db() -> u64 {
    read_db().await
}

#[read_lock("db", registry = REGISTRY)]
async fn read_db() -> u64 {
    1
}

#[test]
fn an_async_read_inside_a_write_of_the_same_resource_panics() {
    let message = run(write_db()).expect_err("no report");
    assert!(message.contains("read lock on `db`"), "{message}");
}

static CLASSIC: LazyLock<Registry> = LazyLock::new(Registry::new);

#[read_lock("rows", registry = CLASSIC)]
async fn read_twice() -> u64 {
    let rows = CLASSIC.lock("rows");
    // Another task queues a write behind this task's read.
    let writer = tokio::spawn(async move { drop(rows.write().await) });
    while CLASSIC.lock("rows").waiters() == 0 {
        tokio::task::yield_now().await;
    }
    let value = read_again().await;
    writer.await.unwrap();
    value
}

#[read_lock("rows", registry = CLASSIC)]
async fn read_again() -> u64 {
    2
}

#[test]
fn read_then_queued_writer_then_read_again_on_one_task_panics() {
    let message = run(read_twice()).expect_err("the read-again did not report");
    assert!(message.contains("would deadlock"), "{message}");
}

#[write_lock("moving", key = id, registry = REGISTRY)]
async fn hold_across_many_awaits(id: u64) -> u64 {
    // Enough yields on two workers that the task runs on both threads.
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    nested_after_moving(id).await
}

#[write_lock("moving", key = id, registry = REGISTRY)]
async fn nested_after_moving(id: u64) -> u64 {
    id
}

#[test]
fn a_task_that_moved_between_threads_is_still_the_holder() {
    let message = run(hold_across_many_awaits(5)).expect_err("no report after moving");
    assert!(message.contains("`moving` (key 5)"), "{message}");
}

#[write_lock("jobs", key = id, registry = REGISTRY)]
async fn slow_job(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    id
}

#[test]
fn sibling_futures_and_other_tasks_wait_as_usual() {
    let joined = run(async {
        let (a, b) = tokio::join!(slow_job(8), slow_job(8));
        let other = tokio::spawn(slow_job(8));
        let c = slow_job(8).await;
        (a, b, c, other.await.unwrap())
    });
    assert_eq!(joined.unwrap(), (8, 8, 8, 8));
}

static UNCHECKED: LazyLock<Registry> =
    LazyLock::new(|| Registry::builder().self_deadlock_check(false).build());

#[write_lock("accounts", key = id, registry = UNCHECKED)]
async fn unchecked_transfer(id: u64) -> Result<u64, AppError> {
    unchecked_audit(id).await
}

#[write_lock("accounts", key = id, registry = UNCHECKED, timeout = "50ms")]
async fn unchecked_audit(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

#[test]
fn with_the_check_off_the_nested_call_just_waits() {
    let outcome = run(unchecked_transfer(1)).unwrap();
    let Err(AppError::Lock(error)) = outcome else {
        panic!("expected a timeout, got {outcome:?}");
    };
    assert!(error.is_timeout(), "{error}");
}

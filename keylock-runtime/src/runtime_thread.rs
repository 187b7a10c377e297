//! Blocking waits on threads that run a Tokio runtime.
//!
//! A sync function that blocks on a lock held by an async task can hang the
//! runtime that task needs: on a multi-thread runtime, every worker may end
//! up blocked; on a `current_thread` runtime (or in a `LocalSet`), the
//! blocked thread is the only one that could run the holder. So a wait that
//! has to block runs through [`block_in_place`](tokio::task::block_in_place),
//! which lets a multi-thread runtime move its other tasks to a new worker
//! first, and which refuses on a thread that must not block; keylock turns
//! that refusal into a panic that names the lock, the call site and the fix.
//! Outside any runtime, and on `spawn_blocking` threads, the wait simply
//! blocks. A wait with a deadline never hangs for good: it blocks where
//! it can move the runtime's tasks off first, and elsewhere stalls its
//! thread at most until the deadline.
//!
//! Not covered: a holder that is a future of the very task that blocks
//! (two branches of one `join!`); that task cannot run while it waits, as
//! with any blocking lock.

use std::panic::{self, AssertUnwindSafe};

/// Runs `wait`, a blocking wait with a deadline: where the runtime can move
/// its other tasks off this thread first, it does; elsewhere the thread
/// stalls, at most until the deadline.
#[cold]
pub(crate) fn block_bounded<R>(wait: impl FnOnce() -> R) -> R {
    match in_place(wait) {
        Ok(result) => result,
        Err(refused) => refused(),
    }
}

/// Runs `wait`, a wait that blocks the current thread, without hanging the
/// Tokio runtime this thread may belong to. `what` describes the wait for
/// the panic below: "the blocking write lock on resource "db", taken at
/// src/db.rs:10:5".
///
/// # Panics
///
/// On a thread that drives a `current_thread` runtime or a `LocalSet`,
/// where blocking would stop every task of that thread, including the one
/// the wait is for; the message names the wait and the fix.
#[cold]
pub(crate) fn block_without_hanging<R>(
    wait: impl FnOnce() -> R,
    what: impl FnOnce() -> String,
) -> R {
    match in_place(wait) {
        Ok(result) => result,
        Err(_) => panic!(
            "keylock: {what} would block a thread that runs a current_thread Tokio runtime or \
             a LocalSet, so the task it waits for could never run. Call this sync function \
             from `tokio::task::spawn_blocking`, make it `async`, give it a `timeout`, or use \
             a multi-thread runtime.",
            what = what(),
        ),
    }
}

/// Runs `wait` through `block_in_place` inside a runtime, directly outside
/// one; gives `wait` back, not run, when Tokio refuses to block this
/// thread.
fn in_place<R, W: FnOnce() -> R>(wait: W) -> Result<R, W> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(wait());
    }
    let mut wait = Some(wait);
    let mut started = false;
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        tokio::task::block_in_place(|| {
            started = true;
            wait.take().map(|wait| wait())
        })
    }));
    match (outcome, wait) {
        (Ok(Some(result)), _) => Ok(result),
        (Err(payload), _) if started => panic::resume_unwind(payload),
        (_, Some(refused)) => Err(refused),
        (Ok(None), None) | (Err(_), None) => unreachable!("the wait ran, or was given back"),
    }
}

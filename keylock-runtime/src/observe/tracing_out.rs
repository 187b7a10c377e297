//! `tracing` events (feature `tracing`, on by default): contention past a
//! threshold, timeouts, long holds and skipped duplicates. Without the
//! feature these are empty and compile away.

use std::time::Duration;

use crate::access::Access;
use crate::error::Error;

/// An acquisition had to queue; a warning when it waited `slow` or longer.
#[cfg(feature = "tracing")]
pub(crate) fn contended(
    resource: &str,
    key: impl Fn() -> Option<String>,
    access: Access,
    waited: Duration,
    slow: Duration,
) {
    if waited >= slow {
        tracing::warn!(
            target: "keylock",
            resource,
            key = key(),
            access = access.as_str(),
            waited_ms = waited.as_secs_f64() * 1e3,
            "waited long for a lock"
        );
    } else {
        tracing::debug!(
            target: "keylock",
            resource,
            key = key(),
            access = access.as_str(),
            waited_ms = waited.as_secs_f64() * 1e3,
            "lock contended"
        );
    }
}

/// An acquisition that would have waited for its own caller.
#[cfg(feature = "tracing")]
pub(crate) fn would_deadlock(error: &Error) {
    tracing::error!(target: "keylock", resource = error.resource(), key = error.key(), "{error}");
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn would_deadlock(_: &Error) {}

/// An acquisition that inverts a recorded lock order: an error when it is
/// refused, a warning when it goes ahead.
#[cfg(feature = "tracing")]
pub(crate) fn lock_order(error: &Error, refused: bool) {
    if refused {
        tracing::error!(target: "keylock", resource = error.resource(), key = error.key(), "{error}");
    } else {
        tracing::warn!(target: "keylock", resource = error.resource(), key = error.key(), "{error}");
    }
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn lock_order(_: &Error, _: bool) {}

/// The `tracing` dispatcher in effect where a wait starts, so that a report
/// made later on another thread goes to the same subscriber.
#[cfg(feature = "tracing")]
pub(crate) struct Dispatch(tracing::Dispatch);

/// The dispatcher in effect on this thread.
#[cfg(feature = "tracing")]
pub(crate) fn current_dispatch() -> Dispatch {
    Dispatch(tracing::dispatcher::get_default(Clone::clone))
}

/// An acquisition has waited `waited`, the slow-wait threshold, and still
/// waits.
#[cfg(feature = "tracing")]
pub(crate) fn still_waiting(
    dispatch: &Dispatch,
    resource: &str,
    key: Option<String>,
    access: Access,
    waited: Duration,
    waiter: &std::panic::Location<'static>,
) {
    tracing::dispatcher::with_default(&dispatch.0, || {
        tracing::warn!(
            target: "keylock",
            resource,
            key,
            access = access.as_str(),
            waited_ms = waited.as_secs_f64() * 1e3,
            waiter = %waiter,
            "still waiting for a lock"
        );
    });
}

/// A waiting acquisition gave up.
#[cfg(feature = "tracing")]
pub(crate) fn timed_out(error: &Error) {
    tracing::warn!(target: "keylock", resource = error.resource(), key = error.key(), "{error}");
}

/// A guard was held for `held`, at least the configured threshold.
#[cfg(feature = "tracing")]
pub(crate) fn long_hold(
    resource: &str,
    key: Option<String>,
    access: Access,
    held: Duration,
    holder: &std::panic::Location<'static>,
) {
    tracing::warn!(
        target: "keylock",
        resource,
        key,
        access = access.as_str(),
        held_ms = held.as_secs_f64() * 1e3,
        holder = %holder,
        thread = std::thread::current().name(),
        "lock held long"
    );
}

/// A duplicate was turned away.
#[cfg(feature = "tracing")]
pub(crate) fn duplicate(scope: &str, in_flight: bool) {
    tracing::debug!(target: "keylock", scope, in_flight, "duplicate skipped");
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn contended(
    _: &str,
    _: impl Fn() -> Option<String>,
    _: Access,
    _: Duration,
    _: Duration,
) {
}

#[cfg(not(feature = "tracing"))]
pub(crate) struct Dispatch;

#[cfg(not(feature = "tracing"))]
pub(crate) fn current_dispatch() -> Dispatch {
    Dispatch
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn still_waiting(
    _: &Dispatch,
    _: &str,
    _: Option<String>,
    _: Access,
    _: Duration,
    _: &std::panic::Location<'static>,
) {
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn timed_out(_: &Error) {}

#[cfg(not(feature = "tracing"))]
pub(crate) fn long_hold(
    _: &str,
    _: Option<String>,
    _: Access,
    _: Duration,
    _: &std::panic::Location<'static>,
) {
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn duplicate(_: &str, _: bool) {}

/// The deadlock watchdog found a cycle of waits.
#[cfg(feature = "tracing")]
pub(crate) fn deadlock(deadlock: &crate::Deadlock) {
    let waits: Vec<String> = deadlock
        .cycle
        .iter()
        .map(|wait| {
            let key = wait
                .key
                .as_deref()
                .map(|key| format!(" key {key}"))
                .unwrap_or_default();
            format!(
                "{} (at {}) waits for the {} lock on `{}`{key}, held by {} (taken at {})",
                wait.waiter, wait.waiting_at, wait.access, wait.resource, wait.holder, wait.held_at
            )
        })
        .collect();
    tracing::error!(target: "keylock", cycle = %waits.join("; "), "deadlock: a cycle of waits formed");
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn deadlock(_: &crate::Deadlock) {}

/// The deadlock watchdog's thread could not be started.
#[cfg(feature = "tracing")]
pub(crate) fn watchdog_failed(error: &std::io::Error) {
    tracing::error!(target: "keylock", %error, "the deadlock watchdog could not start");
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn watchdog_failed(_: &std::io::Error) {}

/// A backend could not be asked for a lock whose caller cannot be given
/// the error; the wait tries again after `pause`.
#[cfg(feature = "tracing")]
pub(crate) fn backend_retry(error: &Error, pause: Duration) {
    tracing::warn!(
        target: "keylock",
        resource = error.resource(),
        key = error.key(),
        retry_in_ms = pause.as_secs_f64() * 1e3,
        "{error}; trying again"
    );
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn backend_retry(_: &Error, _: Duration) {}

/// A guard's backend lock was found lost when it was released.
#[cfg(feature = "tracing")]
pub(crate) fn lease_lost(error: &Error) {
    tracing::error!(target: "keylock", resource = error.resource(), key = error.key(), "{error}");
}

#[cfg(not(feature = "tracing"))]
pub(crate) fn lease_lost(_: &Error) {}

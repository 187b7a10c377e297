//! Reporting through the `metrics` facade (feature `metrics`): each figure
//! is sent to the installed recorder as it happens, under the same names as
//! the Prometheus exposition (`keylock_acquisitions_total`, ...), labelled
//! with the resource (or dedup scope).

use std::sync::Arc;

use super::counters::LockEvent;

/// Sends one event of `resource` to the `metrics` recorder.
#[cfg(feature = "metrics")]
pub(crate) fn event(resource: &Arc<str>, event: LockEvent) {
    let name = || Arc::clone(resource);
    match event {
        LockEvent::Acquired { access, waited } => {
            metrics::counter!(
                "keylock_acquisitions_total",
                "resource" => name(),
                "mode" => access.as_str()
            )
            .increment(1);
            if let Some(waited) = waited {
                metrics::counter!("keylock_contended_total", "resource" => name()).increment(1);
                metrics::histogram!("keylock_wait_seconds", "resource" => name())
                    .record(waited.as_secs_f64());
            }
        }
        LockEvent::TimedOut => {
            metrics::counter!("keylock_timeouts_total", "resource" => name()).increment(1);
        }
        LockEvent::LongWait => {
            metrics::counter!("keylock_long_waits_total", "resource" => name()).increment(1);
        }
        LockEvent::LeaseLost => {
            metrics::counter!("keylock_leases_lost_total", "resource" => name()).increment(1);
        }
        LockEvent::Busy => {
            metrics::counter!("keylock_busy_total", "resource" => name()).increment(1);
        }
        LockEvent::FailedWhileHeld => {
            metrics::counter!("keylock_errors_while_held_total", "resource" => name()).increment(1);
        }
        LockEvent::PanickedWhileHeld => {
            metrics::counter!("keylock_panics_while_held_total", "resource" => name()).increment(1);
        }
        LockEvent::Held(held) => {
            metrics::histogram!("keylock_hold_seconds", "resource" => name())
                .record(held.as_secs_f64());
        }
    }
}

/// Sends a skipped duplicate of `scope` to the `metrics` recorder.
#[cfg(feature = "metrics")]
pub(crate) fn duplicate(scope: &Arc<str>) {
    metrics::counter!("keylock_duplicates_total", "scope" => Arc::clone(scope)).increment(1);
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn event(_: &Arc<str>, _: LockEvent) {}

#[cfg(not(feature = "metrics"))]
pub(crate) fn duplicate(_: &Arc<str>) {}

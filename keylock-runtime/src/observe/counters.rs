//! The hot-path counters of one resource: exact striped counts of every
//! acquisition outcome, and the wait and hold distributions.
//!
//! Counting an acquisition adds one to a counter stripe its thread owns (a
//! plain load and store, see [`super::stripe`]) and never reads the clock:
//! only an acquisition that had to queue reads it (once when it queues,
//! once when it gets the lock), to record how long it waited.

use std::time::Duration;

use super::histogram::Histogram;
use super::snapshot::ResourceStats;
use super::stripe::{StripeIndex, STRIPES};
use crate::access::Access;
use crate::sync::{AtomicU64, Ordering};

/// Something that happened to a lock of a resource.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LockEvent {
    /// The lock was acquired; `waited` is set when the caller had to queue.
    Acquired {
        access: Access,
        waited: Option<Duration>,
    },
    /// A waiting acquisition ran out of time.
    TimedOut,
    /// A non-waiting acquisition found the lock held.
    Busy,
    /// A guard was dropped while its thread unwound from a panic.
    PanickedWhileHeld,
    /// An annotated body returned an error while holding the lock.
    FailedWhileHeld,
    /// A guard was held this long (recorded only when hold times are on).
    Held(Duration),
    /// A queued acquisition passed the slow-wait threshold and still waits.
    LongWait,
    /// A guard's backend lock was found lost when it was released.
    LeaseLost,
}

/// One stripe of counters, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct CounterStripe {
    reads: AtomicU64,
    writes: AtomicU64,
    contended: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
    panics: AtomicU64,
    errors: AtomicU64,
    long_waits: AtomicU64,
    leases_lost: AtomicU64,
}

impl CounterStripe {
    /// The acquisition counter of `access`.
    #[inline]
    fn acquisitions(&self, access: Access) -> &AtomicU64 {
        match access {
            Access::Read => &self.reads,
            Access::Write => &self.writes,
        }
    }
}

/// Counters and distributions of one resource.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    stripes: [CounterStripe; STRIPES],
    wait: Histogram,
    hold: Histogram,
}

impl Counters {
    #[inline]
    pub(crate) fn record(&self, event: LockEvent) {
        // The hot case, an acquisition that did not wait, stays inline.
        if let LockEvent::Acquired {
            access,
            waited: None,
        } = event
        {
            let slot = StripeIndex::current();
            let stripe = &self.stripes[slot.index()];
            slot.increment(stripe.acquisitions(access));
        } else {
            self.record_other(event);
        }
    }

    #[inline(never)]
    fn record_other(&self, event: LockEvent) {
        if let LockEvent::Held(held) = event {
            self.hold.record(held);
            return;
        }
        let slot = StripeIndex::current();
        let stripe = &self.stripes[slot.index()];
        let counter = match event {
            LockEvent::Acquired { access, waited } => {
                if let Some(waited) = waited {
                    slot.increment(&stripe.contended);
                    self.wait.record(waited);
                }
                stripe.acquisitions(access)
            }
            LockEvent::TimedOut => &stripe.timeouts,
            LockEvent::Busy => &stripe.busy,
            LockEvent::PanickedWhileHeld => &stripe.panics,
            LockEvent::FailedWhileHeld => &stripe.errors,
            LockEvent::LongWait => &stripe.long_waits,
            LockEvent::LeaseLost => &stripe.leases_lost,
            LockEvent::Held(_) => return,
        };
        slot.increment(counter);
    }

    fn sum(&self, field: impl Fn(&CounterStripe) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| field(stripe).load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn snapshot(&self, name: &str, occupancy: Occupancy) -> ResourceStats {
        ResourceStats {
            name: name.to_owned(),
            read_acquisitions: self.sum(|s| &s.reads),
            write_acquisitions: self.sum(|s| &s.writes),
            contended: self.sum(|s| &s.contended),
            timeouts: self.sum(|s| &s.timeouts),
            busy: self.sum(|s| &s.busy),
            panics_while_held: self.sum(|s| &s.panics),
            errors_while_held: self.sum(|s| &s.errors),
            long_waits: self.sum(|s| &s.long_waits),
            leases_lost: self.sum(|s| &s.leases_lost),
            wait: self.wait.snapshot(),
            hold: self.hold.snapshot(),
            holders: occupancy.holders,
            waiters: occupancy.waiters,
            live_keys: occupancy.live_keys,
            live: Vec::new(),
            recent: Vec::new(),
            peak_waiters: 0,
            evictions: 0,
        }
    }
}

/// Who holds and waits right now, counted at snapshot time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Occupancy {
    pub(crate) holders: usize,
    pub(crate) waiters: usize,
    pub(crate) live_keys: usize,
}

impl std::ops::AddAssign for Occupancy {
    fn add_assign(&mut self, other: Occupancy) {
        self.holders += other.holders;
        self.waiters += other.waiters;
        self.live_keys += other.live_keys;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_stay_exact_across_threads() {
        let counters = std::sync::Arc::new(Counters::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        counters.record(LockEvent::Acquired {
                            access: if i % 2 == 0 {
                                Access::Read
                            } else {
                                Access::Write
                            },
                            waited: (i % 10 == 0).then_some(Duration::from_micros(3)),
                        });
                    }
                    counters.record(LockEvent::TimedOut);
                    counters.record(LockEvent::Busy);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = counters.snapshot("r", Occupancy::default());
        assert_eq!(stats.read_acquisitions, 20_000);
        assert_eq!(stats.write_acquisitions, 20_000);
        assert_eq!(stats.contended, 4_000);
        assert_eq!(stats.wait.count, 4_000);
        assert_eq!(stats.timeouts, 4);
        assert_eq!(stats.busy, 4);
    }
}

//! Per-resource counters, and the one hook through which every acquisition
//! and release passes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::raw::Access;

/// Something that happened to a lock of a resource.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// The lock was acquired; `contended` when the caller had to queue.
    Acquired { access: Access, contended: bool },
    /// A waiting acquisition ran out of time.
    TimedOut,
    /// A non-waiting acquisition found the lock held.
    Busy,
}

/// One stripe of counters, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    reads: AtomicU64,
    writes: AtomicU64,
    contended: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
}

const STRIPES: usize = 8;

/// Counters of one resource: exact, never read the clock, and striped so
/// that threads working on different keys of one resource do not fight
/// over a cache line. A snapshot adds the stripes up.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    stripes: [Stripe; STRIPES],
}

/// The stripe this thread writes to, assigned round-robin.
fn stripe_index() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.try_with(|index| *index).unwrap_or(0)
}

impl Counters {
    pub(crate) fn record(&self, event: Event) {
        let stripe = &self.stripes[stripe_index()];
        let counter = match event {
            Event::Acquired { access, contended } => {
                if contended {
                    stripe.contended.fetch_add(1, Ordering::Relaxed);
                }
                match access {
                    Access::Read => &stripe.reads,
                    Access::Write => &stripe.writes,
                }
            }
            Event::TimedOut => &stripe.timeouts,
            Event::Busy => &stripe.busy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self, field: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| field(stripe).load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn snapshot(&self, name: &str, live_keys: usize) -> ResourceStats {
        ResourceStats {
            name: name.to_owned(),
            read_acquisitions: self.sum(|s| &s.reads),
            write_acquisitions: self.sum(|s| &s.writes),
            contended: self.sum(|s| &s.contended),
            timeouts: self.sum(|s| &s.timeouts),
            busy: self.sum(|s| &s.busy),
            live_keys,
        }
    }
}

#[cfg(test)]
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
                        counters.record(Event::Acquired {
                            access: if i % 2 == 0 {
                                Access::Read
                            } else {
                                Access::Write
                            },
                            contended: i % 10 == 0,
                        });
                    }
                    counters.record(Event::TimedOut);
                    counters.record(Event::Busy);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = counters.snapshot("r", 0);
        assert_eq!(stats.read_acquisitions, 20_000);
        assert_eq!(stats.write_acquisitions, 20_000);
        assert_eq!(stats.contended, 4_000);
        assert_eq!(stats.timeouts, 4);
        assert_eq!(stats.busy, 4);
    }
}

/// A snapshot of one resource's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceStats {
    /// The resource's name.
    pub name: String,
    /// Read (shared) acquisitions, the resource's own lock and all its keys.
    pub read_acquisitions: u64,
    /// Write (exclusive) acquisitions.
    pub write_acquisitions: u64,
    /// Acquisitions that had to queue behind another holder.
    pub contended: u64,
    /// Acquisitions that gave up after their timeout.
    pub timeouts: u64,
    /// Non-waiting acquisitions that found the lock held.
    pub busy: u64,
    /// Keys currently held or waited for.
    pub live_keys: usize,
}

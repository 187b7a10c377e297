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

/// Counters of one resource. Plain atomics: the hot path adds one relaxed
/// increment and never reads the clock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    contended: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
}

impl Counters {
    pub(crate) fn record(&self, event: Event) {
        let counter = match event {
            Event::Acquired { access, contended } => {
                if contended {
                    self.contended.fetch_add(1, Ordering::Relaxed);
                }
                match access {
                    Access::Read => &self.reads,
                    Access::Write => &self.writes,
                }
            }
            Event::TimedOut => &self.timeouts,
            Event::Busy => &self.busy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, name: &str, live_keys: usize) -> ResourceStats {
        ResourceStats {
            name: name.to_owned(),
            read_acquisitions: self.reads.load(Ordering::Relaxed),
            write_acquisitions: self.writes.load(Ordering::Relaxed),
            contended: self.contended.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
            live_keys,
        }
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

//! Instruments for behaviour tests.
#![allow(dead_code)]

pub mod processes;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counts how many callers are inside a critical section at once.
#[derive(Default)]
pub struct Section {
    inside: AtomicUsize,
    peak: AtomicUsize,
    overlaps: AtomicUsize,
    entries: AtomicUsize,
}

impl Section {
    /// Marks entry; returns a token that marks exit when dropped.
    pub fn enter(&self) -> Inside<'_> {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        if now > 1 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.entries.fetch_add(1, Ordering::SeqCst);
        Inside(self)
    }

    /// Times a caller entered while another was inside.
    pub fn overlaps(&self) -> usize {
        self.overlaps.load(Ordering::SeqCst)
    }

    /// Most callers inside at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Total entries.
    pub fn entries(&self) -> usize {
        self.entries.load(Ordering::SeqCst)
    }
}

pub struct Inside<'a>(&'a Section);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An append-only log of events, to check orders.
#[derive(Default)]
pub struct Log(Mutex<Vec<String>>);

impl Log {
    pub fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push(event.into());
    }
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A registry of its own for each test.
pub fn registry() -> keylock::Registry {
    keylock::Registry::new()
}

/// A registry with strict FIFO hand-off, for tests of exact orders.
pub fn strict_registry() -> keylock::Registry {
    keylock::Registry::builder()
        .fairness_bound(std::time::Duration::ZERO)
        .build()
}

//! Synchronization primitives used by the runtime, routed through one module
//! so that `--cfg loom` can replace them with loom's model-checked versions.
//!
//! Every atomic and mutex of the runtime comes from here, except
//! process-wide statics (a registry's id counter, the pool of counter
//! stripes), which loom cannot model and which say so where they are
//! declared. Lock a mutex with [`lock`], never with `.lock().unwrap()`.

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::{Mutex, MutexGuard};
    pub(crate) use std::thread::{current as current_thread, park, park_timeout, Builder, Thread};
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Mutex, MutexGuard};
    pub(crate) use loom::thread::{current as current_thread, park, Builder, Thread};

    /// loom has no timed park; a model never needs the timeout to fire.
    pub(crate) fn park_timeout(_: std::time::Duration) {
        park();
    }
}

pub(crate) use imp::*;

/// Locks a mutex, ignoring poisoning: what the runtime's mutexes guard stays
/// consistent even if a panic unwinds through a holder. The only user code
/// that runs under one is a key's `Hash`, `Eq` and `Clone` (a dedup scope
/// compares and copies keys under its mutex), and every such step changes
/// the guarded state only after it returns.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Locks a process-wide static's mutex (a std mutex: loom cannot model
/// statics), ignoring poisoning as [`lock`] does.
pub(crate) fn lock_static<T>(
    mutex: &'static std::sync::Mutex<T>,
) -> std::sync::MutexGuard<'static, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

//! Synchronization primitives used by the runtime, routed through one module
//! so that `--cfg loom` can replace them with loom's model-checked versions.

#[cfg(not(loom))]
mod imp {
    pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::{Mutex, MutexGuard};
    pub(crate) use std::thread::{current as current_thread, park, park_timeout, Builder, Thread};
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    pub(crate) use loom::sync::{Mutex, MutexGuard};
    pub(crate) use loom::thread::{current as current_thread, park, Builder, Thread};

    /// loom has no timed park; a model never needs the timeout to fire.
    pub(crate) fn park_timeout(_: std::time::Duration) {
        park();
    }
}

pub(crate) use imp::*;

/// Locks a mutex, ignoring poisoning: the runtime never panics while holding
/// one of its own mutexes, and user code never runs under them.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

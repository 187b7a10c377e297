//! Support for the code that keylock's attributes generate.
//!
//! **Not a stable API.** Everything here may change in any release; use
//! the documented types instead.

use std::any::Any;
use std::future::Future;
use std::panic::Location;
use std::sync::OnceLock;
use std::time::Duration;

use crate::access::Access;
use crate::dedup::{Dedup, DedupOptions};
use crate::error::Error;
use crate::key::{Key, LockKey};
use crate::keyed::Keyed;
use crate::lock::{Acquire, FromHeld, Lock, ReadGuard, WriteGuard};
use crate::registry::Registry;

pub use crate::key::{KeyProbe, KeyProbeRef, KeyProbeValue};

/// A per-call-site cache of the resource handle, so that an annotated
/// function never looks its resource up by name after the first call.
///
/// The cache remembers the first registry and key type it saw; calls with
/// another registry (`registry = ...` evaluated per call) or another key
/// type (a generic function) take the uncached path.
pub struct SiteCache {
    cell: OnceLock<(u64, Box<dyn Any + Send + Sync>)>,
}

impl SiteCache {
    /// An empty cache, for a `static`.
    pub const fn new() -> Self {
        SiteCache {
            cell: OnceLock::new(),
        }
    }

    /// Runs `f` with this site's handle, made by `make` on first use. A
    /// call with another registry, or asking for another handle type (a
    /// generic function), makes a fresh handle instead of using the cache.
    #[inline]
    fn with<T: Any + Send + Sync, R>(
        &self,
        registry: &Registry,
        make: impl Fn(&Registry) -> T,
        f: impl FnOnce(&T) -> R,
    ) -> R {
        let (id, cached) = self
            .cell
            .get_or_init(|| (registry.id(), Box::new(make(registry))));
        match cached.downcast_ref::<T>() {
            Some(handle) if *id == registry.id() => f(handle),
            _ => f(&make(registry)),
        }
    }

    /// The lock of `key` in the named resource.
    #[inline]
    #[track_caller]
    pub fn key_lock<Q>(&self, registry: &Registry, name: impl Fn() -> &'static str, key: &Q) -> Lock
    where
        Q: ?Sized + LockKey,
    {
        self.keyed::<Q::Owned, _>(registry, name, |keyed| keyed.key(key))
    }

    /// Runs `f` with the named dedup scope for key type `K`.
    #[track_caller]
    pub fn dedup<K: Key, R>(
        &self,
        registry: &Registry,
        name: impl Fn() -> &'static str,
        options: impl Fn() -> DedupOptions,
        f: impl FnOnce(&Dedup<K>) -> R,
    ) -> R {
        let here = Location::caller();
        self.with(
            registry,
            |registry| registry.dedup_at::<K>(name(), options(), here),
            f,
        )
    }

    /// Runs `f` with the keyed locks of the named resource for key type `K`.
    #[inline]
    #[track_caller]
    pub fn keyed<K: Key, R>(
        &self,
        registry: &Registry,
        name: impl Fn() -> &'static str,
        f: impl FnOnce(&Keyed<K>) -> R,
    ) -> R {
        let here = Location::caller();
        self.with(
            registry,
            |registry| registry.resource(name()).keyed_at::<K>(here),
            f,
        )
    }
}

impl Default for SiteCache {
    fn default() -> Self {
        SiteCache::new()
    }
}

/// A per-call-site cache of a named resource's own lock. Unlike
/// [`SiteCache`] it knows the handle's type, so a hit is a registry check
/// and a reference count increment.
pub struct NamedSite {
    cell: OnceLock<(u64, Lock)>,
}

impl NamedSite {
    /// An empty cache, for a `static`.
    pub const fn new() -> Self {
        NamedSite {
            cell: OnceLock::new(),
        }
    }

    /// The own lock of the named resource; cached for the first registry
    /// seen, looked up by name for any other.
    #[inline]
    #[track_caller]
    pub fn lock(&self, registry: &Registry, name: impl Fn() -> &'static str) -> Lock {
        let here = Location::caller();
        let (id, lock) = self
            .cell
            .get_or_init(|| (registry.id(), registry.resource(name()).lock_at(here)));
        if *id == registry.id() {
            lock.clone()
        } else {
            registry.resource(name()).lock_at(here)
        }
    }
}

impl Default for NamedSite {
    fn default() -> Self {
        NamedSite::new()
    }
}

/// The path of the function whose marker item has this type name:
/// `my_crate::Bot::handle::__keylock_marker` gives `my_crate::Bot::handle`.
pub fn fn_path(marker_type_name: &'static str) -> &'static str {
    let mut path = marker_type_name;
    if let Some(index) = path.rfind("::") {
        path = &path[..index];
    }
    while let Some(stripped) = path.strip_suffix("::{{closure}}") {
        path = stripped;
    }
    path
}

/// How an annotated function reports that its lock was not acquired
/// (a timeout, or `on_busy = "skip"` finding it held).
#[diagnostic::on_unimplemented(
    message = "a function whose lock can fail (`timeout` or `on_busy = \"skip\"`) cannot return `{Self}`",
    label = "the lock can fail here, and `{Self}` cannot say so",
    note = "return `Result<_, E>` where `E: From<keylock::Error>` (gets `Err`), `Option<_>` (gets `None`) or `()` (returns early)",
    note = "or remove `timeout` / `on_busy = \"skip\"`, so the function waits until the lock is free"
)]
pub trait LockFailure {
    /// The value the function returns when the lock was not acquired.
    fn from_lock_error(error: Error) -> Self;
}

impl<T, E: From<Error>> LockFailure for Result<T, E> {
    fn from_lock_error(error: Error) -> Self {
        Err(E::from(error))
    }
}

impl<T> LockFailure for Option<T> {
    fn from_lock_error(_: Error) -> Self {
        None
    }
}

impl LockFailure for () {
    fn from_lock_error(_: Error) {}
}

macro_rules! acquire_fns {
    ($guard:ident, $access:expr, $wait:ident, $timeout:ident, $try:ident, $blocking:ident, $blocking_timeout:ident) => {
        /// Waits for the lock.
        #[track_caller]
        #[inline]
        pub fn $wait(lock: Lock) -> Acquire<$guard> {
            lock.acquire($access, Location::caller())
        }

        /// Waits at most `timeout` for the lock.
        #[track_caller]
        pub fn $timeout(
            lock: Lock,
            timeout: Duration,
        ) -> impl Future<Output = Result<$guard, Error>> + Send + 'static {
            let acquisition = lock.acquire_timeout($access, timeout, Location::caller());
            async move { acquisition.await.map($guard::from_held) }
        }

        /// Takes the lock if it is free.
        #[track_caller]
        pub fn $try(lock: Lock) -> Result<$guard, Error> {
            lock.try_acquire($access, Location::caller())
                .map($guard::from_held)
        }

        /// Blocks until the lock is held.
        #[track_caller]
        #[inline]
        pub fn $blocking(lock: Lock) -> $guard {
            $guard::from_held(lock.acquire_blocking($access, Location::caller()))
        }

        /// Blocks at most `timeout` for the lock.
        #[track_caller]
        pub fn $blocking_timeout(lock: Lock, timeout: Duration) -> Result<$guard, Error> {
            lock.acquire_blocking_timeout($access, timeout, Location::caller())
                .map($guard::from_held)
        }
    };
}

acquire_fns!(
    ReadGuard,
    Access::Read,
    read,
    read_timeout,
    try_read,
    read_blocking,
    read_blocking_timeout
);
acquire_fns!(
    WriteGuard,
    Access::Write,
    write,
    write_timeout,
    try_write,
    write_blocking,
    write_blocking_timeout
);

/// Runs a closure once; makes the closure `FnOnce`, so a body that returns
/// a borrow of a captured `&mut self` compiles as it did unwrapped.
pub fn call_once<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// How a `#[dedup]` function reports a skipped duplicate.
#[diagnostic::on_unimplemented(
    message = "`#[dedup]` cannot skip a duplicate call of a function returning `{Self}`",
    label = "duplicates of this call are skipped, and `{Self}` has no value for that",
    note = "return `()` (returns early), `Option<_>` (gets `None`) or `Result<_, E>` where `E: From<keylock::Error>` (gets `Err`)",
    note = "or give the value to return with `on_duplicate = <expr>`"
)]
pub trait DuplicateOutcome {
    /// The value the function returns for a skipped duplicate; `error`
    /// describes it, and is called only by types that carry the error.
    fn from_duplicate(error: impl FnOnce() -> Error) -> Self;
}

impl<T, E: From<Error>> DuplicateOutcome for Result<T, E> {
    fn from_duplicate(error: impl FnOnce() -> Error) -> Self {
        Err(E::from(error()))
    }
}

impl<T> DuplicateOutcome for Option<T> {
    fn from_duplicate(_: impl FnOnce() -> Error) -> Self {
        None
    }
}

impl DuplicateOutcome for () {
    fn from_duplicate(_: impl FnOnce() -> Error) {}
}

/// Tells whether a function's result is a failure: `Err` for a `Result`,
/// never for anything else. Called as `(&&OutcomeProbe(&value)).is_failure()`,
/// the same auto-deref dispatch as [`KeyProbe`].
pub struct OutcomeProbe<'a, T>(pub &'a T);

/// Picked for `Result`s.
pub trait OutcomeResult {
    /// Whether the value is an `Err`.
    fn is_failure(&self) -> bool;
}

impl<T, E> OutcomeResult for &OutcomeProbe<'_, Result<T, E>> {
    fn is_failure(&self) -> bool {
        self.0.is_err()
    }
}

/// Picked for every other type.
pub trait OutcomeOther {
    /// Always false.
    fn is_failure(&self) -> bool;
}

impl<T> OutcomeOther for OutcomeProbe<'_, T> {
    fn is_failure(&self) -> bool {
        false
    }
}

/// Tells a guard how the body that held it ended.
pub trait GuardOutcome {
    /// Called once the annotated body returned; `failed` when it returned
    /// an `Err`.
    fn body_finished(&self, failed: bool);
}

impl GuardOutcome for ReadGuard {
    fn body_finished(&self, failed: bool) {
        if failed {
            self.lock().record_failed_body();
        }
    }
}

impl GuardOutcome for WriteGuard {
    fn body_finished(&self, failed: bool) {
        if failed {
            self.lock().record_failed_body();
        }
    }
}

//! Support for the code that keylock's attributes generate.
//!
//! **Not a stable API.** Everything here may change in any release; use
//! the documented types instead.

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::sync::OnceLock;
use std::time::Duration;

use crate::access::Access;
use crate::dedup::{Claim, Dedup, DedupOptions};
use crate::error::Error;
use crate::key::{Key, LockKey};
use crate::keyed::Keyed;
use crate::lock::{Caller, FromHeld, Lock, ReadGuard, WriteGuard};
use crate::lock_set::{FromHeldSet, LockSet, ReadSetGuard, WriteSetGuard};
use crate::registry::Registry;

pub use crate::dedup::Rejection;

/// A per-call-site cache of the resource handle, so that an annotated
/// function never looks its resource up by name after the first call.
///
/// The cache remembers the first registry it saw; calls with another
/// registry (`registry = ...` evaluated per call) take the uncached path.
/// (A generic function called with another key type takes it too, and
/// then meets the resource's one key type.)
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

    /// The locks of `keys` in the named resource, as one set. A key type
    /// without an order fails the bound here, once, at the list of keys.
    #[inline]
    #[track_caller]
    pub fn key_set<Q>(
        &self,
        registry: &Registry,
        name: impl Fn() -> &'static str,
        keys: &[&Q],
    ) -> LockSet
    where
        Q: ?Sized + SetKey,
    {
        self.keyed::<Q::Owned, _>(registry, name, |keyed| keyed.key_set(keys))
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

/// A per-call-site cache of the set of several named resources' own
/// locks, sorted once.
pub struct SetSite {
    cell: OnceLock<(u64, LockSet)>,
}

impl SetSite {
    /// An empty cache, for a `static`.
    pub const fn new() -> Self {
        SetSite {
            cell: OnceLock::new(),
        }
    }

    /// The own locks of the named resources as one set; cached for the
    /// first registry seen, looked up by name for any other.
    #[inline]
    #[track_caller]
    pub fn lock_set(&self, registry: &Registry, names: &[&'static str]) -> LockSet {
        let (id, set) = self
            .cell
            .get_or_init(|| (registry.id(), registry.lock_set(names)));
        if *id == registry.id() {
            set.clone()
        } else {
            registry.lock_set(names)
        }
    }
}

impl Default for SetSite {
    fn default() -> Self {
        SetSite::new()
    }
}

/// A key that can be locked together with others of its type: the keys of
/// a set are taken in their `Ord` order.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be locked in a set of keys: it has no order",
    label = "the keys of this lock set",
    note = "`keys = [..]` takes the keys in their `Ord` order, so that two sets never deadlock; the key type must implement `Ord` (`#[derive(PartialOrd, Ord)]` on your own ids)"
)]
pub trait SetKey: LockKey + Ord {}

impl<Q: ?Sized + LockKey + Ord> SetKey for Q {}

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
    /// What the failure is turned into: the `E` of a `Result<_, E>`.
    type Error;

    /// The value the function returns when the lock was not acquired.
    fn from_lock_error(error: Self::Error) -> Self;
}

impl<T, E> LockFailure for Result<T, E> {
    type Error = E;

    #[inline]
    fn from_lock_error(error: E) -> Self {
        Err(error)
    }
}

impl<T> LockFailure for Option<T> {
    type Error = Error;

    #[inline]
    fn from_lock_error(_: Error) -> Self {
        None
    }
}

impl LockFailure for () {
    type Error = Error;

    #[inline]
    fn from_lock_error(_: Error) {}
}

/// The error type of an annotated function's `Result`, which must hold a
/// [`Error`]. A separate bound, so that a missing `From` impl is reported
/// in these words rather than as a bare `From` bound.
#[diagnostic::on_unimplemented(
    message = "the error type `{Self}` cannot hold a `keylock::Error`",
    label = "the lock can fail here, and `{Self}` has no `From<keylock::Error>`",
    note = "use an error type with `From<keylock::Error>` (a variant of your error enum, `Box<dyn std::error::Error>`), or return `Result<_, keylock::Error>`",
    note = "or return `Option<_>` (gets `None`) or `()` (returns early)"
)]
pub trait FromLockError: Sized {
    /// Converts the runtime's error.
    fn from_lock_error(error: Error) -> Self;
}

impl<E: From<Error>> FromLockError for E {
    #[inline]
    fn from_lock_error(error: Error) -> Self {
        E::from(error)
    }
}

/// The value an annotated function returns when its lock was not
/// acquired.
#[inline]
pub fn lock_failure<R>(error: Error) -> R
where
    R: LockFailure,
    R::Error: FromLockError,
{
    R::from_lock_error(FromLockError::from_lock_error(error))
}

/// The guard of one access to a lock ([`ReadGuard`], [`WriteGuard`]) or a
/// set of locks ([`ReadSetGuard`], [`WriteSetGuard`]). Its methods are the
/// runtime's five ways to acquire; [`acquire`] picks one from the waiting
/// policy.
pub trait Guard: Sized + Send + 'static {
    /// What is acquired: a [`Lock`] or a [`LockSet`].
    type Handle: Send + 'static;

    /// Waits for the lock.
    fn wait(
        lock: Self::Handle,
        at: &'static Location<'static>,
    ) -> impl Future<Output = Self> + Send + 'static;

    /// Waits at most `timeout` for the lock.
    fn wait_timeout(
        lock: Self::Handle,
        timeout: Duration,
        at: &'static Location<'static>,
    ) -> impl Future<Output = Result<Self, Error>> + Send + 'static;

    /// Blocks until the lock is held; `record`s the thread as the holder
    /// when the guard stays in the sync function that takes it.
    fn block(lock: Self::Handle, at: &'static Location<'static>, record: bool) -> Self;

    /// Blocks at most `timeout` for the lock; `record` as for `block`.
    fn block_timeout(
        lock: Self::Handle,
        timeout: Duration,
        at: &'static Location<'static>,
        record: bool,
    ) -> Result<Self, Error>;

    /// Takes the lock if it is free; `record` as for `block`.
    fn try_take(
        lock: Self::Handle,
        at: &'static Location<'static>,
        record: bool,
    ) -> Result<Self, Error>;
}

macro_rules! guard_impl {
    ($guard:ident, $handle:ty, $from:ident, $access:expr) => {
        impl Guard for $guard {
            type Handle = $handle;

            #[inline]
            fn wait(
                lock: Self::Handle,
                at: &'static Location<'static>,
            ) -> impl Future<Output = Self> + Send + 'static {
                lock.acquire::<$guard>($access, at)
            }

            #[inline]
            fn wait_timeout(
                lock: Self::Handle,
                timeout: Duration,
                at: &'static Location<'static>,
            ) -> impl Future<Output = Result<Self, Error>> + Send + 'static {
                let acquisition = lock.acquire_timeout($access, timeout, at);
                async move { acquisition.await.map($guard::$from) }
            }

            #[inline]
            fn block(lock: Self::Handle, at: &'static Location<'static>, record: bool) -> Self {
                $guard::$from(lock.acquire_blocking($access, Caller::sync_annotated(at, record)))
            }

            #[inline]
            fn block_timeout(
                lock: Self::Handle,
                timeout: Duration,
                at: &'static Location<'static>,
                record: bool,
            ) -> Result<Self, Error> {
                lock.acquire_blocking_timeout($access, timeout, Caller::sync_annotated(at, record))
                    .map($guard::$from)
            }

            #[inline]
            fn try_take(
                lock: Self::Handle,
                at: &'static Location<'static>,
                record: bool,
            ) -> Result<Self, Error> {
                lock.try_acquire($access, Caller::sync_annotated(at, record))
                    .map($guard::$from)
            }
        }
    };
}

guard_impl!(ReadGuard, Lock, from_held, Access::Read);
guard_impl!(WriteGuard, Lock, from_held, Access::Write);
guard_impl!(ReadSetGuard, LockSet, from_held_set, Access::Read);
guard_impl!(WriteSetGuard, LockSet, from_held_set, Access::Write);

/// Waiting policy: until the lock is held. The acquisition cannot fail.
#[derive(Clone, Copy, Debug)]
pub struct Block;

/// Waiting policy: at most this long, then fail with [`Error::Timeout`].
#[derive(Clone, Copy, Debug)]
pub struct Timeout(pub Duration);

/// Waiting policy: not at all; fail with [`Error::Busy`] when held.
#[derive(Clone, Copy, Debug)]
pub struct Skip;

/// How an annotated function waits for its lock. Each policy is its own
/// type, written as a literal at the call site, so the choice costs nothing
/// at run time.
pub trait Wait: Copy {
    /// What the acquisition gives: the guard, or a `Result` of it for the
    /// policies that can fail.
    type Output<G>;

    /// Acquires in an async body.
    fn wait<G: Guard>(
        self,
        lock: G::Handle,
        at: &'static Location<'static>,
    ) -> impl Future<Output = Self::Output<G>> + Send + 'static;

    /// Acquires in a blocking body.
    /// `record`s the thread as the holder when the guard stays in the
    /// function.
    fn block<G: Guard>(
        self,
        lock: G::Handle,
        at: &'static Location<'static>,
        record: bool,
    ) -> Self::Output<G>;
}

impl Wait for Block {
    type Output<G> = G;

    #[inline]
    fn wait<G: Guard>(
        self,
        lock: G::Handle,
        at: &'static Location<'static>,
    ) -> impl Future<Output = G> + Send + 'static {
        G::wait(lock, at)
    }

    #[inline]
    fn block<G: Guard>(self, lock: G::Handle, at: &'static Location<'static>, record: bool) -> G {
        G::block(lock, at, record)
    }
}

impl Wait for Timeout {
    type Output<G> = Result<G, Error>;

    #[inline]
    fn wait<G: Guard>(
        self,
        lock: G::Handle,
        at: &'static Location<'static>,
    ) -> impl Future<Output = Result<G, Error>> + Send + 'static {
        G::wait_timeout(lock, self.0, at)
    }

    #[inline]
    fn block<G: Guard>(
        self,
        lock: G::Handle,
        at: &'static Location<'static>,
        record: bool,
    ) -> Result<G, Error> {
        G::block_timeout(lock, self.0, at, record)
    }
}

impl Wait for Skip {
    type Output<G> = Result<G, Error>;

    #[inline]
    fn wait<G: Guard>(
        self,
        lock: G::Handle,
        at: &'static Location<'static>,
    ) -> impl Future<Output = Result<G, Error>> + Send + 'static {
        std::future::ready(G::try_take(lock, at, false))
    }

    #[inline]
    fn block<G: Guard>(
        self,
        lock: G::Handle,
        at: &'static Location<'static>,
        record: bool,
    ) -> Result<G, Error> {
        G::try_take(lock, at, record)
    }
}

/// The one acquisition entry point of the generated code:
/// `acquire::<WriteGuard, _>(lock, Timeout(d)).wait().await` in an async
/// body, `.block()` in a blocking one. The caller's location is recorded as
/// the holder's call site.
#[track_caller]
#[inline]
pub fn acquire<G: Guard, W: Wait>(lock: G::Handle, wait: W) -> Acquisition<G, W> {
    Acquisition {
        lock,
        wait,
        at: Location::caller(),
        kept: true,
        _guard: PhantomData,
    }
}

/// [`acquire`] for a function that hands its guard to the body
/// (`guard = name`): the guard may then leave the function and its thread,
/// so the thread is not recorded as the holder.
#[track_caller]
#[inline]
pub fn acquire_handed_out<G: Guard, W: Wait>(lock: G::Handle, wait: W) -> Acquisition<G, W> {
    Acquisition {
        kept: false,
        ..acquire(lock, wait)
    }
}

/// An acquisition not started yet; see [`acquire`].
#[must_use = "an acquisition does nothing until `.wait().await` or `.block()`"]
pub struct Acquisition<G: Guard, W> {
    lock: G::Handle,
    wait: W,
    at: &'static Location<'static>,
    /// Whether the guard stays in the annotated function.
    kept: bool,
    _guard: PhantomData<fn() -> G>,
}

impl<G: Guard, W: Wait> Acquisition<G, W> {
    /// Acquires in an async body.
    #[inline]
    pub fn wait(self) -> impl Future<Output = W::Output<G>> + Send + 'static {
        self.wait.wait::<G>(self.lock, self.at)
    }

    /// Acquires in a blocking body.
    #[inline]
    pub fn block(self) -> W::Output<G> {
        self.wait.block::<G>(self.lock, self.at, self.kept)
    }
}

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
    /// What the duplicate is turned into: the `E` of a `Result<_, E>`.
    type Error;

    /// The value the function returns for a skipped duplicate; `error`
    /// describes it, and is called only by types that carry the error.
    fn from_duplicate(error: impl FnOnce() -> Self::Error) -> Self;
}

impl<T, E> DuplicateOutcome for Result<T, E> {
    type Error = E;

    #[inline]
    fn from_duplicate(error: impl FnOnce() -> E) -> Self {
        Err(error())
    }
}

impl<T> DuplicateOutcome for Option<T> {
    type Error = Error;

    #[inline]
    fn from_duplicate(_: impl FnOnce() -> Error) -> Self {
        None
    }
}

impl DuplicateOutcome for () {
    type Error = Error;

    #[inline]
    fn from_duplicate(_: impl FnOnce() -> Error) {}
}

/// The value a `#[dedup]` function returns for a skipped duplicate.
#[inline]
pub fn duplicate<R>(error: impl FnOnce() -> Error) -> R
where
    R: DuplicateOutcome,
    R::Error: FromLockError,
{
    R::from_duplicate(|| FromLockError::from_lock_error(error()))
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

/// Tells a guard how the body that held it ended, and whether its locks
/// are still held.
pub trait GuardOutcome {
    /// Called once the annotated body returned; `failed` when it returned
    /// an `Err`.
    fn body_finished(&self, failed: bool);

    /// Whether a lock of the guard is held in a backend, whose lease can
    /// be lost.
    fn has_lease(&self) -> bool;

    /// `Err(Error::LeaseLost)` once a backend lost one of the guard's locks.
    fn check_lease(&self) -> Result<(), Error>;
}

macro_rules! guard_outcome {
    ($guard:ty) => {
        impl GuardOutcome for $guard {
            fn body_finished(&self, failed: bool) {
                if failed {
                    self.lock().record_failed_body();
                }
            }

            #[inline]
            fn has_lease(&self) -> bool {
                <$guard>::has_lease(self)
            }

            fn check_lease(&self) -> Result<(), Error> {
                self.check()
            }
        }
    };
}

guard_outcome!(ReadGuard);
guard_outcome!(WriteGuard);

macro_rules! set_guard_outcome {
    ($guard:ty) => {
        impl GuardOutcome for $guard {
            fn body_finished(&self, failed: bool) {
                if failed {
                    self.locks().for_each(Lock::record_failed_body);
                }
            }

            fn has_lease(&self) -> bool {
                self.fences().iter().any(Option::is_some)
            }

            fn check_lease(&self) -> Result<(), Error> {
                self.check()
            }
        }
    };
}

set_guard_outcome!(ReadSetGuard);
set_guard_outcome!(WriteSetGuard);

/// How often the lease of an async body's backend lock is checked.
pub const LEASE_CHECK: Duration = Duration::from_millis(100);

/// Runs an async `body` while `guards` hold its locks. When a lock is held
/// in a backend and the backend loses it while the body runs, the body is
/// dropped, which cancels it, and the loss is returned; leases are checked
/// every [`LEASE_CHECK`]. Guards of in-process locks cost one check.
pub async fn unless_lease_lost<F: Future>(
    guards: &[&(dyn GuardOutcome + Sync)],
    body: F,
) -> Result<F::Output, Error> {
    if !guards.iter().any(|guard| guard.has_lease()) {
        return Ok(body.await);
    }
    let mut body = std::pin::pin!(body);
    loop {
        if let Some(output) = crate::timer::timeout(LEASE_CHECK, body.as_mut()).await {
            return Ok(output);
        }
        for guard in guards {
            guard.check_lease()?;
        }
    }
}

/// What an async function returns when its lease was lost: `Err` for a
/// `Result` whose error converts from [`Error`], a panic naming the loss
/// for anything else. Called as `(&&LostProbe::<R>::new()).lease_lost(e)`.
pub struct LostProbe<R>(PhantomData<fn() -> R>);

impl<R> LostProbe<R> {
    /// The probe for return type `R`.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        LostProbe(PhantomData)
    }
}

/// Picked for `Result<T, E>` where `E: From<keylock::Error>`.
pub trait LostResult<R> {
    /// The `Err` carrying the loss.
    fn lease_lost(&self, error: Error) -> R;
}

impl<T, E: FromLockError> LostResult<Result<T, E>> for &LostProbe<Result<T, E>> {
    fn lease_lost(&self, error: Error) -> Result<T, E> {
        Err(E::from_lock_error(error))
    }
}

/// Picked for every other return type.
pub trait LostOther<R> {
    /// Panics: the return type cannot carry the loss.
    fn lease_lost(&self, error: Error) -> R;
}

impl<R> LostOther<R> for LostProbe<R> {
    fn lease_lost(&self, error: Error) -> R {
        panic!("{error}; the body was cancelled, and the function's return type cannot carry the error")
    }
}

/// Claims `key` in `scope` if nobody has: never waits. A duplicate is
/// described only if the function's return type carries the error, since
/// formatting the key costs more than the check.
#[inline]
pub fn try_claim<'q, K, Q>(scope: &Dedup<K>, key: &'q Q) -> Result<Claim<K>, Rejection<'q, Q>>
where
    K: Key + std::borrow::Borrow<Q>,
    Q: ?Sized + LockKey<Owned = K>,
{
    scope.try_claim(key)
}

/// A dedup claim to be made when a returned future first runs: the scope
/// and the owned key, taken when the function is called.
pub struct LaterClaim<K: Key> {
    scope: Dedup<K>,
    key: K,
}

impl<K: Key> LaterClaim<K> {
    /// Keeps `scope` and an owned copy of `key`.
    pub fn new<Q>(scope: &Dedup<K>, key: &Q) -> Self
    where
        Q: ?Sized + LockKey<Owned = K>,
    {
        LaterClaim {
            scope: scope.clone(),
            key: key.to_owned_key(),
        }
    }

    /// Claims the key if nobody has: never waits.
    pub fn try_claim(&self) -> Result<Claim<K>, Error> {
        self.scope.claim(&self.key)
    }

    /// Claims the key, waiting for its first call if that still runs.
    pub async fn claim_or_wait(self) -> Result<Claim<K>, Error> {
        self.scope.claim_or_wait(&self.key).await
    }
}

/// Turns the key expression of an attribute into a `&Q: LockKey`, removing
/// one layer of reference: `key = channel_id` (a `u64`), `key = name` (a
/// `&str`) and `key = &msg.author` (a `&String`) all look up the referent.
///
/// Called as `key_arg((&&&&KeyProbe(&(expr))).key())`. Method
/// resolution tries the probe traits one auto-deref step apart, in order:
/// [`KeyProbeRef`] (a reference to a key: stripped), [`KeyProbeValue`] (a
/// key), then [`KeyProbeRefOther`] and [`KeyProbeOther`], which take
/// anything else and give a [`NotAKey`]. That one fails [`key_arg`] with a
/// single error at the key expression, instead of one error per missing
/// trait deep inside the generated code.
pub struct KeyProbe<'a, T: ?Sized>(pub &'a T);

/// Picked for a reference to a key.
pub trait KeyProbeRef<'b> {
    /// The key type.
    type Target: ?Sized;
    /// The key, one reference removed.
    fn key(&self) -> &'b Self::Target;
}

impl<'b, T: ?Sized + LockKey> KeyProbeRef<'b> for &&&KeyProbe<'_, &'b T> {
    type Target = T;
    #[inline]
    fn key(&self) -> &'b T {
        self.0
    }
}

/// Picked for a key.
pub trait KeyProbeValue<'a> {
    /// The key type.
    type Target: ?Sized;
    /// The key.
    fn key(&self) -> &'a Self::Target;
}

impl<'a, T: ?Sized + LockKey> KeyProbeValue<'a> for &&KeyProbe<'a, T> {
    type Target = T;
    #[inline]
    fn key(&self) -> &'a T {
        self.0
    }
}

/// Picked for a reference to something that is not a key.
pub trait KeyProbeRefOther {
    /// The type that is not a key.
    type Target: ?Sized;
    /// A rejection naming the type.
    fn key(&self) -> NotAKey<Self::Target>;
}

impl<T: ?Sized> KeyProbeRefOther for &KeyProbe<'_, &T> {
    type Target = T;
    fn key(&self) -> NotAKey<T> {
        NotAKey(PhantomData)
    }
}

/// Picked for anything else.
pub trait KeyProbeOther {
    /// The type that is not a key.
    type Target: ?Sized;
    /// A rejection naming the type.
    fn key(&self) -> NotAKey<Self::Target>;
}

impl<T: ?Sized> KeyProbeOther for KeyProbe<'_, T> {
    type Target = T;
    fn key(&self) -> NotAKey<T> {
        NotAKey(PhantomData)
    }
}

/// A key expression whose type `T` is not a key.
pub struct NotAKey<T: ?Sized>(PhantomData<fn() -> *const T>);

/// A probed key: a `&Q` with `Q: LockKey`, or a [`NotAKey`], which fails
/// with one error.
pub trait KeyArg<'a> {
    /// The key type looked up.
    type Key: ?Sized + LockKey;
    /// The key.
    fn key(self) -> &'a Self::Key;
}

impl<'a, Q: ?Sized + LockKey> KeyArg<'a> for &'a Q {
    type Key = Q;
    #[inline]
    fn key(self) -> &'a Q {
        self
    }
}

impl<T: ?Sized> KeyArg<'static> for NotAKey<T> {
    type Key = str;
    fn key(self) -> &'static str {
        ""
    }
}

/// Passes a key through; a [`NotAKey`] fails here, once, at the key
/// expression (and then stands in for a key, so nothing after fails too).
#[inline]
pub fn key_arg<'a, A>(arg: A) -> &'a A::Key
where
    A: KeyArg<'a> + KeyChecked,
{
    arg.key()
}

/// Holds for a probed key; for a [`NotAKey`] only if its type `IsKey`,
/// which none is.
#[diagnostic::on_unimplemented(
    message = "this expression cannot be a keylock key",
    label = "the key of this lock",
    note = "keys must be `Hash + Eq + Clone + Debug + Send + Sync + 'static` (integers, `String`, tuples, your own ids with those derives), or `str` / `[T]` looked up by reference",
    note = "a key that is not `Send + Sync` (`Rc<str>`, `RefCell<_>`) can be converted first: `key = name.to_string()`"
)]
pub trait KeyChecked {}

impl<Q: ?Sized + LockKey> KeyChecked for &Q {}

impl<T: ?Sized + IsKey> KeyChecked for NotAKey<T> {}

/// Implemented by no type: the bound a [`NotAKey`] fails, with the
/// message users see.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a keylock key",
    label = "the key of this lock",
    note = "keys must be `Hash + Eq + Clone + Debug + Send + Sync + 'static` (integers, `String`, tuples, your own ids with those derives), or `str` / `[T]` looked up by reference",
    note = "a key that is not `Send + Sync` (`Rc<str>`, `RefCell<_>`) can be converted first: `key = name.to_string()`"
)]
pub trait IsKey {}

/// Tells, at compile time, whether a sync annotated function returns a
/// future: `(&&ReturnProbe::<R>::new()).kind()` is [`ReturnsFuture`] when
/// `R: Future`, else [`ReturnsValue`], the same auto-deref dispatch as
/// [`KeyProbe`].
pub struct ReturnProbe<R: ?Sized>(PhantomData<fn(&R)>);

impl<R: ?Sized> ReturnProbe<R> {
    /// A probe for the return type `R`.
    pub const fn new() -> Self {
        ReturnProbe(PhantomData)
    }
}

impl<R: ?Sized> Default for ReturnProbe<R> {
    fn default() -> Self {
        ReturnProbe::new()
    }
}

/// The return type is a future.
pub struct ReturnsFuture;

/// The return type is not (known to be) a future.
pub struct ReturnsValue;

/// Picked when the return type is a future.
pub trait ProbeFuture {
    /// [`ReturnsFuture`].
    fn kind(&self) -> ReturnsFuture {
        ReturnsFuture
    }
}

impl<R: Future + ?Sized> ProbeFuture for &ReturnProbe<R> {}

/// Picked for every other return type.
pub trait ProbeValue {
    /// [`ReturnsValue`].
    fn kind(&self) -> ReturnsValue {
        ReturnsValue
    }
}

impl<R: ?Sized> ProbeValue for ReturnProbe<R> {}

/// What a sync annotated function may return: anything but a future, which
/// would run after the function, and its lock, are gone.
#[diagnostic::on_unimplemented(
    message = "this annotated function returns a future its signature does not show, which would run after the lock is released",
    label = "a future (through a type alias or a generic), built under the lock and run without it",
    note = "write `async fn`, or spell the return type as `impl Future<Output = T>`, `Pin<Box<dyn Future<Output = T> + Send>>` or `BoxFuture<'_, T>` so that the lock covers the future"
)]
pub trait SyncReturn {}

impl SyncReturn for ReturnsValue {}

/// Compiles only for a [`SyncReturn`] kind.
#[inline(always)]
pub fn sync_return<K: SyncReturn>(_: K) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The explicit borrows are what select the probe's impls.
    #[allow(clippy::needless_borrow)]
    fn probe_strips_one_reference() {
        let id = 5u64;
        let name: &str = "general";
        let owned_name = String::from("general");
        let by_value: &u64 = key_arg((&&&&KeyProbe(&id)).key());
        let by_str: &str = key_arg((&&&&KeyProbe(&name)).key());
        let by_ref: &String = key_arg((&&&&KeyProbe(&&owned_name)).key());
        assert_eq!(*by_value, 5);
        assert_eq!(by_str, "general");
        assert_eq!(by_ref, "general");
    }
}

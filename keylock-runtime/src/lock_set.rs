//! [`LockSet`]: several locks taken together in one canonical order, its
//! acquisition future and its guards.
//!
//! Two callers that each hold one lock of a pair and wait for the other
//! deadlock. A set cannot: its locks are sorted once, when the set is made
//! (by resource name, then by key), and always taken in that order, so two
//! sets that share locks queue on the first lock they share and never hold
//! one each of a pair. Equal entries collapse into one, so a set never
//! waits for itself.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::access::Access;
use crate::error::Error;
use crate::lock::{Acquire, Caller, Held, Lock, Unacquired};
use crate::lock_order;
use crate::timer;

/// Several locks taken and released together, always in one canonical
/// order, so that callers asking for overlapping sets never deadlock.
///
/// The order is fixed when the set is made: whole resources by name, the
/// keys of one resource by the key type's `Ord`. Equal keys (or names)
/// appear once: `[&a, &a]` locks `a` once. The order depends on the keys
/// alone, never on addresses or hashes, so it is the same in every run.
/// Every acquisition takes the locks one after another in that order; its
/// guard releases them all, in reverse order, when dropped.
///
/// Sets are deadlock-free among themselves, and with callers that hold one
/// lock at a time. A caller that already holds a lock and then asks for a
/// set (or the reverse) is nesting locks by hand, and can deadlock like
/// any nested locking.
///
/// Cheap to clone. Get one with [`Keyed::key_set`](crate::Keyed::key_set)
/// or [`Registry::lock_set`](crate::Registry::lock_set).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = keylock_runtime::Registry::new();
/// let accounts = registry.keyed::<u64>("accounts");
/// let (from, to) = (7, 3);
/// let both = accounts.key_set(&[&from, &to]);
/// let keys: Vec<_> = both.locks().map(|lock| lock.key().unwrap()).collect();
/// assert_eq!(keys, ["3", "7"]); // canonical order
/// let guard = both.write().await;
/// assert!(accounts.is_locked(&3) && accounts.is_locked(&7));
/// drop(guard);
/// assert!(!accounts.is_locked(&3) && !accounts.is_locked(&7));
/// # }
/// ```
#[derive(Clone)]
pub struct LockSet {
    /// In canonical order, each lock once.
    locks: Arc<[Lock]>,
}

impl fmt::Debug for LockSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.locks.iter()).finish()
    }
}

macro_rules! set_acquire_methods {
    ($guard:ident, $access:expr, $acquire:ident, $try:ident, $timeout:ident, $blocking:ident, $blocking_timeout:ident, $mode:literal) => {
        #[doc = concat!("Waits for ", $mode, " access to every lock of the set, taking them in canonical order.")]
        ///
        /// # Cancel safety
        ///
        /// Dropping the future before it completes releases the locks it
        /// had taken and leaves the queue of the one it waited for as if it
        /// had never asked: nothing stays held, no waiter is left behind.
        #[track_caller]
        pub fn $acquire(&self) -> AcquireSet<$guard> {
            self.acquire($access, Location::caller())
        }

        #[doc = concat!("Takes ", $mode, " access to every lock of the set if each is free now; never waits.")]
        ///
        /// # Errors
        ///
        /// [`Error::Busy`] naming the first lock, in canonical order, that
        /// was not free; the locks taken before it are released.
        #[track_caller]
        pub fn $try(&self) -> Result<$guard, Error> {
            self.try_acquire($access, Caller::api(Location::caller()))
                .map($guard::from_held_set)
        }

        #[doc = concat!("Waits at most `timeout` for ", $mode, " access to every lock of the set.")]
        ///
        /// One deadline covers the whole set, however many locks it has:
        /// the acquisition ends `timeout` after it starts, whether it is
        /// waiting for its first lock or its last.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] naming the lock it was waiting for when time
        /// ran out; the locks taken before it have been released.
        ///
        /// # Cancel safety
        ///
        /// As for the untimed acquisition: dropping the future releases what
        /// it had taken and leaves no waiter.
        #[track_caller]
        pub fn $timeout(
            &self,
            timeout: Duration,
        ) -> impl Future<Output = Result<$guard, Error>> + Send + 'static {
            let acquisition = self.acquire_timeout($access, timeout, Location::caller());
            async move { acquisition.await.map($guard::from_held_set) }
        }

        #[doc = concat!("Blocks the current thread until it holds ", $mode, " access to every lock of the set.")]
        ///
        /// On Tokio runtime threads, see
        #[doc = concat!("[`Lock::", stringify!($blocking), "`].")]
        ///
        /// # Cancellation
        ///
        /// A blocking wait cannot be cancelled; use the `_blocking_timeout`
        /// form to bound it.
        #[track_caller]
        pub fn $blocking(&self) -> $guard {
            $guard::from_held_set(self.acquire_blocking($access, Caller::api(Location::caller())))
        }

        #[doc = concat!("Blocks the current thread at most `timeout` for ", $mode, " access to every lock of the set.")]
        ///
        /// One deadline covers the whole set, as for the async form.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] naming the lock it was waiting for when time
        /// ran out; the thread has left that lock's queue and released the
        /// locks taken before it.
        #[track_caller]
        pub fn $blocking_timeout(&self, timeout: Duration) -> Result<$guard, Error> {
            self.acquire_blocking_timeout($access, timeout, Caller::api(Location::caller()))
                .map($guard::from_held_set)
        }
    };
}

impl LockSet {
    /// The set of the locks `lock` gives for `ranks`, in the order of the
    /// ranks; equal ranks give one lock. The rank is what the canonical
    /// order compares: a key of one resource, or a resource's name.
    pub(crate) fn in_order<R: Ord>(mut ranks: Vec<R>, lock: impl FnMut(R) -> Lock) -> Self {
        ranks.sort_unstable();
        ranks.dedup();
        LockSet {
            locks: ranks.into_iter().map(lock).collect(),
        }
    }

    /// A number for one acquisition of the set, which tells the keys it
    /// takes apart from others of their resource for the lock-order check;
    /// 0 when the registry does not check orders.
    fn order_set(&self) -> u64 {
        match self.locks.first() {
            Some(lock) if lock.checks_order() => lock_order::next_set(),
            _ => 0,
        }
    }

    /// The locks of the set, in the order they are taken.
    pub fn locks(&self) -> impl ExactSizeIterator<Item = &Lock> + '_ {
        self.locks.iter()
    }

    /// How many locks the set takes: equal keys counted once.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    /// Whether the set takes no lock at all.
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    set_acquire_methods!(
        ReadSetGuard,
        Access::Read,
        read,
        try_read,
        read_timeout,
        read_blocking,
        read_blocking_timeout,
        "shared (read)"
    );
    set_acquire_methods!(
        WriteSetGuard,
        Access::Write,
        write,
        try_write,
        write_timeout,
        write_blocking,
        write_blocking_timeout,
        "exclusive (write)"
    );

    pub(crate) fn acquire<G>(
        &self,
        access: Access,
        location: &'static Location<'static>,
    ) -> AcquireSet<G> {
        AcquireSet {
            set: self.clone(),
            order_set: self.order_set(),
            access,
            location,
            taken: Some(HeldSet::with_capacity(self.locks.len())),
            current: None,
            _guard: PhantomData,
        }
    }

    pub(crate) fn try_acquire(&self, access: Access, caller: Caller) -> Result<HeldSet, Error> {
        let mut taken = HeldSet::with_capacity(self.locks.len());
        for lock in self.locks.iter() {
            // On failure, dropping `taken` releases what it holds.
            taken.push(lock.clone().try_acquire(access, caller)?);
        }
        Ok(taken)
    }

    pub(crate) fn acquire_timeout(
        &self,
        access: Access,
        timeout: Duration,
        location: &'static Location<'static>,
    ) -> impl Future<Output = Result<HeldSet, Error>> + Send + 'static {
        let mut acquisition = self.acquire::<Result<HeldSet, Error>>(access, location);
        async move {
            let started = Instant::now();
            match timer::timeout(timeout, &mut acquisition).await {
                Some(taken) => taken,
                None => {
                    let waiting_for = acquisition.waiting_for().cloned();
                    // Leaves the queue and releases what was taken before
                    // the error is made.
                    drop(acquisition);
                    let Some(lock) = waiting_for else {
                        unreachable!("a set that timed out was waiting for one of its locks");
                    };
                    Err(lock.timed_out(access, location, started.elapsed()))
                }
            }
        }
    }

    pub(crate) fn acquire_blocking(&self, access: Access, caller: Caller) -> HeldSet {
        let set = self.order_set();
        let mut taken = HeldSet::with_capacity(self.locks.len());
        for lock in self.locks.iter() {
            if set == 0 {
                taken.push(lock.clone().acquire_blocking(access, caller));
                continue;
            }
            if let Err(error) = lock.check_order(access, caller.location, set) {
                // Releases what was taken before the refusal.
                drop(taken);
                panic!("{error}");
            }
            let held = lock
                .clone()
                .acquire_blocking(access, caller.order_checked());
            held.join_order_set(set);
            taken.push(held);
        }
        taken
    }

    pub(crate) fn acquire_blocking_timeout(
        &self,
        access: Access,
        timeout: Duration,
        caller: Caller,
    ) -> Result<HeldSet, Error> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        let set = self.order_set();
        let caller = if set == 0 {
            caller
        } else {
            caller.order_checked()
        };
        let mut taken = HeldSet::with_capacity(self.locks.len());
        for lock in self.locks.iter() {
            if set != 0 {
                // On refusal, dropping `taken` releases what it holds.
                lock.check_order(access, caller.location, set)?;
            }
            match lock
                .clone()
                .acquire_blocking_until(access, deadline, caller)
            {
                Ok(held) => {
                    if set != 0 {
                        held.join_order_set(set);
                    }
                    taken.push(held);
                }
                Err((lock, Unacquired::TimedOut)) => {
                    drop(taken);
                    return Err(lock.timed_out(access, caller.location, started.elapsed()));
                }
                Err((_, Unacquired::Refused(error))) => return Err(error),
            }
        }
        Ok(taken)
    }
}

/// The locks a set holds, in the order they were taken; dropping it
/// releases them in reverse order.
pub(crate) struct HeldSet {
    held: Vec<Held>,
}

impl HeldSet {
    fn with_capacity(capacity: usize) -> Self {
        HeldSet {
            held: Vec::with_capacity(capacity),
        }
    }

    fn push(&mut self, held: Held) {
        self.held.push(held);
    }

    fn len(&self) -> usize {
        self.held.len()
    }

    fn locks(&self) -> impl ExactSizeIterator<Item = &Lock> + '_ {
        self.held.iter().map(Held::lock)
    }

    fn fences(&self) -> Vec<Option<u64>> {
        self.held.iter().map(Held::fence).collect()
    }

    fn check(&self) -> Result<(), Error> {
        self.held.iter().try_for_each(Held::check_lease)
    }
}

impl Drop for HeldSet {
    fn drop(&mut self) {
        // Last taken, first released. Should a release panic (a `tracing`
        // subscriber), the vector's own drop still releases the rest.
        while let Some(held) = self.held.pop() {
            drop(held);
        }
    }
}

/// Turns a [`HeldSet`] into the guard a set acquisition returns.
pub(crate) trait FromHeldSet {
    /// Whether the output carries errors, so that a backend's failure ends
    /// the acquisition rather than being retried.
    const REPORTS: bool = false;

    fn from_held_set(held: HeldSet) -> Self;

    /// What the acquisition gives when the lock-order check refuses it: a
    /// panic where the output cannot carry the error.
    fn refused(error: Error) -> Self
    where
        Self: Sized,
    {
        panic!("{error}")
    }
}

impl FromHeldSet for Result<HeldSet, Error> {
    const REPORTS: bool = true;

    fn from_held_set(held: HeldSet) -> Self {
        Ok(held)
    }

    fn refused(error: Error) -> Self {
        Err(error)
    }
}

/// A future that resolves to a guard once every lock of a [`LockSet`] is
/// held. Created by [`LockSet::read`], [`LockSet::write`] and their
/// shortcuts on [`Keyed`](crate::Keyed) and
/// [`Registry`](crate::Registry).
///
/// It takes the locks one after another in the set's canonical order,
/// waiting in each lock's queue in turn.
///
/// # Cancel safety
///
/// Dropping it before completion releases the locks it had taken (in
/// reverse order) and removes it from the queue it waited in; if that lock
/// had just been handed to it, it is passed on. Nothing is left behind.
///
/// # Panics
///
/// Polling it again after it completed panics, as for most futures.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct AcquireSet<G> {
    set: LockSet,
    /// This acquisition's number for the lock-order check (0: unchecked).
    order_set: u64,
    access: Access,
    location: &'static Location<'static>,
    /// The locks taken so far; `None` once completed.
    taken: Option<HeldSet>,
    /// The acquisition of the next lock, once started.
    current: Option<Acquire<Result<Held, Error>>>,
    _guard: PhantomData<fn() -> G>,
}

impl<G> AcquireSet<G> {
    /// The lock it is waiting for, if it has started on one.
    fn waiting_for(&self) -> Option<&Lock> {
        let taken = self.taken.as_ref()?;
        self.current.as_ref()?;
        self.set.locks.get(taken.len())
    }
}

impl<G> fmt::Debug for AcquireSet<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireSet")
            .field("set", &self.set)
            .field("access", &self.access)
            .field("taken", &self.taken.as_ref().map(HeldSet::len))
            .finish()
    }
}

impl<G: FromHeldSet> Future for AcquireSet<G> {
    type Output = G;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<G> {
        let this = self.get_mut();
        let Some(taken) = this.taken.as_mut() else {
            panic!("`AcquireSet` polled after completion");
        };
        loop {
            if let Some(current) = this.current.as_mut() {
                let held = match Pin::new(current).poll(cx) {
                    Poll::Ready(Ok(held)) => held,
                    Poll::Ready(Err(error)) => {
                        // A backend failure, where the output carries it.
                        this.current = None;
                        this.taken = None;
                        return Poll::Ready(G::refused(error));
                    }
                    Poll::Pending => return Poll::Pending,
                };
                this.current = None;
                if this.order_set != 0 {
                    held.join_order_set(this.order_set);
                }
                taken.push(held);
            }
            match this.set.locks.get(taken.len()) {
                Some(next) => {
                    if let Err(error) = next.check_order(this.access, this.location, this.order_set)
                    {
                        // Releases what was taken before the refusal.
                        this.taken = None;
                        return Poll::Ready(G::refused(error));
                    }
                    let next = next.clone();
                    this.current = Some(if G::REPORTS {
                        next.acquire_reporting(this.access, this.location)
                    } else {
                        next.acquire(this.access, this.location)
                    });
                }
                None => {
                    let Some(taken) = this.taken.take() else {
                        unreachable!("checked above");
                    };
                    return Poll::Ready(G::from_held_set(taken));
                }
            }
        }
    }
}

impl<G> Drop for AcquireSet<G> {
    fn drop(&mut self) {
        // Leave the queue first, then release what was taken, in reverse.
        self.current = None;
        self.taken = None;
    }
}

macro_rules! set_guard {
    ($name:ident, $mode:literal) => {
        #[doc = concat!("Proof of ", $mode, " access to every lock of a [`LockSet`]; they are released, in reverse order, when it is dropped.")]
        ///
        /// Owned, `'static` and `Send`. Released on drop, including when the
        /// holder returns early or unwinds from a panic.
        #[must_use = "if unused the locks are released at once"]
        #[clippy::has_significant_drop]
        pub struct $name {
            held: HeldSet,
        }

        impl $name {
            /// The locks this guard holds, in the order they were taken.
            pub fn locks(&self) -> impl ExactSizeIterator<Item = &Lock> + '_ {
                self.held.locks()
            }

            /// Releases every lock now; the same as dropping the guard.
            pub fn unlock(self) {
                drop(self);
            }

            /// The fencing token of each lock, in the order of
            /// [`locks`](Self::locks): `Some` for a lock of a resource
            /// bound to a backend (see
            /// [`WriteGuard::fence`](crate::WriteGuard::fence)).
            pub fn fences(&self) -> Vec<Option<u64>> {
                self.held.fences()
            }

            /// Whether every lock is still held (see
            /// [`WriteGuard::is_valid`](crate::WriteGuard::is_valid)).
            pub fn is_valid(&self) -> bool {
                self.held.check().is_ok()
            }

            /// `Ok` while every lock is held, [`Error::LeaseLost`] for the
            /// first whose backend lost it.
            ///
            /// # Errors
            ///
            /// [`Error::LeaseLost`], as described in [`is_valid`](Self::is_valid).
            pub fn check(&self) -> Result<(), Error> {
                self.held.check()
            }
        }

        impl FromHeldSet for $name {
            fn from_held_set(held: HeldSet) -> Self {
                $name { held }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list().entries(self.locks()).finish()
            }
        }
    };
}

set_guard!(ReadSetGuard, "shared (read)");
set_guard!(WriteSetGuard, "exclusive (write)");

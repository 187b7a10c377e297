//! [`Lock`]: a handle to one lock (a resource's own lock, or one key of a
//! keyed resource), its acquisition futures and its guards.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::access::Access;
use crate::backend::{self, Adopted, BoxFuture, ChainedLease, Failures, Lease, Sweep, LINGER};
use crate::entry::{EntryKey, LockEntry, QueuedWait, ResourceInfo};
use crate::error::Error;
use crate::lock_order::OrderHold;
use crate::observe::{tracing_out, LockEvent, OperationKind, Role};
use crate::raw::{Contention, TimedOut, WaitState};
use crate::runtime_thread;
use crate::timer;

/// Who acquires: where from, and whether it is a sync annotated function.
/// Such a function's guard never leaves it, and the function never leaves
/// its thread, so its thread is recorded as the holder: anything else that
/// runs on that thread while it holds runs inside it, and would wait for
/// itself (see [`holder`]).
///
/// A location and one byte of flags, so that it is passed in two registers
/// (a third field would pass it through memory).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller {
    pub(crate) location: &'static Location<'static>,
    flags: u8,
}

impl Caller {
    /// The entry records the caller's thread as the holder.
    const RECORDS_HOLDER: u8 = 1;
    /// The acquisition checks the lock order itself: not when a set
    /// acquisition checked it, with its set, before.
    const CHECKS_ORDER: u8 = 2;

    /// A call of the public API.
    #[inline]
    pub(crate) fn api(location: &'static Location<'static>) -> Caller {
        Caller {
            location,
            flags: Caller::CHECKS_ORDER,
        }
    }

    /// A sync annotated function's acquisition; `kept` when its guard
    /// stays in the function (not handed to the body with `guard = ..`).
    #[inline]
    pub(crate) fn sync_annotated(location: &'static Location<'static>, kept: bool) -> Caller {
        let records = if kept { Caller::RECORDS_HOLDER } else { 0 };
        Caller {
            location,
            flags: Caller::CHECKS_ORDER | records,
        }
    }

    /// The same caller, for a set acquisition that checked the lock order
    /// already.
    #[inline]
    pub(crate) fn order_checked(self) -> Caller {
        Caller {
            flags: self.flags & !Caller::CHECKS_ORDER,
            ..self
        }
    }

    /// Whether the entry records the caller's thread as the holder.
    #[inline]
    pub(crate) fn records_holder(self) -> bool {
        self.flags & Caller::RECORDS_HOLDER != 0
    }

    /// Whether the acquisition checks the lock order itself.
    #[inline]
    pub(crate) fn checks_order(self) -> bool {
        self.flags & Caller::CHECKS_ORDER != 0
    }
}

/// A handle to one lock: a named resource's own lock, or the lock of one key
/// of a keyed resource.
///
/// Cheap to clone. For keys, the handle keeps the key's entry alive: an
/// entry is live while a handle, a guard or a waiting acquisition refers to
/// it; once idle, a later sweep removes it.
///
/// Get one with [`Registry::lock`](crate::Registry::lock),
/// [`Registry::key_lock`](crate::Registry::key_lock),
/// [`Resource::lock`](crate::Resource::lock) or
/// [`Keyed::key`](crate::Keyed::key).
pub struct Lock {
    entry: Arc<LockEntry<dyn EntryKey>>,
}

impl Clone for Lock {
    fn clone(&self) -> Self {
        Lock {
            entry: Arc::clone(&self.entry),
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("resource", &self.resource())
            .field("key", &self.entry.key_debug())
            .field("state", self.entry.raw())
            .finish()
    }
}

macro_rules! acquire_methods {
    ($guard:ident, $access:expr, $acquire:ident, $try:ident, $timeout:ident, $blocking:ident, $blocking_timeout:ident, $mode:literal) => {
        #[doc = concat!("Waits for ", $mode, " access.")]
        ///
        /// The returned future resolves to a guard once the lock is held;
        /// dropping the guard releases it.
        ///
        /// # Cancel safety
        ///
        /// Dropping the future before it completes leaves the queue exactly
        /// as if it had never been polled: no waiter, no count, and if the
        /// lock was handed to it in the meantime, it is passed on.
        #[track_caller]
        pub fn $acquire(&self) -> Acquire<$guard> {
            self.clone().acquire($access, Location::caller())
        }

        #[doc = concat!("Takes ", $mode, " access if a newcomer can have it now; never waits.")]
        ///
        /// # Errors
        ///
        /// [`Error::Busy`] when the lock is held in a conflicting mode, or
        /// queued writers have priority.
        #[track_caller]
        pub fn $try(&self) -> Result<$guard, Error> {
            self.clone()
                .try_acquire($access, Caller::api(Location::caller()))
                .map($guard::from_held)
        }

        #[doc = concat!("Waits at most `timeout` for ", $mode, " access.")]
        ///
        /// Works on any executor, and in Tokio runtimes with or without
        /// their time driver: the timeout is kept by keylock's own timer, one
        /// thread for the whole process, started by the first timed wait
        /// that has to queue. A wait that gets the lock at once never
        /// touches it. The timer follows real time, so Tokio's paused clock
        /// does not apply to it.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] when the lock was not acquired in time.
        ///
        /// # Cancel safety
        ///
        /// As for the untimed acquisition: dropping the future leaves nothing
        /// behind.
        #[track_caller]
        pub fn $timeout(
            &self,
            timeout: Duration,
        ) -> impl Future<Output = Result<$guard, Error>> + Send + 'static {
            let acquisition = self
                .clone()
                .acquire_timeout($access, timeout, Location::caller());
            async move { acquisition.await.map($guard::from_held) }
        }

        #[doc = concat!("Blocks the current thread until ", $mode, " access is held.")]
        ///
        /// Excludes async holders of the same lock just as they exclude each
        /// other. On a worker of a multi-thread Tokio runtime, a wait that
        /// has to block first lets the runtime move its other tasks to
        /// another thread (as `tokio::task::block_in_place` does), so an
        /// async holder can still run; prefer the async form there all the
        /// same.
        ///
        /// # Panics
        ///
        /// When it would have to wait on a thread that runs a
        /// `current_thread` Tokio runtime or a `LocalSet`: the holder could
        /// be a task of that very thread, which would then never run. Call
        /// it from `spawn_blocking` there.
        ///
        /// # Cancellation
        ///
        /// A blocking wait cannot be cancelled; use the `_blocking_timeout`
        /// form to bound it.
        #[track_caller]
        pub fn $blocking(&self) -> $guard {
            let caller = Caller::api(Location::caller());
            if self.entry.resource().extras() {
                return $guard::from_held(self.acquire_blocking_extras($access, caller));
            }
            let contention = self.wait_untimed($access, caller, false);
            // Cloned once held: waiting threads then never touch the
            // handle's reference count, which the holder updates.
            $guard::from_held(self.clone().acquired($access, contention, caller, false))
        }

        #[doc = concat!("Blocks the current thread at most `timeout` for ", $mode, " access.")]
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`] when the lock was not acquired in time; the
        /// thread has then left the queue.
        ///
        /// # Cancellation
        ///
        /// The timeout is the only way to end the wait early.
        #[track_caller]
        pub fn $blocking_timeout(&self, timeout: Duration) -> Result<$guard, Error> {
            self.clone()
                .acquire_blocking_timeout($access, timeout, Caller::api(Location::caller()))
                .map($guard::from_held)
        }
    };
}

impl Lock {
    pub(crate) fn from_entry(entry: Arc<LockEntry<dyn EntryKey>>) -> Self {
        Lock { entry }
    }

    /// The name of the resource this lock belongs to.
    pub fn resource(&self) -> &str {
        self.entry.resource().name()
    }

    /// The key, in its `Debug` form, for a keyed lock.
    pub fn key(&self) -> Option<String> {
        self.entry.key_debug()
    }

    acquire_methods!(
        ReadGuard,
        Access::Read,
        read,
        try_read,
        read_timeout,
        read_blocking,
        read_blocking_timeout,
        "shared (read)"
    );
    acquire_methods!(
        WriteGuard,
        Access::Write,
        write,
        try_write,
        write_timeout,
        write_blocking,
        write_blocking_timeout,
        "exclusive (write)"
    );

    /// Whether anyone holds the lock right now, in either mode.
    pub fn is_locked(&self) -> bool {
        self.entry.raw().is_locked()
    }

    /// Whether a writer holds the lock right now.
    pub fn is_write_locked(&self) -> bool {
        self.entry.raw().is_write_locked()
    }

    /// How many readers hold the lock right now.
    pub fn readers(&self) -> usize {
        self.entry.raw().readers()
    }

    /// How many callers are queued for the lock right now.
    pub fn waiters(&self) -> usize {
        self.entry.raw().waiters()
    }

    /// The entry's address: identifies the lock (compared, never followed).
    pub(crate) fn entry_address(&self) -> usize {
        Arc::as_ptr(&self.entry) as *const () as usize
    }

    /// Counts a body that returned an error while holding this lock.
    pub(crate) fn record_failed_body(&self) {
        self.entry.resource().record(LockEvent::FailedWhileHeld);
    }

    /// Waits for the lock, as a future. Async acquisitions never record
    /// their holder (see [`Caller`]), so they need only the location.
    pub(crate) fn acquire<G>(
        self,
        access: Access,
        location: &'static Location<'static>,
    ) -> Acquire<G> {
        Acquire {
            lock: Some(self),
            access,
            wait: WaitState::Start,
            location,
            waiting: None,
            backend_wait: BackendWait::Retry,
            remote: ManuallyDrop::new(None),
            _guard: PhantomData,
        }
    }

    /// [`acquire`](Self::acquire) that ends with a backend's failure
    /// rather than retrying it.
    pub(crate) fn acquire_reporting(
        self,
        access: Access,
        location: &'static Location<'static>,
    ) -> Acquire<Result<Held, Error>> {
        let mut acquisition = self.acquire(access, location);
        acquisition.backend_wait = BackendWait::Report;
        acquisition
    }

    /// [`acquire`](Self::acquire), of the in-process lock only: the caller
    /// takes the backend's lock itself, if any.
    fn acquire_local(self, access: Access, location: &'static Location<'static>) -> Acquire<Held> {
        let mut acquisition = self.acquire(access, location);
        acquisition.backend_wait = BackendWait::Skip;
        acquisition
    }

    /// Blocks until the lock is held, consuming this handle into the hold.
    #[inline]
    pub(crate) fn acquire_blocking(self, access: Access, caller: Caller) -> Held {
        if self.entry.resource().extras() {
            return self.acquire_blocking_extras(access, caller);
        }
        let contention = self.wait_untimed(access, caller, false);
        self.acquired(access, contention, caller, false)
    }

    /// [`acquire_blocking`](Self::acquire_blocking) of a lock whose
    /// resource has extras ([`ResourceInfo::extras`]): checks the lock
    /// order, watches the hold and takes the backend's lock, as
    /// configured. Out of line, off the path of resources without.
    #[cold]
    #[inline(never)]
    fn acquire_blocking_extras(&self, access: Access, caller: Caller) -> Held {
        let (contention, order) = if caller.checks_order() && self.checks_order() {
            // Checked and counted as held in one step, forgotten again
            // when the lock is not free at once.
            let order = match self.check_order_holding(access, caller.location) {
                Ok(order) => order,
                Err(error) => panic!("{error}"),
            };
            if self.entry.raw().try_acquire(access) {
                (Contention::Uncontended, order)
            } else {
                self.forget_order(order);
                let caller = caller.order_checked();
                (self.wait_untimed(access, caller, true), None)
            }
        } else {
            (self.wait_untimed(access, caller, true), None)
        };
        let held = self
            .clone()
            .acquired_with(access, contention, caller, true, order);
        if held.lock.entry.resource().backend().is_some() {
            return held.take_backend_untimed();
        }
        held
    }

    /// Blocks for the lock without a deadline; `extras` as read from the
    /// resource ([`ResourceInfo::extras`]).
    #[inline(always)]
    fn wait_untimed(&self, access: Access, caller: Caller, extras: bool) -> Contention {
        match self.wait_blocking(access, None, caller, extras) {
            Ok(contention) => contention,
            Err(Unacquired::Refused(error)) => panic!("{error}"),
            Err(Unacquired::TimedOut) => {
                unreachable!("an acquisition without deadline cannot time out")
            }
        }
    }

    /// Blocks for the lock; listed as a waiter in the live view, if kept,
    /// while it waits. Checks the lock order first when the resource has
    /// extras (`extras`, as read from [`ResourceInfo::extras`]).
    #[inline]
    fn wait_blocking(
        &self,
        access: Access,
        deadline: Option<Instant>,
        caller: Caller,
        extras: bool,
    ) -> Result<Contention, Unacquired> {
        if extras && caller.checks_order() {
            self.check_order_blocking(access, caller.location)?;
        }
        if self.entry.raw().try_acquire(access) {
            return Ok(Contention::Uncontended);
        }
        self.wait_queued(access, deadline, caller)
    }

    /// [`check_order`](Self::check_order) for a blocking acquisition of a
    /// lock alone; out of line, off the path of registries that do not
    /// check.
    #[cold]
    #[inline(never)]
    fn check_order_blocking(
        &self,
        access: Access,
        location: &'static Location<'static>,
    ) -> Result<(), Unacquired> {
        self.check_order(access, location, 0)
            .map_err(Unacquired::Refused)
    }

    /// [`check_order`](Self::check_order) of a lock alone, which also
    /// counts it as held when the acquisition may go ahead: for a caller
    /// that tries the lock next and, if it is not free,
    /// [`forget_order`](Self::forget_order)s the hold before it waits.
    #[inline]
    fn check_order_holding(
        &self,
        access: Access,
        location: &'static Location<'static>,
    ) -> Result<Option<OrderHold>, Error> {
        match self.entry.resource().order() {
            None => Ok(None),
            Some(order) => order.check_holding(
                self.entry_address(),
                || self.entry.key_debug(),
                access,
                location,
                0,
                true,
            ),
        }
    }

    /// Forgets a hold [`check_order_holding`](Self::check_order_holding)
    /// counted, for an acquisition that did not get the lock at once.
    #[cold]
    fn forget_order(&self, hold: Option<OrderHold>) {
        if let (Some(hold), Some(order)) = (hold, self.entry.resource().order()) {
            order.release(hold);
        }
    }

    /// Whether the registry checks lock orders.
    #[inline]
    pub(crate) fn checks_order(&self) -> bool {
        self.entry.resource().order().is_some()
    }

    /// Checks, when the registry checks lock orders, that the current
    /// task or thread may ask for this lock now (as part of set
    /// acquisition `set`, or 0) without inverting a recorded order; records
    /// the orders it takes. An error only in [`LockOrder::Error`] mode.
    ///
    /// [`LockOrder::Error`]: crate::LockOrder::Error
    #[inline]
    pub(crate) fn check_order(
        &self,
        access: Access,
        location: &'static Location<'static>,
        set: u64,
    ) -> Result<(), Error> {
        match self.entry.resource().order() {
            None => Ok(()),
            Some(order) => order.check(
                self.entry_address(),
                || self.entry.key_debug(),
                access,
                location,
                set,
            ),
        }
    }

    #[inline(never)]
    fn wait_queued(
        &self,
        access: Access,
        deadline: Option<Instant>,
        caller: Caller,
    ) -> Result<Contention, Unacquired> {
        if let Some(error) = self.self_deadlock(access, caller.location) {
            return Err(Unacquired::Refused(error));
        }
        let resource = self.entry.resource();
        // Ends the wait's count and live view entry however the wait ends,
        // also when a refusal to block unwinds.
        let _waiting = CountedWait {
            resource,
            waiting: Some(resource.start_wait(
                self.entry_address() as u64,
                || self.entry.key_debug(),
                access,
                caller.location,
            )),
        };
        let wait = || {
            self.entry.raw().acquire_blocking(access, deadline, || {
                self.watch_long_wait(access, caller.location)
            })
        };
        let result = if deadline.is_some() {
            // A bounded wait cannot hang a runtime for good.
            runtime_thread::block_bounded(wait)
        } else {
            runtime_thread::block_without_hanging(wait, || {
                self.describe_wait(access, caller.location)
            })
        };
        result.map_err(|TimedOut| Unacquired::TimedOut)
    }

    /// The error for a caller that would wait for itself: the lock is
    /// recorded as held by the current task or thread.
    #[cold]
    fn self_deadlock(&self, access: Access, location: &'static Location<'static>) -> Option<Error> {
        let held_at = self.entry.held_by_caller()?;
        let error = Error::WouldDeadlock {
            resource: self.entry.resource().name().to_owned(),
            key: self.entry.key_debug(),
            access,
            held_at: held_at.map(ToString::to_string),
            requested_at: location.to_string(),
        };
        tracing_out::would_deadlock(&error);
        Some(error)
    }

    /// Arms the report of a wait that passes the slow-wait threshold while
    /// it still waits (a warning naming the waiter, and a count): the
    /// timer thread makes it unless the returned alarm is dropped first.
    #[cold]
    fn watch_long_wait(
        &self,
        access: Access,
        location: &'static Location<'static>,
    ) -> Option<timer::Alarm> {
        let threshold = self.entry.resource().settings().slow_wait;
        let deadline = Instant::now().checked_add(threshold)?;
        let entry = Arc::clone(&self.entry);
        let dispatch = tracing_out::current_dispatch();
        Some(timer::call_at(deadline, move || {
            let resource = entry.resource();
            resource.record(LockEvent::LongWait);
            tracing_out::still_waiting(
                &dispatch,
                resource.name(),
                entry.key_debug(),
                access,
                threshold,
                location,
            );
        }))
    }

    /// "the blocking write lock on resource "db", key 7, taken at ...".
    #[cold]
    fn describe_wait(&self, access: Access, location: &'static Location<'static>) -> String {
        let key = self
            .entry
            .key_debug()
            .map(|key| format!(", key {key}"))
            .unwrap_or_default();
        format!(
            "the blocking {access} lock on resource \"{}\"{key}, taken at {location},",
            self.entry.resource().name()
        )
    }

    pub(crate) fn try_acquire(self, access: Access, caller: Caller) -> Result<Held, Error> {
        if !self.entry.raw().try_acquire(access) {
            return Err(self.busy(access, caller.location));
        }
        if self.entry.resource().extras() {
            return self.tried_extras(access, caller);
        }
        Ok(self.acquired(access, Contention::Uncontended, caller, false))
    }

    /// The hold of a [`try_acquire`](Self::try_acquire) that took the
    /// in-process lock of a resource with extras: watched, and with the
    /// backend's lock if it is free.
    #[cold]
    #[inline(never)]
    fn tried_extras(self, access: Access, caller: Caller) -> Result<Held, Error> {
        let held = self.acquired(access, Contention::Uncontended, caller, true);
        if held.lock.entry.resource().backend().is_some() {
            return held.try_backend(caller.location);
        }
        Ok(held)
    }

    /// Counts, logs and describes a non-waiting acquisition that found the
    /// lock held.
    #[cold]
    fn busy(&self, access: Access, location: &'static Location<'static>) -> Error {
        {
            self.entry.resource().record(LockEvent::Busy);
            if let Some(live) = self.entry.resource().live() {
                live.log(
                    OperationKind::Busy,
                    self.entry.key_debug(),
                    access,
                    location,
                    None,
                );
            }
            Error::Busy {
                resource: self.entry.resource().name().to_owned(),
                key: self.entry.key_debug(),
                access,
            }
        }
    }

    pub(crate) async fn acquire_timeout(
        self,
        access: Access,
        timeout: Duration,
        location: &'static Location<'static>,
    ) -> Result<Held, Error> {
        // Async acquisitions never record their holder (see `Caller`).
        let caller = Caller::api(location);
        let extras = self.entry.resource().extras();
        if extras {
            self.check_order(access, location, 0)?;
        }
        let started = Instant::now();
        let held = if self.entry.raw().try_acquire(access) {
            self.acquired(access, Contention::Uncontended, caller, extras)
        } else {
            if let Some(error) = self.self_deadlock(access, caller.location) {
                return Err(error);
            }
            let lock = self.clone();
            match timer::timeout(timeout, self.acquire_local(access, caller.location)).await {
                Some(held) => held,
                None => return Err(lock.timed_out(access, caller.location, started.elapsed())),
            }
        };
        if extras && held.lock.entry.resource().backend().is_some() {
            return held.take_backend(timeout, started, location).await;
        }
        Ok(held)
    }

    pub(crate) fn acquire_blocking_timeout(
        self,
        access: Access,
        timeout: Duration,
        caller: Caller,
    ) -> Result<Held, Error> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        match self.acquire_blocking_until(access, deadline, caller) {
            Ok(held) => Ok(held),
            Err((lock, Unacquired::TimedOut)) => {
                Err(lock.timed_out(access, caller.location, started.elapsed()))
            }
            Err((_, Unacquired::Refused(error))) => Err(error),
        }
    }

    /// Blocks until the lock is held or `deadline` (if any) has passed;
    /// gives the handle back, with why, when it was not acquired (the
    /// thread is then out of the queue).
    pub(crate) fn acquire_blocking_until(
        self,
        access: Access,
        deadline: Option<Instant>,
        caller: Caller,
    ) -> Result<Held, (Lock, Unacquired)> {
        let extras = self.entry.resource().extras();
        match self.wait_blocking(access, deadline, caller, extras) {
            Ok(contention) if !extras => Ok(self.acquired(access, contention, caller, false)),
            Ok(contention) => {
                let lock = self.clone();
                let mut held = self.acquired(access, contention, caller, true);
                if held.lock.entry.resource().backend().is_some() {
                    if let Err(why) = held.take_backend_blocking(deadline) {
                        drop(held);
                        return Err((lock, why));
                    }
                }
                Ok(held)
            }
            Err(why) => Err((self, why)),
        }
    }

    /// Counts, logs and describes an acquisition of this lock that gave up
    /// after `waited`.
    #[cold]
    pub(crate) fn timed_out(
        &self,
        access: Access,
        location: &'static Location<'static>,
        waited: Duration,
    ) -> Error {
        let resource = self.entry.resource();
        resource.record(LockEvent::TimedOut);
        if let Some(live) = resource.live() {
            live.log(
                OperationKind::TimedOut,
                self.entry.key_debug(),
                access,
                location,
                Some(waited),
            );
        }
        let error = Error::Timeout {
            resource: resource.name().to_owned(),
            key: self.entry.key_debug(),
            access,
            waited,
        };
        tracing_out::timed_out(&error);
        error
    }

    /// The one place every successful acquisition passes through.
    ///
    /// The hold owns the lock before anything else runs: reporting may run
    /// user code (a key's `Debug`, a `tracing` subscriber, a `metrics`
    /// recorder), and should that panic, dropping the hold releases the lock.
    ///
    /// `extras` is [`ResourceInfo::extras`] as the caller read it: when
    /// false, the hold is not watched, and the check is gone from the path.
    #[inline(always)]
    fn acquired(
        self,
        access: Access,
        contention: Contention,
        caller: Caller,
        extras: bool,
    ) -> Held {
        self.acquired_with(access, contention, caller, extras, None)
    }

    /// [`acquired`](Self::acquired), with the lock-order hold the check
    /// already counted, if it did.
    #[inline(always)]
    fn acquired_with(
        self,
        access: Access,
        contention: Contention,
        caller: Caller,
        extras: bool,
        order: Option<OrderHold>,
    ) -> Held {
        let mut held = Held {
            lock: self,
            access,
            recorded: false,
            watch: ManuallyDrop::new(None),
        };
        if caller.records_holder() && held.lock.entry.resource().settings().self_deadlock_check {
            held.lock.entry.record_holder(caller.location);
            held.recorded = true;
        }
        let resource = held.lock.entry.resource();
        let waited = match contention {
            Contention::Uncontended => None,
            Contention::Contended(waited) => {
                held.lock.report_wait(access, waited);
                Some(waited)
            }
        };
        resource.record(LockEvent::Acquired { access, waited });
        if extras && resource.settings().watches_holds() {
            *held.watch = Some(boxed_watch(held.lock.watch_hold(
                access,
                caller.location,
                waited,
                order,
            )));
        }
        held
    }

    /// Reports an acquisition that had to queue.
    #[cold]
    fn report_wait(&self, access: Access, waited: Duration) {
        let resource = self.entry.resource();
        tracing_out::contended(
            resource.name(),
            || self.entry.key_debug(),
            access,
            waited,
            resource.settings().slow_wait,
        );
    }

    /// Starts timing a hold and lists it in the live view, as configured.
    #[cold]
    fn watch_hold(
        &self,
        access: Access,
        location: &'static Location<'static>,
        waited: Option<Duration>,
        order: Option<OrderHold>,
    ) -> HoldWatch {
        let resource = self.entry.resource();
        let since = resource.settings().long_hold.map(|_| Instant::now());
        let order = match order {
            Some(order) => Some(order),
            None => resource
                .order()
                .map(|order| order.hold(self.entry_address(), location, 0)),
        };
        let live = resource.live().map(|live| {
            live.log(
                OperationKind::Acquired,
                self.entry.key_debug(),
                access,
                location,
                waited,
            );
            live.enter(
                Role::Holding,
                self.entry_address() as u64,
                self.entry.key_debug(),
                access,
                location,
            )
        });
        HoldWatch {
            since,
            live,
            location,
            lease: None,
            order,
        }
    }
}

/// A blocking wait, counted as queued until dropped.
struct CountedWait<'a> {
    resource: &'a ResourceInfo,
    waiting: Option<QueuedWait>,
}

impl Drop for CountedWait<'_> {
    fn drop(&mut self) {
        if let Some(waiting) = self.waiting.take() {
            self.resource.end_wait(waiting);
        }
    }
}

/// Returns the lease parked for the lock of `entry` to the backend after
/// `delay`, unless its next holder in this process adopts it first (or
/// ends the turn left to other processes).
fn arm_sweep(entry: &Arc<LockEntry<dyn EntryKey>>, delay: Duration) -> timer::Alarm {
    let entry = Arc::clone(entry);
    let due = Instant::now() + delay;
    timer::call_at(due, move || sweep_parked(&entry))
}

/// The sweep of a parked lease: returned to the backend while nobody here
/// holds the lock; looked at again later while someone does (who will
/// adopt or return it).
fn sweep_parked(entry: &Arc<LockEntry<dyn EntryKey>>) {
    let Some(tier) = entry.resource().tier() else {
        return;
    };
    let address = Arc::as_ptr(entry) as *const () as usize;
    let sweep = tier.sweep(
        address,
        || entry.raw().try_acquire(Access::Write),
        || arm_sweep(entry, LINGER),
    );
    if sweep == Sweep::Returned {
        entry.raw().release(Access::Write);
    }
}

/// Why a blocking wait ended without the lock.
pub(crate) enum Unacquired {
    TimedOut,
    /// It would have waited for itself, or inverted a lock order, or the
    /// resource's backend could not be asked.
    Refused(Error),
}

/// What a hold keeps beyond the counters: its start, for hold times, its
/// entry in the live view, its place among the locks the lock-order check
/// counts as held, and its backend lease. Boxed, so that a guard stays
/// small when none of these is configured.
struct HoldWatch {
    since: Option<Instant>,
    live: Option<u64>,
    /// Where the lock was taken, to name the holder.
    location: &'static Location<'static>,
    /// The backend's grant, for a resource bound to a backend.
    lease: Option<ChainedLease>,
    order: Option<OrderHold>,
}

thread_local! {
    /// The boxes of the last watched holds released on this thread,
    /// emptied, for the next ones: a thread that takes watched locks (lock
    /// order checking watches every hold), one at a time or a few nested,
    /// allocates nothing.
    #[allow(clippy::vec_box, reason = "the boxes themselves are what is reused")]
    static SPARE_WATCHES: RefCell<Vec<Box<HoldWatch>>> = const { RefCell::new(Vec::new()) };
}

/// How many emptied boxes a thread keeps.
const SPARE_WATCHES_KEPT: usize = 4;

/// `watch` in a box: one of this thread's spare ones, if any.
#[inline]
fn boxed_watch(watch: HoldWatch) -> Box<HoldWatch> {
    let spare = SPARE_WATCHES
        .try_with(|spares| {
            spares
                .try_borrow_mut()
                .ok()
                .and_then(|mut spares| spares.pop())
        })
        .ok()
        .flatten();
    match spare {
        Some(mut spare) => {
            *spare = watch;
            spare
        }
        None => Box::new(watch),
    }
}

/// Keeps the box of a released hold as one of this thread's spares. Its
/// fields hold nothing that needs dropping by then (lease and order hold
/// taken).
#[inline]
fn recycle_watch(watch: Box<HoldWatch>) {
    let _ = SPARE_WATCHES.try_with(|spares| {
        if let Ok(mut spares) = spares.try_borrow_mut() {
            if spares.len() < SPARE_WATCHES_KEPT {
                spares.push(watch);
            }
        }
    });
}

/// A held lock; releases on drop. The one place every release passes
/// through.
pub(crate) struct Held {
    lock: Lock,
    access: Access,
    /// Whether the entry records this hold's thread (see [`Caller`]).
    recorded: bool,
    /// Hold timing, the live view entry and the lock-order hold, when
    /// configured. Taken by `drop`, so its drop glue stays off the release
    /// path (a `None` left behind owns nothing).
    watch: ManuallyDrop<Option<Box<HoldWatch>>>,
}

impl Held {
    /// The lock held.
    pub(crate) fn lock(&self) -> &Lock {
        &self.lock
    }

    /// The backend's grant, if the resource is bound to a backend.
    fn lease(&self) -> Option<&ChainedLease> {
        self.watch.as_ref()?.lease.as_ref()
    }

    /// Whether the hold has a backend's grant.
    #[inline]
    pub(crate) fn has_lease(&self) -> bool {
        self.lease().is_some()
    }

    /// The backend's fencing token for this hold.
    pub(crate) fn fence(&self) -> Option<u64> {
        self.lease().map(ChainedLease::fence)
    }

    /// Whether the lock is still held: in-process locks always are; a
    /// backend's lock while its lease is valid.
    pub(crate) fn is_valid(&self) -> bool {
        self.lease().is_none_or(ChainedLease::is_valid)
    }

    /// [`Error::LeaseLost`] if the backend lost the lock.
    pub(crate) fn check_lease(&self) -> Result<(), Error> {
        if self.is_valid() {
            Ok(())
        } else {
            Err(self.lease_lost())
        }
    }

    #[cold]
    fn lease_lost(&self) -> Error {
        let entry = &self.lock.entry;
        Error::LeaseLost {
            backend: entry
                .resource()
                .backend()
                .map_or("in-process", |backend| backend.name())
                .to_owned(),
            resource: entry.resource().name().to_owned(),
            key: entry.key_debug(),
        }
    }

    /// Keeps the backend's grant with the hold.
    #[cold]
    fn attach(&mut self, lease: Box<dyn Lease>) {
        self.attach_chained(ChainedLease::new(lease));
    }

    /// Takes over what a previous holder of this process left: its lease
    /// (a writer keeps it; a reader returns it and asks for a shared one),
    /// or a turn for other processes. `Ok` when the hold now has the
    /// backend's lock; else when to start asking for it.
    #[cold]
    fn adopt_parked(&mut self) -> Result<(), Option<Instant>> {
        let Some(tier) = self.lock.entry.resource().tier() else {
            return Err(None);
        };
        match (tier.adopt(self.lock.entry_address()), self.access) {
            (Adopted::Lease(lease), Access::Write) => {
                self.attach_chained(lease);
                Ok(())
            }
            (Adopted::Lease(lease), Access::Read) => {
                drop(lease);
                Err(None)
            }
            (Adopted::Nothing(not_before), _) => Err(not_before),
        }
    }

    /// The backend to ask for this hold's lock, and from when: `None` when
    /// the resource has no backend, or the lease of a previous holder of
    /// this process was adopted.
    #[cold]
    fn backend_to_ask(&mut self) -> Option<(Arc<dyn backend::Backend>, Option<Instant>)> {
        let backend = self.lock.entry.resource().backend().cloned()?;
        self.adopt_parked()
            .err()
            .map(|not_before| (backend, not_before))
    }

    #[cold]
    fn attach_chained(&mut self, lease: ChainedLease) {
        let location = Location::caller();
        self.watch
            .get_or_insert_with(|| {
                Box::new(HoldWatch {
                    since: None,
                    live: None,
                    location,
                    lease: None,
                    order: None,
                })
            })
            .lease = Some(lease);
    }

    /// Takes the backend's lock within what is left of `timeout`, counted
    /// from `started`.
    #[cold]
    async fn take_backend(
        mut self,
        timeout: Duration,
        started: Instant,
        location: &'static Location<'static>,
    ) -> Result<Held, Error> {
        let Some((backend, not_before)) = self.backend_to_ask() else {
            return Ok(self);
        };
        let wait = backend::acquire(
            backend,
            self.lock.entry.target(),
            self.access,
            not_before,
            Failures::Report,
        );
        let left = timeout.saturating_sub(started.elapsed());
        match timer::timeout(left, wait).await {
            Some(Ok(lease)) => {
                self.attach(lease);
                Ok(self)
            }
            Some(Err(error)) => Err(error),
            None => {
                let (lock, access) = (self.lock.clone(), self.access);
                drop(self);
                Err(lock.timed_out(access, location, started.elapsed()))
            }
        }
    }

    /// Takes the backend's lock, waiting as long as it takes (failures are
    /// retried: there is no error to return).
    #[cold]
    fn take_backend_untimed(mut self) -> Held {
        match self.take_backend_blocking(None) {
            Ok(()) => self,
            Err(Unacquired::Refused(error)) => {
                unreachable!("backend failures are retried without a deadline: {error}")
            }
            Err(Unacquired::TimedOut) => unreachable!("a wait without deadline cannot time out"),
        }
    }

    /// Takes the backend's lock, blocking until `deadline` if any.
    #[cold]
    fn take_backend_blocking(&mut self, deadline: Option<Instant>) -> Result<(), Unacquired> {
        let Some((backend, not_before)) = self.backend_to_ask() else {
            return Ok(());
        };
        let target = self.lock.entry.target();
        let failures = match deadline {
            Some(_) => Failures::Report,
            None => Failures::Retry,
        };
        let granted = match not_before {
            // Free in the backend: no wait, whatever thread this is.
            None => match backend::try_once(&*backend, &target, self.access) {
                Ok(Some(lease)) => Ok(Some(lease)),
                Ok(None) => self.wait_backend(&*backend, &target, None, deadline, failures),
                Err(error) => match failures {
                    Failures::Report => Err(error),
                    Failures::Retry => {
                        self.wait_backend(&*backend, &target, None, deadline, failures)
                    }
                },
            },
            Some(_) => self.wait_backend(&*backend, &target, not_before, deadline, failures),
        };
        match granted {
            Ok(Some(lease)) => {
                self.attach(lease);
                Ok(())
            }
            Ok(None) => Err(Unacquired::TimedOut),
            Err(error) => Err(Unacquired::Refused(error)),
        }
    }

    /// Blocks for the backend's lock, as a blocking wait for the in-process
    /// lock does: the holder may be a task of this very thread (through
    /// another registry bound to the same backend), so an untimed wait on a
    /// thread that must not block panics naming the fix rather than hang;
    /// a timed one stalls at most until its deadline.
    #[cold]
    fn wait_backend(
        &self,
        backend: &dyn backend::Backend,
        target: &backend::Target,
        not_before: Option<Instant>,
        deadline: Option<Instant>,
        failures: Failures,
    ) -> Result<Option<Box<dyn Lease>>, Error> {
        let wait = || {
            backend::acquire_blocking(backend, target, self.access, not_before, deadline, failures)
        };
        if deadline.is_some() {
            runtime_thread::block_bounded(wait)
        } else {
            runtime_thread::block_without_hanging(wait, || {
                let key = target
                    .key()
                    .map(|key| format!(", key {key}"))
                    .unwrap_or_default();
                format!(
                    "the blocking {} lock on resource \"{}\"{key}, held in its {} backend,",
                    self.access,
                    target.resource(),
                    backend.name()
                )
            })
        }
    }

    /// Takes the backend's lock if no other process holds it.
    #[cold]
    fn try_backend(mut self, location: &'static Location<'static>) -> Result<Held, Error> {
        // A turn left to other processes does not delay a single attempt.
        let Some((backend, _)) = self.backend_to_ask() else {
            return Ok(self);
        };
        let target = self.lock.entry.target();
        match backend::try_once(&*backend, &target, self.access) {
            Ok(Some(lease)) => {
                self.attach(lease);
                Ok(self)
            }
            Ok(None) => {
                let (lock, access) = (self.lock.clone(), self.access);
                drop(self);
                Err(lock.busy(access, location))
            }
            Err(error) => Err(error),
        }
    }

    /// Releases the backend's lock, counting it if it was lost; or, when
    /// a writer releases while callers of this process queue for the lock,
    /// parks it for the next of them (see `backend::chain`).
    #[cold]
    fn release_lease(&self, lease: ChainedLease) {
        if !lease.is_valid() {
            let error = self.lease_lost();
            self.lock.entry.resource().record(LockEvent::LeaseLost);
            tracing_out::lease_lost(&error);
            return;
        }
        let entry = &self.lock.entry;
        if let (Access::Write, Some(tier)) = (self.access, entry.resource().tier()) {
            if entry.raw().waiters() > 0 {
                tier.park(self.lock.entry_address(), lease, |delay| {
                    arm_sweep(entry, delay)
                });
                return;
            }
        }
        drop(lease);
    }

    #[cold]
    fn record_panic(&self) {
        self.lock
            .entry
            .resource()
            .record(LockEvent::PanickedWhileHeld);
    }

    /// Counts this hold, for the lock-order check, as taken by set
    /// acquisition `set`.
    pub(crate) fn join_order_set(&self, set: u64) {
        let hold = self.watch.as_ref().and_then(|watch| watch.order.as_ref());
        if let (Some(hold), Some(order)) = (hold, self.lock.entry.resource().order()) {
            order.join_set(hold, set);
        }
    }

    /// Releases a hold that is timed, listed or counted by the lock-order
    /// check.
    #[cold]
    fn release_watched(&self, mut watch: Box<HoldWatch>) {
        // Forgotten first: the holder never counts a lock it released.
        if let (Some(hold), Some(order)) = (watch.order.take(), self.lock.entry.resource().order())
        {
            order.release(hold);
        }
        // The backend's lock before the in-process one, so that the next
        // holder in this process can take it at once.
        if let Some(lease) = watch.lease.take() {
            self.release_lease(lease);
        }
        self.lock.entry.raw().release(self.access);
        self.unwatch(&watch);
        recycle_watch(watch);
    }

    /// Ends the hold's timing and live view entry.
    #[cold]
    fn unwatch(&self, watch: &HoldWatch) {
        let resource = self.lock.entry.resource();
        if let (Some(id), Some(live)) = (watch.live, resource.live()) {
            live.leave(id);
        }
        if let (Some(since), Some(threshold)) = (watch.since, resource.settings().long_hold) {
            let held = since.elapsed();
            resource.record(LockEvent::Held(held));
            if held >= threshold {
                tracing_out::long_hold(
                    resource.name(),
                    self.lock.entry.key_debug(),
                    self.access,
                    held,
                    watch.location,
                );
            }
        }
    }
}

impl Drop for Held {
    #[inline]
    fn drop(&mut self) {
        // Read once: the holder's atomic store below would have them read
        // again from `self`, and the entry found again through its `Arc`.
        let (entry, access, watch) = (&*self.lock.entry, self.access, self.watch.take());
        if self.recorded {
            entry.forget_holder(access);
        }
        match watch {
            None => entry.raw().release(access),
            Some(watch) => self.release_watched(watch),
        }
        if std::thread::panicking() {
            self.record_panic();
        }
    }
}

/// Turns a [`Held`] lock into the guard type an acquisition returns.
pub(crate) trait FromHeld {
    /// Whether the [`Acquire`] future checks the lock order itself: not
    /// for the internal acquisitions of timed waits and sets, which check
    /// it before they start, with what they know.
    const CHECKS_ORDER: bool = true;

    fn from_held(held: Held) -> Self;

    /// The output for a hold, or for a backend failure of an acquisition
    /// that reports them ([`BackendWait::Report`]; the others retry).
    fn from_outcome(outcome: Result<Held, Error>) -> Self
    where
        Self: Sized,
    {
        match outcome {
            Ok(held) => Self::from_held(held),
            Err(error) => unreachable!("backend failures are retried here: {error}"),
        }
    }
}

impl FromHeld for Result<Held, Error> {
    const CHECKS_ORDER: bool = false;

    fn from_held(held: Held) -> Self {
        Ok(held)
    }

    fn from_outcome(outcome: Result<Held, Error>) -> Self {
        outcome
    }
}

/// What an [`Acquire`] does about the backend of a bound resource once it
/// holds the in-process lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendWait {
    /// Nothing: its caller takes the backend's lock itself.
    Skip,
    /// Waits for it, retrying failures (its output is the guard).
    Retry,
    /// Waits for it, and ends with the failure (its output is a `Result`).
    Report,
}

impl FromHeld for Held {
    const CHECKS_ORDER: bool = false;

    fn from_held(held: Held) -> Self {
        held
    }
}

/// What an acquisition that queued keeps until it ends: its count as a
/// waiter, and the report due if it waits past the slow-wait threshold.
struct Queued {
    counted: QueuedWait,
    long_wait: Option<timer::Alarm>,
}

/// A future that resolves to a guard once the lock is held.
///
/// Created by [`Lock::read`], [`Lock::write`] and their counterparts on
/// [`Keyed`](crate::Keyed) and [`Resource`](crate::Resource).
///
/// # Cancel safety
///
/// Dropping it before completion removes it from the queue; if the lock had
/// already been handed to it, the lock is released and passed on. Nothing is
/// left behind.
///
/// # Panics
///
/// Polling it again after it completed panics, as for most futures.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Acquire<G> {
    lock: Option<Lock>,
    access: Access,
    wait: WaitState,
    location: &'static Location<'static>,
    /// Counted as queued (and listed in the live view) while it waits.
    waiting: Option<Queued>,
    /// Whether the acquisition also takes the backend's lock, if any.
    backend_wait: BackendWait,
    /// Once the in-process lock is held: the wait for the backend's.
    /// Dropped by `drop` out of line, so its drop glue stays off the path
    /// of acquisitions that never had one (a `None` left behind owns
    /// nothing).
    remote: ManuallyDrop<Option<Box<RemoteWait>>>,
    _guard: PhantomData<fn() -> G>,
}

/// The second tier of an acquisition: the in-process lock is held, the
/// backend's is asked for (retrying failures, since the guard is the
/// result). Dropping it releases the in-process lock and asks no more.
struct RemoteWait {
    held: Held,
    wait: BoxFuture<'static, Result<Box<dyn Lease>, Error>>,
}

impl<G> fmt::Debug for Acquire<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("lock", &self.lock)
            .field("access", &self.access)
            .field("wait", &self.wait)
            .finish()
    }
}

impl<G> Acquire<G> {
    /// Counts this acquisition as queued.
    #[cold]
    fn start_waiting(&mut self) {
        if let Some(lock) = self.lock.as_ref() {
            self.waiting = Some(Queued {
                counted: lock.entry.resource().start_wait(
                    lock.entry_address() as u64,
                    || lock.entry.key_debug(),
                    self.access,
                    self.location,
                ),
                long_wait: lock.watch_long_wait(self.access, self.location),
            });
        }
    }

    /// Stops counting this acquisition as queued.
    #[inline]
    fn stop_waiting(&mut self) {
        if let Some(queued) = self.waiting.take() {
            self.stop_queued(queued);
        }
    }

    #[cold]
    fn stop_queued(&self, queued: Queued) {
        drop(queued.long_wait);
        if let Some(lock) = self.lock.as_ref() {
            lock.entry.resource().end_wait(queued.counted);
        }
    }
}

impl<G: FromHeld> Future for Acquire<G> {
    type Output = G;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<G> {
        let this = self.get_mut();
        let Some(mut lock) = this.lock.as_ref() else {
            // Waiting for the backend's lock, or done.
            return this.poll_remote(cx).map(G::from_outcome);
        };
        // Read before the lock's atomics, so that it stays in a register.
        let extras = lock.entry.resource().extras();
        if G::CHECKS_ORDER && extras && matches!(this.wait, WaitState::Start) {
            if let Some(ready) = this.start_checked(cx) {
                return ready.map(G::from_outcome);
            }
            let Some(again) = this.lock.as_ref() else {
                unreachable!("kept when not acquired");
            };
            lock = again;
        }
        match lock
            .entry
            .raw()
            .poll_acquire(this.access, &mut this.wait, cx)
        {
            Poll::Pending => {
                if this.waiting.is_none() {
                    if let Some(error) = lock.self_deadlock(this.access, this.location) {
                        // Dropping the future (unwinding does) leaves the
                        // queue.
                        panic!("{error}");
                    }
                    this.start_waiting();
                }
                Poll::Pending
            }
            Poll::Ready(contention) => {
                this.stop_waiting();
                let Some(lock) = this.lock.take() else {
                    unreachable!("checked above");
                };
                if extras {
                    return this
                        .acquired_extras(lock, contention, cx, None)
                        .map(G::from_outcome);
                }
                let held =
                    lock.acquired(this.access, contention, Caller::api(this.location), false);
                Poll::Ready(G::from_held(held))
            }
        }
    }
}

impl<G> Acquire<G> {
    /// The first poll of an acquisition that checks the lock order:
    /// checks it, counting the lock as held in the same step, and takes
    /// the lock if it is free (the hold, then); otherwise forgets the hold
    /// again and leaves the acquisition to wait (`None`).
    #[cold]
    #[inline(never)]
    fn start_checked(&mut self, cx: &mut Context<'_>) -> Option<Poll<Result<Held, Error>>> {
        let lock = self.lock.as_ref()?;
        let order = match lock.check_order_holding(self.access, self.location) {
            Ok(order) => order,
            // The output cannot carry it. Nothing is queued yet.
            Err(error) => panic!("{error}"),
        };
        if !lock.entry.raw().try_acquire(self.access) {
            lock.forget_order(order);
            return None;
        }
        self.wait = WaitState::Acquired;
        let lock = self.lock.take()?;
        Some(self.acquired_extras(lock, Contention::Uncontended, cx, order))
    }

    /// The hold of an acquisition that got the in-process lock of a
    /// resource with extras ([`ResourceInfo::extras`]): watched, and, if
    /// the resource is bound to a backend (and this acquisition takes its
    /// lock), the backend's lock next: adopted from a previous holder of
    /// this process, or asked for.
    #[cold]
    #[inline(never)]
    fn acquired_extras(
        &mut self,
        lock: Lock,
        contention: Contention,
        cx: &mut Context<'_>,
        order: Option<OrderHold>,
    ) -> Poll<Result<Held, Error>> {
        let mut held = lock.acquired_with(
            self.access,
            contention,
            Caller::api(self.location),
            true,
            order,
        );
        let failures = match self.backend_wait {
            BackendWait::Skip => return Poll::Ready(Ok(held)),
            BackendWait::Retry => Failures::Retry,
            BackendWait::Report => Failures::Report,
        };
        let Some((backend, not_before)) = held.backend_to_ask() else {
            return Poll::Ready(Ok(held));
        };
        *self.remote = Some(Box::new(RemoteWait {
            wait: Box::pin(backend::acquire(
                backend,
                held.lock.entry.target(),
                self.access,
                not_before,
                failures,
            )),
            held,
        }));
        self.poll_remote(cx)
    }

    /// Polls the wait for the backend's lock; an error only where the
    /// acquisition reports them ([`BackendWait::Report`]).
    #[cold]
    fn poll_remote(&mut self, cx: &mut Context<'_>) -> Poll<Result<Held, Error>> {
        let Some(remote) = self.remote.as_mut() else {
            panic!("`Acquire` polled after completion");
        };
        match remote.wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(granted) => {
                let Some(remote) = self.remote.take() else {
                    unreachable!("checked above");
                };
                let RemoteWait { mut held, .. } = *remote;
                Poll::Ready(granted.map(|lease| {
                    held.attach(lease);
                    held
                }))
            }
        }
    }
}

impl<G> Drop for Acquire<G> {
    fn drop(&mut self) {
        self.stop_waiting();
        if let Some(lock) = &self.lock {
            lock.entry.raw().cancel(self.access, &mut self.wait);
        } else if self.remote.is_some() {
            // Only once the lock was taken, into the remote wait.
            self.drop_remote();
        }
    }
}

impl<G> Acquire<G> {
    /// Gives up the wait for the backend's lock, releasing the in-process
    /// one.
    #[cold]
    #[inline(never)]
    fn drop_remote(&mut self) {
        drop(self.remote.take());
    }
}

macro_rules! guard {
    ($name:ident, $mode:literal) => {
        #[doc = concat!("Proof of ", $mode, " access; the lock is released when it is dropped.")]
        ///
        /// Owned, `'static` and `Send`: it can be stored, returned and moved
        /// to another task or thread. It is released on drop, including when
        /// the holder returns early or unwinds from a panic.
        #[must_use = "if unused the lock is released at once"]
        #[clippy::has_significant_drop]
        pub struct $name {
            held: Held,
        }

        impl $name {
            /// The lock this guard holds.
            pub fn lock(&self) -> &Lock {
                &self.held.lock
            }

            /// Releases the lock now; the same as dropping the guard.
            pub fn unlock(self) {
                drop(self);
            }

            /// The backend's fencing token for this grant: greater than
            /// that of every earlier grant of the lock, in any process.
            /// Pass it with each write to the store the lock protects, and
            /// have the store refuse a token lower than one it has seen.
            /// `None` when the resource is not bound to a backend (within
            /// one process, exclusion needs no fence).
            pub fn fence(&self) -> Option<u64> {
                self.held.fence()
            }

            /// Whether the lock is held in a backend too.
            #[inline]
            pub(crate) fn has_lease(&self) -> bool {
                self.held.has_lease()
            }

            /// Whether the lock is still held. Always true in-process; for
            /// a resource bound to a backend, false once the backend lost
            /// the grant (for the file backend: its lock file was removed
            /// from outside), so that another holder may have it.
            pub fn is_valid(&self) -> bool {
                self.held.is_valid()
            }

            /// `Ok` while the lock is held, [`Error::LeaseLost`] once the
            /// backend lost it; for a `?` before each write.
            ///
            /// # Errors
            ///
            /// [`Error::LeaseLost`], as described in [`is_valid`](Self::is_valid).
            pub fn check(&self) -> Result<(), Error> {
                self.held.check_lease()
            }
        }

        impl FromHeld for $name {
            fn from_held(held: Held) -> Self {
                $name { held }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("resource", &self.held.lock.resource())
                    .field("key", &self.held.lock.key())
                    .finish()
            }
        }
    };
}

guard!(ReadGuard, "shared (read)");
guard!(WriteGuard, "exclusive (write)");

//! [`Lock`]: a handle to one lock (a resource's own lock, or one key of a
//! keyed resource), its acquisition futures and its guards.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::events;
use crate::key::Key;
use crate::live::{OperationKind, Role};
use crate::raw::{Access, Contention, RawRwLock, TimedOut, WaitState};
use crate::resource::{ResourceInfo, Waiting};
use crate::stats::Event;
use crate::timer;

/// What a [`Lock`] points at: the lock itself, the resource it belongs to,
/// and its key. A keyed entry stores its key inline (`LockSite<K>`); a
/// [`Lock`] sees any site as `LockSite<dyn SiteKey>`, so reaching the lock
/// and the resource is a field access, and only describing the key (on slow
/// paths: reports and errors) is a dynamic call.
pub(crate) struct LockSite<K: ?Sized> {
    pub(crate) raw: RawRwLock,
    pub(crate) resource: Arc<ResourceInfo>,
    pub(crate) key: K,
}

impl<K: ?Sized + SiteKey> LockSite<K> {
    #[inline]
    pub(crate) fn raw(&self) -> &RawRwLock {
        &self.raw
    }

    #[inline]
    pub(crate) fn resource(&self) -> &ResourceInfo {
        &self.resource
    }

    pub(crate) fn key_debug(&self) -> Option<String> {
        self.key.describe()
    }
}

/// The key of a lock site, seen without its type.
pub(crate) trait SiteKey: Send + Sync + 'static {
    /// The key in its `Debug` form; `None` for a resource's own lock.
    fn describe(&self) -> Option<String>;
}

impl<K: Key> SiteKey for K {
    fn describe(&self) -> Option<String> {
        Some(format!("{self:?}"))
    }
}

/// The "key" of a resource's own lock, which has none.
pub(crate) struct Unkeyed;

impl SiteKey for Unkeyed {
    fn describe(&self) -> Option<String> {
        None
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
    site: Arc<LockSite<dyn SiteKey>>,
}

impl Clone for Lock {
    fn clone(&self) -> Self {
        Lock {
            site: Arc::clone(&self.site),
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("resource", &self.resource())
            .field("key", &self.site.key_debug())
            .field("state", self.site.raw())
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
                .try_acquire($access, Location::caller())
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
        /// other. Called from inside an async runtime it blocks that worker
        /// thread; prefer the async form there.
        ///
        /// # Cancellation
        ///
        /// A blocking wait cannot be cancelled; use the `_blocking_timeout`
        /// form to bound it.
        #[track_caller]
        pub fn $blocking(&self) -> $guard {
            let location = Location::caller();
            let contention = self.wait_untimed($access, location);
            // Cloned once held: waiting threads then never touch the
            // handle's reference count, which the holder updates.
            $guard::from_held(self.clone().acquired($access, contention, location))
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
                .acquire_blocking_timeout($access, timeout, Location::caller())
                .map($guard::from_held)
        }
    };
}

impl Lock {
    pub(crate) fn from_site(site: Arc<LockSite<dyn SiteKey>>) -> Self {
        Lock { site }
    }

    /// The name of the resource this lock belongs to.
    pub fn resource(&self) -> &str {
        self.site.resource().name()
    }

    /// The key, in its `Debug` form, for a keyed lock.
    pub fn key(&self) -> Option<String> {
        self.site.key_debug()
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
        self.site.raw().is_locked()
    }

    /// Whether a writer holds the lock right now.
    pub fn is_write_locked(&self) -> bool {
        self.site.raw().is_write_locked()
    }

    /// How many readers hold the lock right now.
    pub fn readers(&self) -> usize {
        self.site.raw().readers()
    }

    /// How many callers are queued for the lock right now.
    pub fn waiters(&self) -> usize {
        self.site.raw().waiters()
    }

    /// Counts a body that returned an error while holding this lock.
    pub(crate) fn record_failed_body(&self) {
        self.site.resource().record(Event::FailedWhileHeld);
    }

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
            long_wait: None,
            _guard: PhantomData,
        }
    }

    /// Blocks until the lock is held, consuming this handle into the hold.
    #[inline]
    pub(crate) fn acquire_blocking(
        self,
        access: Access,
        location: &'static Location<'static>,
    ) -> Held {
        let contention = self.wait_untimed(access, location);
        self.acquired(access, contention, location)
    }

    /// Blocks for the lock without a deadline.
    #[inline]
    fn wait_untimed(&self, access: Access, location: &'static Location<'static>) -> Contention {
        match self.wait_blocking(access, None, location) {
            Ok(contention) => contention,
            Err(_) => unreachable!("an acquisition without deadline cannot time out"),
        }
    }

    /// Blocks for the lock; listed as a waiter in the live view, if kept,
    /// while it waits.
    #[inline]
    fn wait_blocking(
        &self,
        access: Access,
        deadline: Option<Instant>,
        location: &'static Location<'static>,
    ) -> Result<Contention, TimedOut> {
        if self.site.raw().try_acquire(access) {
            return Ok(Contention::Uncontended);
        }
        self.wait_queued(access, deadline, location)
    }

    #[inline(never)]
    fn wait_queued(
        &self,
        access: Access,
        deadline: Option<Instant>,
        location: &'static Location<'static>,
    ) -> Result<Contention, TimedOut> {
        let resource = self.site.resource();
        let waiting = resource.start_wait(|| self.site.key_debug(), access, location);
        let result = self
            .site
            .raw()
            .acquire_blocking(access, deadline, || self.watch_long_wait(access, location));
        resource.end_wait(waiting);
        result
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
        let threshold = self.site.resource().settings().slow_wait;
        let deadline = Instant::now().checked_add(threshold)?;
        let site = Arc::clone(&self.site);
        let dispatch = events::current_dispatch();
        Some(timer::call_at(deadline, move || {
            let resource = site.resource();
            resource.record(Event::LongWait);
            events::still_waiting(
                &dispatch,
                resource.name(),
                site.key_debug(),
                access,
                threshold,
                location,
            );
        }))
    }

    pub(crate) fn try_acquire(
        self,
        access: Access,
        location: &'static Location<'static>,
    ) -> Result<Held, Error> {
        if self.site.raw().try_acquire(access) {
            Ok(self.acquired(access, Contention::Uncontended, location))
        } else {
            self.site.resource().record(Event::Busy);
            if let Some(live) = self.site.resource().live() {
                live.log(
                    OperationKind::Busy,
                    self.site.key_debug(),
                    access,
                    location,
                    None,
                );
            }
            Err(Error::Busy {
                resource: self.site.resource().name().to_owned(),
                key: self.site.key_debug(),
                access,
            })
        }
    }

    pub(crate) async fn acquire_timeout(
        self,
        access: Access,
        timeout: Duration,
        location: &'static Location<'static>,
    ) -> Result<Held, Error> {
        if self.site.raw().try_acquire(access) {
            return Ok(self.acquired(access, Contention::Uncontended, location));
        }
        let started = Instant::now();
        let resource = self.site.resource().name().to_owned();
        let key = self.site.key_debug();
        let site = Arc::clone(&self.site);
        match timer::timeout(timeout, self.acquire::<Held>(access, location)).await {
            Some(held) => Ok(held),
            None => {
                site.resource().record(Event::TimedOut);
                let waited = started.elapsed();
                if let Some(live) = site.resource().live() {
                    live.log(
                        OperationKind::TimedOut,
                        key.clone(),
                        access,
                        location,
                        Some(waited),
                    );
                }
                let error = Error::Timeout {
                    resource,
                    key,
                    access,
                    waited,
                };
                events::timed_out(&error);
                Err(error)
            }
        }
    }

    pub(crate) fn acquire_blocking_timeout(
        self,
        access: Access,
        timeout: Duration,
        location: &'static Location<'static>,
    ) -> Result<Held, Error> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        match self.wait_blocking(access, deadline, location) {
            Ok(contention) => Ok(self.acquired(access, contention, location)),
            Err(_) => {
                self.site.resource().record(Event::TimedOut);
                let waited = started.elapsed();
                if let Some(live) = self.site.resource().live() {
                    live.log(
                        OperationKind::TimedOut,
                        self.site.key_debug(),
                        access,
                        location,
                        Some(waited),
                    );
                }
                let error = Error::Timeout {
                    resource: self.site.resource().name().to_owned(),
                    key: self.site.key_debug(),
                    access,
                    waited,
                };
                events::timed_out(&error);
                Err(error)
            }
        }
    }

    /// The one place every successful acquisition passes through.
    #[inline(always)]
    fn acquired(
        self,
        access: Access,
        contention: Contention,
        location: &'static Location<'static>,
    ) -> Held {
        let resource = self.site.resource();
        let waited = match contention {
            Contention::Uncontended => None,
            Contention::Contended(waited) => {
                self.report_wait(access, waited);
                Some(waited)
            }
        };
        resource.record(Event::Acquired { access, waited });
        let watch = if resource.settings().watches_holds() {
            Some(Box::new(self.watch_hold(access, location, waited)))
        } else {
            None
        };
        Held {
            lock: self,
            access,
            watch,
        }
    }

    /// Reports an acquisition that had to queue.
    #[cold]
    fn report_wait(&self, access: Access, waited: Duration) {
        let resource = self.site.resource();
        events::contended(
            resource.name(),
            || self.site.key_debug(),
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
    ) -> HoldWatch {
        let resource = self.site.resource();
        let since = resource.settings().long_hold.map(|_| Instant::now());
        let live = resource.live().map(|live| {
            live.log(
                OperationKind::Acquired,
                self.site.key_debug(),
                access,
                location,
                waited,
            );
            live.enter(Role::Holding, self.site.key_debug(), access, location)
        });
        HoldWatch {
            since,
            live,
            location,
        }
    }
}

/// What a hold records beyond the counters: its start, for hold times,
/// and its entry in the live view. Boxed, so that a guard stays small when
/// neither is configured.
struct HoldWatch {
    since: Option<Instant>,
    live: Option<u64>,
    /// Where the lock was taken, to name the holder.
    location: &'static Location<'static>,
}

/// A held lock; releases on drop. The one place every release passes
/// through.
pub(crate) struct Held {
    lock: Lock,
    access: Access,
    /// Hold timing and the live view entry, when configured.
    watch: Option<Box<HoldWatch>>,
}

impl Held {
    #[cold]
    fn record_panic(&self) {
        self.lock.site.resource().record(Event::PanickedWhileHeld);
    }

    /// Ends the hold's timing and live view entry.
    #[cold]
    fn unwatch(&self, watch: &HoldWatch) {
        let resource = self.lock.site.resource();
        if let (Some(id), Some(live)) = (watch.live, resource.live()) {
            live.leave(id);
        }
        if let (Some(since), Some(threshold)) = (watch.since, resource.settings().long_hold) {
            let held = since.elapsed();
            resource.record(Event::Held(held));
            if held >= threshold {
                events::long_hold(
                    resource.name(),
                    self.lock.site.key_debug(),
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
        self.lock.site.raw().release(self.access);
        if let Some(watch) = self.watch.take() {
            self.unwatch(&watch);
        }
        if std::thread::panicking() {
            self.record_panic();
        }
    }
}

/// Turns a [`Held`] lock into the guard type an acquisition returns.
pub(crate) trait FromHeld {
    fn from_held(held: Held) -> Self;
}

impl FromHeld for Held {
    fn from_held(held: Held) -> Self {
        held
    }
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
    waiting: Option<Waiting>,
    /// Reports the wait if it outlasts the slow-wait threshold.
    long_wait: Option<timer::Alarm>,
    _guard: PhantomData<fn() -> G>,
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
            self.waiting = Some(lock.site.resource().start_wait(
                || lock.site.key_debug(),
                self.access,
                self.location,
            ));
            self.long_wait = lock.watch_long_wait(self.access, self.location);
        }
    }

    /// Stops counting this acquisition as queued.
    fn stop_waiting(&mut self) {
        self.long_wait = None;
        if let (Some(waiting), Some(lock)) = (self.waiting.take(), self.lock.as_ref()) {
            lock.site.resource().end_wait(waiting);
        }
    }
}

impl<G: FromHeld> Future for Acquire<G> {
    type Output = G;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<G> {
        let this = self.get_mut();
        let Some(lock) = this.lock.as_ref() else {
            panic!("`Acquire` polled after completion");
        };
        match lock
            .site
            .raw()
            .poll_acquire(this.access, &mut this.wait, cx)
        {
            Poll::Pending => {
                if this.waiting.is_none() {
                    this.start_waiting();
                }
                Poll::Pending
            }
            Poll::Ready(contention) => {
                this.stop_waiting();
                let Some(lock) = this.lock.take() else {
                    unreachable!("checked above");
                };
                Poll::Ready(G::from_held(lock.acquired(
                    this.access,
                    contention,
                    this.location,
                )))
            }
        }
    }
}

impl<G> Drop for Acquire<G> {
    fn drop(&mut self) {
        self.stop_waiting();
        if let Some(lock) = &self.lock {
            lock.site.raw().cancel(self.access, &mut self.wait);
        }
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

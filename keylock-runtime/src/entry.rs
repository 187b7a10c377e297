//! What one lock entry is: the primitive, the resource it belongs to, and
//! its key.
//!
//! Every lock of a resource, its own and one per key, is a [`LockEntry`]
//! that points at the resource's shared [`ResourceInfo`] (name, settings,
//! counters, live view), never back at the map that holds it. Layers above
//! reach the primitive and the resource through an entry by a field access;
//! only describing the key (on slow paths: reports and errors) is a dynamic
//! call.

use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::access::Access;
use crate::backend::{Backend, Bound, Target, Tier};
use crate::holder;
use crate::key::Key;
use crate::lock_order::OrderClass;
use crate::observe::{metrics_out, Counters, LiveTable, LockEvent, Role};
use crate::raw::{Fairness, RawRwLock};
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// One lock: the primitive, the resource it belongs to, and its key. A
/// keyed entry stores its key inline (`LockEntry<K>`); a
/// [`Lock`](crate::Lock) sees any entry as `LockEntry<dyn EntryKey>`.
pub(crate) struct LockEntry<K: ?Sized> {
    pub(crate) raw: RawRwLock,
    /// Who holds the lock, as recorded by sync annotated functions: a
    /// [`holder::Stamp`] (their thread and call site), or 0. A writer records
    /// itself; of several readers, the last to arrive. Cleared before the
    /// lock is released, so it never names a past holder.
    holder: AtomicU64,
    pub(crate) resource: Arc<ResourceInfo>,
    pub(crate) key: K,
}

impl<K> LockEntry<K> {
    /// A new, free entry for `key` of `resource`.
    pub(crate) fn new(resource: Arc<ResourceInfo>, key: K) -> Self {
        LockEntry {
            raw: RawRwLock::new(resource.settings.fairness),
            holder: AtomicU64::new(0),
            resource,
            key,
        }
    }
}

impl<K: ?Sized + EntryKey> LockEntry<K> {
    #[inline]
    pub(crate) fn raw(&self) -> &RawRwLock {
        &self.raw
    }

    #[inline]
    pub(crate) fn resource(&self) -> &ResourceInfo {
        &self.resource
    }

    /// The key in its `Debug` form; `None` for a resource's own lock.
    pub(crate) fn key_debug(&self) -> Option<String> {
        self.key.describe()
    }

    /// Records the current thread, which just acquired at `site`, as the
    /// holder.
    #[inline]
    pub(crate) fn record_holder(&self, site: &'static Location<'static>) {
        self.holder.store(holder::stamp(site), Ordering::Relaxed);
    }

    /// Forgets the current thread as the holder; it is about to release.
    /// Runs before the release, so a later acquirer never finds a past
    /// holder recorded.
    #[inline]
    pub(crate) fn forget_holder(&self, access: Access) {
        match access {
            Access::Write => self.holder.store(0, Ordering::Relaxed),
            // Another reader may have recorded itself since: leave it.
            Access::Read => self.forget_reader(),
        }
    }

    #[cold]
    fn forget_reader(&self) {
        let recorded = self.holder.load(Ordering::Relaxed);
        if holder::is_this_thread(recorded) {
            let _ = self
                .holder
                .compare_exchange(recorded, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// What a backend locks for this entry.
    #[cold]
    pub(crate) fn target(&self) -> Target {
        Target::from_parts(Arc::clone(&self.resource.name), self.key_debug())
    }

    /// When the current thread is the recorded holder: `Some`, with where
    /// it took the lock if known. Such a caller would wait for itself.
    #[cold]
    pub(crate) fn held_by_caller(&self) -> Option<Option<&'static Location<'static>>> {
        let recorded = self.holder.load(Ordering::Relaxed);
        holder::is_this_thread(recorded).then(|| holder::site_of(recorded))
    }
}

/// The key of a lock entry, seen without its type.
pub(crate) trait EntryKey: Send + Sync + 'static {
    /// The key in its `Debug` form; `None` for a resource's own lock.
    fn describe(&self) -> Option<String>;
}

impl<K: Key> EntryKey for K {
    fn describe(&self) -> Option<String> {
        Some(format!("{self:?}"))
    }
}

/// The "key" of a resource's own lock, which has none.
pub(crate) struct Unkeyed;

impl EntryKey for Unkeyed {
    fn describe(&self) -> Option<String> {
        None
    }
}

/// What every resource of a registry is built with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) fairness: Fairness,
    pub(crate) statistics: bool,
    /// Warn about waits at least this long.
    pub(crate) slow_wait: Duration,
    /// Time holds, and warn about holds at least this long.
    pub(crate) long_hold: Option<Duration>,
    /// Keep the live view of holders and waiters.
    pub(crate) track_holders: bool,
    /// Record the holders of annotated functions, so that a task or thread
    /// asking for a lock it holds gets an error instead of waiting forever.
    pub(crate) self_deadlock_check: bool,
    /// Check lock orders (the resource then has an [`OrderClass`]).
    pub(crate) lock_order: bool,
}

impl Settings {
    /// Whether a hold is timed, listed or counted as held by the lock-order
    /// check, beyond the counters.
    pub(crate) fn watches_holds(&self) -> bool {
        self.long_hold.is_some() || self.track_holders || self.lock_order
    }
}

/// What every lock of a resource shares: its name, settings and counters.
pub(crate) struct ResourceInfo {
    name: Arc<str>,
    settings: Settings,
    counters: Counters,
    live: Option<LiveTable>,
    /// The resource's class in the lock-order graph, when orders are
    /// checked.
    order: Option<OrderClass>,
    /// Callers queued on any lock of the resource, and the most at once.
    /// Touched only by acquisitions that have to queue.
    waiting: AtomicUsize,
    peak_waiting: AtomicUsize,
    /// Where the resource's locks are shared beyond this process, if bound.
    tier: Option<Tier>,
    /// Whether its acquisitions do more than take the in-process lock and
    /// count: check the lock order, watch holds, or take a backend's lock.
    /// Computed once, so that the uncontended path decides all of these
    /// with one branch on one byte.
    extras: bool,
}

/// A queued acquisition, counted (and listed in the live view) until it
/// ends.
pub(crate) struct QueuedWait {
    live: Option<u64>,
}

impl ResourceInfo {
    pub(crate) fn new(
        name: Arc<str>,
        settings: Settings,
        order: Option<OrderClass>,
        backend: Option<Bound>,
    ) -> Self {
        ResourceInfo {
            extras: settings.watches_holds() || order.is_some() || backend.is_some(),
            tier: backend.map(|bound| Tier::new(bound.0)),
            name,
            settings,
            counters: Counters::default(),
            live: settings.track_holders.then(LiveTable::default),
            order,
            waiting: AtomicUsize::new(0),
            peak_waiting: AtomicUsize::new(0),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The backend the resource is bound to, if any.
    #[inline]
    pub(crate) fn backend(&self) -> Option<&Arc<dyn Backend>> {
        self.tier.as_ref().map(Tier::backend)
    }

    /// The backend tier, if the resource is bound to a backend.
    #[inline]
    pub(crate) fn tier(&self) -> Option<&Tier> {
        self.tier.as_ref()
    }

    /// Whether acquisitions of the resource's locks check the lock order,
    /// watch their holds or take a backend's lock (see [`order`],
    /// [`Settings::watches_holds`], [`backend`]): when not, none of those
    /// needs looking at.
    ///
    /// [`order`]: Self::order
    /// [`backend`]: Self::backend
    #[inline]
    pub(crate) fn extras(&self) -> bool {
        self.extras
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The most callers queued at once so far.
    pub(crate) fn peak_waiting(&self) -> usize {
        self.peak_waiting.load(Ordering::Relaxed)
    }

    /// Counts a caller that starts to queue (and lists it in the live view).
    pub(crate) fn start_wait(
        &self,
        lock: u64,
        key: impl FnOnce() -> Option<String>,
        access: Access,
        location: &'static Location<'static>,
    ) -> QueuedWait {
        // The key's `Debug` first: should it panic, nothing is counted yet.
        let live = self
            .live
            .as_ref()
            .map(|live| live.enter(Role::Waiting, lock, key(), access, location));
        let now = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_waiting.fetch_max(now, Ordering::Relaxed);
        QueuedWait { live }
    }

    /// The queued caller got the lock or gave up.
    pub(crate) fn end_wait(&self, waiting: QueuedWait) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if let (Some(id), Some(live)) = (waiting.live, &self.live) {
            live.leave(id);
        }
    }

    /// The resource's lock-order class, when orders are checked.
    #[inline]
    pub(crate) fn order(&self) -> Option<&OrderClass> {
        self.order.as_ref()
    }

    /// The live view, when the registry tracks holders.
    pub(crate) fn live(&self) -> Option<&LiveTable> {
        self.live.as_ref()
    }

    /// The statistics hook: every acquisition outcome of this resource, its
    /// own lock and every key, is recorded here.
    #[inline]
    pub(crate) fn record(&self, event: LockEvent) {
        if self.settings.statistics {
            self.counters.record(event);
            metrics_out::event(&self.name, event);
        }
    }
}

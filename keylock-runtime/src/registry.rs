//! [`Registry`]: where named resources live, globally or per tenant.

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
// The registry counter is a process-wide static, which loom cannot model;
// it only numbers registries.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::access::Access;
use crate::backend::{Backend, Bound};
use crate::clock::{Clock, ManualClock};
use crate::dedup::{Dedup, DedupOptions, ErasedDedup};
use crate::entry::Settings;
use crate::key::{Key, LockKey};
use crate::keyed::Keyed;
use crate::lock::Lock;
use crate::lock_order::{LockOrder, OrderGraph};
use crate::lock_set::{AcquireSet, LockSet, ReadSetGuard, WriteSetGuard};
use crate::observe::{DedupStats, Stats};
use crate::raw::Fairness;
use crate::resource::{Resource, ResourceCore};
use crate::sync::{self, Mutex};

/// The default [fairness bound](RegistryBuilder::fairness_bound).
pub const DEFAULT_FAIRNESS_BOUND: Duration = Duration::from_micros(500);

/// A set of named resources and their locks.
///
/// Annotated functions use [`Registry::global`] unless given another one
/// with `registry = ...`. Build separate registries to isolate tests or
/// tenants: the same name in two registries is two unrelated locks.
///
/// Cheap to clone; clones share the same resources.
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = keylock_runtime::Registry::builder()
///     .fairness_bound(Duration::ZERO) // strict FIFO hand-off
///     .build();
/// let sessions = registry.keyed::<u64>("sessions");
/// let guard = sessions.write(&7).await;
/// let err = sessions
///     .key(&7)
///     .write_timeout(Duration::from_millis(10))
///     .await
///     .unwrap_err();
/// assert!(err.is_timeout());
/// drop(guard);
/// # }
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

/// The default [slow wait warning](RegistryBuilder::slow_wait_warning).
pub const DEFAULT_SLOW_WAIT: Duration = Duration::from_secs(1);

struct Inner {
    id: u64,
    settings: Settings,
    fairness_bound: Duration,
    resources: Mutex<HashMap<Arc<str>, Arc<ResourceCore>>>,
    clock: Clock,
    /// Dedup scopes by name and key type.
    dedup: Mutex<HashMap<Arc<str>, NamedScope>>,
    /// Deadlocks the watchdog reported, if it runs.
    deadlocks_reported: AtomicU64,
    /// The resources bound to a backend, by name.
    backends: HashMap<Arc<str>, Bound>,
    /// The lock-order graph, when orders are checked.
    order: Option<Arc<OrderGraph>>,
}

/// A dedup scope under its name, with the one key type it was created for.
struct NamedScope {
    key_type_name: &'static str,
    first: &'static Location<'static>,
    scope: Box<dyn ErasedDedup>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The process-wide registry, built on first use: by
/// [`Registry::global`] with default settings, or by
/// [`RegistryBuilder::build_global`] with the application's.
static GLOBAL: OnceLock<Registry> = OnceLock::new();

/// [`RegistryBuilder::build_global`] came too late: the global registry
/// already existed, built with the settings it had then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GlobalInUse;

impl fmt::Display for GlobalInUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the global keylock registry already exists, so it cannot be configured: call \
             `RegistryBuilder::build_global` at start-up, before any annotated function without \
             `registry = ...` runs and before any call to `Registry::global()`",
        )
    }
}

impl std::error::Error for GlobalInUse {}

impl Registry {
    /// The process-wide registry. Annotations use it unless told
    /// otherwise.
    ///
    /// Built on first use, with the settings given to
    /// [`RegistryBuilder::build_global`] if that ran first, else with
    /// default settings.
    pub fn global() -> &'static Registry {
        GLOBAL.get_or_init(Registry::new)
    }

    /// A new, empty registry with default settings.
    pub fn new() -> Self {
        Registry::builder().build()
    }

    /// Configures a new registry.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder {
            fairness_bound: DEFAULT_FAIRNESS_BOUND,
            statistics: true,
            slow_wait: DEFAULT_SLOW_WAIT,
            long_hold: None,
            track_holders: false,
            self_deadlock_check: true,
            lock_order: LockOrder::Off,
            watchdog: None,
            clock: Clock::System,
            backends: HashMap::new(),
        }
    }

    /// Identifies this registry (and its clones) within the process.
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The fairness bound this registry was built with.
    pub fn fairness_bound(&self) -> Duration {
        self.inner.fairness_bound
    }

    /// The resource called `name`, created on first use.
    ///
    /// **Locking behaviour:** takes the registry's table lock briefly; keep
    /// the returned handle (or a [`Keyed`]) for hot paths.
    pub fn resource(&self, name: &str) -> Resource {
        let mut resources = sync::lock(&self.inner.resources);
        if let Some(core) = resources.get(name) {
            return Resource::from_core(Arc::clone(core));
        }
        let name: Arc<str> = Arc::from(name);
        let backend = self.inner.backends.get(&name).cloned();
        let order = self.inner.order.as_ref().map(|graph| graph.class(&name));
        let core = Arc::new(ResourceCore::new(
            Arc::clone(&name),
            self.inner.settings,
            order,
            backend,
        ));
        resources.insert(name, Arc::clone(&core));
        Resource::from_core(core)
    }

    /// The keyed locks of resource `name` for keys of type `K`.
    ///
    /// # Panics
    ///
    /// If the resource is locked whole, or with keys of another type: see
    /// [`Resource`].
    #[track_caller]
    pub fn keyed<K: Key>(&self, name: &str) -> Keyed<K> {
        self.resource(name).keyed()
    }

    /// A handle to the own (unkeyed) lock of resource `name`.
    ///
    /// # Panics
    ///
    /// If the resource is keyed: see [`Resource`].
    #[track_caller]
    pub fn lock(&self, name: &str) -> Lock {
        self.resource(name).lock()
    }

    /// A handle to the own locks of several resources, taken together in
    /// the order of their names and released together: callers locking
    /// overlapping sets of resources, in whatever order they list them,
    /// never deadlock. A name given twice is locked once. See [`LockSet`].
    ///
    /// # Panics
    ///
    /// If one of the resources is keyed: see [`Resource`].
    #[track_caller]
    pub fn lock_set(&self, names: &[&str]) -> LockSet {
        let here = Location::caller();
        LockSet::in_order(names.to_vec(), |name| self.resource(name).lock_at(here))
    }

    /// Waits for shared access to every resource of `names`, taking them in
    /// the order of their names; see [`lock_set`](Self::lock_set).
    ///
    /// # Panics
    ///
    /// If one of the resources is keyed: see [`Resource`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes releases the resources it
    /// had taken and leaves no waiter behind.
    #[track_caller]
    pub fn read_many(&self, names: &[&str]) -> AcquireSet<ReadSetGuard> {
        self.lock_set(names)
            .acquire(Access::Read, Location::caller())
    }

    /// Waits for exclusive access to every resource of `names`, taking
    /// them in the order of their names; see [`lock_set`](Self::lock_set).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = keylock_runtime::Registry::new();
    /// let both = registry.write_many(&["ledger", "audit"]).await;
    /// assert!(registry.lock("audit").is_write_locked());
    /// assert!(registry.lock("ledger").is_write_locked());
    /// drop(both);
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// If one of the resources is keyed: see [`Resource`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes releases the resources it
    /// had taken and leaves no waiter behind.
    #[track_caller]
    pub fn write_many(&self, names: &[&str]) -> AcquireSet<WriteSetGuard> {
        self.lock_set(names)
            .acquire(Access::Write, Location::caller())
    }

    /// A handle to the lock of `key` in resource `name`.
    ///
    /// # Panics
    ///
    /// If the resource is locked whole, or with keys of another type: see
    /// [`Resource`].
    #[track_caller]
    pub fn key_lock<Q>(&self, name: &str, key: &Q) -> Lock
    where
        Q: ?Sized + LockKey,
    {
        self.resource(name).key(key)
    }

    /// The dedup scope called `name` for keys of type `K`, created with
    /// default [`DedupOptions`] on first use.
    ///
    /// # Panics
    ///
    /// If the scope was created for keys of another type: one name is one
    /// memory of handled keys, never two unrelated ones.
    #[track_caller]
    pub fn dedup<K: Key>(&self, name: &str) -> Dedup<K> {
        self.dedup_at(name, DedupOptions::new(), Location::caller())
    }

    /// The dedup scope called `name` for keys of type `K`, created with
    /// `options` on first use. A scope keeps the options it was created
    /// with; later calls get the existing scope.
    ///
    /// # Panics
    ///
    /// If the scope was created for keys of another type, as
    /// [`dedup`](Self::dedup).
    #[track_caller]
    pub fn dedup_with<K: Key>(&self, name: &str, options: DedupOptions) -> Dedup<K> {
        self.dedup_at(name, options, Location::caller())
    }

    /// [`dedup_with`](Self::dedup_with), for a caller at `here`.
    pub(crate) fn dedup_at<K: Key>(
        &self,
        name: &str,
        options: DedupOptions,
        here: &'static Location<'static>,
    ) -> Dedup<K> {
        let mut scopes = sync::lock(&self.inner.dedup);
        if let Some(named) = scopes.get(name) {
            if let Some(dedup) = named.scope.as_any().downcast_ref::<Dedup<K>>() {
                return dedup.clone();
            }
            let message = format!(
                "keylock: dedup scope \"{name}\" remembers keys of type {first_type} (first at \
                 {first}) and is asked here for keys of type {here_type} ({here}); keys of two \
                 types would be two unrelated memories under one name, so a scope has one key \
                 type: convert the key, or use another scope name",
                first_type = named.key_type_name,
                first = named.first,
                here_type = std::any::type_name::<K>(),
            );
            drop(scopes);
            panic!("{message}");
        }
        let name: Arc<str> = Arc::from(name);
        let dedup = Dedup::new(Arc::clone(&name), options, self.inner.clock.clone());
        scopes.insert(
            name,
            NamedScope {
                key_type_name: std::any::type_name::<K>(),
                first: here,
                scope: Box::new(dedup.clone()),
            },
        );
        dedup
    }

    /// All resources created so far, sorted by name.
    pub fn resources(&self) -> Vec<Resource> {
        let resources = sync::lock(&self.inner.resources);
        let mut all: Vec<Resource> = resources
            .values()
            .map(|core| Resource::from_core(Arc::clone(core)))
            .collect();
        drop(resources);
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// The cycles of waits among the current holders and waiters of this
    /// registry's locks: each participant of a cycle waits for a lock that
    /// the next one holds. Changes nothing; empty unless the registry was
    /// built with [`track_holders`](RegistryBuilder::track_holders), whose
    /// live view it reads.
    ///
    /// ```
    /// let registry = keylock_runtime::Registry::builder().track_holders(true).build();
    /// let _a = registry.lock("a").write_blocking();
    /// assert!(registry.deadlocks().is_empty());
    /// ```
    pub fn deadlocks(&self) -> Vec<crate::Deadlock> {
        let resources: Vec<_> = self.resources().iter().map(Resource::stats).collect();
        crate::wait_for::cycles(&resources)
    }

    /// A snapshot of every resource's and dedup scope's figures, sorted by
    /// name.
    pub fn stats(&self) -> Stats {
        let mut dedup: Vec<DedupStats> = sync::lock(&self.inner.dedup)
            .values()
            .map(|named| named.scope.stats())
            .collect();
        dedup.sort_by(|a, b| a.name.cmp(&b.name));
        Stats {
            resources: self.resources().iter().map(Resource::stats).collect(),
            dedup,
            deadlocks_reported: self.inner.deadlocks_reported.load(Ordering::Relaxed),
            lock_order_reports: self.inner.order.as_ref().map_or(0, |graph| graph.reports()),
        }
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("id", &self.inner.id)
            .field("fairness_bound", &self.inner.fairness_bound)
            .finish_non_exhaustive()
    }
}

/// Settings for a new [`Registry`].
#[derive(Debug, Clone)]
#[must_use = "call `.build()` to create the registry"]
pub struct RegistryBuilder {
    fairness_bound: Duration,
    statistics: bool,
    slow_wait: Duration,
    long_hold: Option<Duration>,
    track_holders: bool,
    self_deadlock_check: bool,
    lock_order: LockOrder,
    watchdog: Option<Duration>,
    clock: Clock,
    backends: HashMap<Arc<str>, Bound>,
}

impl RegistryBuilder {
    /// How long the head of a lock's queue may be overtaken by newcomers
    /// before a release hands the lock to it directly. Default: 500 µs.
    ///
    /// While the head has waited less than this, a release frees the lock
    /// and wakes the head to compete for it, so a thread that releases and
    /// re-acquires at once does not pay a thread wake-up each time. Queued
    /// callers never overtake each other. `Duration::ZERO` gives strict
    /// first-come, first-served hand-off.
    pub fn fairness_bound(mut self, bound: Duration) -> Self {
        self.fairness_bound = bound;
        self
    }

    /// Whether to keep statistics (default: on). Off, acquisitions skip the
    /// counters and the wait-time clock reads, and [`Registry::stats`]
    /// reports only who holds and waits right now.
    pub fn statistics(mut self, enabled: bool) -> Self {
        self.statistics = enabled;
        self
    }

    /// Emit a `tracing` warning when an acquisition waited at least this
    /// long (default: 1 s); shorter waits are `debug` events. A wait that
    /// reaches the threshold is also reported while it still waits, once,
    /// naming the waiter's call site, and counted in
    /// [`ResourceStats::long_waits`](crate::ResourceStats::long_waits).
    pub fn slow_wait_warning(mut self, threshold: Duration) -> Self {
        self.slow_wait = threshold;
        self
    }

    /// Time every hold (into the `hold` distribution of the statistics) and
    /// emit a `tracing` warning naming the resource and key when a guard was
    /// held at least this long. Off by default: timing holds reads the clock
    /// twice per acquisition.
    pub fn long_hold_warning(mut self, threshold: Duration) -> Self {
        self.long_hold = Some(threshold);
        self
    }

    /// Keep a live view of every holder and waiter: key, where it was
    /// acquired (the annotated function or the API call), thread, Tokio
    /// task, and for how long; it appears in
    /// [`ResourceStats::live`](crate::ResourceStats::live). Off by default:
    /// it costs a mutex and an allocation per acquisition.
    pub fn track_holders(mut self, enabled: bool) -> Self {
        self.track_holders = enabled;
        self
    }

    /// Whether a task or thread that asks for a lock it already holds gets
    /// an error instead of waiting for itself forever (default: on).
    ///
    /// Annotated functions record which task (inside a Tokio runtime) or
    /// thread holds their lock; an acquisition that would have to wait for
    /// its own caller then fails with
    /// [`Error::WouldDeadlock`](crate::Error::WouldDeadlock) (through the
    /// return type, or a panic where there is none) instead of hanging.
    /// Recording costs two atomic stores per annotated acquisition; off, a
    /// self-deadlock hangs as with any lock.
    pub fn self_deadlock_check(mut self, enabled: bool) -> Self {
        self.self_deadlock_check = enabled;
        self
    }

    /// Whether to check the order in which locks are taken (default:
    /// [`LockOrder::Off`]), as Linux's lockdep does: a tool for debug
    /// builds and CI that finds deadlocks that did not happen yet.
    ///
    /// Each resource is a class of locks (its own lock, or all its keys).
    /// When a task (inside a Tokio runtime; the thread outside one) takes a
    /// lock of class B while it holds one of class A, the order A → B is
    /// recorded for the registry; an acquisition that would close a cycle
    /// of such orders (B → … → A, then A → B) could deadlock against the
    /// callers that recorded them, and is reported before it waits, naming
    /// each order's call sites: [`LockOrder::Warn`] logs a `tracing`
    /// warning (once per pair of resources) and counts it in
    /// [`Stats::lock_order_reports`](crate::Stats::lock_order_reports);
    /// [`LockOrder::Error`] also refuses it with
    /// [`Error::LockOrder`](crate::Error::LockOrder), through the return
    /// type of a timed acquisition (`timeout = ..`, the `_timeout` methods)
    /// and as a panic with that message from the untimed ones, whose
    /// output cannot carry it.
    ///
    /// Two locks of one class taken one inside the other (two keys of one
    /// resource, or one key twice) are reported too, unless they are keys
    /// of one lock set (`keys = [..]`, [`Keyed::key_set`]), which takes them
    /// in canonical order. Reads count as writes (a read waits behind a
    /// queued writer). Non-waiting acquisitions (`try_`, `on_busy =
    /// "skip"`) are not checked, as they cannot wait, but count as held.
    ///
    /// Cost: nothing measurable off; on, each acquisition and release takes
    /// the registry's order mutex (see BENCHMARKS.md for the figures).
    pub fn lock_order(mut self, mode: LockOrder) -> Self {
        self.lock_order = mode;
        self
    }

    /// Starts a watchdog thread that looks for deadlocks every `interval`
    /// (see [`Registry::deadlocks`]) and reports each new one as soon as it
    /// has formed: a `tracing` error naming every wait of the cycle, and
    /// the `deadlocks_reported` figure of the statistics. Turns
    /// [`track_holders`](Self::track_holders) on, whose live view it reads.
    /// The thread ends when the last clone of the registry is dropped (at
    /// its next look). Intervals below a millisecond count as one.
    pub fn deadlock_watchdog(mut self, interval: Duration) -> Self {
        self.track_holders = true;
        self.watchdog = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// Uses a [`ManualClock`] for time-to-live expiry, so tests can move
    /// time forward instead of sleeping.
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// Creates the process-wide registry, [`Registry::global`], with these
    /// settings, so that annotated functions without `registry = ...`
    /// use them. Call it once at start-up.
    ///
    /// ```
    /// use std::time::Duration;
    /// use keylock_runtime::Registry;
    ///
    /// let global = Registry::builder()
    ///     .track_holders(true)
    ///     .long_hold_warning(Duration::from_secs(5))
    ///     .build_global()
    ///     .expect("configured before first use");
    /// assert_eq!(global.id(), Registry::global().id());
    /// // Too late now: the global registry exists.
    /// assert!(Registry::builder().build_global().is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`GlobalInUse`] when the global registry already exists (it was used,
    /// or configured, before); it keeps the settings it was built with.
    pub fn build_global(self) -> Result<&'static Registry, GlobalInUse> {
        let mut built = false;
        let global = GLOBAL.get_or_init(|| {
            built = true;
            self.build()
        });
        if built {
            Ok(global)
        } else {
            Err(GlobalInUse)
        }
    }

    /// Binds the resource `name` to `backend`, so that its locks, its own
    /// and every key's, are shared with every process that binds it to the
    /// same backend (for a [`FileBackend`](crate::FileBackend), the same
    /// directory). Annotated functions and handles do not change. Binding
    /// a name again replaces the earlier binding. Resources not bound stay
    /// in this process and pay nothing for the feature.
    ///
    /// Callers in this process queue on the in-process lock first; only
    /// its holder asks the backend, retrying with backoff (50 µs doubling
    /// up to 2 ms) while another process holds the lock. Timeouts and
    /// `on_busy = "skip"` cover both waits. Each guard then carries the
    /// backend's fencing token ([`WriteGuard::fence`](crate::WriteGuard::fence)).
    ///
    /// When the backend cannot be asked (an I/O error, an unreachable
    /// server), a timed or non-waiting acquisition fails with
    /// [`Error::Backend`](crate::Error::Backend); an acquisition that waits
    /// without a timeout cannot return an error, so it logs a `tracing`
    /// warning and tries again, with backoff from 10 ms up to 1 s.
    ///
    /// See the README's "Across processes" section for an example.
    pub fn backend(mut self, name: &str, backend: impl Backend) -> Self {
        self.backends
            .insert(Arc::from(name), Bound(Arc::new(backend)));
        self
    }

    /// Creates the registry.
    pub fn build(self) -> Registry {
        let registry = Registry {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                settings: Settings {
                    fairness: Fairness::new(self.fairness_bound),
                    statistics: self.statistics,
                    slow_wait: self.slow_wait,
                    long_hold: self.long_hold,
                    track_holders: self.track_holders,
                    self_deadlock_check: self.self_deadlock_check,
                    lock_order: self.lock_order != LockOrder::Off,
                },
                fairness_bound: self.fairness_bound,
                resources: Mutex::new(HashMap::new()),
                clock: self.clock,
                dedup: Mutex::new(HashMap::new()),
                deadlocks_reported: AtomicU64::new(0),
                backends: self.backends,
                order: OrderGraph::new(self.lock_order),
            }),
        };
        if let Some(interval) = self.watchdog {
            watchdog::start(&registry, interval);
        }
        registry
    }
}

/// The deadlock watchdog: a thread per registry that asked for one.
mod watchdog {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Weak};
    use std::time::Duration;

    use super::{Inner, Ordering, Registry};

    /// Starts the thread; it holds the registry weakly, and ends with it.
    pub(super) fn start(registry: &Registry, interval: Duration) {
        let inner: Weak<Inner> = Arc::downgrade(&registry.inner);
        let spawned = std::thread::Builder::new()
            .name("keylock-watchdog".into())
            .spawn(move || watch(&inner, interval));
        if let Err(error) = spawned {
            crate::observe::tracing_out::watchdog_failed(&error);
        }
    }

    fn watch(inner: &Weak<Inner>, interval: Duration) {
        // Cycles already reported, by their members; forgotten once gone,
        // so a cycle that forms again is reported again.
        let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
        loop {
            std::thread::sleep(interval);
            let Some(inner) = inner.upgrade() else {
                return;
            };
            let registry = Registry { inner };
            let mut current = BTreeSet::new();
            for deadlock in registry.deadlocks() {
                let mut members: Vec<String> = deadlock
                    .cycle
                    .iter()
                    .map(|wait| wait.waiter.clone())
                    .collect();
                members.sort();
                if !reported.contains(&members) {
                    registry
                        .inner
                        .deadlocks_reported
                        .fetch_add(1, Ordering::Relaxed);
                    crate::observe::tracing_out::deadlock(&deadlock);
                }
                current.insert(members);
            }
            reported = current;
        }
    }
}

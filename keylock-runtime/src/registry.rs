//! [`Registry`]: where named resources live, globally or per tenant.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::clock::{Clock, ManualClock};
use crate::dedup::{Dedup, DedupOptions};
use crate::key::{Key, LockKey};
use crate::keyed::Keyed;
use crate::lock::Lock;
use crate::raw::Fairness;
use crate::resource::{Resource, ResourceCore};
use crate::stats::{DedupStats, Stats};

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
}

impl Settings {
    /// Whether a hold is timed or listed, beyond the counters.
    pub(crate) fn watches_holds(&self) -> bool {
        self.long_hold.is_some() || self.track_holders
    }
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
    dedup: Mutex<HashMap<(Arc<str>, TypeId), AnyDedup>>,
}

/// A `Dedup<K>` of some key type.
type AnyDedup = Box<dyn crate::dedup::AnyDedup>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Registry {
    /// The process-wide registry, created on first use with default
    /// settings. Annotations use it unless told otherwise.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
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
            clock: Clock::System,
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
        let mut resources = self
            .inner
            .resources
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(core) = resources.get(name) {
            return Resource::from_core(Arc::clone(core));
        }
        let name: Arc<str> = Arc::from(name);
        let core = Arc::new(ResourceCore::new(Arc::clone(&name), self.inner.settings));
        resources.insert(name, Arc::clone(&core));
        Resource::from_core(core)
    }

    /// The keyed locks of resource `name` for keys of type `K`.
    pub fn keyed<K: Key>(&self, name: &str) -> Keyed<K> {
        self.resource(name).keyed()
    }

    /// A handle to the own (unkeyed) lock of resource `name`.
    pub fn lock(&self, name: &str) -> Lock {
        self.resource(name).lock()
    }

    /// A handle to the lock of `key` in resource `name`.
    pub fn key_lock<Q>(&self, name: &str, key: &Q) -> Lock
    where
        Q: ?Sized + LockKey,
    {
        self.resource(name).key(key)
    }

    /// The dedup scope called `name` for keys of type `K`, created with
    /// default [`DedupOptions`] on first use.
    pub fn dedup<K: Key>(&self, name: &str) -> Dedup<K> {
        self.dedup_with(name, DedupOptions::new())
    }

    /// The dedup scope called `name` for keys of type `K`, created with
    /// `options` on first use. A scope keeps the options it was created
    /// with; later calls get the existing scope.
    pub fn dedup_with<K: Key>(&self, name: &str, options: DedupOptions) -> Dedup<K> {
        let mut scopes = self.inner.dedup.lock().unwrap_or_else(|p| p.into_inner());
        let id = (Arc::<str>::from(name), TypeId::of::<K>());
        if let Some(dedup) = scopes
            .get(&id)
            .and_then(|any| any.as_any().downcast_ref::<Dedup<K>>())
        {
            return dedup.clone();
        }
        let dedup = Dedup::new(Arc::clone(&id.0), options, self.inner.clock.clone());
        scopes.insert(id, Box::new(dedup.clone()));
        dedup
    }

    /// All resources created so far, sorted by name.
    pub fn resources(&self) -> Vec<Resource> {
        let resources = self
            .inner
            .resources
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<Resource> = resources
            .values()
            .map(|core| Resource::from_core(Arc::clone(core)))
            .collect();
        drop(resources);
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// A snapshot of every resource's and dedup scope's figures, sorted by
    /// name.
    pub fn stats(&self) -> Stats {
        let mut dedup: Vec<DedupStats> = self
            .inner
            .dedup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|scope| scope.stats())
            .collect();
        dedup.sort_by(|a, b| a.name.cmp(&b.name));
        Stats {
            resources: self.resources().iter().map(Resource::stats).collect(),
            dedup,
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
    clock: Clock,
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

    /// Uses a [`ManualClock`] for time-to-live expiry, so tests can move
    /// time forward instead of sleeping.
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// Creates the registry.
    pub fn build(self) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                settings: Settings {
                    fairness: Fairness::new(self.fairness_bound),
                    statistics: self.statistics,
                    slow_wait: self.slow_wait,
                    long_hold: self.long_hold,
                    track_holders: self.track_holders,
                },
                fairness_bound: self.fairness_bound,
                resources: Mutex::new(HashMap::new()),
                clock: self.clock,
                dedup: Mutex::new(HashMap::new()),
            }),
        }
    }
}

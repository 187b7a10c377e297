//! Named resources: a resource's own lock, its keyed locks and its counters.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::key::{Key, LockKey};
use crate::keyed::{KeyMap, Keyed};
use crate::live::{LiveTable, Role};
use crate::lock::{Acquire, Lock, LockSite, ReadGuard, SiteKey, Unkeyed, WriteGuard};
use crate::raw::{Access, Fairness, RawRwLock};
use crate::registry::Settings;
use crate::stats::{Counters, Event, Occupancy, ResourceStats};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Type-erased view of a [`KeyMap`], for figures that span key types.
pub(crate) trait AnyKeyMap: Send + Sync {
    /// Holders, waiters and live keys right now.
    fn occupancy(&self) -> Occupancy;
    /// Idle key entries removed so far.
    fn evictions(&self) -> u64;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// What every lock of a resource shares: its name, settings and counters.
/// Key entries point here, never back at the map that holds them.
pub(crate) struct ResourceInfo {
    name: Arc<str>,
    settings: Settings,
    counters: Counters,
    live: Option<LiveTable>,
    /// Callers queued on any lock of the resource, and the most at once.
    /// Touched only by acquisitions that have to queue.
    waiting: AtomicUsize,
    peak_waiting: AtomicUsize,
}

/// A queued acquisition, counted until it ends.
pub(crate) struct Waiting {
    live: Option<u64>,
}

impl ResourceInfo {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn fairness(&self) -> Fairness {
        self.settings.fairness
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Counts a caller that starts to queue (and lists it in the live view).
    pub(crate) fn start_wait(
        &self,
        key: impl FnOnce() -> Option<String>,
        access: Access,
        location: &'static std::panic::Location<'static>,
    ) -> Waiting {
        let now = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_waiting.fetch_max(now, Ordering::Relaxed);
        Waiting {
            live: self
                .live
                .as_ref()
                .map(|live| live.enter(Role::Waiting, key(), access, location)),
        }
    }

    /// The queued caller got the lock or gave up.
    pub(crate) fn end_wait(&self, waiting: Waiting) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        if let (Some(id), Some(live)) = (waiting.live, &self.live) {
            live.leave(id);
        }
    }

    /// The live view, when the registry tracks holders.
    pub(crate) fn live(&self) -> Option<&LiveTable> {
        self.live.as_ref()
    }

    /// The statistics hook: every acquisition outcome of this resource, its
    /// own lock and every key, is recorded here.
    #[inline]
    pub(crate) fn record(&self, event: Event) {
        if self.settings.statistics {
            self.counters.record(event);
            crate::metrics_out::event(&self.name, event);
        }
    }
}

/// One named resource: its own lock and its key maps.
pub(crate) struct ResourceCore {
    /// The resource's own lock, which also points at its name, settings
    /// and counters.
    own: Arc<LockSite<Unkeyed>>,
    /// One map per key type used with this resource, kept for the
    /// resource's lifetime so a key always finds the entry that is live.
    keyed: Mutex<HashMap<TypeId, Arc<dyn AnyKeyMap>>>,
}

impl ResourceCore {
    pub(crate) fn new(name: Arc<str>, settings: Settings) -> Self {
        let info = Arc::new(ResourceInfo {
            name,
            settings,
            counters: Counters::default(),
            live: settings.track_holders.then(LiveTable::default),
            waiting: AtomicUsize::new(0),
            peak_waiting: AtomicUsize::new(0),
        });
        ResourceCore {
            own: Arc::new(LockSite {
                raw: RawRwLock::new(settings.fairness),
                resource: info,
                key: Unkeyed,
            }),
            keyed: Mutex::new(HashMap::new()),
        }
    }

    fn info(&self) -> &Arc<ResourceInfo> {
        &self.own.resource
    }

    fn maps(&self) -> Vec<Arc<dyn AnyKeyMap>> {
        self.keyed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn evictions(&self) -> u64 {
        self.maps().iter().map(|map| map.evictions()).sum()
    }

    /// Who holds and waits right now, over the own lock and every key.
    fn occupancy(&self) -> Occupancy {
        let mut occupancy = Occupancy {
            holders: self.own.raw.readers() + usize::from(self.own.raw.is_write_locked()),
            waiters: self.own.raw.waiters(),
            live_keys: 0,
        };
        for map in self.maps() {
            occupancy += map.occupancy();
        }
        occupancy
    }
}

/// A named resource of a [`Registry`](crate::Registry): its own read/write
/// lock, and any number of keyed locks.
///
/// The resource's own lock and its keys are independent locks: holding key
/// `42` of `"sessions"` does not exclude a holder of `"sessions"` itself.
///
/// Cheap to clone; all clones refer to the same resource.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = keylock_runtime::Registry::new();
/// let db = registry.resource("db");
/// let a = db.read().await;
/// let b = db.read().await; // readers share
/// assert_eq!(db.lock().readers(), 2);
/// drop((a, b));
/// let _w = db.write().await;
/// assert!(db.lock().is_write_locked());
/// # }
/// ```
#[derive(Clone)]
pub struct Resource {
    core: Arc<ResourceCore>,
}

impl Resource {
    pub(crate) fn from_core(core: Arc<ResourceCore>) -> Self {
        Resource { core }
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        self.core.info().name()
    }

    /// A handle to the resource's own (unkeyed) lock.
    pub fn lock(&self) -> Lock {
        Lock::from_site(Arc::clone(&self.core.own) as Arc<LockSite<dyn SiteKey>>)
    }

    /// Waits for shared access to the resource's own lock.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves nothing behind.
    #[track_caller]
    pub fn read(&self) -> Acquire<ReadGuard> {
        self.lock()
            .acquire(Access::Read, std::panic::Location::caller())
    }

    /// Waits for exclusive access to the resource's own lock.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves nothing behind.
    #[track_caller]
    pub fn write(&self) -> Acquire<WriteGuard> {
        self.lock()
            .acquire(Access::Write, std::panic::Location::caller())
    }

    /// The keyed locks of this resource for keys of type `K`.
    ///
    /// Keep the returned handle to skip the resource's type lookup on every
    /// call.
    pub fn keyed<K: Key>(&self) -> Keyed<K> {
        let mut maps = self.core.keyed.lock().unwrap_or_else(|p| p.into_inner());
        let map = maps
            .entry(TypeId::of::<K>())
            .or_insert_with(|| Arc::new(KeyMap::<K>::new(Arc::clone(self.core.info()))));
        match Arc::clone(map).as_any().downcast::<KeyMap<K>>() {
            Ok(map) => Keyed::from_map(map, Arc::clone(&self.core)),
            Err(_) => unreachable!("maps are stored under their own TypeId"),
        }
    }

    /// A handle to the lock of one key; see [`Keyed::key`].
    pub fn key<Q>(&self, key: &Q) -> Lock
    where
        Q: ?Sized + LockKey,
    {
        self.keyed::<Q::Owned>().key(key)
    }

    /// Keys of this resource currently held or waited for, over all key
    /// types.
    pub fn live_keys(&self) -> usize {
        self.core.occupancy().live_keys
    }

    /// A snapshot of this resource's figures.
    pub fn stats(&self) -> ResourceStats {
        let mut stats = self
            .core
            .info()
            .counters
            .snapshot(self.name(), self.core.occupancy());
        if let Some(live) = self.core.info().live() {
            stats.live = live.snapshot();
            stats.recent = live.recent();
        }
        stats.peak_waiters = self.core.info().peak_waiting.load(Ordering::Relaxed);
        stats.evictions = self.core.evictions();
        stats
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resource")
            .field("name", &self.name())
            .field("lock", &self.core.own.raw)
            .field("live_keys", &self.live_keys())
            .finish()
    }
}

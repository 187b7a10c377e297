//! [`Resource`]: one named resource, its own lock and its key maps.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::access::Access;
use crate::entry::{EntryKey, LockEntry, ResourceInfo, Settings, Unkeyed};
use crate::key::{Key, LockKey};
use crate::key_map::{ErasedKeyMap, KeyMap};
use crate::keyed::Keyed;
use crate::lock::{Acquire, Lock, ReadGuard, WriteGuard};
use crate::observe::{Occupancy, ResourceStats};
use crate::raw::RawRwLock;
use crate::sync::{self, Mutex};

/// One named resource: its own lock and its key maps.
pub(crate) struct ResourceCore {
    /// The resource's own lock, which also points at its name, settings
    /// and counters.
    own: Arc<LockEntry<Unkeyed>>,
    /// One map per key type used with this resource, kept for the
    /// resource's lifetime so a key always finds the entry that is live.
    keyed: Mutex<HashMap<TypeId, Arc<dyn ErasedKeyMap>>>,
}

impl ResourceCore {
    pub(crate) fn new(name: Arc<str>, settings: Settings) -> Self {
        let info = Arc::new(ResourceInfo::new(name, settings));
        ResourceCore {
            own: Arc::new(LockEntry {
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

    fn maps(&self) -> Vec<Arc<dyn ErasedKeyMap>> {
        sync::lock(&self.keyed).values().cloned().collect()
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
        Lock::from_entry(Arc::clone(&self.core.own) as Arc<LockEntry<dyn EntryKey>>)
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
        let mut maps = sync::lock(&self.core.keyed);
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
            .counters()
            .snapshot(self.name(), self.core.occupancy());
        if let Some(live) = self.core.info().live() {
            stats.live = live.snapshot();
            stats.recent = live.recent();
        }
        stats.peak_waiters = self.core.info().peak_waiting();
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

//! [`Resource`]: one named resource, its own lock and its key maps.

use std::any::TypeId;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::access::Access;
use crate::backend::Bound;
use crate::entry::{EntryKey, LockEntry, ResourceInfo, Settings, Unkeyed};
use crate::key::{Key, LockKey};
use crate::key_map::{ErasedKeyMap, KeyMap};
use crate::keyed::Keyed;
use crate::lock::{Acquire, Lock, ReadGuard, WriteGuard};
use crate::lock_order::OrderClass;
use crate::observe::{Occupancy, ResourceStats};
use crate::sync::{self, AtomicBool, Mutex, Ordering};

/// One named resource: its own lock and its key maps.
pub(crate) struct ResourceCore {
    /// The resource's own lock, which also points at its name, settings
    /// and counters.
    own: Arc<LockEntry<Unkeyed>>,
    /// Set once the resource is known to be locked whole, so that checking
    /// a use of the whole lock costs one load.
    whole: AtomicBool,
    /// Whole or keyed, fixed at first use; a keyed resource's map is kept
    /// for the resource's lifetime, so a key always finds its live entry.
    shape: Mutex<Shape>,
}

/// How a resource is used: its own lock, or one lock per key of one type.
/// Fixed by the first use, so that one name never means two unrelated
/// locks.
enum Shape {
    Unused,
    Whole {
        first: &'static Location<'static>,
    },
    Keyed {
        key_type: TypeId,
        key_type_name: &'static str,
        first: &'static Location<'static>,
        map: Arc<dyn ErasedKeyMap>,
    },
}

impl ResourceCore {
    pub(crate) fn new(
        name: Arc<str>,
        settings: Settings,
        order: Option<OrderClass>,
        backend: Option<Bound>,
    ) -> Self {
        let info = Arc::new(ResourceInfo::new(name, settings, order, backend));
        ResourceCore {
            own: Arc::new(LockEntry::new(info, Unkeyed)),
            whole: AtomicBool::new(false),
            shape: Mutex::new(Shape::Unused),
        }
    }

    fn info(&self) -> &Arc<ResourceInfo> {
        &self.own.resource
    }

    /// The key map, once the resource is keyed.
    fn map(&self) -> Option<Arc<dyn ErasedKeyMap>> {
        match &*sync::lock(&self.shape) {
            Shape::Keyed { map, .. } => Some(Arc::clone(map)),
            Shape::Unused | Shape::Whole { .. } => None,
        }
    }

    fn evictions(&self) -> u64 {
        self.map().map_or(0, |map| map.evictions())
    }

    /// Checks that the resource may be locked whole, fixing its shape on
    /// first use.
    #[inline(always)]
    fn use_whole(&self, here: &'static Location<'static>) {
        if !self.whole.load(Ordering::Relaxed) {
            self.first_whole_use(here);
        }
    }

    #[cold]
    #[inline(never)]
    fn first_whole_use(&self, here: &'static Location<'static>) {
        let mut shape = sync::lock(&self.shape);
        match &*shape {
            Shape::Unused => *shape = Shape::Whole { first: here },
            Shape::Whole { .. } => {}
            Shape::Keyed {
                key_type_name,
                first,
                ..
            } => {
                let message = format!(
                    "keylock: resource \"{name}\" is locked per key ({key_type_name}, first at \
                     {first}) and here as a whole ({here}); its whole lock and its key locks \
                     would not exclude each other, so one resource is either keyed or whole: \
                     give the whole lock a name of its own",
                    name = self.info().name(),
                );
                drop(shape);
                panic!("{message}");
            }
        }
        self.whole.store(true, Ordering::Relaxed);
    }

    /// The key map for keys of type `K`, created (fixing the resource's
    /// shape) on first use.
    fn keyed_map<K: Key>(&self, here: &'static Location<'static>) -> Arc<KeyMap<K>> {
        let mut shape = sync::lock(&self.shape);
        let map = match &*shape {
            Shape::Unused => {
                let map: Arc<dyn ErasedKeyMap> =
                    Arc::new(KeyMap::<K>::new(Arc::clone(self.info())));
                *shape = Shape::Keyed {
                    key_type: TypeId::of::<K>(),
                    key_type_name: std::any::type_name::<K>(),
                    first: here,
                    map: Arc::clone(&map),
                };
                map
            }
            Shape::Keyed { key_type, map, .. } if *key_type == TypeId::of::<K>() => Arc::clone(map),
            Shape::Keyed {
                key_type_name,
                first,
                ..
            } => {
                let message = format!(
                    "keylock: resource \"{name}\" is locked with keys of type {key_type_name} \
                     (first at {first}) and here with keys of type {here_type} ({here}); keys of \
                     two types would make two unrelated locks under one name, so a resource has \
                     one key type: convert the key (a literal such as `42` is an `i32`; write \
                     `42u64`), or use another resource name",
                    name = self.info().name(),
                    here_type = std::any::type_name::<K>(),
                );
                drop(shape);
                panic!("{message}");
            }
            Shape::Whole { first } => {
                let message = format!(
                    "keylock: resource \"{name}\" is locked as a whole (first at {first}) and \
                     here per key ({here_type}, {here}); its whole lock and its key locks would \
                     not exclude each other, so one resource is either keyed or whole: give the \
                     keyed locks a name of their own",
                    name = self.info().name(),
                    here_type = std::any::type_name::<K>(),
                );
                drop(shape);
                panic!("{message}");
            }
        };
        drop(shape);
        match map.as_any().downcast::<KeyMap<K>>() {
            Ok(map) => map,
            Err(_) => unreachable!("a keyed shape holds the map of its own key type"),
        }
    }

    /// Who holds and waits right now, over the own lock and every key.
    fn occupancy(&self) -> Occupancy {
        let mut occupancy = Occupancy {
            holders: self.own.raw.readers() + usize::from(self.own.raw.is_write_locked()),
            waiters: self.own.raw.waiters(),
            live_keys: 0,
        };
        if let Some(map) = self.map() {
            occupancy += map.occupancy();
        }
        occupancy
    }
}

/// A named resource of a [`Registry`](crate::Registry): one read/write
/// lock for the whole resource, or one per key.
///
/// A resource is used one way, fixed by its first use: **whole** (through
/// [`lock`](Self::lock), [`read`](Self::read), [`write`](Self::write), or
/// `#[write_lock("name")]`) or **keyed** with keys of one type (through
/// [`keyed`](Self::keyed), [`key`](Self::key), or
/// `#[write_lock("name", key = ..)]`). A whole lock and per-key locks under
/// one name would be unrelated locks that do not exclude each other, and
/// keys of two types (a `u64` and the literal `42`, an `i32`) would be two
/// unrelated sets of locks; either mistake panics at its first use, naming
/// both call sites and the fix, instead of silently not locking.
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
    ///
    /// # Panics
    ///
    /// If the resource is keyed: see [`Resource`].
    #[inline]
    #[track_caller]
    pub fn lock(&self) -> Lock {
        self.lock_at(Location::caller())
    }

    /// [`lock`](Self::lock), for a caller at `here`.
    #[inline]
    pub(crate) fn lock_at(&self, here: &'static Location<'static>) -> Lock {
        self.core.use_whole(here);
        Lock::from_entry(Arc::clone(&self.core.own) as Arc<LockEntry<dyn EntryKey>>)
    }

    /// Waits for shared access to the resource's own lock.
    ///
    /// # Panics
    ///
    /// If the resource is keyed: see [`Resource`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves nothing behind.
    #[inline]
    #[track_caller]
    pub fn read(&self) -> Acquire<ReadGuard> {
        self.lock().acquire(Access::Read, Location::caller())
    }

    /// Waits for exclusive access to the resource's own lock.
    ///
    /// # Panics
    ///
    /// If the resource is keyed: see [`Resource`].
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves nothing behind.
    #[inline]
    #[track_caller]
    pub fn write(&self) -> Acquire<WriteGuard> {
        self.lock().acquire(Access::Write, Location::caller())
    }

    /// The keyed locks of this resource for keys of type `K`.
    ///
    /// Keep the returned handle to skip the resource's type lookup on every
    /// call.
    ///
    /// # Panics
    ///
    /// If the resource is locked whole, or with keys of another type: see
    /// [`Resource`].
    #[track_caller]
    pub fn keyed<K: Key>(&self) -> Keyed<K> {
        self.keyed_at(Location::caller())
    }

    /// [`keyed`](Self::keyed), for a caller at `here`.
    pub(crate) fn keyed_at<K: Key>(&self, here: &'static Location<'static>) -> Keyed<K> {
        let map = self.core.keyed_map::<K>(here);
        Keyed::from_map(map, Arc::clone(&self.core))
    }

    /// A handle to the lock of one key; see [`Keyed::key`].
    ///
    /// # Panics
    ///
    /// As [`keyed`](Self::keyed).
    #[track_caller]
    pub fn key<Q>(&self, key: &Q) -> Lock
    where
        Q: ?Sized + LockKey,
    {
        self.keyed::<Q::Owned>().key(key)
    }

    /// Keys of this resource currently held or waited for.
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

//! Keyed resources: one lock per key, created on first use and removed
//! once unused.
//!
//! # Entry lifetime
//!
//! An entry's users are the references to it besides the map's own:
//! handles, guards and waiting acquisitions each hold one, so the entry's
//! `Arc` count is its user count plus one. New references come only from
//! the map (under its shard lock, when a key is looked up) or from an
//! existing user (cloning a handle). An entry whose only reference is the
//! map's is *idle*: it stays in the map, so a key used again and again
//! never pays for an allocation and a removal, until a sweep removes it. A
//! sweep removes an entry under the shard's write lock, and only if the map
//! still holds its only reference there. So lookups and removals of the
//! same key are serialized by the shard lock: removal can never strand a
//! live user on an entry that a newcomer no longer finds, and a newcomer can
//! never create a second lock for a key that is held or awaited.
//!
//! Sweeps run on the insertion path, when the map has grown past twice the
//! entries the last sweep kept (and at least [`MIN_SWEEP`]): the map holds
//! the live keys plus a bounded number of idle ones, never every key ever
//! seen, and the cost of a sweep is spread over the insertions that made it
//! necessary. Shard locks are held only for a lookup or a sweep of that
//! shard, never while waiting for a key.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::panic::Location;
use std::sync::Arc;

use crate::key::{Key, LockKey};
use crate::lock::{Acquire, FromHeld, Lock, LockSite, ReadGuard, SiteKey, WriteGuard};
use crate::raw::{Access, RawRwLock};
use crate::resource::{AnyKeyMap, Resource, ResourceCore, ResourceInfo};
use crate::sync::Ordering;

/// Idle entries a map may hold before the first sweep.
pub(crate) const MIN_SWEEP: usize = 1024;

/// One key's lock.
pub(crate) type Entry<K> = LockSite<K>;

/// Whether anyone but the map refers to an entry: a handle, a guard or a
/// waiting acquisition. The map's own reference is the one left when the
/// entry is idle.
fn in_use<K: Key>(entry: &Arc<Entry<K>>) -> bool {
    Arc::strong_count(entry) > 1
}

impl<K: Key> Entry<K> {
    fn occupancy(self: &Arc<Self>) -> crate::stats::Occupancy {
        crate::stats::Occupancy {
            holders: self.raw.readers() + usize::from(self.raw.is_write_locked()),
            waiters: self.raw.waiters(),
            live_keys: usize::from(in_use(self)),
        }
    }
}

/// The entries of one key type of one resource.
pub(crate) struct KeyMap<K: Key> {
    resource: Arc<ResourceInfo>,
    entries: shards::Shards<K>,
    /// Entries inserted since the last sweep, plus those it kept.
    approximate_len: std::sync::atomic::AtomicUsize,
    /// Sweep when `approximate_len` passes this.
    sweep_at: std::sync::atomic::AtomicUsize,
    sweeping: std::sync::atomic::AtomicBool,
    /// Idle entries removed so far.
    evictions: std::sync::atomic::AtomicU64,
}

impl<K: Key> KeyMap<K> {
    pub(crate) fn new(resource: Arc<ResourceInfo>) -> Self {
        KeyMap {
            resource,
            entries: shards::Shards::new(),
            approximate_len: std::sync::atomic::AtomicUsize::new(0),
            sweep_at: std::sync::atomic::AtomicUsize::new(MIN_SWEEP),
            sweeping: std::sync::atomic::AtomicBool::new(false),
            evictions: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The entry of `key`, created if absent, with one more user counted.
    fn entry<Q>(&self, key: &Q) -> Arc<Entry<K>>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        if let Some(entry) = self.entries.get(key) {
            return entry;
        }
        let (entry, inserted) = self.entries.get_or_insert(key.to_owned_key(), |key| {
            Arc::new(Entry {
                raw: RawRwLock::new(self.resource.fairness()),
                resource: Arc::clone(&self.resource),
                key: key.clone(),
            })
        });
        if inserted {
            self.after_insert();
        }
        entry
    }

    /// Sweeps idle entries once the map has grown enough to pay for it.
    /// Runs outside every shard lock.
    fn after_insert(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let len = self.approximate_len.fetch_add(1, Relaxed) + 1;
        if len <= self.sweep_at.load(Relaxed)
            || self
                .sweeping
                .compare_exchange(false, true, Ordering::Acquire, Relaxed)
                .is_err()
        {
            return;
        }
        let (kept, removed) = self.entries.sweep();
        self.evictions.fetch_add(removed, Relaxed);
        self.approximate_len.store(kept, Relaxed);
        self.sweep_at.store((kept * 2).max(MIN_SWEEP), Relaxed);
        self.sweeping.store(false, Ordering::Release);
    }

    /// Removes every idle entry now.
    pub(crate) fn sweep(&self) {
        let (kept, removed) = self.entries.sweep();
        self.evictions
            .fetch_add(removed, std::sync::atomic::Ordering::Relaxed);
        self.approximate_len
            .store(kept, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock<Q>(&self, key: &Q) -> Lock
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        Lock::from_site(self.entry(key) as Arc<LockSite<dyn SiteKey>>)
    }
}

impl<K: Key> AnyKeyMap for KeyMap<K> {
    fn occupancy(&self) -> crate::stats::Occupancy {
        self.entries.occupancy()
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// The locks of one resource for keys of type `K`: exclusive or shared
/// access per key, where the same key serializes and different keys never
/// wait for each other.
///
/// Get one with [`Registry::keyed`](crate::Registry::keyed) or
/// [`Resource::keyed`]; cheap to clone.
///
/// Keys are looked up by reference: a `Keyed<String>` accepts `&str`, and
/// looking up a key that is present allocates nothing.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let registry = keylock_runtime::Registry::new();
/// let channels = registry.keyed::<u64>("channels");
/// let a = channels.write(&1).await;
/// let b = channels.write(&2).await; // another key: no wait
/// assert!(channels.is_locked(&1));
/// assert!(channels.try_write(&1).is_err());
/// drop((a, b));
/// assert_eq!(channels.live_keys(), 0); // nobody holds or waits for a key
/// # }
/// ```
pub struct Keyed<K: Key> {
    map: Arc<KeyMap<K>>,
    resource: Arc<ResourceCore>,
}

impl<K: Key> Clone for Keyed<K> {
    fn clone(&self) -> Self {
        Keyed {
            map: Arc::clone(&self.map),
            resource: Arc::clone(&self.resource),
        }
    }
}

impl<K: Key> Keyed<K> {
    pub(crate) fn from_map(map: Arc<KeyMap<K>>, resource: Arc<ResourceCore>) -> Self {
        Keyed { map, resource }
    }

    /// A handle to the lock of `key`. The key's entry lives at least as long
    /// as the handle.
    pub fn key<Q>(&self, key: &Q) -> Lock
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.map.lock(key)
    }

    /// Waits for shared access to `key`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves nothing behind: no
    /// waiter, and the key is idle if nobody else uses it.
    #[track_caller]
    pub fn read<Q>(&self, key: &Q) -> Acquire<ReadGuard>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.map.lock(key).acquire(Access::Read, Location::caller())
    }

    /// Waits for exclusive access to `key`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves nothing behind: no
    /// waiter, and the key is idle if nobody else uses it.
    #[track_caller]
    pub fn write<Q>(&self, key: &Q) -> Acquire<WriteGuard>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.map
            .lock(key)
            .acquire(Access::Write, Location::caller())
    }

    /// Takes shared access to `key` if it is free now; never waits.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`](crate::Error::Busy) when the key is held in a
    /// conflicting mode.
    #[track_caller]
    pub fn try_read<Q>(&self, key: &Q) -> Result<ReadGuard, crate::Error>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.map
            .lock(key)
            .try_acquire(Access::Read, Location::caller())
            .map(ReadGuard::from_held)
    }

    /// Takes exclusive access to `key` if it is free now; never waits.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`](crate::Error::Busy) when the key is held.
    #[track_caller]
    pub fn try_write<Q>(&self, key: &Q) -> Result<WriteGuard, crate::Error>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.map
            .lock(key)
            .try_acquire(Access::Write, Location::caller())
            .map(WriteGuard::from_held)
    }

    /// Blocks the current thread until shared access to `key` is held.
    ///
    /// A blocking wait cannot be cancelled; bound it with
    /// [`Lock::read_blocking_timeout`] on [`Keyed::key`].
    #[track_caller]
    pub fn read_blocking<Q>(&self, key: &Q) -> ReadGuard
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        ReadGuard::from_held(
            self.map
                .lock(key)
                .acquire_blocking(Access::Read, Location::caller()),
        )
    }

    /// Blocks the current thread until exclusive access to `key` is held.
    ///
    /// A blocking wait cannot be cancelled; bound it with
    /// [`Lock::write_blocking_timeout`] on [`Keyed::key`].
    #[track_caller]
    pub fn write_blocking<Q>(&self, key: &Q) -> WriteGuard
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        WriteGuard::from_held(
            self.map
                .lock(key)
                .acquire_blocking(Access::Write, Location::caller()),
        )
    }

    /// Whether `key` is held right now, in either mode. Does not create an
    /// entry.
    pub fn is_locked<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.map
            .entries
            .peek(key, |entry| entry.raw.is_locked())
            .unwrap_or(false)
    }

    /// How many callers are queued for `key` right now. Does not create an
    /// entry.
    pub fn waiters<Q>(&self, key: &Q) -> usize
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.map
            .entries
            .peek(key, |entry| entry.raw.waiters())
            .unwrap_or(0)
    }

    /// Keys currently held, awaited, or referred to by a [`Lock`] handle.
    ///
    /// Counts the entries one by one: a figure for monitoring and tests, not
    /// for a hot path.
    pub fn live_keys(&self) -> usize {
        self.map.entries.live()
    }

    /// Entries in memory: the live keys plus idle ones that the next sweep
    /// removes. Bounded by about twice the live keys, plus 1,024.
    pub fn entries_in_memory(&self) -> usize {
        self.map.entries.len()
    }

    /// Removes every idle entry now, instead of at the next sweep.
    pub fn sweep(&self) {
        self.map.sweep();
    }

    /// The resource these keys belong to.
    pub fn resource(&self) -> Resource {
        Resource::from_core(Arc::clone(&self.resource))
    }
}

impl<K: Key> fmt::Debug for Keyed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("resource", &self.map.resource.name())
            .field("live_keys", &self.live_keys())
            .finish()
    }
}

/// The map itself: `DashMap` normally, a single loom mutex under
/// `--cfg loom` (same protocol: lookups count a user under the shard lock,
/// removals re-check the count under the same lock).
mod shards {
    use super::*;

    /// Shards per map. Two busy keys in one shard make their threads
    /// bounce the shard lock's cache line on every lookup; with DashMap's
    /// default (4 per core, 8 on two cores) that happened to one pair of
    /// keys in eight. 64 shards make it one in 64, for 8 KiB per map.
    #[cfg(not(loom))]
    const SHARDS: usize = 64;

    #[cfg(not(loom))]
    pub(super) struct Shards<K: Key>(
        dashmap::DashMap<K, Arc<Entry<K>>, foldhash::fast::RandomState>,
    );

    #[cfg(not(loom))]
    impl<K: Key> Shards<K> {
        pub(super) fn new() -> Self {
            Shards(dashmap::DashMap::with_hasher_and_shard_amount(
                Default::default(),
                SHARDS,
            ))
        }

        /// The entry of `key` with one more user, if present.
        pub(super) fn get<Q>(&self, key: &Q) -> Option<Arc<Entry<K>>>
        where
            Q: ?Sized + Hash + Eq,
            K: Borrow<Q>,
        {
            let entry = self.0.get(key)?;
            Some(Arc::clone(&entry))
        }

        /// The entry of `key` with one more user, created by `make` if
        /// absent; and whether it was created.
        pub(super) fn get_or_insert(
            &self,
            key: K,
            make: impl FnOnce(&K) -> Arc<Entry<K>>,
        ) -> (Arc<Entry<K>>, bool) {
            let (entry, inserted) = match self.0.entry(key) {
                dashmap::Entry::Occupied(occupied) => (occupied.into_ref(), false),
                dashmap::Entry::Vacant(vacant) => {
                    let entry = make(vacant.key());
                    (vacant.insert(entry), true)
                }
            };
            (Arc::clone(&entry), inserted)
        }

        /// Removes every idle entry; returns how many are left
        /// and how many were removed.
        pub(super) fn sweep(&self) -> (usize, u64) {
            let mut removed = 0;
            self.0.retain(|_, entry| {
                let keep = in_use(entry);
                removed += u64::from(!keep);
                keep
            });
            (self.0.len(), removed)
        }

        /// Entries with at least one user.
        pub(super) fn live(&self) -> usize {
            self.0.iter().filter(|entry| in_use(entry)).count()
        }

        /// Holders, waiters and live keys, entry by entry.
        pub(super) fn occupancy(&self) -> crate::stats::Occupancy {
            let mut occupancy = crate::stats::Occupancy::default();
            for entry in self.0.iter() {
                occupancy += entry.occupancy();
            }
            occupancy
        }

        pub(super) fn peek<Q, R>(&self, key: &Q, f: impl FnOnce(&Entry<K>) -> R) -> Option<R>
        where
            Q: ?Sized + Hash + Eq,
            K: Borrow<Q>,
        {
            self.0.get(key).map(|entry| f(&entry))
        }

        pub(super) fn len(&self) -> usize {
            self.0.len()
        }
    }

    #[cfg(loom)]
    pub(super) struct Shards<K: Key>(
        crate::sync::Mutex<std::collections::HashMap<K, Arc<Entry<K>>>>,
    );

    #[cfg(loom)]
    impl<K: Key> Shards<K> {
        pub(super) fn new() -> Self {
            Shards(crate::sync::Mutex::new(std::collections::HashMap::new()))
        }

        pub(super) fn get<Q>(&self, key: &Q) -> Option<Arc<Entry<K>>>
        where
            Q: ?Sized + Hash + Eq,
            K: Borrow<Q>,
        {
            let map = crate::sync::lock(&self.0);
            let entry = map.get(key)?;
            Some(Arc::clone(entry))
        }

        pub(super) fn get_or_insert(
            &self,
            key: K,
            make: impl FnOnce(&K) -> Arc<Entry<K>>,
        ) -> (Arc<Entry<K>>, bool) {
            let mut map = crate::sync::lock(&self.0);
            let (entry, inserted) = match map.entry(key) {
                std::collections::hash_map::Entry::Occupied(occupied) => {
                    (occupied.into_mut(), false)
                }
                std::collections::hash_map::Entry::Vacant(vacant) => {
                    let entry = make(vacant.key());
                    (vacant.insert(entry), true)
                }
            };
            (Arc::clone(entry), inserted)
        }

        pub(super) fn sweep(&self) -> (usize, u64) {
            let mut map = crate::sync::lock(&self.0);
            let before = map.len();
            map.retain(|_, entry| in_use(entry));
            (map.len(), (before - map.len()) as u64)
        }

        pub(super) fn live(&self) -> usize {
            crate::sync::lock(&self.0)
                .values()
                .filter(|entry| in_use(entry))
                .count()
        }

        pub(super) fn occupancy(&self) -> crate::stats::Occupancy {
            let mut occupancy = crate::stats::Occupancy::default();
            for entry in crate::sync::lock(&self.0).values() {
                occupancy += entry.occupancy();
            }
            occupancy
        }

        pub(super) fn peek<Q, R>(&self, key: &Q, f: impl FnOnce(&Entry<K>) -> R) -> Option<R>
        where
            Q: ?Sized + Hash + Eq,
            K: Borrow<Q>,
        {
            crate::sync::lock(&self.0).get(key).map(|entry| f(entry))
        }

        pub(super) fn len(&self) -> usize {
            crate::sync::lock(&self.0).len()
        }
    }
}

//! The key map of one resource and key type: one [`LockEntry`] per key,
//! created on first use and removed once unused.
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
//! entries the last sweep kept (and at least [`MIN_SWEEP`]): the map never
//! holds more than that, never every key ever seen, and the cost of a sweep
//! is spread over the insertions that made it necessary. Entries that turn
//! idle between sweeps stay until the next one: a map whose keys all went
//! idle keeps them until new keys are inserted or [`KeyMap::sweep`] runs
//! (noticing each entry that turns idle would cost every release a write
//! to a shared counter). A sweep that removed most entries shrinks the
//! tables, so a map that emptied gives its memory back. Shard locks are held
//! only for a lookup or a sweep of that shard, never while waiting for a
//! key.

use std::any::Any;
use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use crate::entry::{EntryKey, LockEntry, ResourceInfo};
use crate::key::{Key, LockKey};
use crate::lock::Lock;
use crate::observe::Occupancy;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Idle entries a map may hold before the first sweep.
pub(crate) const MIN_SWEEP: usize = 1024;

/// Whether anyone but the map refers to an entry: a handle, a guard or a
/// waiting acquisition. The map's own reference is the one left when the
/// entry is idle.
fn in_use<K: Key>(entry: &Arc<LockEntry<K>>) -> bool {
    Arc::strong_count(entry) > 1
}

/// Who holds and waits for one entry right now.
fn occupancy<K: Key>(entry: &Arc<LockEntry<K>>) -> Occupancy {
    Occupancy {
        holders: entry.raw.readers() + usize::from(entry.raw.is_write_locked()),
        waiters: entry.raw.waiters(),
        live_keys: usize::from(in_use(entry)),
    }
}

/// A [`KeyMap`] seen without its key type, for figures that span key
/// types.
pub(crate) trait ErasedKeyMap: Send + Sync {
    /// Holders, waiters and live keys right now.
    fn occupancy(&self) -> Occupancy;
    /// Idle key entries removed so far.
    fn evictions(&self) -> u64;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The entries of one key type of one resource.
pub(crate) struct KeyMap<K: Key> {
    resource: Arc<ResourceInfo>,
    entries: shards::Shards<K>,
    /// Entries inserted since the last sweep, plus those it kept.
    approximate_len: AtomicUsize,
    /// Sweep when `approximate_len` passes this.
    sweep_at: AtomicUsize,
    sweeping: AtomicBool,
    /// Idle entries removed so far.
    evictions: AtomicU64,
}

impl<K: Key> KeyMap<K> {
    pub(crate) fn new(resource: Arc<ResourceInfo>) -> Self {
        KeyMap {
            resource,
            entries: shards::Shards::new(),
            approximate_len: AtomicUsize::new(0),
            sweep_at: AtomicUsize::new(MIN_SWEEP),
            sweeping: AtomicBool::new(false),
            evictions: AtomicU64::new(0),
        }
    }

    /// The entry of `key`, created if absent, with one more user counted.
    pub(crate) fn entry<Q>(&self, key: &Q) -> Arc<LockEntry<K>>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        if let Some(entry) = self.entries.get(key) {
            return entry;
        }
        let (entry, inserted) = self.entries.get_or_insert(key.to_owned_key(), |key| {
            Arc::new(LockEntry::new(Arc::clone(&self.resource), key.clone()))
        });
        if inserted {
            self.after_insert();
        }
        entry
    }

    /// Sweeps idle entries once the map has grown enough to pay for it.
    /// Runs outside every shard lock.
    fn after_insert(&self) {
        use Ordering::Relaxed;
        let len = self.approximate_len.fetch_add(1, Relaxed) + 1;
        if len <= self.sweep_at.load(Relaxed)
            || self
                .sweeping
                .compare_exchange(false, true, Ordering::Acquire, Relaxed)
                .is_err()
        {
            return;
        }
        self.sweep();
        self.sweeping.store(false, Ordering::Release);
    }

    /// Removes every idle entry now; the next sweep runs once the map has
    /// grown past twice what this one kept.
    pub(crate) fn sweep(&self) {
        let (kept, removed) = self.entries.sweep();
        self.evictions.fetch_add(removed, Ordering::Relaxed);
        self.approximate_len.store(kept, Ordering::Relaxed);
        self.sweep_at
            .store((kept * 2).max(MIN_SWEEP), Ordering::Relaxed);
    }

    /// Slots the map's tables have room for, live or idle.
    #[cfg(all(test, not(loom)))]
    fn capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// Runs `f` on the entry of `key` if there is one; creates none.
    pub(crate) fn peek<Q, R>(&self, key: &Q, f: impl FnOnce(&LockEntry<K>) -> R) -> Option<R>
    where
        Q: ?Sized + Hash + Eq,
        K: Borrow<Q>,
    {
        self.entries.peek(key, f)
    }

    /// Entries with at least one user, counted one by one.
    pub(crate) fn live_keys(&self) -> usize {
        self.entries.live()
    }

    /// Entries in memory, live and idle.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The name of the resource the map belongs to.
    pub(crate) fn resource_name(&self) -> &str {
        self.resource.name()
    }

    pub(crate) fn lock<Q>(&self, key: &Q) -> Lock
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        Lock::from_entry(self.entry(key) as Arc<LockEntry<dyn EntryKey>>)
    }
}

impl<K: Key> ErasedKeyMap for KeyMap<K> {
    fn occupancy(&self) -> Occupancy {
        self.entries.occupancy()
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
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
        dashmap::DashMap<K, Arc<LockEntry<K>>, foldhash::fast::RandomState>,
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
        pub(super) fn get<Q>(&self, key: &Q) -> Option<Arc<LockEntry<K>>>
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
            make: impl FnOnce(&K) -> Arc<LockEntry<K>>,
        ) -> (Arc<LockEntry<K>>, bool) {
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
            let kept = self.0.len();
            if removed > kept as u64 {
                // Most entries went: give the tables' memory back.
                self.0.shrink_to_fit();
            }
            (kept, removed)
        }

        #[cfg(test)]
        pub(super) fn capacity(&self) -> usize {
            self.0.capacity()
        }

        /// Entries with at least one user.
        pub(super) fn live(&self) -> usize {
            self.0.iter().filter(|entry| in_use(entry)).count()
        }

        /// Holders, waiters and live keys, entry by entry.
        pub(super) fn occupancy(&self) -> Occupancy {
            let mut occupancy = Occupancy::default();
            for entry in self.0.iter() {
                occupancy += super::occupancy(&entry);
            }
            occupancy
        }

        pub(super) fn peek<Q, R>(&self, key: &Q, f: impl FnOnce(&LockEntry<K>) -> R) -> Option<R>
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
        crate::sync::Mutex<std::collections::HashMap<K, Arc<LockEntry<K>>>>,
    );

    #[cfg(loom)]
    impl<K: Key> Shards<K> {
        pub(super) fn new() -> Self {
            Shards(crate::sync::Mutex::new(std::collections::HashMap::new()))
        }

        pub(super) fn get<Q>(&self, key: &Q) -> Option<Arc<LockEntry<K>>>
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
            make: impl FnOnce(&K) -> Arc<LockEntry<K>>,
        ) -> (Arc<LockEntry<K>>, bool) {
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
            let kept = map.len();
            if before - kept > kept {
                map.shrink_to_fit();
            }
            (kept, (before - kept) as u64)
        }

        pub(super) fn live(&self) -> usize {
            crate::sync::lock(&self.0)
                .values()
                .filter(|entry| in_use(entry))
                .count()
        }

        pub(super) fn occupancy(&self) -> Occupancy {
            let mut occupancy = Occupancy::default();
            for entry in crate::sync::lock(&self.0).values() {
                occupancy += super::occupancy(&entry);
            }
            occupancy
        }

        pub(super) fn peek<Q, R>(&self, key: &Q, f: impl FnOnce(&LockEntry<K>) -> R) -> Option<R>
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

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::Registry;

    #[test]
    fn a_sweep_that_empties_the_map_gives_its_memory_back() {
        let registry = Registry::new();
        let keys = registry.keyed::<u64>("k");
        let handles: Vec<_> = (0..100_000u64).map(|key| keys.key(&key)).collect();
        let map = keys.map();
        let grown = map.capacity();
        assert!(grown >= 100_000, "{grown}");
        drop(handles);
        keys.sweep();
        assert_eq!(keys.entries_in_memory(), 0);
        let shrunk = map.capacity();
        assert!(shrunk < 1_000, "tables kept room for {shrunk} entries");
    }

    #[test]
    fn a_sweep_that_keeps_most_entries_keeps_the_tables() {
        let registry = Registry::new();
        let keys = registry.keyed::<u64>("k");
        let handles: Vec<_> = (0..10_000u64).map(|key| keys.key(&key)).collect();
        drop(keys.key(&u64::MAX));
        let map = keys.map();
        let grown = map.capacity();
        keys.sweep();
        assert_eq!(keys.entries_in_memory(), 10_000);
        // Removing the one idle entry may leave its slot unusable until the
        // next rehash: capacity one lower, not reallocated.
        assert!(map.capacity() + 1 >= grown, "{} < {grown}", map.capacity());
        drop(handles);
    }
}

//! [`Keyed`]: the public handle to the per-key locks of one resource.

use std::borrow::Borrow;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;

use crate::access::Access;
use crate::key::{Key, LockKey};
use crate::key_map::KeyMap;
use crate::lock::{Acquire, Caller, FromHeld, Lock, ReadGuard, WriteGuard};
use crate::lock_set::{AcquireSet, LockSet, ReadSetGuard, WriteSetGuard};
use crate::resource::{Resource, ResourceCore};

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
            .try_acquire(Access::Read, Caller::api(Location::caller()))
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
            .try_acquire(Access::Write, Caller::api(Location::caller()))
            .map(WriteGuard::from_held)
    }

    /// Blocks the current thread until shared access to `key` is held.
    ///
    /// On Tokio runtime threads, see [`Lock::read_blocking`]: a multi-thread
    /// runtime keeps running its other tasks, a `current_thread` runtime's
    /// thread panics instead of blocking.
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
                .acquire_blocking(Access::Read, Caller::api(Location::caller())),
        )
    }

    /// Blocks the current thread until exclusive access to `key` is held.
    ///
    /// On Tokio runtime threads, see [`Lock::write_blocking`].
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
                .acquire_blocking(Access::Write, Caller::api(Location::caller())),
        )
    }

    /// A handle to the locks of several keys, taken together in the keys'
    /// order (`Ord`) and released together: callers locking overlapping
    /// sets of keys, in whatever order they list them, never deadlock.
    /// Equal keys are locked once. See [`LockSet`].
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = keylock_runtime::Registry::new();
    /// let accounts = registry.keyed::<u64>("accounts");
    /// let held = accounts.write(&2).await;
    /// // One deadline for the whole set; nothing stays held when it passes.
    /// let late = accounts.key_set(&[&1, &2]).write_timeout(Duration::from_millis(10)).await;
    /// assert!(late.unwrap_err().is_timeout());
    /// assert!(!accounts.is_locked(&1));
    /// drop(held);
    /// # }
    /// ```
    pub fn key_set<Q>(&self, keys: &[&Q]) -> LockSet
    where
        Q: ?Sized + LockKey<Owned = K> + Ord,
        K: Borrow<Q>,
    {
        LockSet::in_order(keys.to_vec(), |key| self.map.lock(key))
    }

    /// Waits for shared access to every key of `keys`, taking them in the
    /// keys' order; see [`key_set`](Self::key_set).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes releases the keys it had
    /// taken and leaves no waiter behind.
    #[track_caller]
    pub fn read_many<Q>(&self, keys: &[&Q]) -> AcquireSet<ReadSetGuard>
    where
        Q: ?Sized + LockKey<Owned = K> + Ord,
        K: Borrow<Q>,
    {
        self.key_set(keys).acquire(Access::Read, Location::caller())
    }

    /// Waits for exclusive access to every key of `keys`, taking them in
    /// the keys' order; see [`key_set`](Self::key_set).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let registry = keylock_runtime::Registry::new();
    /// let accounts = registry.keyed::<u64>("accounts");
    /// let (from, to) = (7, 3);
    /// let both = accounts.write_many(&[&from, &to]).await;
    /// assert!(accounts.try_write(&3).is_err() && accounts.try_write(&7).is_err());
    /// drop(both);
    /// # }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes releases the keys it had
    /// taken and leaves no waiter behind.
    #[track_caller]
    pub fn write_many<Q>(&self, keys: &[&Q]) -> AcquireSet<WriteSetGuard>
    where
        Q: ?Sized + LockKey<Owned = K> + Ord,
        K: Borrow<Q>,
    {
        self.key_set(keys)
            .acquire(Access::Write, Location::caller())
    }

    /// Takes shared access to every key of `keys` if each is free now;
    /// never waits.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`](crate::Error::Busy) for the first key, in order,
    /// held in a conflicting mode; nothing stays held.
    #[track_caller]
    pub fn try_read_many<Q>(&self, keys: &[&Q]) -> Result<ReadSetGuard, crate::Error>
    where
        Q: ?Sized + LockKey<Owned = K> + Ord,
        K: Borrow<Q>,
    {
        self.key_set(keys).try_read()
    }

    /// Takes exclusive access to every key of `keys` if each is free now;
    /// never waits.
    ///
    /// # Errors
    ///
    /// [`Error::Busy`](crate::Error::Busy) for the first key, in order,
    /// that is held; nothing stays held.
    #[track_caller]
    pub fn try_write_many<Q>(&self, keys: &[&Q]) -> Result<WriteSetGuard, crate::Error>
    where
        Q: ?Sized + LockKey<Owned = K> + Ord,
        K: Borrow<Q>,
    {
        self.key_set(keys).try_write()
    }

    /// Blocks the current thread until shared access to every key of
    /// `keys` is held; see [`read_blocking`](Self::read_blocking).
    ///
    /// A blocking wait cannot be cancelled; bound it with
    /// [`LockSet::read_blocking_timeout`] on [`key_set`](Self::key_set).
    #[track_caller]
    pub fn read_many_blocking<Q>(&self, keys: &[&Q]) -> ReadSetGuard
    where
        Q: ?Sized + LockKey<Owned = K> + Ord,
        K: Borrow<Q>,
    {
        self.key_set(keys).read_blocking()
    }

    /// Blocks the current thread until exclusive access to every key of
    /// `keys` is held; see [`write_blocking`](Self::write_blocking).
    ///
    /// A blocking wait cannot be cancelled; bound it with
    /// [`LockSet::write_blocking_timeout`] on [`key_set`](Self::key_set).
    #[track_caller]
    pub fn write_many_blocking<Q>(&self, keys: &[&Q]) -> WriteSetGuard
    where
        Q: ?Sized + LockKey<Owned = K> + Ord,
        K: Borrow<Q>,
    {
        self.key_set(keys).write_blocking()
    }

    /// Whether `key` is held right now, in either mode. Does not create an
    /// entry.
    pub fn is_locked<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.map
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
        self.map.peek(key, |entry| entry.raw.waiters()).unwrap_or(0)
    }

    /// Keys currently held, awaited, or referred to by a [`Lock`] handle.
    ///
    /// Counts the entries one by one: a figure for monitoring and tests, not
    /// for a hot path.
    pub fn live_keys(&self) -> usize {
        self.map.live_keys()
    }

    /// Entries in memory: the live keys plus idle ones that the next sweep
    /// removes.
    ///
    /// Never more than about twice the keys that were live at the last
    /// sweep, and at least 1,024: inserting a new key sweeps once the map
    /// has grown past that. Keys that turn idle between sweeps stay until
    /// the next one, so a map whose keys all went idle keeps them until new
    /// keys arrive or [`sweep`](Self::sweep) is called.
    pub fn entries_in_memory(&self) -> usize {
        self.map.len()
    }

    /// Removes every idle entry now, instead of at the next sweep; when
    /// that removes most entries, the map's tables shrink and give their
    /// memory back.
    ///
    /// **Locking behaviour:** takes each shard's write lock in turn, as a
    /// lookup of a new key does; never waits for a key's lock.
    pub fn sweep(&self) {
        self.map.sweep();
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn map(&self) -> &KeyMap<K> {
        &self.map
    }

    /// The resource these keys belong to.
    pub fn resource(&self) -> Resource {
        Resource::from_core(Arc::clone(&self.resource))
    }
}

impl<K: Key> fmt::Debug for Keyed<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("resource", &self.map.resource_name())
            .field("live_keys", &self.live_keys())
            .finish()
    }
}

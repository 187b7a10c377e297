//! Deduplication: an event delivered twice is handled once.
//!
//! Claim, commit, release. The first call with a key *claims* it; calls
//! with the same key while the claim is held are duplicates. A *committed*
//! claim is remembered for the scope's time-to-live, so later duplicates are
//! skipped too; a *released* claim (an error, a panic, a dropped future) is
//! forgotten so a retry can run. Check and claim happen in one step under
//! the scope's mutex: two copies of an event can never both pass.
//!
//! Memory is bounded: at most `capacity` keys are remembered, the oldest
//! evicted first, and expired keys are purged as a side effect of commits
//! and claims; no background thread is needed.
//!
//! Each key is stored once, in an open-addressing [`table`]; the commit
//! order is a ring of (expiry, short hash) pairs, so evicting the oldest
//! key needs neither a second copy of it nor its `Hash`. A new key reads
//! the clock once (at its commit), a duplicate once (to see whether the
//! remembered key expired), a duplicate of a running call never.

mod table;

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::error::Error;
use crate::key::{Key, LockKey};
use crate::observe::DedupStats;
use crate::sync::{self, AtomicU64, Mutex, MutexGuard, Ordering, Thread};
use table::{short_hash, Slot, Table, FIRST_CLAIM};

/// How long a committed key is remembered unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);

/// How many committed keys a scope remembers unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Longer times-to-live are taken as this (about 100 years), which any
/// clock can add to the present.
const LONGEST_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Settings of a dedup scope, fixed when the scope is first created.
///
/// ```
/// use std::time::Duration;
/// use keylock_runtime::DedupOptions;
///
/// let options = DedupOptions::new()
///     .ttl(Duration::from_secs(600))
///     .capacity(50_000)
///     .keep_on_error(false);
/// assert_eq!(options.capacity, 50_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DedupOptions {
    /// How long a committed key is remembered. Default: 10 minutes.
    /// Longer than 100 years is taken as 100 years.
    pub ttl: Duration,
    /// How many committed keys are remembered at most; the oldest is
    /// forgotten first. Default: 100,000. Zero is taken as one.
    pub capacity: usize,
    /// Remember the key also when the first call fails, so it is never
    /// retried. Default: `false`.
    pub keep_on_error: bool,
}

impl DedupOptions {
    /// The defaults: 10 minutes, 100,000 keys, failures retried.
    pub fn new() -> Self {
        DedupOptions {
            ttl: DEFAULT_TTL,
            capacity: DEFAULT_CAPACITY,
            keep_on_error: false,
        }
    }

    /// Sets how long a committed key is remembered.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets how many committed keys are remembered at most (at least 1).
    #[must_use]
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// Sets whether a failed first call keeps its key.
    #[must_use]
    pub fn keep_on_error(mut self, keep: bool) -> Self {
        self.keep_on_error = keep;
        self
    }
}

impl Default for DedupOptions {
    fn default() -> Self {
        DedupOptions::new()
    }
}

enum Wake {
    Task(Waker),
    Thread(Thread),
}

impl Wake {
    fn wake(self) {
        match self {
            Wake::Task(waker) => waker.wake(),
            Wake::Thread(thread) => thread.unpark(),
        }
    }
}

/// A remembered key's place in the commit order.
#[derive(Clone, Copy)]
struct Remembered {
    /// When the key expires. An `Instant` rather than a count of
    /// nanoseconds: comparing two is cheaper than converting one.
    expiry: Instant,
    /// The key's short hash, to find its slot when it is forgotten.
    hash: u32,
}

struct State<K> {
    /// Every key in memory, in flight or remembered.
    table: Table<K>,
    /// Remembered keys in commit order, which is also expiry order since
    /// every key of a scope lives for the same time. Entry `i` is the
    /// commit with sequence number `first + i`; every entry has its slot in
    /// the table and every remembered slot its entry.
    remembered: VecDeque<Remembered>,
    /// Sequence number of the oldest remembered key; numbers start at 1.
    first: u64,
    /// Sequence number of the next claim.
    next_claim: u64,
    /// Duplicates turned away; counted under the mutex already held.
    duplicates: u64,
    /// Callers waiting for an in-flight key (`in_flight = "wait"`).
    waiters: HashMap<K, Vec<(u64, Wake)>, foldhash::fast::RandomState>,
}

impl<K> State<K> {
    /// When the key remembered by commit `seq` expires.
    fn expiry(&self, seq: u64) -> Instant {
        let index = usize::try_from(seq - self.first).unwrap_or(usize::MAX);
        self.remembered[index].expiry
    }

    /// Forgets the oldest remembered key.
    fn forget_oldest(&mut self) {
        if let Some(oldest) = self.remembered.pop_front() {
            let seq = self.first;
            self.first += 1;
            let found = self.table.find(oldest.hash, |slot| slot.seq.get() == seq);
            debug_assert!(found.is_some(), "commit {seq} has no slot");
            if let Some(i) = found {
                self.table.remove(i);
            }
        }
    }

    /// Forgets the remembered keys that expired by `now`, oldest first.
    fn purge(&mut self, now: Instant) {
        while self.remembered.front().is_some_and(|r| r.expiry <= now) {
            self.forget_oldest();
        }
    }
}

pub(crate) struct Scope<K> {
    name: Arc<str>,
    options: DedupOptions,
    /// The time-to-live, at most [`LONGEST_TTL`].
    ttl: Duration,
    clock: Clock,
    hasher: foldhash::fast::RandomState,
    state: Mutex<State<K>>,
    next_ticket: AtomicU64,
}

/// What a claim attempt found.
enum Attempt<K> {
    /// The caller holds the claim: its copy of the key, its number.
    Claimed(K, NonZeroU64),
    Remembered,
    InFlight,
}

impl<K: Key> Scope<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        sync::lock(&self.state)
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The short hash of `key`, computed before taking the mutex.
    fn hash<Q: ?Sized + std::hash::Hash>(&self, key: &Q) -> u32 {
        short_hash(self.hasher.hash_one(key))
    }

    /// Looks `key` up and claims it if nobody has.
    fn attempt<Q>(&self, state: &mut State<K>, key: &Q, hash: u32) -> Attempt<K>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        let found = state.table.find(hash, |slot| slot.key.borrow() == key);
        if let Some(slot) = found.and_then(|i| state.table.get(i)) {
            if slot.in_flight() {
                return Attempt::InFlight;
            }
            let seq = slot.seq.get();
            let now = self.now();
            if state.expiry(seq) > now {
                return Attempt::Remembered;
            }
            // Expired: so is every key committed before it, and purging
            // forgets them all, this one included.
            state.purge(now);
        }
        // Both copies of the key are made before the table changes: a key
        // whose `Clone` panics leaves the scope as it was.
        let claimed = key.to_owned_key();
        let stored = claimed.clone();
        let seq = NonZeroU64::new(state.next_claim).unwrap_or(NonZeroU64::MAX);
        state.next_claim += 1;
        state.table.insert(hash, Slot { key: stored, seq });
        Attempt::Claimed(claimed, seq)
    }

    /// Describes a duplicate that was already counted.
    fn duplicate<Q: ?Sized + fmt::Debug>(&self, key: &Q, in_flight: bool) -> Error {
        crate::observe::tracing_out::duplicate(&self.name, in_flight);
        crate::observe::metrics_out::duplicate(&self.name);
        Rejection {
            scope: Arc::clone(&self.name),
            key,
            in_flight,
        }
        .into_error()
    }

    /// Ends claim `claim` of `key` (short hash `hash`): remembered when
    /// `commit`, else forgotten. Runs none of the key's code unless a caller
    /// waits for it: the slot is found by its claim number, and the key
    /// stays in it.
    fn finish(&self, key: &K, hash: u32, claim: NonZeroU64, commit: bool) {
        let woken = {
            let mut guard = self.lock();
            let state = &mut *guard;
            if commit && !self.ttl.is_zero() {
                let now = self.now();
                state.purge(now);
                let capacity = self.options.capacity.max(1);
                if state.remembered.len() >= capacity {
                    state.forget_oldest();
                }
                let seq = state.first + state.remembered.len() as u64;
                let found = state.table.find(hash, |slot| slot.seq == claim);
                if let Some(slot) = found.and_then(|i| state.table.get_mut(i)) {
                    slot.seq = NonZeroU64::new(seq).unwrap_or(NonZeroU64::MIN);
                    // Expiry order is commit order even should the clock
                    // step back.
                    let expiry = now.checked_add(self.ttl).unwrap_or(now);
                    let expiry = state
                        .remembered
                        .back()
                        .map_or(expiry, |latest| expiry.max(latest.expiry));
                    // Grown by hand near the capacity: the ring never holds
                    // more room than the capacity needs.
                    let len = state.remembered.len();
                    if len == state.remembered.capacity() {
                        state
                            .remembered
                            .reserve_exact(len.max(8).min(capacity - len));
                    }
                    state.remembered.push_back(Remembered { expiry, hash });
                }
            } else if let Some(i) = state.table.find(hash, |slot| slot.seq == claim) {
                state.table.remove(i);
            }
            if state.waiters.is_empty() {
                None
            } else {
                state.waiters.remove(key)
            }
        };
        if let Some(woken) = woken {
            for (_, wake) in woken {
                wake.wake();
            }
        }
    }

    fn forget_waiter(&self, key: &K, ticket: u64) {
        let mut state = self.lock();
        if let Some(list) = state.waiters.get_mut(key) {
            list.retain(|(t, _)| *t != ticket);
            if list.is_empty() {
                state.waiters.remove(key);
            }
        }
    }
}

/// A dedup scope: remembers which keys were handled, so that each is
/// handled once.
///
/// Get one with [`Registry::dedup`](crate::Registry::dedup) or
/// [`Registry::dedup_with`](crate::Registry::dedup_with). Cheap to clone.
///
/// ```
/// let registry = keylock_runtime::Registry::new();
/// let seen = registry.dedup::<u64>("messages");
///
/// let claim = seen.claim(&42).unwrap(); // the first delivery runs
/// assert!(seen.claim(&42).is_err()); // a copy arriving meanwhile does not
/// claim.commit(); // handled: remembered for the time-to-live
/// assert!(seen.claim(&42).unwrap_err().is_duplicate());
///
/// let failed = seen.claim(&7).unwrap();
/// failed.release(); // or dropped: a retry may run
/// assert!(seen.claim(&7).is_ok());
/// ```
pub struct Dedup<K: Key> {
    scope: Arc<Scope<K>>,
}

impl<K: Key> Clone for Dedup<K> {
    fn clone(&self) -> Self {
        Dedup {
            scope: Arc::clone(&self.scope),
        }
    }
}

impl<K: Key> Dedup<K> {
    pub(crate) fn new(name: Arc<str>, options: DedupOptions, clock: Clock) -> Self {
        let ttl = options.ttl.min(LONGEST_TTL);
        let table = Table::new(options.capacity.max(1));
        Dedup {
            scope: Arc::new(Scope {
                name,
                options,
                ttl,
                clock,
                hasher: foldhash::fast::RandomState::default(),
                state: Mutex::new(State {
                    table,
                    remembered: VecDeque::new(),
                    first: 1,
                    next_claim: FIRST_CLAIM,
                    duplicates: 0,
                    waiters: HashMap::default(),
                }),
                next_ticket: AtomicU64::new(0),
            }),
        }
    }

    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.scope.name
    }

    /// The scope's settings.
    pub fn options(&self) -> &DedupOptions {
        &self.scope.options
    }

    /// Claims `key` if nobody has: never waits.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] when the key is remembered, or its first call
    /// still runs.
    pub fn claim<Q>(&self, key: &Q) -> Result<Claim<K>, Error>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.try_claim(key).map_err(Rejection::into_error)
    }

    /// Like [`claim`](Self::claim), but describes a duplicate only when
    /// asked to: formatting the key costs more than the check itself.
    pub(crate) fn try_claim<'q, Q>(&self, key: &'q Q) -> Result<Claim<K>, Rejection<'q, Q>>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        let hash = self.scope.hash(key);
        let in_flight = {
            let mut state = self.scope.lock();
            let in_flight = match self.scope.attempt(&mut state, key, hash) {
                Attempt::Claimed(key, seq) => {
                    drop(state);
                    return Ok(Claim {
                        scope: Arc::clone(&self.scope),
                        key: Some(key),
                        hash,
                        seq,
                    });
                }
                Attempt::Remembered => false,
                Attempt::InFlight => true,
            };
            state.duplicates += 1;
            in_flight
        };
        crate::observe::tracing_out::duplicate(&self.scope.name, in_flight);
        crate::observe::metrics_out::duplicate(&self.scope.name);
        Err(Rejection {
            scope: Arc::clone(&self.scope.name),
            key,
            in_flight,
        })
    }

    /// Claims `key`; if its first call still runs, waits for that call to
    /// finish, then claims it if that call failed.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] when the key is (or becomes) remembered.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while it waits leaves nothing behind; once it
    /// has returned a claim, dropping the claim releases it.
    pub fn claim_or_wait<Q>(
        &self,
        key: &Q,
    ) -> impl Future<Output = Result<Claim<K>, Error>> + Send + 'static
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        let scope = Arc::clone(&self.scope);
        let key = key.to_owned_key();
        async move {
            let mut waiting = InFlightWait {
                hash: scope.hash(&key),
                scope: &scope,
                key: &key,
                ticket: None,
            };
            std::future::poll_fn(|cx| waiting.poll(|| Wake::Task(cx.waker().clone()))).await
        }
    }

    /// Like [`claim_or_wait`](Self::claim_or_wait), blocking the thread.
    /// The wait cannot be cancelled; it ends when the first call finishes.
    ///
    /// # Errors
    ///
    /// [`Error::Duplicate`] when the key is (or becomes) remembered.
    pub fn claim_or_wait_blocking<Q>(&self, key: &Q) -> Result<Claim<K>, Error>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        let key = key.to_owned_key();
        let mut waiting = InFlightWait {
            hash: self.scope.hash(&key),
            scope: &self.scope,
            key: &key,
            ticket: None,
        };
        if let Poll::Ready(result) = waiting.poll(|| Wake::Thread(sync::current_thread())) {
            return result;
        }
        crate::runtime_thread::block_without_hanging(
            || loop {
                sync::park();
                if let Poll::Ready(result) = waiting.poll(|| Wake::Thread(sync::current_thread())) {
                    return result;
                }
            },
            || {
                format!(
                    "the blocking wait for the first call of key {key:?} in dedup scope \"{}\"",
                    self.scope.name
                )
            },
        )
    }

    /// Whether `key` is remembered as handled right now.
    pub fn is_remembered<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        let hash = self.scope.hash(key);
        let state = self.scope.lock();
        let found = state.table.find(hash, |slot| slot.key.borrow() == key);
        match found.and_then(|i| state.table.get(i)) {
            Some(slot) if !slot.in_flight() => state.expiry(slot.seq.get()) > self.scope.now(),
            _ => false,
        }
    }

    /// Whether the first call with `key` is running right now.
    pub fn is_in_flight<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        let hash = self.scope.hash(key);
        let state = self.scope.lock();
        let found = state.table.find(hash, |slot| slot.key.borrow() == key);
        found
            .and_then(|i| state.table.get(i))
            .is_some_and(Slot::in_flight)
    }

    /// Keys in memory: remembered (possibly expired, until purged) and in
    /// flight. Never more than the capacity plus the calls in flight.
    pub fn len(&self) -> usize {
        self.scope.lock().table.len()
    }

    /// Whether no key is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Duplicates turned away so far.
    pub fn duplicates(&self) -> u64 {
        self.scope.lock().duplicates
    }
}

impl<K: Key> Dedup<K> {
    /// Bytes the scope's table and commit ring hold on the heap (keys' own
    /// allocations not counted).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        let state = self.scope.lock();
        state.table.heap_bytes() + state.remembered.capacity() * std::mem::size_of::<Remembered>()
    }
}

impl<K: Key> fmt::Debug for Dedup<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dedup")
            .field("name", &self.name())
            .field("options", self.options())
            .field("len", &self.len())
            .finish()
    }
}

/// A duplicate, not yet described. Reached only through `__private`; not a
/// stable API.
pub struct Rejection<'q, Q: ?Sized> {
    scope: Arc<str>,
    key: &'q Q,
    in_flight: bool,
}

impl<Q: ?Sized + fmt::Debug> Rejection<'_, Q> {
    /// Describes the duplicate as an [`Error::Duplicate`].
    pub fn into_error(self) -> Error {
        Error::Duplicate {
            scope: self.scope.to_string(),
            key: Some(format!("{:?}", self.key)),
            in_flight: self.in_flight,
        }
    }
}

/// A dedup scope of any key type, as the registry keeps it.
pub(crate) trait ErasedDedup: Send + Sync {
    fn as_any(&self) -> &dyn std::any::Any;
    fn stats(&self) -> DedupStats;
}

impl<K: Key> ErasedDedup for Dedup<K> {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn stats(&self) -> DedupStats {
        let state = self.scope.lock();
        let remembered = state.remembered.len();
        DedupStats {
            name: self.name().to_owned(),
            duplicates: state.duplicates,
            remembered,
            in_flight: state.table.len() - remembered,
            capacity: self.scope.options.capacity,
            ttl: self.scope.options.ttl,
        }
    }
}

/// A caller waiting for an in-flight key; leaves the wait list on drop.
struct InFlightWait<'a, K: Key> {
    scope: &'a Arc<Scope<K>>,
    key: &'a K,
    hash: u32,
    ticket: Option<u64>,
}

impl<K: Key> InFlightWait<'_, K> {
    fn poll(&mut self, wake: impl FnOnce() -> Wake) -> Poll<Result<Claim<K>, Error>> {
        let mut state = self.scope.lock();
        let attempt = self.scope.attempt(&mut state, self.key, self.hash);
        match attempt {
            Attempt::Claimed(key, seq) => {
                drop(state);
                let claim = Claim {
                    scope: Arc::clone(self.scope),
                    key: Some(key),
                    hash: self.hash,
                    seq,
                };
                self.leave();
                Poll::Ready(Ok(claim))
            }
            Attempt::Remembered => {
                state.duplicates += 1;
                drop(state);
                self.leave();
                Poll::Ready(Err(self.scope.duplicate(self.key, false)))
            }
            Attempt::InFlight => {
                let ticket = *self
                    .ticket
                    .get_or_insert_with(|| self.scope.next_ticket.fetch_add(1, Ordering::Relaxed));
                let list = state.waiters.entry(self.key.clone()).or_default();
                list.retain(|(t, _)| *t != ticket);
                list.push((ticket, wake()));
                Poll::Pending
            }
        }
    }

    fn leave(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.scope.forget_waiter(self.key, ticket);
        }
    }
}

impl<K: Key> Drop for InFlightWait<'_, K> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// The right to handle one key; ends by [`commit`](Claim::commit) or
/// [`release`](Claim::release). Dropped without either (a panic, a dropped
/// future), it releases, exactly once, so a retry can run.
#[must_use = "dropping a claim releases it at once"]
pub struct Claim<K: Key> {
    scope: Arc<Scope<K>>,
    key: Option<K>,
    hash: u32,
    seq: NonZeroU64,
}

impl<K: Key> Claim<K> {
    /// The claimed key.
    pub fn key(&self) -> Option<&K> {
        self.key.as_ref()
    }

    /// The key was handled: remember it for the scope's time-to-live.
    pub fn commit(mut self) {
        if let Some(key) = &self.key {
            // Should a waiter's lookup of the key panic in there, the claim
            // still owns its key and its drop releases it.
            self.scope.finish(key, self.hash, self.seq, true);
            self.key = None;
        }
    }

    /// The key was not handled: forget it so a retry can run.
    pub fn release(mut self) {
        if let Some(key) = self.key.take() {
            self.scope.finish(&key, self.hash, self.seq, false);
        }
    }

    /// Commits, unless `failed` and the scope does not keep failures.
    pub fn finish(self, failed: bool) {
        if failed && !self.scope.options.keep_on_error {
            self.release();
        } else {
            self.commit();
        }
    }
}

impl<K: Key> Drop for Claim<K> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.scope.finish(&key, self.hash, self.seq, false);
        }
    }
}

impl<K: Key> fmt::Debug for Claim<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("scope", &&*self.scope.name)
            .field("key", &self.key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn scope(options: DedupOptions) -> (Dedup<u64>, ManualClock) {
        let clock = ManualClock::new();
        (
            Dedup::new("s".into(), options, Clock::Manual(clock.clone())),
            clock,
        )
    }

    #[test]
    fn committed_keys_expire_after_ttl() {
        let (seen, clock) = scope(DedupOptions::new().ttl(Duration::from_secs(10)));
        seen.claim(&1).unwrap().commit();
        clock.advance(Duration::from_secs(9));
        assert!(seen.is_remembered(&1));
        clock.advance(Duration::from_secs(1));
        assert!(!seen.is_remembered(&1));
        assert!(seen.claim(&1).is_ok());
    }

    #[test]
    fn capacity_evicts_the_oldest_first() {
        let (seen, _) = scope(DedupOptions::new().capacity(3));
        for key in 0..5 {
            seen.claim(&key).unwrap().commit();
        }
        assert_eq!(seen.len(), 3);
        assert!(!seen.is_remembered(&0) && !seen.is_remembered(&1));
        assert!(seen.is_remembered(&2) && seen.is_remembered(&4));
    }

    #[test]
    fn expired_keys_are_purged_by_later_claims() {
        let (seen, clock) = scope(DedupOptions::new().ttl(Duration::from_secs(1)));
        for key in 0..100 {
            seen.claim(&key).unwrap().commit();
        }
        clock.advance(Duration::from_secs(2));
        seen.claim(&1000).unwrap().commit();
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn failure_releases_unless_kept() {
        let (seen, _) = scope(DedupOptions::new());
        seen.claim(&1).unwrap().finish(true);
        assert!(seen.claim(&1).is_ok());
        let (kept, _) = scope(DedupOptions::new().keep_on_error(true));
        kept.claim(&1).unwrap().finish(true);
        assert!(kept.claim(&1).is_err());
    }

    #[test]
    fn in_flight_duplicates_are_reported_as_such() {
        let (seen, _) = scope(DedupOptions::new());
        let claim = seen.claim(&1).unwrap();
        match seen.claim(&1) {
            Err(Error::Duplicate { in_flight, .. }) => assert!(in_flight),
            other => panic!("{other:?}"),
        }
        drop(claim);
        assert_eq!(seen.len(), 0);
        assert_eq!(seen.duplicates(), 1);
    }

    #[test]
    fn eviction_follows_commit_order_not_claim_order() {
        let (seen, _) = scope(DedupOptions::new().capacity(3));
        let claims: Vec<_> = (0..4).map(|key| seen.claim(&key).unwrap()).collect();
        // Committed in the order 3, 1, 0, 2: at capacity 3, 3 goes first.
        for i in [3, 1, 0, 2] {
            claims.iter().find(|c| c.key() == Some(&i)).unwrap();
        }
        let mut claims = claims;
        for key in [3, 1, 0, 2] {
            let i = claims.iter().position(|c| c.key() == Some(&key)).unwrap();
            claims.remove(i).commit();
        }
        assert!(!seen.is_remembered(&3));
        assert!(seen.is_remembered(&1) && seen.is_remembered(&0) && seen.is_remembered(&2));
        seen.claim(&9).unwrap().commit();
        assert!(!seen.is_remembered(&1));
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn calls_in_flight_are_never_evicted() {
        let (seen, _) = scope(DedupOptions::new().capacity(2));
        let running = seen.claim(&100).unwrap();
        for key in 0..50 {
            seen.claim(&key).unwrap().commit();
        }
        assert!(seen.is_in_flight(&100));
        assert!(seen.claim(&100).is_err());
        assert_eq!(seen.len(), 3);
        running.commit();
        assert!(seen.is_remembered(&100) && seen.is_remembered(&49));
        assert!(!seen.is_remembered(&48));
    }

    #[test]
    fn expiry_is_exact_and_an_expired_key_can_be_claimed_again() {
        let (seen, clock) = scope(DedupOptions::new().ttl(Duration::from_millis(10)));
        seen.claim(&1).unwrap().commit();
        clock.advance(Duration::from_millis(5));
        seen.claim(&2).unwrap().commit();
        clock.advance(Duration::from_nanos(4_999_999));
        assert!(seen.claim(&1).is_err());
        clock.advance(Duration::from_nanos(1));
        // 1 expired, 2 has 5 ms left: re-claiming 1 purges it alone.
        let again = seen.claim(&1).unwrap();
        assert!(seen.is_remembered(&2));
        again.commit();
        clock.advance(Duration::from_millis(5));
        assert!(!seen.is_remembered(&2) && seen.is_remembered(&1));
        assert!(seen.claim(&2).is_ok());
    }

    #[test]
    fn zero_ttl_forgets_at_once_and_huge_ttl_never_expires() {
        let (seen, _) = scope(DedupOptions::new().ttl(Duration::ZERO));
        seen.claim(&1).unwrap().commit();
        assert!(seen.is_empty());
        assert!(seen.claim(&1).is_ok());
        let (seen, clock) = scope(DedupOptions::new().ttl(Duration::MAX));
        seen.claim(&1).unwrap().commit();
        clock.advance(Duration::from_secs(50 * 365 * 24 * 3600));
        assert!(seen.claim(&1).is_err());
    }

    #[test]
    fn string_ids_are_looked_up_by_str_and_evicted_in_order() {
        let clock = ManualClock::new();
        let seen: Dedup<String> = Dedup::new(
            "s".into(),
            DedupOptions::new().capacity(100),
            Clock::Manual(clock.clone()),
        );
        for i in 0..1_000 {
            seen.claim(format!("event-{i}").as_str()).unwrap().commit();
        }
        assert_eq!(seen.len(), 100);
        assert!(seen.claim("event-999").unwrap_err().is_duplicate());
        assert!(seen.is_remembered("event-900"));
        assert!(!seen.is_remembered("event-899"));
        let claim = seen.claim("event-0").unwrap();
        assert_eq!(claim.key().map(String::as_str), Some("event-0"));
        assert!(seen.is_in_flight("event-0"));
        drop(claim);
        assert!(!seen.is_in_flight("event-0") && !seen.is_remembered("event-0"));
    }

    #[test]
    fn memory_per_remembered_id_stays_flat() {
        for capacity in [1_000, 6_554, 50_000] {
            let (seen, _) = scope(DedupOptions::new().capacity(capacity));
            for key in 0..capacity as u64 {
                seen.claim(&key).unwrap().commit();
            }
            let full = seen.heap_bytes();
            // Churn through ten times the capacity: no growth.
            for key in capacity as u64..11 * capacity as u64 {
                seen.claim(&key).unwrap().commit();
            }
            assert_eq!(seen.heap_bytes(), full);
            let per_id = full / capacity;
            assert!(per_id <= 64, "{per_id} bytes per id at {capacity}");
        }
    }

    #[test]
    fn stats_count_remembered_in_flight_and_duplicates() {
        let (seen, _) = scope(DedupOptions::new());
        seen.claim(&1).unwrap().commit();
        let running = seen.claim(&2).unwrap();
        assert!(seen.claim(&1).is_err() && seen.claim(&2).is_err());
        let stats = seen.stats();
        assert_eq!(
            (stats.remembered, stats.in_flight, stats.duplicates),
            (1, 1, 2)
        );
        drop(running);
        assert_eq!(seen.stats().in_flight, 0);
    }

    /// Two threads deliver the same ids, in different orders, while
    /// capacity evicts and claims fail: no id ever runs twice at once, and
    /// no remembered id runs again.
    #[test]
    fn two_threads_same_ids_no_double_runs() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let seen = Dedup::<u64>::new(
            "s".into(),
            DedupOptions::new().capacity(10_000),
            Clock::System,
        );
        const IDS: u64 = 5_000;
        let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..IDS).map(|_| AtomicUsize::new(0)).collect());
        let running: Arc<Vec<AtomicUsize>> =
            Arc::new((0..IDS).map(|_| AtomicUsize::new(0)).collect());
        let violations = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let (seen, runs, running, violations) = (
                    seen.clone(),
                    runs.clone(),
                    running.clone(),
                    violations.clone(),
                );
                std::thread::spawn(move || {
                    for _ in 0..4 {
                        for i in 0..IDS {
                            let id = if t == 0 { i } else { IDS - 1 - i };
                            let Ok(claim) = seen.claim(&id) else { continue };
                            if running[id as usize].fetch_add(1, SeqCst) != 0 {
                                violations.fetch_add(1, SeqCst);
                            }
                            let before = runs[id as usize].fetch_add(1, SeqCst);
                            running[id as usize].fetch_sub(1, SeqCst);
                            // Every seventh id fails its first run.
                            claim.finish(id % 7 == 0 && before == 0);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(violations.load(SeqCst), 0, "an id ran twice at once");
        // Remembered ids (the capacity holds them all) ran once, twice
        // when the first run failed.
        for id in 0..IDS {
            let n = runs[id as usize].load(SeqCst);
            let expected = if id % 7 == 0 { 2 } else { 1 };
            assert_eq!(n, expected, "id {id} ran {n} times");
        }
        assert_eq!(seen.len(), IDS as usize);
    }
}

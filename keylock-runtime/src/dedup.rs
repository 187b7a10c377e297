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
//! evicted first, and expired keys are purged as a side effect of claims;
//! no background thread is needed.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::error::Error;
use crate::key::{Key, LockKey};
use crate::observe::DedupStats;
use crate::sync::{self, AtomicU64, Mutex, MutexGuard, Ordering, Thread};

/// How long a committed key is remembered unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);

/// How many committed keys a scope remembers unless configured otherwise.
pub const DEFAULT_CAPACITY: usize = 100_000;

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

/// Marks a key whose first call is still running.
const IN_FLIGHT: u64 = u64::MAX;

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

struct State<K> {
    /// Per key: `IN_FLIGHT`, or when the remembered key expires, in
    /// nanoseconds since the scope's epoch.
    records: HashMap<K, u64, foldhash::fast::RandomState>,
    /// Remembered keys in commit order, which is also expiry order since
    /// every key of a scope lives for the same time. Entries whose key was
    /// since forgotten or re-claimed are skipped when they reach the front.
    remembered: VecDeque<(K, u64)>,
    /// Callers waiting for an in-flight key (`in_flight = "wait"`).
    waiters: HashMap<K, Vec<(u64, Wake)>, foldhash::fast::RandomState>,
}

pub(crate) struct Scope<K> {
    name: Arc<str>,
    options: DedupOptions,
    clock: Clock,
    epoch: Instant,
    state: Mutex<State<K>>,
    next_ticket: AtomicU64,
    duplicates: AtomicU64,
}

/// What a claim attempt found.
enum Attempt<K> {
    /// The caller holds the claim; its copy of the key.
    Claimed(K),
    Remembered,
    InFlight,
}

impl<K: Key> Scope<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        sync::lock(&self.state)
    }

    fn now(&self) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_nanos()).unwrap_or(IN_FLIGHT - 1)
    }

    fn attempt<Q>(&self, state: &mut State<K>, key: &Q) -> Attempt<K>
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        let now = self.now();
        // Purge what has expired, oldest first.
        while let Some((_, expiry)) = state.remembered.front() {
            if *expiry > now {
                break;
            }
            if let Some((old, expiry)) = state.remembered.pop_front() {
                if state.records.get::<K>(&old) == Some(&expiry) {
                    state.records.remove::<K>(&old);
                }
            }
        }
        // The claim's own copy of the key is made before the record goes
        // in flight: a key whose `Clone` panics leaves the scope as it was.
        match state.records.get_mut(key) {
            Some(record) if *record == IN_FLIGHT => Attempt::InFlight,
            Some(record) if *record > now => Attempt::Remembered,
            Some(record) => {
                let claimed = key.to_owned_key();
                *record = IN_FLIGHT;
                Attempt::Claimed(claimed)
            }
            None => {
                let claimed = key.to_owned_key();
                state.records.insert(claimed.clone(), IN_FLIGHT);
                Attempt::Claimed(claimed)
            }
        }
    }

    fn duplicate<Q: ?Sized + fmt::Debug>(&self, key: &Q, in_flight: bool) -> Error {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
        crate::observe::tracing_out::duplicate(&self.name, in_flight);
        crate::observe::metrics_out::duplicate(&self.name);
        Rejection {
            scope: Arc::clone(&self.name),
            key,
            in_flight,
        }
        .into_error()
    }

    /// Ends the claim on `key`: remembered when `commit`, else forgotten.
    fn finish(&self, key: &K, commit: bool) {
        let woken = {
            let mut state = self.lock();
            if state.records.get(key) == Some(&IN_FLIGHT) {
                if commit && !self.options.ttl.is_zero() {
                    // Copies first: a `Clone` that panics changes nothing,
                    // and the claim, still holding its key, releases.
                    let copies = (key.clone(), key.clone());
                    let ttl = u64::try_from(self.options.ttl.as_nanos()).unwrap_or(IN_FLIGHT - 1);
                    let expiry = self.now().saturating_add(ttl).min(IN_FLIGHT - 1);
                    state.records.insert(copies.0, expiry);
                    state.remembered.push_back((copies.1, expiry));
                    while state.remembered.len() > self.options.capacity.max(1) {
                        if let Some((old, expiry)) = state.remembered.pop_front() {
                            if state.records.get(&old) == Some(&expiry) {
                                state.records.remove(&old);
                            }
                        }
                    }
                } else {
                    state.records.remove(key);
                }
            }
            if state.waiters.is_empty() {
                None
            } else {
                state.waiters.remove(key)
            }
        };
        for (_, wake) in woken.into_iter().flatten() {
            wake.wake();
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
        let epoch = clock.now();
        Dedup {
            scope: Arc::new(Scope {
                name,
                options,
                clock,
                epoch,
                state: Mutex::new(State {
                    records: HashMap::default(),
                    remembered: VecDeque::new(),
                    waiters: HashMap::default(),
                }),
                next_ticket: AtomicU64::new(0),
                duplicates: AtomicU64::new(0),
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
        let attempt = self.scope.attempt(&mut self.scope.lock(), key);
        let in_flight = match attempt {
            Attempt::Claimed(key) => {
                return Ok(Claim {
                    scope: Arc::clone(&self.scope),
                    key: Some(key),
                })
            }
            Attempt::Remembered => false,
            Attempt::InFlight => true,
        };
        self.scope.duplicates.fetch_add(1, Ordering::Relaxed);
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
        let now = self.scope.now();
        self.scope
            .lock()
            .records
            .get(key)
            .is_some_and(|record| *record != IN_FLIGHT && *record > now)
    }

    /// Whether the first call with `key` is running right now.
    pub fn is_in_flight<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + LockKey<Owned = K>,
        K: Borrow<Q>,
    {
        self.scope.lock().records.get(key) == Some(&IN_FLIGHT)
    }

    /// Keys in memory: remembered (possibly expired, until purged) and in
    /// flight. Never more than the capacity plus the calls in flight.
    pub fn len(&self) -> usize {
        self.scope.lock().records.len()
    }

    /// Whether no key is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Duplicates turned away so far.
    pub fn duplicates(&self) -> u64 {
        self.scope.duplicates.load(Ordering::Relaxed)
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
        let in_flight = state.records.values().filter(|r| **r == IN_FLIGHT).count();
        DedupStats {
            name: self.name().to_owned(),
            duplicates: self.duplicates(),
            remembered: state.records.len() - in_flight,
            in_flight,
            capacity: self.scope.options.capacity,
            ttl: self.scope.options.ttl,
        }
    }
}

/// A caller waiting for an in-flight key; leaves the wait list on drop.
struct InFlightWait<'a, K: Key> {
    scope: &'a Arc<Scope<K>>,
    key: &'a K,
    ticket: Option<u64>,
}

impl<K: Key> InFlightWait<'_, K> {
    fn poll(&mut self, wake: impl FnOnce() -> Wake) -> Poll<Result<Claim<K>, Error>> {
        let mut state = self.scope.lock();
        let attempt = self.scope.attempt(&mut state, self.key);
        match attempt {
            Attempt::Claimed(key) => {
                drop(state);
                let claim = Claim {
                    scope: Arc::clone(self.scope),
                    key: Some(key),
                };
                self.leave();
                Poll::Ready(Ok(claim))
            }
            Attempt::Remembered => {
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
}

impl<K: Key> Claim<K> {
    /// The claimed key.
    pub fn key(&self) -> Option<&K> {
        self.key.as_ref()
    }

    /// The key was handled: remember it for the scope's time-to-live.
    pub fn commit(mut self) {
        if let Some(key) = &self.key {
            // Should the key's `Clone` panic in there, the claim still owns
            // its key and its drop releases it.
            self.scope.finish(key, true);
            self.key = None;
        }
    }

    /// The key was not handled: forget it so a retry can run.
    pub fn release(mut self) {
        if let Some(key) = self.key.take() {
            self.scope.finish(&key, false);
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
            self.scope.finish(&key, false);
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
}

//! The lock primitive: one read/write lock that async tasks and OS threads
//! share, fair and write-preferring, with a lock-free fast path.
//!
//! # State word
//!
//! `state` packs the whole lock into one `usize`:
//!
//! | bits  | meaning                                             |
//! |-------|-----------------------------------------------------|
//! | 0     | `WRITER`: held exclusively                          |
//! | 1     | `PARKED`: the wait queue is not empty               |
//! | 2     | `NOTIFIED`: the head was woken to compete and has   |
//! |       | not run yet; `head_due` holds when it stops having  |
//! |       | to compete                                          |
//! | 3..   | number of readers holding the lock                  |
//!
//! An uncontended acquire or release is one compare-and-swap. Everything
//! else happens under the queue mutex, which is never held while user code,
//! a waker or an unpark runs.
//!
//! Beside the state word, `head_due` is the moment the notified head will
//! have waited the fairness bound (nanoseconds since a process-wide epoch;
//! 0 when unknown). It is written under the queue mutex whenever the head
//! is notified and read without it by releases, so that a release past
//! that moment hands the lock over instead of just freeing it. It is a
//! hint: the decision itself is taken under the queue mutex, from the
//! moment the head became the head.
//!
//! # Fairness
//!
//! Waiters queue in arrival order. A release with waiters either hands the
//! lock directly to the head of the queue (the head then owns it before it
//! even wakes up), or, while the head has been at the head for less than
//! the *fairness bound*, frees the lock and wakes the head to compete for
//! it. In that short window a newcomer may take the lock first; this is
//! what keeps two threads hammering one lock from paying a thread wake-up
//! per acquisition (the collapse of strict hand-off locks). Once the head
//! has waited at the head past the bound, the next release hands it the
//! lock, even while the head is notified and has not run yet: a task that
//! releases and re-takes the lock in a loop, and never yields because its
//! acquisitions are always ready, then finds the lock held, queues and
//! yields. Queued waiters never overtake each other.
//!
//! The bound counts from the moment a waiter became the head (its arrival,
//! or the previous head's departure), not from its arrival: under overload,
//! when every queued waiter has long been waiting, counting from arrival
//! would turn every release into a hand-off and the lock into a strict FIFO
//! one, with a wake-up per acquisition. Counted from the head, at most one
//! hand-off per bound is forced, and the k-th waiter in the queue is served
//! within about k bounds.
//!
//! Acquisitions do not spend Tokio's cooperative budget: the hand-over
//! above already makes a looping task queue and yield once a waiter is
//! due, and spending the budget cost 7% on an uncontended acquisition and
//! 12% with 64 tasks on one lock. A task that loops on a lock nobody else
//! wants is like any other loop without a pending `.await`.
//!
//! Write preference: when the queue is not empty, a newcomer reader may join
//! only a lock that nobody holds, never readers that a queued writer waits
//! behind. Readers at the head of the queue are always granted together.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::access::Access;
use crate::sync::{self, AtomicU64, AtomicUsize, Mutex, Ordering, Thread};

const WRITER: usize = 1;
const PARKED: usize = 2;
const NOTIFIED: usize = 4;
const ONE_READER: usize = 8;
const HOLDERS: usize = !(PARKED | NOTIFIED);

/// The state bits `access` adds while held.
const fn bits(access: Access) -> usize {
    match access {
        Access::Read => ONE_READER,
        Access::Write => WRITER,
    }
}

const fn readers(state: usize) -> usize {
    state / ONE_READER
}

/// May a caller that is not in the queue take the lock in this state?
const fn may_take(state: usize, access: Access) -> bool {
    match access {
        Access::Write => state & HOLDERS == 0,
        // A reader joins other readers only while nobody queues: a queued
        // writer must not be starved by a stream of readers.
        Access::Read => state & WRITER == 0 && (state & PARKED == 0 || readers(state) == 0),
    }
}

/// Whether this holder is the last one, so that its release must look at
/// the queue.
const fn is_last_holder(state: usize, access: Access) -> bool {
    match access {
        Access::Write => true,
        Access::Read => readers(state) == 1,
    }
}

/// Where an acquisition stands; owned by the acquiring future or thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitState {
    /// Not tried yet.
    Start,
    /// Waiting in the queue under this ticket, since this moment.
    Queued(u64, Instant),
    /// The lock is held by this acquisition.
    Acquired,
}

enum Wakeup {
    Task(Option<Waker>),
    Thread(Thread),
}

struct Waiter {
    access: Access,
    since: Instant,
    /// Woken to compete for a free lock (see "Fairness" above).
    notified: bool,
    wakeup: Wakeup,
}

/// Waiters in arrival order. A waiter is removed from the queue either by
/// itself (it took the lock after being notified, gave up, or was dropped),
/// or by a release that granted it the lock: a waiter that finds its ticket
/// gone therefore owns the lock.
#[derive(Default)]
struct Queue {
    waiters: BTreeMap<u64, Waiter>,
    next_ticket: u64,
    /// When the previous head left the queue: the current head has been at
    /// the head since then, or since it arrived, whichever is later.
    head_changed: Option<Instant>,
}

/// What a release (or a departing waiter) does to the queue.
#[derive(Default)]
struct Plan {
    /// How many waiters at the head are granted the lock.
    grants: usize,
    /// State bits those grants add.
    add: usize,
    /// Wake the head writer so it competes for the now free lock.
    notify_head: bool,
}

/// Things to wake once the queue mutex is released.
#[derive(Default)]
struct Wakeups(Vec<Wakeup>);

impl Wakeups {
    fn wake_all(self) {
        for wakeup in self.0 {
            match wakeup {
                Wakeup::Task(Some(waker)) => waker.wake(),
                Wakeup::Task(None) => {}
                Wakeup::Thread(thread) => thread.unpark(),
            }
        }
    }
}

impl Queue {
    fn push(&mut self, access: Access, wakeup: Wakeup) -> (u64, Instant) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let since = now();
        self.waiters.insert(
            ticket,
            Waiter {
                access,
                since,
                notified: false,
                wakeup,
            },
        );
        (ticket, since)
    }

    /// Removes a waiter that leaves on its own (it took the lock, gave up or
    /// was dropped); true if it was still queued.
    fn remove(&mut self, ticket: u64) -> bool {
        let was_head = self.waiters.keys().next() == Some(&ticket);
        let removed = self.waiters.remove(&ticket).is_some();
        if was_head {
            self.head_left();
        }
        removed
    }

    /// Notes that the head left, when another waiter takes its place.
    fn head_left(&mut self) {
        if !self.waiters.is_empty() {
            self.head_changed = Some(now());
        }
    }

    /// Since when `waiter`, the head, has been at the head of the queue:
    /// the fairness bound counts from then.
    fn head_since(&self, waiter: &Waiter) -> Instant {
        match self.head_changed {
            Some(changed) if changed > waiter.since => changed,
            _ => waiter.since,
        }
    }

    fn plan(&self, state: usize, fairness: Fairness) -> Plan {
        let mut plan = Plan::default();
        let writer_held = state & WRITER != 0;
        let mut now = None;
        for waiter in self.waiters.values() {
            match waiter.access {
                Access::Write => {
                    if state & HOLDERS == 0 && plan.grants == 0 {
                        if fairness.is_due(self.head_since(waiter), &mut now) {
                            plan.grants = 1;
                            plan.add = WRITER;
                        } else {
                            plan.notify_head = true;
                        }
                    }
                    break;
                }
                Access::Read => {
                    if writer_held {
                        break;
                    }
                    plan.grants += 1;
                    plan.add += ONE_READER;
                }
            }
        }
        plan
    }

    fn apply(&mut self, plan: &Plan) -> Wakeups {
        let mut wakes = Wakeups::default();
        for _ in 0..plan.grants {
            if let Some((_, waiter)) = self.waiters.pop_first() {
                wakes.0.push(waiter.wakeup);
            }
        }
        if plan.grants > 0 {
            self.head_left();
        }
        if plan.notify_head {
            if let Some(head) = self.waiters.values_mut().next() {
                if !head.notified {
                    head.notified = true;
                    wakes.0.push(match &mut head.wakeup {
                        Wakeup::Task(waker) => Wakeup::Task(waker.take()),
                        Wakeup::Thread(thread) => Wakeup::Thread(thread.clone()),
                    });
                }
            }
        }
        wakes
    }
}

/// How long the head of the queue may be overtaken before it is handed the
/// lock directly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fairness {
    bound: Duration,
}

impl Fairness {
    pub(crate) const fn new(bound: Duration) -> Self {
        Fairness { bound }
    }

    /// When a waiter that arrived at `since` stops being overtaken, as
    /// [`instant_nanos`]; `None` when never (or for strict hand-off, when
    /// nobody is ever notified).
    fn due_nanos(self, since: Instant) -> Option<u64> {
        if self.bound.is_zero() || self.bound == Duration::MAX {
            return None;
        }
        since.checked_add(self.bound).map(instant_nanos)
    }

    fn is_due(self, since: Instant, now: &mut Option<Instant>) -> bool {
        if self.bound.is_zero() {
            return true;
        }
        if self.bound == Duration::MAX {
            return false;
        }
        let now = *now.get_or_insert_with(self::now);
        now.saturating_duration_since(since) >= self.bound
    }
}

/// `instant` as nanoseconds since a process-wide epoch, never 0 (0 means
/// "no due time" in `head_due`).
fn instant_nanos(instant: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let nanos = instant.saturating_duration_since(epoch).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX).max(1)
}

/// The clock that arrival times and the fairness bound are measured with.
#[cfg(not(loom))]
fn now() -> Instant {
    Instant::now()
}

/// Under loom, a clock that a model moves by hand, so that whether a head
/// is due does not depend on how fast the model runs.
#[cfg(loom)]
fn now() -> Instant {
    model_clock::now()
}

/// A clock for loom models: it stands still until [`advance`] moves it. A
/// model's threads run on the thread that runs the model, so a thread-local
/// is one clock per model; [`reset`] it at the start of each execution.
///
/// [`advance`]: model_clock::advance
/// [`reset`]: model_clock::reset
#[cfg(loom)]
pub(crate) mod model_clock {
    use std::cell::Cell;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    thread_local! {
        static OFFSET: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    fn base() -> Instant {
        static BASE: OnceLock<Instant> = OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    pub(crate) fn now() -> Instant {
        base() + OFFSET.with(Cell::get)
    }

    pub(crate) fn advance(by: Duration) {
        OFFSET.with(|offset| offset.set(offset.get() + by));
    }

    pub(crate) fn reset() {
        OFFSET.with(|offset| offset.set(Duration::ZERO));
    }
}

/// How long since `since`, on the lock's clock.
fn waited_since(since: Instant) -> Duration {
    now().saturating_duration_since(since)
}

/// Counts this thread's releases while one head (known by its due time)
/// is notified; true on the releases that should read the clock. Always
/// true under loom, where the count would carry over between executions.
#[cfg(loom)]
fn should_read_clock(_: u64) -> bool {
    true
}

/// Counts this thread's releases while one head (known by its due time)
/// is notified; true on the releases that should read the clock.
#[cfg(not(loom))]
fn should_read_clock(due: u64) -> bool {
    use std::cell::Cell;
    thread_local! {
        static RELEASES: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
    }
    RELEASES.with(|releases| {
        let (seen, count) = releases.get();
        let count = if seen == due {
            count.wrapping_add(1)
        } else {
            1
        };
        releases.set((due, count));
        count.is_power_of_two() && count <= 32 || count % 32 == 0
    })
}

/// How a blocking caller waits a little before it queues (or queues again
/// after a wake-up that lost the race): a few doubling busy spins, then a
/// few yields of its time slice. Parking costs the releasing thread a
/// system call to wake it, so a short wait that ends in the lock being taken
/// is far cheaper than a park; past these rounds the caller parks.
struct Backoff {
    round: u32,
}

impl Backoff {
    /// Rounds of busy spinning (1, 2, 4, ... spin hints).
    const SPINS: u32 = if cfg!(loom) { 0 } else { 4 };
    /// Further rounds that yield the time slice instead.
    const YIELDS: u32 = if cfg!(loom) { 0 } else { 8 };

    const fn new() -> Self {
        Backoff { round: 0 }
    }

    /// Waits one round; false once the rounds are used up.
    fn snooze(&mut self) -> bool {
        if self.round < Self::SPINS {
            for _ in 0..(1u32 << self.round) {
                std::hint::spin_loop();
            }
        } else if self.round < Self::SPINS + Self::YIELDS {
            std::thread::yield_now();
        } else {
            return false;
        }
        self.round += 1;
        true
    }
}

/// Whether an acquisition had to wait in the queue, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Contention {
    Uncontended,
    Contended(Duration),
}

/// Why a blocking acquisition gave up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// The lock itself. See the module docs for the design.
pub(crate) struct RawRwLock {
    state: AtomicUsize,
    /// When the notified head will be due (see the module docs); 0 when
    /// unknown.
    head_due: AtomicU64,
    queue: Mutex<Queue>,
    fairness: Fairness,
}

impl RawRwLock {
    pub(crate) fn new(fairness: Fairness) -> Self {
        RawRwLock {
            state: AtomicUsize::new(0),
            head_due: AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
            fairness,
        }
    }

    /// Takes the lock if a newcomer may; never waits.
    #[inline]
    pub(crate) fn try_acquire(&self, access: Access) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if !may_take(state, access) {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                state + bits(access),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// Releases one hold of `access`, handing the lock on when others wait.
    #[inline]
    pub(crate) fn release(&self, access: Access) {
        // The common case: nobody queued, one compare-and-swap.
        let state = self.state.load(Ordering::Relaxed);
        if state & PARKED == 0
            && self
                .state
                .compare_exchange_weak(
                    state,
                    state - bits(access),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return;
        }
        self.release_slow(access);
    }

    #[inline(never)]
    fn release_slow(&self, access: Access) {
        let mut state = self.state.load(Ordering::Relaxed);
        let mut overdue = None;
        loop {
            // With waiters queued, the last holder decides between hand-off
            // and notifying the head, under the queue mutex; unless the head
            // is already awake and about to compete and has not waited past
            // the bound, when freeing the lock is all there is to do.
            if state & PARKED != 0
                && is_last_holder(state, access)
                && (state & NOTIFIED == 0 || *overdue.get_or_insert_with(|| self.head_overdue()))
            {
                let mut queue = sync::lock(&self.queue);
                let wakes = self.dispatch(&mut queue, Some(access));
                drop(queue);
                wakes.wake_all();
                return;
            }
            match self.state.compare_exchange_weak(
                state,
                state - bits(access),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }

    /// Whether the notified head has waited past the fairness bound, as
    /// far as `head_due` tells.
    ///
    /// Reading the clock costs more than the rest of a release, and a
    /// looping holder releases many times while the head is notified, so a
    /// thread reads it only on its 1st, 2nd, 4th, ... 32nd release since the
    /// head was notified, then on every 32nd: the hand-over comes at most
    /// about twice the bound, or 32 releases, after the head is due.
    fn head_overdue(&self) -> bool {
        let due = self.head_due.load(Ordering::Relaxed);
        due != 0 && should_read_clock(due) && instant_nanos(now()) >= due
    }

    /// Under the queue mutex: releases `releasing` (if any) and grants or
    /// notifies waiters, in one atomic step on the state word.
    fn dispatch(&self, queue: &mut Queue, releasing: Option<Access>) -> Wakeups {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let after = state - releasing.map_or(0, bits);
            let plan = queue.plan(after, self.fairness);
            let parked = if queue.waiters.len() > plan.grants {
                PARKED
            } else {
                0
            };
            let notified = if plan.notify_head {
                // Only a task can be kept from running by the releaser (a
                // task that loops on an always-ready acquisition holds its
                // executor thread); a thread head runs, retries, and its
                // failed retry makes the next release decide again.
                let due = queue
                    .waiters
                    .values()
                    .next()
                    .filter(|head| matches!(head.wakeup, Wakeup::Task(_)))
                    .and_then(|head| self.fairness.due_nanos(queue.head_since(head)));
                self.head_due.store(due.unwrap_or(0), Ordering::Relaxed);
                NOTIFIED
            } else {
                0
            };
            let next = ((after & HOLDERS) + plan.add) | parked | notified;
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return queue.apply(&plan),
                Err(actual) => state = actual,
            }
        }
    }

    /// Under the queue mutex: takes the lock, or marks the queue non-empty
    /// (the caller then enqueues). Atomic, so a release in between either
    /// leaves the lock free for us or sees `PARKED` and dispatches.
    fn take_or_park(&self, access: Access) -> bool {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            let (next, taken) = if may_take(state, access) {
                (state + bits(access), true)
            } else {
                (state | PARKED, false)
            };
            if next == state {
                return false;
            }
            match self.state.compare_exchange_weak(
                state,
                next,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return taken,
                Err(actual) => state = actual,
            }
        }
    }

    /// Under the queue mutex, for a waiter still in the queue: returns true
    /// when it now holds the lock (it took it after being notified).
    fn retry_queued(&self, queue: &mut Queue, ticket: u64, access: Access) -> bool {
        let Some(waiter) = queue.waiters.get_mut(&ticket) else {
            return false;
        };
        if !waiter.notified {
            return false;
        }
        loop {
            if self.try_acquire(access) {
                queue.remove(ticket);
                let clear = if queue.waiters.is_empty() {
                    PARKED | NOTIFIED
                } else {
                    NOTIFIED
                };
                self.state.fetch_and(!clear, Ordering::Relaxed);
                return true;
            }
            // Someone took the lock first. Go back to sleep, but clear
            // `NOTIFIED` in the same step that sees the lock held, so the
            // holder's release is sure to wake us again.
            let state = self.state.load(Ordering::Relaxed);
            if may_take(state, access) {
                continue;
            }
            if self
                .state
                .compare_exchange(
                    state,
                    state & !NOTIFIED,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                waiter.notified = false;
                return false;
            }
        }
    }

    /// Polls an asynchronous acquisition. On `Pending`, the task's waker is
    /// registered and will be woken when the lock is granted or free.
    #[inline]
    pub(crate) fn poll_acquire(
        &self,
        access: Access,
        wait: &mut WaitState,
        cx: &mut Context<'_>,
    ) -> Poll<Contention> {
        if *wait == WaitState::Start && self.try_acquire(access) {
            *wait = WaitState::Acquired;
            return Poll::Ready(Contention::Uncontended);
        }
        self.poll_acquire_slow(access, wait, cx)
    }

    #[inline(never)]
    fn poll_acquire_slow(
        &self,
        access: Access,
        wait: &mut WaitState,
        cx: &mut Context<'_>,
    ) -> Poll<Contention> {
        match *wait {
            WaitState::Start => {
                let mut queue = sync::lock(&self.queue);
                if self.take_or_park(access) {
                    *wait = WaitState::Acquired;
                    return Poll::Ready(Contention::Uncontended);
                }
                let (ticket, since) = queue.push(access, Wakeup::Task(Some(cx.waker().clone())));
                *wait = WaitState::Queued(ticket, since);
                Poll::Pending
            }
            WaitState::Queued(ticket, since) => {
                let mut queue = sync::lock(&self.queue);
                if !queue.waiters.contains_key(&ticket)
                    || self.retry_queued(&mut queue, ticket, access)
                {
                    *wait = WaitState::Acquired;
                    return Poll::Ready(Contention::Contended(waited_since(since)));
                }
                if let Some(Waiter {
                    wakeup: Wakeup::Task(waker),
                    ..
                }) = queue.waiters.get_mut(&ticket)
                {
                    match waker {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                }
                Poll::Pending
            }
            WaitState::Acquired => Poll::Ready(Contention::Uncontended),
        }
    }

    /// Abandons an acquisition: leaves the queue, or releases the lock if it
    /// was granted in the meantime. Leaves nothing behind either way.
    pub(crate) fn cancel(&self, access: Access, wait: &mut WaitState) {
        if let WaitState::Queued(ticket, _) = *wait {
            let mut queue = sync::lock(&self.queue);
            if queue.remove(ticket) {
                let wakes = self.dispatch(&mut queue, None);
                drop(queue);
                wakes.wake_all();
            } else {
                drop(queue);
                self.release(access);
            }
        } else if *wait == WaitState::Acquired {
            self.release(access);
        }
        *wait = WaitState::Start;
    }

    /// Blocks the current thread until the lock is held, or until
    /// `deadline` passes. `on_queued` runs (outside the queue mutex) if the
    /// thread queues, and what it returns is kept until the wait ends.
    pub(crate) fn acquire_blocking<W>(
        &self,
        access: Access,
        deadline: Option<Instant>,
        on_queued: impl FnOnce() -> W,
    ) -> Result<Contention, TimedOut> {
        if self.try_acquire(access) {
            return Ok(Contention::Uncontended);
        }
        let mut backoff = Backoff::new();
        while backoff.snooze() {
            if self.try_acquire(access) {
                return Ok(Contention::Uncontended);
            }
        }
        let mut queue = sync::lock(&self.queue);
        if self.take_or_park(access) {
            return Ok(Contention::Uncontended);
        }
        let (ticket, since) = queue.push(access, Wakeup::Thread(sync::current_thread()));
        drop(queue);
        let _queued = on_queued();
        loop {
            match deadline {
                None => sync::park(),
                Some(deadline) => {
                    let now = Instant::now();
                    if now < deadline {
                        sync::park_timeout(deadline - now);
                    }
                }
            }
            // Woken: the lock was handed over, or is free to compete for,
            // or someone took it first. When the head was notified to
            // compete, watch the lock briefly before taking the queue mutex,
            // so a thread that re-acquires in a loop is not made to wake us
            // again at once. Without `NOTIFIED` the lock was most likely
            // handed to us: holding it, we must not spin.
            let mut backoff = Backoff::new();
            while self.state.load(Ordering::Relaxed) & NOTIFIED != 0
                && !may_take(self.state.load(Ordering::Relaxed), access)
                && backoff.snooze()
            {}
            let mut queue = sync::lock(&self.queue);
            if !queue.waiters.contains_key(&ticket) || self.retry_queued(&mut queue, ticket, access)
            {
                return Ok(Contention::Contended(waited_since(since)));
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                queue.remove(ticket);
                let wakes = self.dispatch(&mut queue, None);
                drop(queue);
                wakes.wake_all();
                return Err(TimedOut);
            }
        }
    }

    /// Whether anyone holds the lock, in either mode.
    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & HOLDERS != 0
    }

    /// Whether a writer holds the lock.
    pub(crate) fn is_write_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) & WRITER != 0
    }

    /// How many readers hold the lock.
    pub(crate) fn readers(&self) -> usize {
        readers(self.state.load(Ordering::Relaxed))
    }

    /// How many callers wait in the queue.
    pub(crate) fn waiters(&self) -> usize {
        sync::lock(&self.queue).waiters.len()
    }
}

impl std::fmt::Debug for RawRwLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("RawRwLock")
            .field("write_locked", &(state & WRITER != 0))
            .field("readers", &readers(state))
            .field("parked", &(state & PARKED != 0))
            .field("head_notified", &(state & NOTIFIED != 0))
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Flag(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let flag = Arc::new(Flag(false.into()));
        (flag.clone(), Waker::from(flag))
    }

    fn strict() -> RawRwLock {
        RawRwLock::new(Fairness::new(Duration::ZERO))
    }

    #[test]
    fn readers_share_and_writer_excludes() {
        let lock = strict();
        assert!(lock.try_acquire(Access::Read));
        assert!(lock.try_acquire(Access::Read));
        assert_eq!(lock.readers(), 2);
        assert!(!lock.try_acquire(Access::Write));
        lock.release(Access::Read);
        lock.release(Access::Read);
        assert!(lock.try_acquire(Access::Write));
        assert!(!lock.try_acquire(Access::Read));
        assert!(lock.is_write_locked());
        lock.release(Access::Write);
        assert!(!lock.is_locked());
    }

    #[test]
    fn queued_writer_blocks_new_readers_and_gets_handoff() {
        let lock = strict();
        assert!(lock.try_acquire(Access::Read));
        let (woken, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let mut wait = WaitState::Start;
        assert!(lock
            .poll_acquire(Access::Write, &mut wait, &mut cx)
            .is_pending());
        assert!(
            !lock.try_acquire(Access::Read),
            "reader overtook a queued writer"
        );
        lock.release(Access::Read);
        assert!(woken.0.load(std::sync::atomic::Ordering::SeqCst));
        // Handed over: the lock is held for the writer before it runs.
        assert!(lock.is_write_locked());
        assert!(matches!(
            lock.poll_acquire(Access::Write, &mut wait, &mut cx),
            Poll::Ready(Contention::Contended(_))
        ));
        lock.release(Access::Write);
        assert!(!lock.is_locked());
        assert_eq!(lock.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn cancelled_writer_lets_readers_behind_it_in() {
        let lock = strict();
        assert!(lock.try_acquire(Access::Read));
        let (_, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let mut writer = WaitState::Start;
        assert!(lock
            .poll_acquire(Access::Write, &mut writer, &mut cx)
            .is_pending());
        let (reader_woken, reader_waker) = flag();
        let mut reader_cx = Context::from_waker(&reader_waker);
        let mut reader = WaitState::Start;
        assert!(lock
            .poll_acquire(Access::Read, &mut reader, &mut reader_cx)
            .is_pending());
        lock.cancel(Access::Write, &mut writer);
        assert!(reader_woken.0.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(lock.readers(), 2);
        assert!(lock
            .poll_acquire(Access::Read, &mut reader, &mut reader_cx)
            .is_ready());
        lock.release(Access::Read);
        lock.release(Access::Read);
        assert_eq!(lock.state.load(Ordering::Relaxed), 0);
        assert_eq!(lock.waiters(), 0);
    }

    #[test]
    fn unfair_window_notifies_head_and_lets_it_compete() {
        let lock = RawRwLock::new(Fairness::new(Duration::MAX));
        assert!(lock.try_acquire(Access::Write));
        let (woken, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let mut wait = WaitState::Start;
        assert!(lock
            .poll_acquire(Access::Write, &mut wait, &mut cx)
            .is_pending());
        lock.release(Access::Write);
        assert!(woken.0.load(std::sync::atomic::Ordering::SeqCst));
        // Free, but still marked parked: a newcomer may barge in.
        assert!(!lock.is_locked());
        assert!(lock.try_acquire(Access::Write));
        // The notified head fails and waits again.
        assert!(lock
            .poll_acquire(Access::Write, &mut wait, &mut cx)
            .is_pending());
        lock.release(Access::Write);
        assert!(lock
            .poll_acquire(Access::Write, &mut wait, &mut cx)
            .is_ready());
        assert_eq!(lock.waiters(), 0);
        lock.release(Access::Write);
        assert_eq!(lock.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn release_past_the_bound_hands_over_to_the_notified_head() {
        let lock = RawRwLock::new(Fairness::new(Duration::from_millis(1)));
        assert!(lock.try_acquire(Access::Write));
        let (woken, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let mut wait = WaitState::Start;
        assert!(lock
            .poll_acquire(Access::Write, &mut wait, &mut cx)
            .is_pending());
        // Within the bound: the head is notified, and a newcomer (the
        // looping holder) takes the free lock before the head runs.
        lock.release(Access::Write);
        assert!(woken.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(lock.try_acquire(Access::Write));
        std::thread::sleep(Duration::from_millis(3));
        // Past it: the release hands the lock to the head, which has not
        // run since it was notified, and the looping holder finds it held.
        lock.release(Access::Write);
        assert!(lock.is_write_locked());
        assert_eq!(lock.waiters(), 0);
        assert!(!lock.try_acquire(Access::Write));
        assert!(matches!(
            lock.poll_acquire(Access::Write, &mut wait, &mut cx),
            Poll::Ready(Contention::Contended(_))
        ));
        lock.release(Access::Write);
        assert_eq!(lock.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn blocking_timeout_leaves_queue_clean() {
        let lock = strict();
        assert!(lock.try_acquire(Access::Write));
        let deadline = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            lock.acquire_blocking(Access::Read, Some(deadline), || ()),
            Err(TimedOut)
        );
        assert_eq!(lock.waiters(), 0);
        lock.release(Access::Write);
        assert_eq!(lock.state.load(Ordering::Relaxed), 0);
    }
}

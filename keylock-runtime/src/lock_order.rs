//! Lock-order checking (in the manner of Linux's lockdep): which classes of
//! locks each holder takes while it holds others, recorded as one graph per
//! registry, so that an acquisition whose order could deadlock against an
//! order seen before is reported before it waits, even when no deadlock
//! happens this time.
//!
//! A class is a resource: its own lock, or all the keys of a keyed
//! resource. A holder is the Tokio task inside a runtime (tasks move
//! between threads, the held set moves with them), the thread outside one.
//! An edge A → B is recorded when a holder that holds a lock of class A
//! takes one of class B; an acquisition of B while holding A is reported
//! when the graph already leads from B to A, or when A is B (two locks of
//! one class nested by hand: the keys of one resource taken one inside the
//! other deadlock like any two locks in opposite orders), except for the
//! keys of one lock set, which a set takes in canonical order. Reads count
//! as writes: keylock's locks are write-preferring, so a read waits behind
//! a queued writer, and read-read inversions deadlock too.
//!
//! Off (the default), a registry has no graph and the lock layer pays
//! nothing of its own: the one branch on a resource's extras flag (lock
//! order, watched holds, backend) decides it with the others. On, an
//! untimed acquisition of one lock takes the graph's mutex once to check
//! and count it as held (once more to forget it if the lock is not free),
//! others twice (check, record), and a release once, finding its holder's
//! slot by number: a debugging and CI tool.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::Location;
use std::sync::Arc;

use crate::access::Access;
use crate::error::{Error, OrderEdge};
use crate::holder;
use crate::sync::{self, AtomicU64, Mutex, Ordering};

type Hasher = foldhash::fast::RandomState;

/// What a registry does with lock orders: see
/// [`RegistryBuilder::lock_order`](crate::RegistryBuilder::lock_order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LockOrder {
    /// Not checked; nothing recorded (the default).
    #[default]
    Off,
    /// An acquisition that inverts a recorded order is reported (a `tracing`
    /// warning, once per pair of resources, and
    /// [`Stats::lock_order_reports`](crate::Stats::lock_order_reports)) and
    /// then goes ahead.
    Warn,
    /// An acquisition that inverts a recorded order fails with
    /// [`Error::LockOrder`](crate::Error::LockOrder) before it waits:
    /// through the return type where it can carry it (timed acquisitions),
    /// else as a panic with the same message.
    Error,
}

/// A resource's place in its registry's lock-order graph.
pub(crate) struct OrderClass {
    graph: Arc<OrderGraph>,
    class: u32,
}

/// The lock-order graph of one registry, and what each holder holds.
pub(crate) struct OrderGraph {
    mode: LockOrder,
    state: Mutex<State>,
    /// Inversions reported, in either mode.
    reports: AtomicU64,
}

/// A holder: the Tokio task inside a runtime, the thread outside one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Holder {
    Task(tokio::task::Id),
    Thread(u32),
}

impl Holder {
    fn current() -> Holder {
        match tokio::task::try_id() {
            Some(task) => Holder::Task(task),
            None => Holder::Thread(holder::thread_number()),
        }
    }

    /// The current holder and the slot it was last seen in (in some graph:
    /// a hint, checked against the slot's owner before it is used).
    #[inline]
    fn current_with_hint() -> (Holder, u32) {
        let holder = Holder::current();
        let hint = LAST_SLOT
            .try_with(|last| match last.get() {
                Some((known, slot)) if known == holder => slot,
                _ => u32::MAX,
            })
            .unwrap_or(u32::MAX);
        (holder, hint)
    }

    /// Remembers that this holder has `slot`, on this thread.
    #[inline]
    fn remember(self, slot: u32) {
        let _ = LAST_SLOT.try_with(|last| last.set(Some((self, slot))));
    }
}

thread_local! {
    /// The holder that last took a lock on this thread, and its slot: saves
    /// the map lookup by holder while the same task or thread goes on
    /// taking locks here.
    static LAST_SLOT: Cell<Option<(Holder, u32)>> = const { Cell::new(None) };
}

/// What one holder holds, in the order taken.
struct Slot {
    /// The holder this slot belongs to; kept when the slot empties, until
    /// another holder takes it over.
    owner: Holder,
    held: Vec<HeldLock>,
    /// Whether the slot is on the list of slots that may be taken over.
    listed_empty: bool,
}

/// One lock a holder holds.
#[derive(Clone, Copy)]
struct HeldLock {
    class: u32,
    /// The lock's entry address: tells a lock apart from the others of its
    /// class (compared, never followed).
    lock: usize,
    site: &'static Location<'static>,
    /// The set acquisition that took it; 0 when taken alone.
    set: u64,
    /// Identifies this hold, so its release finds it from any thread.
    token: u64,
}

/// Where an edge was first seen.
#[derive(Clone, Copy)]
struct EdgeSites {
    held_at: &'static Location<'static>,
    acquired_at: &'static Location<'static>,
}

#[derive(Default)]
struct State {
    graph: Graph,
    /// Inversions warned about, so that each pair is warned once.
    warned: HashSet<(u32, u32), Hasher>,
    /// What each holder holds, by slot number. A slot stays with its holder
    /// when it empties (a holder taking one lock at a time neither looks
    /// itself up nor allocates), and is taken over by the next new holder:
    /// there are never more slots than holders that held locks at once.
    slots: Vec<Slot>,
    /// The slot of each holder that owns one.
    slot_of: HashMap<Holder, u32, Hasher>,
    /// Slots that emptied, to be taken over (some may have filled since).
    empty: Vec<u32>,
    next_token: u64,
}

impl State {
    /// The slot of `holder`, if it owns one; `hint` is tried first.
    #[inline]
    fn find(&self, holder: Holder, hint: u32) -> Option<u32> {
        match self.slots.get(hint as usize) {
            Some(slot) if slot.owner == holder => Some(hint),
            _ => self.slot_of.get(&holder).copied(),
        }
    }

    /// Records `held` (its token yet to be given) in `slot`.
    #[inline]
    fn push(&mut self, slot: u32, mut held: HeldLock) -> OrderHold {
        self.next_token += 1;
        held.token = self.next_token;
        self.slots[slot as usize].held.push(held);
        OrderHold {
            slot,
            token: held.token,
        }
    }

    /// Forgets `hold`.
    fn forget(&mut self, hold: &OrderHold) {
        let Some(slot) = self.slots.get_mut(hold.slot as usize) else {
            return;
        };
        if let Some(index) = slot.held.iter().rposition(|held| held.token == hold.token) {
            slot.held.remove(index);
        }
        if slot.held.is_empty() && !slot.listed_empty {
            slot.listed_empty = true;
            self.empty.push(hold.slot);
        }
    }

    /// The slot of `holder`, taken over or made when it owns none.
    fn slot(&mut self, holder: Holder, hint: u32) -> u32 {
        if let Some(slot) = self.find(holder, hint) {
            return slot;
        }
        while let Some(number) = self.empty.pop() {
            let slot = &mut self.slots[number as usize];
            slot.listed_empty = false;
            if slot.held.is_empty() {
                let previous = std::mem::replace(&mut slot.owner, holder);
                self.slot_of.remove(&previous);
                self.slot_of.insert(holder, number);
                return number;
            }
        }
        let number = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            owner: holder,
            held: Vec::new(),
            listed_empty: false,
        });
        self.slot_of.insert(holder, number);
        number
    }
}

/// The classes and the edges recorded between them.
#[derive(Default)]
struct Graph {
    /// Class names, by class number.
    names: Vec<Arc<str>>,
    /// The classes taken while each class was held, by class number.
    after: Vec<Vec<u32>>,
    edges: HashMap<(u32, u32), EdgeSites, Hasher>,
}

/// An inversion found by [`OrderClass::check`]: the cycle it would close,
/// the refused step last.
struct Inversion {
    pair: (u32, u32),
    cycle: Vec<OrderEdge>,
}

impl OrderGraph {
    /// A graph for `mode`; `None` when off, so that the lock layer tests
    /// one field.
    pub(crate) fn new(mode: LockOrder) -> Option<Arc<OrderGraph>> {
        (mode != LockOrder::Off).then(|| {
            Arc::new(OrderGraph {
                mode,
                state: Mutex::new(State::default()),
                reports: AtomicU64::new(0),
            })
        })
    }

    /// The class of the resource called `name`; called once per resource.
    pub(crate) fn class(self: &Arc<Self>, name: &Arc<str>) -> OrderClass {
        let mut state = sync::lock(&self.state);
        let class = u32::try_from(state.graph.names.len()).unwrap_or(u32::MAX);
        state.graph.names.push(Arc::clone(name));
        state.graph.after.push(Vec::new());
        OrderClass {
            graph: Arc::clone(self),
            class,
        }
    }

    /// Inversions reported so far.
    pub(crate) fn reports(&self) -> u64 {
        self.reports.load(Ordering::Relaxed)
    }
}

/// A fresh set-acquisition number, so that the keys one set takes are told
/// apart from keys of its class held before. A process-wide counter (std:
/// loom cannot model statics); taken only when lock order is checked.
pub(crate) fn next_set() -> u64 {
    static NEXT_SET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT_SET.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A lock the order graph counts as held, until its class's
/// [`OrderClass::release`] (the lock layer calls it before it releases the
/// lock, from whatever thread the guard is dropped on).
pub(crate) struct OrderHold {
    /// The slot of the holder that took it: a slot keeps its owner while
    /// it holds anything.
    slot: u32,
    token: u64,
}

impl OrderClass {
    /// Checks that the current holder may ask for `lock` of this class at
    /// `site` without inverting a recorded order, and records the edges
    /// from what it holds. `set` is the set acquisition asking (0 for a
    /// lock alone). In warn mode an inversion is reported and the
    /// acquisition goes ahead; in error mode it is refused.
    #[inline]
    pub(crate) fn check(
        &self,
        lock: usize,
        key: impl FnOnce() -> Option<String>,
        access: Access,
        site: &'static Location<'static>,
        set: u64,
    ) -> Result<(), Error> {
        self.check_holding(lock, key, access, site, set, false)
            .map(drop)
    }

    /// [`check`](Self::check), and, when `hold` and the acquisition may go
    /// ahead, counts `lock` as held in the same critical section: for an
    /// acquisition that tries its lock next, and [`release`](Self::release)s
    /// the hold again if it has to wait instead.
    #[cold]
    #[inline(never)]
    pub(crate) fn check_holding(
        &self,
        lock: usize,
        key: impl FnOnce() -> Option<String>,
        access: Access,
        site: &'static Location<'static>,
        set: u64,
        hold: bool,
    ) -> Result<Option<OrderHold>, Error> {
        let (holder, hint) = Holder::current_with_hint();
        let refuse = self.graph.mode == LockOrder::Error;
        let (inversion, hold) = {
            let mut state = sync::lock(&self.graph.state);
            let state = &mut *state;
            let slot = if hold {
                Some(state.slot(holder, hint))
            } else {
                state.find(holder, hint)
            };
            let held = slot.map_or(&[][..], |slot| &state.slots[slot as usize].held);
            let inversion = if held.is_empty() {
                // Nothing held: no edge to record, none to invert.
                None
            } else {
                let inversion = state.graph.check(held, self.class, lock, site, set, refuse);
                // Warned once per pair; refused every time.
                inversion.filter(|found| refuse || state.warned.insert(found.pair))
            };
            let hold = match slot {
                Some(slot) if hold && (inversion.is_none() || !refuse) => {
                    Some(state.push(slot, self.held(lock, site, set)))
                }
                _ => None,
            };
            (inversion, hold)
        };
        if let Some(hold) = &hold {
            if hold.slot != hint {
                holder.remember(hold.slot);
            }
        }
        let Some(inversion) = inversion else {
            return Ok(hold);
        };
        self.graph.reports.fetch_add(1, Ordering::Relaxed);
        // Described, and reported, outside the graph's mutex: a key's
        // `Debug` and a `tracing` subscriber are user code.
        let error = Error::LockOrder {
            resource: inversion
                .cycle
                .last()
                .map_or_else(String::new, |last| last.acquired.clone()),
            key: key(),
            access,
            requested_at: site.to_string(),
            cycle: inversion.cycle,
        };
        crate::observe::tracing_out::lock_order(&error, refuse);
        if refuse {
            Err(error)
        } else {
            Ok(hold)
        }
    }

    /// A hold of `lock` of this class, before `push` numbers it.
    fn held(&self, lock: usize, site: &'static Location<'static>, set: u64) -> HeldLock {
        HeldLock {
            class: self.class,
            lock,
            site,
            set,
            token: 0,
        }
    }

    /// Records that the current holder now holds `lock`, taken at `site`
    /// (by set acquisition `set`, or 0); the returned hold forgets it when
    /// dropped, on whatever thread.
    #[cold]
    #[inline(never)]
    pub(crate) fn hold(
        &self,
        lock: usize,
        site: &'static Location<'static>,
        set: u64,
    ) -> OrderHold {
        let (holder, hint) = Holder::current_with_hint();
        let mut state = sync::lock(&self.graph.state);
        let slot = state.slot(holder, hint);
        let hold = state.push(slot, self.held(lock, site, set));
        drop(state);
        if slot != hint {
            holder.remember(slot);
        }
        hold
    }

    /// Counts `hold` as taken by set acquisition `set`: recorded after the
    /// fact by a set, whose per-lock acquisition does not know its set.
    #[cold]
    pub(crate) fn join_set(&self, hold: &OrderHold, set: u64) {
        let mut state = sync::lock(&self.graph.state);
        if let Some(held) = state
            .slots
            .get_mut(hold.slot as usize)
            .and_then(|slot| slot.held.iter_mut().rfind(|held| held.token == hold.token))
        {
            held.set = set;
        }
    }

    /// Forgets `hold`: its lock is being released, on whatever thread.
    #[cold]
    pub(crate) fn release(&self, hold: OrderHold) {
        sync::lock(&self.graph.state).forget(&hold);
    }
}

impl Graph {
    /// The inversion that a holder of `held` asking for `lock` of `class`
    /// would make, if any; records the edges from each class it holds
    /// otherwise (in warn mode, all but the inverted ones; a refused
    /// acquisition records nothing).
    fn check(
        &mut self,
        held: &[HeldLock],
        class: u32,
        lock: usize,
        site: &'static Location<'static>,
        set: u64,
        refuse: bool,
    ) -> Option<Inversion> {
        let mut inversion = None;
        let mut new_edges = Vec::new();
        for held in held {
            if held.class == class {
                // Keys of one resource in one set: taken in canonical order.
                if set != 0 && held.set == set && held.lock != lock {
                    continue;
                }
            } else if self.edges.contains_key(&(held.class, class)) {
                continue;
            }
            let path = if held.class == class {
                Some(Vec::new())
            } else {
                self.path(class, held.class)
            };
            match path {
                Some(path) => {
                    if inversion.is_none() {
                        let mut cycle = self.describe(&path);
                        cycle.push(OrderEdge {
                            held: self.name(held.class),
                            held_at: held.site.to_string(),
                            acquired: self.name(class),
                            acquired_at: site.to_string(),
                        });
                        inversion = Some(Inversion {
                            pair: (held.class, class),
                            cycle,
                        });
                    }
                }
                None => new_edges.push((held.class, held.site)),
            }
        }
        if inversion.is_none() || !refuse {
            for (from, held_at) in new_edges {
                self.edges.entry((from, class)).or_insert_with(|| {
                    self.after[from as usize].push(class);
                    EdgeSites {
                        held_at,
                        acquired_at: site,
                    }
                });
            }
        }
        inversion
    }

    /// A shortest path of recorded edges from `from` to `to`, as the pairs
    /// it steps through; breadth-first, each class visited once.
    fn path(&self, from: u32, to: u32) -> Option<Vec<(u32, u32)>> {
        let mut reached_by: HashMap<u32, u32, Hasher> = HashMap::default();
        let mut queue = VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            for &next in &self.after[at as usize] {
                if next == from || reached_by.contains_key(&next) {
                    continue;
                }
                reached_by.insert(next, at);
                if next == to {
                    let mut path = vec![(at, next)];
                    let mut back = at;
                    while back != from {
                        let before = reached_by[&back];
                        path.push((before, back));
                        back = before;
                    }
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(next);
            }
        }
        None
    }

    fn describe(&self, path: &[(u32, u32)]) -> Vec<OrderEdge> {
        path.iter()
            .map(|&(held, acquired)| {
                let sites = self.edges[&(held, acquired)];
                OrderEdge {
                    held: self.name(held),
                    held_at: sites.held_at.to_string(),
                    acquired: self.name(acquired),
                    acquired_at: sites.acquired_at.to_string(),
                }
            })
            .collect()
    }

    fn name(&self, class: u32) -> String {
        self.names
            .get(class as usize)
            .map_or_else(String::new, ToString::to_string)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn classes(graph: &Arc<OrderGraph>, names: &[&str]) -> Vec<OrderClass> {
        names
            .iter()
            .map(|name| graph.class(&Arc::from(*name)))
            .collect()
    }

    #[test]
    fn an_inverted_pair_is_refused_with_both_call_sites() {
        let graph = OrderGraph::new(LockOrder::Error).unwrap();
        let [a, b] = <[OrderClass; 2]>::try_from(classes(&graph, &["a", "b"]))
            .ok()
            .unwrap();
        let here = Location::caller();
        a.check(1, || None, Access::Write, here, 0).unwrap();
        let held_a = a.hold(1, here, 0);
        b.check(2, || None, Access::Write, here, 0).unwrap();
        let held_b = b.hold(2, here, 0);
        b.release(held_b);
        a.release(held_a);
        let held_b = b.hold(2, here, 0);
        let error = a.check(1, || None, Access::Read, here, 0).unwrap_err();
        let Error::LockOrder { cycle, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(cycle.len(), 2, "{error}");
        assert_eq!(
            (cycle[0].held.as_str(), cycle[0].acquired.as_str()),
            ("a", "b")
        );
        assert_eq!(
            (cycle[1].held.as_str(), cycle[1].acquired.as_str()),
            ("b", "a")
        );
        b.release(held_b);
        assert_eq!(graph.reports(), 1);
        // Released from another thread: the held list is found by token.
        let held = a.hold(1, here, 0);
        std::thread::spawn(move || a.release(held)).join().unwrap();
        assert!(sync::lock(&graph.state)
            .slots
            .iter()
            .all(|slot| slot.held.is_empty()));
    }

    #[test]
    fn keys_of_one_set_do_not_report_and_nested_keys_do() {
        let graph = OrderGraph::new(LockOrder::Error).unwrap();
        let [a] = <[OrderClass; 1]>::try_from(classes(&graph, &["a"]))
            .ok()
            .unwrap();
        let here = Location::caller();
        let set = next_set();
        let first = a.hold(1, here, 0);
        a.join_set(&first, set);
        a.check(2, || None, Access::Write, here, set).unwrap();
        let second = a.hold(2, here, 0);
        a.join_set(&second, set);
        assert!(a.check(3, || None, Access::Write, here, 0).is_err());
        assert!(a
            .check(3, || None, Access::Write, here, next_set())
            .is_err());
        a.release(first);
        a.release(second);
    }
}

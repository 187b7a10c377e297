//! A backend lease passed along a chain of holders in this process.
//!
//! When a holder of a hot key releases while callers of this process queue
//! for it, asking the backend again for the next one would cost a round
//! trip per caller. Instead the releasing holder parks its lease with the
//! resource, and the next holder of the in-process lock adopts it: one
//! backend acquisition per chain of local hand-offs. A chain ends, and the
//! lease goes back to the backend, once it has lasted [`CHAIN_TIME`], or
//! when no one here adopts it within [`LINGER`] (the queued caller gave
//! up). A chain that ended on time leaves a turn for other processes
//! instead: the next holder here waits [`GIVE_WAY`] before asking the
//! backend, longer than other processes' longest pause between attempts,
//! so a process with a queue that never empties cannot starve them.
//!
//! Every holder of a chain gets its own fencing token: the backend's token
//! times 2^16 plus the holder's place in the chain, so tokens still
//! strictly increase from holder to holder, also within one process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Backend, Lease};
use crate::sync::{self, Mutex};
use crate::timer::Alarm;

/// How long one chain of local holders may keep a backend lease.
pub(crate) const CHAIN_TIME: Duration = Duration::from_millis(5);
/// How long a parked lease waits for the next local holder to adopt it.
pub(crate) const LINGER: Duration = Duration::from_millis(1);
/// How long this process keeps off a lock whose chain ended on time.
pub(crate) const GIVE_WAY: Duration = Duration::from_millis(4);
/// Bits of a fencing token that number the holders of one chain.
const PLACE_BITS: u32 = 16;

/// A backend lease and its place in a chain of local holders.
pub(crate) struct ChainedLease {
    lease: Box<dyn Lease>,
    /// When the backend granted it.
    granted: Instant,
    /// How many holders had it before this one.
    place: u64,
}

impl ChainedLease {
    /// A lease the backend just granted.
    pub(crate) fn new(lease: Box<dyn Lease>) -> Self {
        ChainedLease {
            lease,
            granted: Instant::now(),
            place: 0,
        }
    }

    /// This holder's fencing token.
    pub(crate) fn fence(&self) -> u64 {
        self.lease
            .fence()
            .saturating_mul(1 << PLACE_BITS)
            .saturating_add(self.place)
    }

    /// Whether the backend still holds the lock.
    pub(crate) fn is_valid(&self) -> bool {
        self.lease.is_valid()
    }

    /// The lease for the next holder, if the chain may go on.
    fn passed_on(self) -> Result<ChainedLease, ChainedLease> {
        if self.place + 1 < (1 << PLACE_BITS) && self.granted.elapsed() < CHAIN_TIME {
            Ok(ChainedLease {
                place: self.place + 1,
                ..self
            })
        } else {
            Err(self)
        }
    }
}

/// The backend of a bound resource, and the leases parked between holders
/// of its locks.
pub(crate) struct Tier {
    backend: Arc<dyn Backend>,
    /// By lock entry address; a parked entry is kept alive by its sweep,
    /// so its address stays its own while parked.
    parked: Mutex<HashMap<usize, Parked>>,
}

// Unwind-safe as `Bound` is: nothing keylock keeps here is left half
// changed by a panic.
impl std::panic::UnwindSafe for Tier {}
impl std::panic::RefUnwindSafe for Tier {}

/// What the next local holder finds.
struct Parked {
    left: Left,
    /// Returns the lease to the backend if no holder adopts it, and ends a
    /// turn left to other processes.
    sweep: Option<Alarm>,
}

/// What a releasing holder left for the next holder of this process.
enum Left {
    /// Its lease, to adopt.
    Lease(ChainedLease),
    /// A turn for other processes: ask the backend only after this.
    Turn(Instant),
}

/// What the next local holder adopts.
pub(crate) enum Adopted {
    /// The previous holder's lease: the backend's lock is held.
    Lease(ChainedLease),
    /// Nothing; ask the backend, not before this instant, if any.
    Nothing(Option<Instant>),
}

impl Tier {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Tier {
            backend,
            parked: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Parks a write lease of the lock at `address` for its next holder,
    /// with `sweep` armed (after the delay it is given) to take it back;
    /// or, when the chain has run its course, returns the lease to the
    /// backend and leaves other processes a turn, swept when it is over.
    pub(crate) fn park(
        &self,
        address: usize,
        lease: ChainedLease,
        sweep: impl FnOnce(Duration) -> Alarm,
    ) {
        let (left, lasts) = match lease.passed_on() {
            Ok(lease) => (Left::Lease(lease), LINGER),
            Err(lease) => {
                drop(lease);
                (Left::Turn(Instant::now() + GIVE_WAY), GIVE_WAY)
            }
        };
        let mut parked = sync::lock(&self.parked);
        // A lock has one writer at a time, so one parked lease at most.
        let earlier = parked.insert(
            address,
            Parked {
                left,
                sweep: Some(sweep(lasts)),
            },
        );
        drop(parked);
        drop(earlier);
    }

    /// What the previous holder of the lock at `address` left, if anything.
    pub(crate) fn adopt(&self, address: usize) -> Adopted {
        let Some(parked) = sync::lock(&self.parked).remove(&address) else {
            return Adopted::Nothing(None);
        };
        // Dropping the sweep cancels it.
        match parked.left {
            Left::Lease(lease) => Adopted::Lease(lease),
            Left::Turn(until) => Adopted::Nothing(Some(until)),
        }
    }

    /// For the sweep of the lock at `address`: whether a lease is still
    /// parked; if so, `take` says whether this caller may return it to the
    /// backend (it holds the in-process lock), else the sweep is re-armed
    /// with `rearm`.
    pub(crate) fn sweep(
        &self,
        address: usize,
        take: impl FnOnce() -> bool,
        rearm: impl FnOnce() -> Alarm,
    ) -> Sweep {
        let mut parked = sync::lock(&self.parked);
        let Some(waiting) = parked.get_mut(&address) else {
            return Sweep::Adopted;
        };
        if let Left::Turn(_) = waiting.left {
            // No lease to return; the turn is over.
            let ended = parked.remove(&address);
            drop(parked);
            drop(ended);
            return Sweep::Adopted;
        }
        if take() {
            let Some(taken) = parked.remove(&address) else {
                unreachable!("checked above");
            };
            drop(parked);
            // The lease (released in the backend here) before the alarm.
            let Parked { left, sweep } = taken;
            drop(left);
            drop(sweep);
            Sweep::Returned
        } else {
            // Someone here holds the lock and will adopt or drop it.
            waiting.sweep = Some(rearm());
            Sweep::Rearmed
        }
    }

    /// How many leases are parked now.
    #[cfg(test)]
    pub(crate) fn parked(&self) -> usize {
        sync::lock(&self.parked).len()
    }
}

/// What a sweep found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sweep {
    /// The lease was adopted (or never parked): nothing to do.
    Adopted,
    /// The lease went back to the backend.
    Returned,
    /// The lock was held; the sweep will look again.
    Rearmed,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::backend::{BackendError, BoxFuture, Target};
    use crate::Access;

    #[derive(Debug)]
    struct NoBackend;

    impl Backend for NoBackend {
        fn name(&self) -> &'static str {
            "none"
        }

        fn try_lock<'a>(
            &'a self,
            _: &'a Target,
            _: Access,
        ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, BackendError>> {
            Box::pin(std::future::ready(Ok(None)))
        }
    }

    /// A lease that counts its releases.
    #[derive(Debug)]
    struct Counted(u64, Arc<AtomicUsize>);

    impl Lease for Counted {
        fn fence(&self) -> u64 {
            self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn later() -> Alarm {
        crate::timer::call_at(Instant::now() + Duration::from_secs(3600), || {})
    }

    fn later_by(_: Duration) -> Alarm {
        later()
    }

    #[test]
    fn the_next_holder_adopts_the_lease_with_the_next_fence() {
        let tier = Tier::new(Arc::new(NoBackend));
        let released = Arc::new(AtomicUsize::new(0));
        let lease = ChainedLease::new(Box::new(Counted(7, Arc::clone(&released))));
        assert_eq!(lease.fence(), 7 << 16);
        tier.park(1, lease, later_by);
        assert_eq!(tier.parked(), 1);
        let Adopted::Lease(adopted) = tier.adopt(1) else {
            panic!("the parked lease was not adopted");
        };
        assert_eq!(adopted.fence(), (7 << 16) + 1);
        assert_eq!(released.load(Ordering::SeqCst), 0);
        assert!(matches!(tier.adopt(1), Adopted::Nothing(None)));
        drop(adopted);
        assert_eq!(released.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_chain_past_its_time_returns_the_lease_and_leaves_a_turn() {
        let tier = Tier::new(Arc::new(NoBackend));
        let released = Arc::new(AtomicUsize::new(0));
        let mut lease = ChainedLease::new(Box::new(Counted(1, Arc::clone(&released))));
        lease.granted -= CHAIN_TIME;
        tier.park(1, lease, later_by);
        assert_eq!(released.load(Ordering::SeqCst), 1);
        let Adopted::Nothing(Some(until)) = tier.adopt(1) else {
            panic!("no turn left to other processes");
        };
        assert!(until > Instant::now() + GIVE_WAY / 2);
    }

    #[test]
    fn a_sweep_returns_a_lease_nobody_adopted_and_waits_for_a_holder() {
        let tier = Tier::new(Arc::new(NoBackend));
        let released = Arc::new(AtomicUsize::new(0));
        let lease = ChainedLease::new(Box::new(Counted(1, Arc::clone(&released))));
        tier.park(1, lease, later_by);
        // Someone holds the in-process lock: they will adopt it.
        assert_eq!(tier.sweep(1, || false, later), Sweep::Rearmed);
        assert_eq!(released.load(Ordering::SeqCst), 0);
        assert_eq!(tier.sweep(1, || true, later), Sweep::Returned);
        assert_eq!(released.load(Ordering::SeqCst), 1);
        assert_eq!(tier.parked(), 0);
        assert_eq!(
            tier.sweep(1, || panic!("nothing to take"), later),
            Sweep::Adopted
        );
    }
}

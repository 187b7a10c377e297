//! Counter stripes owned by threads, so that counting on the hot path is a
//! plain load and store instead of an atomic read-modify-write.
//!
//! A statistics counter is an array of stripes, summed when read. The first
//! [`OWNED`] threads that count each lease one stripe index for their
//! lifetime; a stripe with a single writer can be incremented with a
//! relaxed load and store and still never lose a count, which costs a
//! fraction of a locked `fetch_add`. The index returns to the pool when its
//! thread exits. Threads beyond that (and a thread whose claim was already
//! torn down during its exit) share the last stripe, with `fetch_add`.

use std::cell::Cell;
// `FREE` is a process-wide static and the stripe index a thread-local:
// both stay std types (loom cannot model statics); the counters they index
// are `crate::sync` atomics like every other.
use std::sync::atomic::AtomicU32;

use crate::sync::{AtomicU64, Ordering};

/// Stripes that a thread can own.
pub(crate) const OWNED: usize = 16;
/// All stripes: the owned ones and the shared one after them.
pub(crate) const STRIPES: usize = OWNED + 1;
/// The stripe every thread without its own adds to.
const SHARED: usize = OWNED;
/// Not claimed yet.
const UNCLAIMED: usize = usize::MAX;

/// Bit `i` set: stripe `i` is free to claim.
static FREE: AtomicU32 = AtomicU32::new((1 << OWNED) - 1);

/// This thread's stripe, leased for its lifetime; given back when the
/// thread exits.
struct StripeLease(Cell<usize>);

impl Drop for StripeLease {
    fn drop(&mut self) {
        let index = self.0.get();
        if index < OWNED {
            // Release: the next owner's first load sees every count this
            // thread stored.
            FREE.fetch_or(1 << index, Ordering::Release);
        }
    }
}

thread_local! {
    static LEASE: StripeLease = const { StripeLease(Cell::new(UNCLAIMED)) };
}

fn claim_free() -> usize {
    let mut free = FREE.load(Ordering::Relaxed);
    loop {
        if free == 0 {
            return SHARED;
        }
        let index = free.trailing_zeros();
        // Acquire: pairs with the release of the stripe's previous owner.
        match FREE.compare_exchange_weak(
            free,
            free & !(1 << index),
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return index as usize,
            Err(actual) => free = actual,
        }
    }
}

/// The stripe the current thread counts on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StripeIndex {
    index: usize,
}

impl StripeIndex {
    /// The current thread's stripe, claiming one on first use.
    #[inline]
    pub(crate) fn current() -> StripeIndex {
        let index = LEASE
            .try_with(|claim| {
                let index = claim.0.get();
                if index != UNCLAIMED {
                    return index;
                }
                let index = claim_free();
                claim.0.set(index);
                index
            })
            .unwrap_or(SHARED);
        StripeIndex { index }
    }

    /// Index into an array of [`STRIPES`] stripes.
    #[inline]
    pub(crate) fn index(self) -> usize {
        self.index
    }

    /// Adds one to `counter`, which must be in this slot's stripe.
    #[inline]
    pub(crate) fn increment(self, counter: &AtomicU64) {
        if self.index == SHARED {
            counter.fetch_add(1, Ordering::Relaxed);
        } else {
            // This thread is the stripe's only writer, so no count is lost
            // between the load and the store.
            counter.store(
                counter.load(Ordering::Relaxed).wrapping_add(1),
                Ordering::Relaxed,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Counts `each` times on each of `threads` threads started together;
    /// returns the sum over all stripes once they have exited.
    fn count_on_threads(counters: &Arc<Vec<AtomicU64>>, threads: usize, each: u64) -> u64 {
        let start = Arc::new(std::sync::Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let counters = counters.clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..each {
                        let slot = StripeIndex::current();
                        slot.increment(&counters[slot.index()]);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn stripes() -> Arc<Vec<AtomicU64>> {
        Arc::new((0..STRIPES).map(|_| AtomicU64::new(0)).collect())
    }

    #[test]
    fn more_threads_than_stripes_lose_no_count() {
        let counters = stripes();
        assert_eq!(
            count_on_threads(&counters, 3 * OWNED, 20_000),
            3 * OWNED as u64 * 20_000
        );
    }

    #[test]
    fn exiting_threads_hand_their_stripe_on_with_its_counts() {
        let counters = stripes();
        // Generations of short-lived threads reuse the stripes of the ones
        // before; each must continue from the count its predecessor left.
        let mut total = 0;
        for _ in 0..50 {
            total = count_on_threads(&counters, 4, 1_000);
        }
        assert_eq!(total, 50 * 4 * 1_000);
    }
}

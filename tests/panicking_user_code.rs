//! Guarantee L11 of `docs/guarantees.md`: user code that keylock calls
//! between taking a lock (or a dedup claim) and handing it to its owner (a
//! key's `Debug`, its `Clone`, a `tracing` subscriber, a `metrics` recorder)
//! may panic, and nothing stays locked or in flight when it does.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use keylock::Registry;

/// A key whose `Debug` panics while its flag is set, and whose `Clone`
/// panics once its budget of clones is spent; equal and hashed by `id`
/// alone.
struct Fragile {
    id: u64,
    panic_in_debug: &'static AtomicBool,
    clone_budget: &'static AtomicUsize,
}

impl PartialEq for Fragile {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Fragile {}

impl std::hash::Hash for Fragile {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl fmt::Debug for Fragile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.panic_in_debug.load(Ordering::SeqCst) {
            panic!("Debug of key {} panics", self.id);
        }
        write!(f, "Fragile({})", self.id)
    }
}

impl Clone for Fragile {
    fn clone(&self) -> Self {
        let spent = self
            .clone_budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                UNLIMITED => Some(UNLIMITED),
                0 => None,
                left => Some(left - 1),
            })
            .is_err();
        if spent {
            panic!("Clone of key {} panics", self.id);
        }
        Fragile {
            id: self.id,
            panic_in_debug: self.panic_in_debug,
            clone_budget: self.clone_budget,
        }
    }
}

fn key(id: u64, debug: &'static AtomicBool, clones: &'static AtomicUsize) -> Fragile {
    Fragile {
        id,
        panic_in_debug: debug,
        clone_budget: clones,
    }
}

const UNLIMITED: usize = usize::MAX;
static NEVER: AtomicBool = AtomicBool::new(false);
static ALWAYS: AtomicUsize = AtomicUsize::new(UNLIMITED);

fn quietly<R>(body: impl FnOnce() -> R) -> std::thread::Result<R> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(body));
    std::panic::set_hook(hook);
    result
}

#[test]
fn key_whose_debug_panics_while_the_holder_is_listed_leaves_the_key_unlocked() {
    static DEBUG: AtomicBool = AtomicBool::new(false);
    // The live view describes every holder's key with `Debug` as it takes
    // the lock.
    let registry = Registry::builder().track_holders(true).build();
    let keys = registry.keyed::<Fragile>("fragile");
    let fragile = key(1, &DEBUG, &ALWAYS);
    DEBUG.store(true, Ordering::SeqCst);
    let outcome = quietly(|| drop(keys.write_blocking(&fragile)));
    DEBUG.store(false, Ordering::SeqCst);
    assert!(outcome.is_err(), "the key's Debug was not called");
    assert!(!keys.is_locked(&fragile), "the panic left the key locked");
    assert!(keys.try_write(&fragile).is_ok());
    let stats = registry.stats();
    let stats = stats.resource("fragile").unwrap();
    assert_eq!(stats.holders, 0);
    assert!(stats.live.is_empty(), "{:?}", stats.live);
}

#[tokio::test]
async fn async_holder_whose_key_debug_panics_releases_the_key() {
    static DEBUG: AtomicBool = AtomicBool::new(false);
    let registry = Registry::builder().track_holders(true).build();
    let keys = registry.keyed::<Fragile>("fragile");
    let fragile = key(2, &DEBUG, &ALWAYS);
    DEBUG.store(true, Ordering::SeqCst);
    let keys2 = keys.clone();
    let fragile2 = fragile.clone_without_panic();
    let outcome = tokio::spawn(async move { drop(keys2.write(&fragile2).await) }).await;
    DEBUG.store(false, Ordering::SeqCst);
    assert!(outcome.unwrap_err().is_panic());
    assert!(!keys.is_locked(&fragile), "the panic left the key locked");
    let _guard = keys.write(&fragile).await;
}

impl Fragile {
    fn clone_without_panic(&self) -> Fragile {
        Fragile {
            id: self.id,
            panic_in_debug: self.panic_in_debug,
            clone_budget: self.clone_budget,
        }
    }
}

#[test]
fn dedup_key_whose_clone_panics_is_not_left_in_flight() {
    static CLONES: AtomicUsize = AtomicUsize::new(UNLIMITED);
    let registry = Registry::new();
    let seen = registry.dedup::<Fragile>("events");
    // The panic may strike at any of the clones a claim makes.
    for budget in 0..4 {
        let fragile = key(budget as u64, &NEVER, &CLONES);
        CLONES.store(budget, Ordering::SeqCst);
        let outcome = quietly(|| seen.claim(&fragile).map(drop));
        CLONES.store(UNLIMITED, Ordering::SeqCst);
        if outcome.is_ok() {
            // The claim needed fewer clones than the budget allowed.
            continue;
        }
        assert!(
            !seen.is_in_flight(&fragile),
            "a panic after {budget} clones left the key in flight"
        );
        let claim = seen.claim(&fragile).expect("a retry can claim the key");
        claim.commit();
        assert!(seen.claim(&fragile).unwrap_err().is_duplicate());
    }
}

#[test]
fn commit_whose_key_clone_panics_releases_the_claim() {
    static CLONES: AtomicUsize = AtomicUsize::new(UNLIMITED);
    let registry = Registry::new();
    let seen = registry.dedup::<Fragile>("events");
    for budget in 0..3 {
        let fragile = key(budget as u64, &NEVER, &CLONES);
        let claim = seen.claim(&fragile).unwrap();
        CLONES.store(budget, Ordering::SeqCst);
        let outcome = quietly(move || claim.commit());
        CLONES.store(UNLIMITED, Ordering::SeqCst);
        if outcome.is_ok() {
            continue;
        }
        assert!(
            !seen.is_in_flight(&fragile),
            "a panic after {budget} clones left the key in flight"
        );
        assert!(
            seen.claim(&fragile).is_ok(),
            "the failed commit did not release"
        );
    }
}

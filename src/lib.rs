#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub use keylock_runtime::{
    Access, Acquire, Claim, Dedup, DedupOptions, DedupStats, Distribution, Error, Key, Keyed, Lock,
    LockKey, ManualClock, Participant, ReadGuard, Registry, RegistryBuilder, Resource,
    ResourceStats, Role, Stats, WriteGuard, DEFAULT_CAPACITY, DEFAULT_FAIRNESS_BOUND,
    DEFAULT_SLOW_WAIT, DEFAULT_TTL,
};

#[doc = include_str!("attributes.md")]
pub use keylock_macros::read_lock;

#[doc = include_str!("attributes.md")]
pub use keylock_macros::write_lock;

#[doc(hidden)]
pub mod __private {
    //! Support for the code keylock's attributes generate. **Not a stable
    //! API**: it may change in any release.
    pub use keylock_runtime::__private::*;
}

#[doc = include_str!("dedup.md")]
pub use keylock_macros::dedup;

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// Everything the runtime exports, so that users depend on this crate alone.
pub use keylock_runtime::*;

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

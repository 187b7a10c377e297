//! Attribute macros of keylock. Use them through the `keylock` crate.

//! Attribute macros of keylock: `#[read_lock]`, `#[write_lock]` and
//! `#[dedup]`.
//!
//! Use them through the `keylock` crate, which documents every argument;
//! the expansions refer to `::keylock::__private` (or the path given with
//! `crate = "..."`).

#![forbid(unsafe_code)]

mod args;
mod entry;
mod expand;
mod validate;

use proc_macro::TokenStream;

use args::Kind;

/// Shared (read) access to a named resource, or to one key of it, for the
/// whole body of the annotated function. See the `keylock` crate docs.
#[proc_macro_attribute]
pub fn read_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::attribute(Kind::Read, args.into(), item.into()).into()
}

/// Exclusive (write) access to a named resource, or to one key of it, for
/// the whole body of the annotated function. See the `keylock` crate docs.
#[proc_macro_attribute]
pub fn write_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::attribute(Kind::Write, args.into(), item.into()).into()
}

/// Handles each key once: the first call with a key runs, duplicates are
/// skipped. See the `keylock` crate docs.
#[proc_macro_attribute]
pub fn dedup(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::attribute(Kind::Dedup, args.into(), item.into()).into()
}

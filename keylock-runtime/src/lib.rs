//! The runtime of [keylock](https://docs.rs/keylock): a registry of named
//! and per-key read/write locks that async tasks and threads share.
//!
//! Most users depend on the `keylock` crate, which re-exports everything
//! here next to the attribute macros.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use keylock_runtime::Registry;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), keylock_runtime::Error> {
//! let registry = Registry::global();
//!
//! // A named resource: many readers or one writer.
//! let db = registry.resource("db");
//! {
//!     let _r1 = db.read().await;
//!     let _r2 = db.read().await;
//! }
//!
//! // Keyed locks: one holder per channel, channels in parallel.
//! let channels = registry.keyed::<u64>("channels");
//! let guard = channels.write(&42).await;
//! assert!(channels.is_locked(&42));
//! assert!(!channels.is_locked(&7));
//!
//! // Timeouts and non-waiting attempts report why they failed.
//! let err = channels.key(&42).write_timeout(Duration::from_millis(5)).await.unwrap_err();
//! assert!(err.is_timeout());
//! drop(guard);
//!
//! // Sync code blocks on the same locks.
//! let g = std::thread::spawn(|| {
//!     let channels = Registry::global().keyed::<u64>("channels");
//!     let _g = channels.write_blocking(&42);
//! });
//! g.join().unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # The lock
//!
//! Every lock is one fair, write-preferring read/write lock shared by async
//! tasks (`.await`) and OS threads (`*_blocking`): a thread holding a key
//! blocks a task asking for it and the reverse. Waiters are served in the
//! order they queued; a queued writer blocks readers that arrive after it.
//! A newcomer may take a just-freed lock ahead of the queue's head only
//! while the head has waited less than the registry's
//! [fairness bound](RegistryBuilder::fairness_bound) (500 µs by default),
//! after which the lock is handed to the head directly.
//!
//! Uncontended acquisition and release are one atomic compare-and-swap
//! each. Guards are owned, `'static` and `Send`, and release on drop,
//! including during unwinding.
//!
//! # Keys and memory
//!
//! A key entry is live while someone holds it, waits for it or keeps a
//! [`Lock`] handle to it. Idle entries stay until a sweep, which runs when a
//! map has grown past twice the entries its last sweep kept (and at least
//! 1,024), so a key used again and again is not re-allocated each time.
//! Removal is atomic with respect to lookups, so it can never produce a
//! second lock for a live key. Memory follows the live keys, not every key
//! ever seen: a sweep that removes most entries also shrinks the map's
//! tables. Entries that go idle while no new key arrives stay until the next
//! sweep; [`Keyed::sweep`] removes them at once.
//!
//! # Cancel safety
//!
//! Dropping an acquisition future while it waits leaves nothing behind: no
//! waiter, no counter, no entry. If the lock had been handed to it in the
//! meantime, it is passed on to the next waiter.
//!
//! # Architecture
//!
//! The runtime is a stack of layers; each module imports only from the
//! layers below it. The guarantees the layers keep, and the tests that
//! prove them, are listed in `docs/guarantees.md` of the repository.
//!
//! - **Vocabulary and shims** (`access`, `key`, `error`, `clock`, `sync`):
//!   the words every layer speaks ([`Access`], [`Key`], [`Error`]) and the
//!   `sync` shim through which every atomic and mutex passes, so that
//!   `--cfg loom` model-checks all of them.
//! - **Observability** (`observe/`): a leaf the layers report into. The
//!   hot-path counters (thread-owned stripes, no clock read unless a caller
//!   queued), the opt-in live view, the public snapshot types and their
//!   renderings (table, Prometheus), and the `tracing` and `metrics`
//!   outputs.
//! - **The primitive** (`raw`): one fair, write-preferring read/write lock
//!   in one atomic state word plus a FIFO queue of wakers and parked threads.
//!   It knows nothing of names, keys or statistics. `timer` gives waits
//!   their deadlines.
//! - **Lock order** (`lock_order`): the opt-in lockdep graph of one
//!   registry ([`LockOrder`]): which resources each task or thread takes
//!   while holding others, and what each holds, so that an acquisition
//!   that inverts a recorded order is reported before it waits.
//! - **Backends** (`backend`): the [`Backend`] interface for locks shared
//!   beyond this process, the waits for it (one attempt at a time, with
//!   backoff), the lease passed along a chain of local holders, and the
//!   [`FileBackend`]. A resource bound to one keeps its in-process lock as
//!   the first tier; only the holder of that lock asks the backend.
//! - **The entry** (`entry`): what one lock is: the primitive, the
//!   resource's shared info (name, settings, counters, live view) and the
//!   key, stored inline and seen without its type by the layers above.
//! - **Handles and guards** (`lock`): [`Lock`], the [`Acquire`] future, the
//!   blocking and timed waits, and the guards. Every successful acquisition
//!   passes through one function that counts it and builds the guard's
//!   hold; every release through the hold's `Drop`.
//! - **Lock sets** (`lock_set`): [`LockSet`], several locks taken in one
//!   canonical order (resource name, then key) and released together, so
//!   that sets never deadlock with each other; [`AcquireSet`] and the set
//!   guards. It knows locks, not how they were found: the layers above
//!   order their keys or names and give it the locks.
//! - **Key maps** (`key_map`): the entries of one resource and key type in
//!   a sharded map; lookup and sweep are serialized per shard, so an idle
//!   entry is removed only while the map holds its sole reference.
//! - **Resources** (`keyed`, `resource`): the public handles [`Keyed`] and
//!   [`Resource`], which name each other (the one link that goes both ways).
//! - **The registry** (`registry`): named resources and dedup scopes, global
//!   or built per tenant. Deduplication (`dedup`) sits beside it: its own
//!   claim table, no lock entries.
//!
//! The path of one acquisition: `#[write_lock("sessions", key = id)]`
//! expands to a call-site cache (`__private`) that holds the resource's
//! [`Keyed`] map, so the hot path never hashes the resource name. The key
//! is looked up in the key map (one shard read lock, one `Arc` clone),
//! giving a [`Lock`]; the primitive's compare-and-swap takes it, or the
//! caller queues and waits (a waker for tasks, a park for threads); the one
//! acquisition function counts it and returns a guard, whose drop releases
//! the primitive and, if there are waiters, wakes or hands the lock to the
//! head of the queue.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The vocabulary and shims every layer may use.
mod access;
mod clock;
mod error;
mod holder;
mod key;
mod sync;

// Observability: a leaf that the layers below report into.
mod observe;

// The layers, lowest first; a module imports only from those above it in
// this list (the public handles `Resource` and `Keyed` name each other).
mod backend;
mod dedup;
mod entry;
mod key_map;
mod keyed;
mod lock;
mod lock_order;
mod lock_set;
mod raw;
mod registry;
mod resource;
mod runtime_thread;
mod timer;
mod wait_for;

#[doc(hidden)]
pub mod __private;

pub use access::Access;
#[cfg(unix)]
pub use backend::FileBackend;
pub use backend::{Backend, BackendError, BoxFuture, Intent, Lease, Target};
pub use clock::ManualClock;
pub use dedup::{Claim, Dedup, DedupOptions, DEFAULT_CAPACITY, DEFAULT_TTL};
pub use error::{Error, OrderEdge};
pub use key::{Key, LockKey};
pub use keyed::Keyed;
pub use lock::{Acquire, Lock, ReadGuard, WriteGuard};
pub use lock_order::LockOrder;
pub use lock_set::{AcquireSet, LockSet, ReadSetGuard, WriteSetGuard};
pub use observe::{
    DedupStats, Distribution, Operation, OperationKind, Participant, ResourceStats, Role, Stats,
    RECENT_OPERATIONS,
};
pub use registry::{
    GlobalInUse, Registry, RegistryBuilder, DEFAULT_FAIRNESS_BOUND, DEFAULT_SLOW_WAIT,
};
pub use resource::Resource;
pub use wait_for::{Deadlock, WaitFor};

#[cfg(all(test, loom))]
mod loom_models;

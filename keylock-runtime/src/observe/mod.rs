//! Observability: what the locks did and what they are doing now.
//!
//! A leaf of the runtime: it knows the vocabulary ([`Access`](crate::Access),
//! [`Error`](crate::Error)) and nothing of locks, maps or registries, which
//! report into it.
//!
//! - [`counters`]: the hot-path counters of a resource, fed one
//!   [`LockEvent`] per outcome, over the thread-owned [`stripe`]s and the
//!   [`histogram`]s of wait and hold times;
//! - [`live`]: the opt-in live view of holders and waiters and the recent
//!   operations;
//! - [`snapshot`]: the public figures, printed by [`table`] and
//!   [`prometheus`];
//! - [`tracing_out`] and [`metrics_out`]: events and figures sent to the
//!   `tracing` and `metrics` facades as they happen.

pub(crate) mod counters;
pub(crate) mod histogram;
pub(crate) mod live;
pub(crate) mod metrics_out;
mod prometheus;
pub(crate) mod snapshot;
pub(crate) mod stripe;
mod table;
pub(crate) mod tracing_out;

pub(crate) use counters::{Counters, LockEvent, Occupancy};
pub use histogram::Distribution;
pub(crate) use live::LiveTable;
pub use live::{Operation, OperationKind, Participant, Role, RECENT_OPERATIONS};
pub use snapshot::{DedupStats, ResourceStats, Stats};

//! Backends: where the locks of a resource live when they must be shared
//! beyond this process.
//!
//! A resource bound to a [`Backend`] (see
//! [`RegistryBuilder::backend`](crate::RegistryBuilder::backend)) keeps its
//! in-process lock, and adds a second tier: callers of one process queue on
//! the in-process lock as before, and only the caller that holds it asks
//! the backend, so waiting, fairness, timeouts, cancellation and statistics
//! stay local and exact. A backend only has to make one attempt that never
//! waits ([`Backend::try_lock`]); keylock does the waiting (retries with
//! backoff), the timeouts and the cancellation.
//!
//! Each grant is a [`Lease`]: it carries a fencing token and says whether
//! it is still valid, and dropping it releases the lock in the backend.

mod acquire;
mod chain;
#[cfg(unix)]
mod file;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::access::Access;

pub(crate) use acquire::{acquire, acquire_blocking, try_once, Failures};
pub(crate) use chain::{Adopted, ChainedLease, Sweep, Tier, LINGER};
#[cfg(unix)]
pub use file::FileBackend;

/// A boxed future, as backends return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a backend reports when it cannot answer: unreachable, refused,
/// an I/O error.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a resource's locks live beyond this process: files on one host,
/// or a server several machines reach.
///
/// A backend makes one attempt that never waits; keylock calls it again,
/// with backoff, while a caller waits, and stops calling it when the caller
/// times out or is cancelled. So a backend never has a waiting request to
/// abandon, and a cancelled caller cannot leave a lock behind.
///
/// The `Debug` form of a backend appears in errors: it must not contain
/// credentials.
///
/// # Example
///
/// A backend that keeps its locks in a table shared by the registries of
/// one process (writers only, for brevity), with a token per grant:
///
/// ```
/// use std::collections::HashSet;
/// use std::sync::{Arc, Mutex};
/// use keylock_runtime::{Access, Backend, BackendError, BoxFuture, Lease, Registry, Target};
///
/// #[derive(Debug, Default)]
/// struct Table {
///     held: Mutex<HashSet<Target>>,
///     grants: Mutex<u64>,
/// }
///
/// #[derive(Debug)]
/// struct Shared(Arc<Table>);
///
/// #[derive(Debug)]
/// struct Grant {
///     table: Arc<Table>,
///     target: Target,
///     fence: u64,
/// }
///
/// impl Lease for Grant {
///     fn fence(&self) -> u64 {
///         self.fence
///     }
/// }
///
/// impl Drop for Grant {
///     fn drop(&mut self) {
///         self.table.held.lock().unwrap().remove(&self.target);
///     }
/// }
///
/// impl Backend for Shared {
///     fn name(&self) -> &'static str {
///         "table"
///     }
///
///     fn try_lock<'a>(
///         &'a self,
///         target: &'a Target,
///         _access: Access,
///     ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, BackendError>> {
///         let granted = self.0.held.lock().unwrap().insert(target.clone());
///         let lease = granted.then(|| {
///             let mut grants = self.0.grants.lock().unwrap();
///             *grants += 1;
///             Box::new(Grant {
///                 table: Arc::clone(&self.0),
///                 target: target.clone(),
///                 fence: *grants,
///             }) as Box<dyn Lease>
///         });
///         Box::pin(std::future::ready(Ok(lease)))
///     }
/// }
///
/// let table = Arc::new(Table::default());
/// let a = Registry::builder().backend("jobs", Shared(Arc::clone(&table))).build();
/// let b = Registry::builder().backend("jobs", Shared(table)).build();
/// let held = a.keyed::<u64>("jobs").write_blocking(&7);
/// // Another registry, as another process would, finds it held.
/// assert!(b.keyed::<u64>("jobs").try_write(&7).unwrap_err().is_busy());
/// assert!(held.fence().is_some());
/// drop(held);
/// assert!(b.keyed::<u64>("jobs").try_write(&7).is_ok());
/// ```
pub trait Backend: fmt::Debug + Send + Sync + 'static {
    /// A short name for messages and statistics, such as `"file"`.
    fn name(&self) -> &'static str;

    /// Tries once to take `target` with `access`, without waiting for
    /// other holders: `Ok(Some(lease))` when granted, `Ok(None)` when
    /// another holder has it in a conflicting mode.
    ///
    /// Shared (read) grants may be held by several holders at once,
    /// including several in one process: each call is its own holder.
    ///
    /// # Errors
    ///
    /// When the backend cannot be asked (unreachable, no permission, an I/O
    /// error). keylock reports it as [`Error::Backend`](crate::Error::Backend)
    /// with the backend, resource and key named.
    fn try_lock<'a>(
        &'a self,
        target: &'a Target,
        access: Access,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, BackendError>>;

    /// Called once a waiting caller's attempt found `target` held, before
    /// it tries again: the backend may return an intent that makes callers
    /// arriving later wait behind this one (for example new readers behind
    /// a waiting writer, so that a stream of readers cannot starve it).
    /// keylock keeps the intent until the wait ends, granted, timed out or
    /// cancelled, and then drops it. The default announces nothing.
    fn announce(&self, target: &Target, access: Access) -> Option<Box<dyn Intent>> {
        let _ = (target, access);
        None
    }
}

/// A waiting caller's announced intent to take a lock, from
/// [`Backend::announce`]; dropped when the wait ends.
pub trait Intent: Send + Sync + 'static {}

/// One grant of a backend: the lock is held in the backend until this is
/// dropped.
pub trait Lease: fmt::Debug + Send + Sync + 'static {
    /// The grant's fencing token: greater than the token of every earlier
    /// grant of the same lock, in any process. Give it to the store you
    /// write to, so that it can refuse a write that carries an older token
    /// than one it has seen: a holder that lost its lock without knowing
    /// (paused, or its lease expired) then cannot overwrite its successor.
    fn fence(&self) -> u64;

    /// Whether the lock is still held. A backend whose grants can be lost
    /// (a lease that expired, a connection that broke, a lock file removed
    /// behind keylock's back) says so here.
    fn is_valid(&self) -> bool {
        true
    }
}

/// What a backend locks: a resource's own lock, or one key of it.
///
/// The key is named by its `Debug` form, the same text errors and
/// statistics show, so every process that uses the same key type names a
/// key the same way.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    resource: Arc<str>,
    key: Option<String>,
}

impl Target {
    /// The lock of `resource`, or of one `key` (in its `Debug` form) of it.
    pub fn new(resource: &str, key: Option<&str>) -> Target {
        Target {
            resource: Arc::from(resource),
            key: key.map(str::to_owned),
        }
    }

    pub(crate) fn from_parts(resource: Arc<str>, key: Option<String>) -> Target {
        Target { resource, key }
    }

    /// The resource's name.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The key in its `Debug` form; `None` for a resource's own lock.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.resource)?;
        if let Some(key) = &self.key {
            write!(f, " (key {key})")?;
        }
        Ok(())
    }
}

/// A backend as a registry keeps it. Unwind-safe whatever the backend is, so
/// that registries and handles stay usable across `catch_unwind`: keylock
/// keeps nothing of a backend call that panicked (a lease is kept only once
/// granted), and a backend's own state is its own to keep consistent, as
/// for any `Sync` type shared between threads.
#[derive(Clone, Debug)]
pub(crate) struct Bound(pub(crate) Arc<dyn Backend>);

impl std::panic::UnwindSafe for Bound {}
impl std::panic::RefUnwindSafe for Bound {}

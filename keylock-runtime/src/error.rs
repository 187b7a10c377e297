//! The errors an acquisition can end with.

use std::fmt;
use std::time::Duration;

use crate::access::Access;

/// Why a lock was not acquired.
///
/// Returned by the timed and `try_` acquisitions, and by annotated
/// functions through their return type (`Result<T, E>` where
/// `E: From<keylock_runtime::Error>`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The lock was not acquired within the timeout.
    #[non_exhaustive]
    Timeout {
        /// Name of the resource.
        resource: String,
        /// The key, in its `Debug` form, for keyed locks.
        key: Option<String>,
        /// Read or write.
        access: Access,
        /// How long the caller waited before giving up.
        waited: Duration,
    },
    /// The lock was held and the caller asked not to wait.
    #[non_exhaustive]
    Busy {
        /// Name of the resource.
        resource: String,
        /// The key, in its `Debug` form, for keyed locks.
        key: Option<String>,
        /// Read or write.
        access: Access,
    },
    /// A `#[dedup]` key was already handled, or is being handled.
    #[non_exhaustive]
    Duplicate {
        /// Name of the dedup scope.
        scope: String,
        /// The key, in its `Debug` form.
        key: Option<String>,
        /// Whether the first call with this key is still running (rather
        /// than finished and remembered).
        in_flight: bool,
    },
    /// The caller asked for a lock that it already holds (the same Tokio
    /// task, or the same thread outside any task), in a way that would make
    /// it wait for itself forever: a write while it holds the lock, or any
    /// access that has to queue while it holds a read.
    #[non_exhaustive]
    WouldDeadlock {
        /// Name of the resource.
        resource: String,
        /// The key, in its `Debug` form, for keyed locks.
        key: Option<String>,
        /// What was asked for: read or write.
        access: Access,
        /// Where the caller took the lock it holds, as `file:line:column`,
        /// when known.
        held_at: Option<String>,
        /// Where it asked for the lock again.
        requested_at: String,
    },
    /// The backend the resource is bound to could not be asked for the
    /// lock: unreachable, no permission, an I/O error.
    #[non_exhaustive]
    Backend {
        /// The backend's name, such as `file`.
        backend: String,
        /// Name of the resource.
        resource: String,
        /// The key, in its `Debug` form, for keyed locks.
        key: Option<String>,
        /// Read or write.
        access: Access,
        /// What the backend reported.
        message: String,
    },
    /// The backend no longer holds a lock this process was granted (its
    /// lease expired, its connection broke, its lock file was removed), so
    /// another holder may have it now.
    #[non_exhaustive]
    LeaseLost {
        /// The backend's name, such as `file`.
        backend: String,
        /// Name of the resource.
        resource: String,
        /// The key, in its `Debug` form, for keyed locks.
        key: Option<String>,
    },
    /// The caller asked for a lock while holding another, in an order
    /// that inverts one taken before (by any task or thread): two callers
    /// running both orders at once can deadlock. Reported before waiting,
    /// by registries built with
    /// [`lock_order(LockOrder::Error)`](crate::RegistryBuilder::lock_order).
    #[non_exhaustive]
    LockOrder {
        /// Name of the resource asked for.
        resource: String,
        /// The key, in its `Debug` form, for keyed locks.
        key: Option<String>,
        /// What was asked for: read or write.
        access: Access,
        /// Where it was asked for, as `file:line:column`.
        requested_at: String,
        /// The cycle of orders it would close, each step one resource held
        /// while another was taken; the last step is this request.
        cycle: Vec<OrderEdge>,
    },
}

/// One step of a lock-order cycle: a holder held a lock of resource `held`
/// (taken at `held_at`) when it took, or asked for, a lock of resource
/// `acquired` at `acquired_at`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct OrderEdge {
    /// The resource held.
    pub held: String,
    /// Where the held lock was taken, as `file:line:column`.
    pub held_at: String,
    /// The resource taken while holding it.
    pub acquired: String,
    /// Where it was taken (or, for the last step of a report, asked for).
    pub acquired_at: String,
}

impl fmt::Display for OrderEdge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` held (taken at {}) while `{}` was taken at {}",
            self.held, self.held_at, self.acquired, self.acquired_at
        )
    }
}

impl Error {
    /// The resource (or dedup scope) the failure was about.
    pub fn resource(&self) -> &str {
        match self {
            Error::Timeout { resource, .. }
            | Error::Busy { resource, .. }
            | Error::WouldDeadlock { resource, .. }
            | Error::Backend { resource, .. }
            | Error::LeaseLost { resource, .. }
            | Error::LockOrder { resource, .. } => resource,
            Error::Duplicate { scope, .. } => scope,
        }
    }

    /// The key, in its `Debug` form, when the lock was keyed.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::Timeout { key, .. }
            | Error::Busy { key, .. }
            | Error::Duplicate { key, .. }
            | Error::WouldDeadlock { key, .. }
            | Error::Backend { key, .. }
            | Error::LeaseLost { key, .. }
            | Error::LockOrder { key, .. } => key.as_deref(),
        }
    }

    /// Whether this is [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Whether this is [`Error::Busy`].
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }

    /// Whether this is [`Error::Duplicate`].
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Error::Duplicate { .. })
    }

    /// Whether this is [`Error::WouldDeadlock`].
    pub fn is_would_deadlock(&self) -> bool {
        matches!(self, Error::WouldDeadlock { .. })
    }

    /// Whether this is [`Error::Backend`].
    pub fn is_backend(&self) -> bool {
        matches!(self, Error::Backend { .. })
    }

    /// Whether this is [`Error::LeaseLost`].
    pub fn is_lease_lost(&self) -> bool {
        matches!(self, Error::LeaseLost { .. })
    }

    /// Whether this is [`Error::LockOrder`].
    pub fn is_lock_order(&self) -> bool {
        matches!(self, Error::LockOrder { .. })
    }
}

struct Target<'a>(&'a str, Option<&'a str>);

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.0)?;
        if let Some(key) = self.1 {
            write!(f, " (key {key})")?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout {
                resource,
                key,
                access,
                waited,
            } => write!(
                f,
                "timed out after {waited:?} waiting for the {access} lock on {}",
                Target(resource, key.as_deref())
            ),
            Error::Busy {
                resource,
                key,
                access,
            } => write!(
                f,
                "the {access} lock on {} is busy",
                Target(resource, key.as_deref())
            ),
            Error::Duplicate {
                scope,
                key,
                in_flight,
            } => write!(
                f,
                "duplicate in {}: {}",
                Target(scope, key.as_deref()),
                if *in_flight {
                    "the first call is still running"
                } else {
                    "already handled"
                }
            ),
            Error::WouldDeadlock {
                resource,
                key,
                access,
                held_at,
                requested_at,
            } => {
                write!(
                    f,
                    "would deadlock: the {access} lock on {} was asked for at {requested_at} by \
                     the task (or thread) that already holds it",
                    Target(resource, key.as_deref())
                )?;
                match held_at {
                    Some(held_at) => write!(f, ", taken at {held_at}")?,
                    None => f.write_str(", taken earlier")?,
                }
                f.write_str(
                    "; it would wait for itself forever (keylock's locks are not re-entrant: \
                     call the inner code through an unannotated function)",
                )
            }
            Error::Backend {
                backend,
                resource,
                key,
                access,
                message,
            } => write!(
                f,
                "the {backend} backend could not be asked for the {access} lock on {}: {message}",
                Target(resource, key.as_deref())
            ),
            Error::LeaseLost {
                backend,
                resource,
                key,
            } => write!(
                f,
                "the {backend} backend lost the lock on {}: another holder may have it now",
                Target(resource, key.as_deref())
            ),
            Error::LockOrder {
                resource,
                key,
                access,
                requested_at,
                cycle,
            } => {
                write!(
                    f,
                    "lock order inversion: the {access} lock on {} asked for at {requested_at} \
                     closes the cycle ",
                    Target(resource, key.as_deref())
                )?;
                for step in cycle {
                    write!(f, "`{}` -> ", step.held)?;
                }
                write!(f, "`{resource}` of lock orders: ")?;
                for (index, step) in cycle.iter().enumerate() {
                    if index > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{step}")?;
                }
                f.write_str(
                    "; callers running these orders at once can deadlock: take the locks in \
                     one order everywhere, or together as one lock set",
                )
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_resource_key_and_wait() {
        let timeout = Error::Timeout {
            resource: "sessions".into(),
            key: Some("42".into()),
            access: Access::Write,
            waited: Duration::from_millis(250),
        };
        assert_eq!(
            timeout.to_string(),
            "timed out after 250ms waiting for the write lock on `sessions` (key 42)"
        );
        let busy = Error::Busy {
            resource: "db".into(),
            key: None,
            access: Access::Read,
        };
        assert_eq!(busy.to_string(), "the read lock on `db` is busy");
        assert!(busy.is_busy() && !busy.is_timeout());
        assert_eq!(timeout.key(), Some("42"));
        assert_eq!(busy.resource(), "db");
    }
}

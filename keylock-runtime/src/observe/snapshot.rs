//! The public snapshot types: what [`Registry::stats`](crate::Registry::stats)
//! returns, printable as a table ([`super::table`]) and as Prometheus text
//! ([`super::prometheus`]).

use std::time::Duration;

use super::histogram::Distribution;

/// A snapshot of one resource's figures: its own lock and all its keys.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceStats {
    /// The resource's name.
    pub name: String,
    /// Read (shared) acquisitions.
    pub read_acquisitions: u64,
    /// Write (exclusive) acquisitions.
    pub write_acquisitions: u64,
    /// Acquisitions that had to queue behind another holder.
    pub contended: u64,
    /// Acquisitions that gave up after their timeout.
    pub timeouts: u64,
    /// Non-waiting acquisitions that found the lock held.
    pub busy: u64,
    /// Guards released while their thread unwound from a panic.
    pub panics_while_held: u64,
    /// Annotated bodies that returned an `Err` while holding the lock
    /// (counted for functions whose return type is `Result` or a type
    /// named `...Result`, and for `#[async_trait]` methods).
    pub errors_while_held: u64,
    /// Acquisitions that were still queued when they passed the slow-wait
    /// threshold ([`slow_wait_warning`](crate::RegistryBuilder::slow_wait_warning)),
    /// counted at that moment, whether they got the lock later or not.
    pub long_waits: u64,
    /// Guards of a resource bound to a backend whose backend lock was
    /// found lost when they were released.
    pub leases_lost: u64,
    /// How long contended acquisitions waited.
    pub wait: Distribution,
    /// How long guards were held; empty unless the registry was built with
    /// [`long_hold_warning`](crate::RegistryBuilder::long_hold_warning),
    /// which turns hold timing on.
    pub hold: Distribution,
    /// Holders right now (each reader counts).
    pub holders: usize,
    /// Callers queued right now.
    pub waiters: usize,
    /// Keys held or waited for right now.
    pub live_keys: usize,
    /// The most callers queued at once, on all locks of the resource.
    pub peak_waiters: usize,
    /// Idle key entries removed by sweeps.
    pub evictions: u64,
    /// Every holder and waiter right now, holders first and longest first;
    /// empty unless the registry was built with
    /// [`track_holders`](crate::RegistryBuilder::track_holders).
    pub live: Vec<super::live::Participant>,
    /// The resource's most recent operations, newest first (at most
    /// [`RECENT_OPERATIONS`](crate::RECENT_OPERATIONS)); empty unless the
    /// registry was built with
    /// [`track_holders`](crate::RegistryBuilder::track_holders).
    pub recent: Vec<super::live::Operation>,
}

impl ResourceStats {
    /// All acquisitions, read and write.
    pub fn acquisitions(&self) -> u64 {
        self.read_acquisitions + self.write_acquisitions
    }
}

/// A snapshot of every resource of a registry, sorted by name.
///
/// `Display` prints an aligned table; [`Stats::to_prometheus`] gives the
/// Prometheus text exposition format.
///
/// ```
/// let registry = keylock_runtime::Registry::new();
/// drop(registry.lock("db").write_blocking());
/// let stats = registry.stats();
/// assert_eq!(stats.resource("db").unwrap().write_acquisitions, 1);
/// println!("{stats}");
/// assert!(stats.to_prometheus().contains("keylock_acquisitions_total{resource=\"db\",mode=\"write\"} 1"));
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// One entry per resource, sorted by name.
    pub resources: Vec<ResourceStats>,
    /// One entry per dedup scope, sorted by name.
    pub dedup: Vec<DedupStats>,
    /// Deadlocks the registry's watchdog reported
    /// ([`deadlock_watchdog`](crate::RegistryBuilder::deadlock_watchdog)).
    pub deadlocks_reported: u64,
    /// Lock-order inversions reported
    /// ([`lock_order`](crate::RegistryBuilder::lock_order)): warned about
    /// or refused.
    pub lock_order_reports: u64,
}

/// A snapshot of one dedup scope's figures.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DedupStats {
    /// The scope's name.
    pub name: String,
    /// Duplicates turned away so far.
    pub duplicates: u64,
    /// Keys remembered as handled (until purged, possibly expired).
    pub remembered: usize,
    /// Keys whose first call is running.
    pub in_flight: usize,
    /// The most keys the scope remembers.
    pub capacity: usize,
    /// How long a handled key is remembered.
    pub ttl: Duration,
}

impl Stats {
    /// The figures of the dedup scope called `name`.
    pub fn dedup_scope(&self, name: &str) -> Option<&DedupStats> {
        self.dedup.iter().find(|stats| stats.name == name)
    }

    /// The figures of the resource called `name`.
    pub fn resource(&self, name: &str) -> Option<&ResourceStats> {
        self.resources.iter().find(|stats| stats.name == name)
    }
}

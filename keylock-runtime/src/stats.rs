//! Statistics: per-resource counters and wait-time distributions, and the
//! one hook through which every acquisition passes.
//!
//! The hot path adds one to a counter stripe its thread owns (a plain load
//! and store, see [`crate::stripe`]) and never reads the clock: only an acquisition that had to queue
//! reads it (once when it queues, once when it gets the lock), to record
//! how long it waited.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::raw::Access;
use crate::stripe::{Slot, STRIPES};

/// Something that happened to a lock of a resource.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event {
    /// The lock was acquired; `waited` is set when the caller had to queue.
    Acquired {
        access: Access,
        waited: Option<Duration>,
    },
    /// A waiting acquisition ran out of time.
    TimedOut,
    /// A non-waiting acquisition found the lock held.
    Busy,
    /// A guard was dropped while its thread unwound from a panic.
    PanickedWhileHeld,
    /// An annotated body returned an error while holding the lock.
    FailedWhileHeld,
    /// A guard was held this long (recorded only when hold times are on).
    Held(Duration),
    /// A queued acquisition passed the slow-wait threshold and still waits.
    LongWait,
}

/// One stripe of counters, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    reads: AtomicU64,
    writes: AtomicU64,
    contended: AtomicU64,
    timeouts: AtomicU64,
    busy: AtomicU64,
    panics: AtomicU64,
    errors: AtomicU64,
    long_waits: AtomicU64,
}

impl Stripe {
    /// The acquisition counter of `access`.
    #[inline]
    fn acquisitions(&self, access: Access) -> &AtomicU64 {
        match access {
            Access::Read => &self.reads,
            Access::Write => &self.writes,
        }
    }
}

/// Bucket `i` holds waits below `2^i` microseconds; the last one the rest.
const BUCKETS: usize = 28;

/// A distribution of durations in power-of-two buckets of microseconds,
/// with exact count, sum, minimum and maximum.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    min_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
            min_nanos: AtomicU64::new(u64::MAX),
            max_nanos: AtomicU64::new(0),
        }
    }
}

/// The upper bound of bucket `index`.
fn bucket_bound(index: usize) -> Duration {
    Duration::from_micros(1u64 << index)
}

impl Histogram {
    pub(crate) fn record(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        let micros = nanos / 1_000;
        let index = if micros == 0 {
            0
        } else {
            (64 - micros.leading_zeros() as usize).min(BUCKETS - 1)
        };
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.min_nanos.fetch_min(nanos, Ordering::Relaxed);
        self.max_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Distribution {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        let count: u64 = buckets.iter().sum();
        if count == 0 {
            return Distribution::default();
        }
        let max = Duration::from_nanos(self.max_nanos.load(Ordering::Relaxed));
        let min = Duration::from_nanos(
            self.min_nanos
                .load(Ordering::Relaxed)
                .min(max.as_nanos() as u64),
        );
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed));
        let percentile = |fraction: f64| {
            let rank = ((count as f64) * fraction).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, bucket) in buckets.iter().enumerate() {
                seen += bucket;
                if seen >= rank {
                    return bucket_bound(index).min(max).max(min);
                }
            }
            max
        };
        Distribution {
            count,
            min,
            max,
            mean: sum / u32::try_from(count).unwrap_or(u32::MAX).max(1),
            p50: percentile(0.5),
            p90: percentile(0.9),
            p99: percentile(0.99),
            sum,
            buckets: buckets
                .iter()
                .enumerate()
                .map(|(index, count)| (bucket_bound(index), *count))
                .collect(),
        }
    }
}

/// A summary of durations: exact count, minimum, maximum and mean;
/// percentiles accurate to their power-of-two bucket (an upper bound,
/// never above the maximum).
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Distribution {
    /// How many durations were recorded.
    pub count: u64,
    /// The shortest.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// The mean.
    pub mean: Duration,
    /// Half were at most this long.
    pub p50: Duration,
    /// 90% were at most this long.
    pub p90: Duration,
    /// 99% were at most this long.
    pub p99: Duration,
    /// The total.
    pub sum: Duration,
    /// Per bucket: its upper bound and how many durations fell in it (not
    /// cumulative). The last bucket also holds everything longer.
    pub buckets: Vec<(Duration, u64)>,
}

/// Counters and distributions of one resource.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    stripes: [Stripe; STRIPES],
    wait: Histogram,
    hold: Histogram,
}

impl Counters {
    #[inline]
    pub(crate) fn record(&self, event: Event) {
        // The hot case, an acquisition that did not wait, stays inline.
        if let Event::Acquired {
            access,
            waited: None,
        } = event
        {
            let slot = Slot::current();
            let stripe = &self.stripes[slot.index()];
            slot.increment(stripe.acquisitions(access));
        } else {
            self.record_other(event);
        }
    }

    #[inline(never)]
    fn record_other(&self, event: Event) {
        if let Event::Held(held) = event {
            self.hold.record(held);
            return;
        }
        let slot = Slot::current();
        let stripe = &self.stripes[slot.index()];
        let counter = match event {
            Event::Acquired { access, waited } => {
                if let Some(waited) = waited {
                    slot.increment(&stripe.contended);
                    self.wait.record(waited);
                }
                stripe.acquisitions(access)
            }
            Event::TimedOut => &stripe.timeouts,
            Event::Busy => &stripe.busy,
            Event::PanickedWhileHeld => &stripe.panics,
            Event::FailedWhileHeld => &stripe.errors,
            Event::LongWait => &stripe.long_waits,
            Event::Held(_) => return,
        };
        slot.increment(counter);
    }

    fn sum(&self, field: impl Fn(&Stripe) -> &AtomicU64) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| field(stripe).load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn snapshot(&self, name: &str, occupancy: Occupancy) -> ResourceStats {
        ResourceStats {
            name: name.to_owned(),
            read_acquisitions: self.sum(|s| &s.reads),
            write_acquisitions: self.sum(|s| &s.writes),
            contended: self.sum(|s| &s.contended),
            timeouts: self.sum(|s| &s.timeouts),
            busy: self.sum(|s| &s.busy),
            panics_while_held: self.sum(|s| &s.panics),
            errors_while_held: self.sum(|s| &s.errors),
            long_waits: self.sum(|s| &s.long_waits),
            wait: self.wait.snapshot(),
            hold: self.hold.snapshot(),
            holders: occupancy.holders,
            waiters: occupancy.waiters,
            live_keys: occupancy.live_keys,
            live: Vec::new(),
            recent: Vec::new(),
            peak_waiters: 0,
            evictions: 0,
        }
    }
}

/// Who holds and waits right now, counted at snapshot time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Occupancy {
    pub(crate) holders: usize,
    pub(crate) waiters: usize,
    pub(crate) live_keys: usize,
}

impl std::ops::AddAssign for Occupancy {
    fn add_assign(&mut self, other: Occupancy) {
        self.holders += other.holders;
        self.waiters += other.waiters;
        self.live_keys += other.live_keys;
    }
}

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
    pub live: Vec<crate::live::Participant>,
    /// The resource's most recent operations, newest first (at most
    /// [`RECENT_OPERATIONS`](crate::RECENT_OPERATIONS)); empty unless the
    /// registry was built with
    /// [`track_holders`](crate::RegistryBuilder::track_holders).
    pub recent: Vec<crate::live::Operation>,
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

    /// The snapshot in the Prometheus text exposition format (version
    /// 0.0.4): counters, gauges and a wait-time histogram per resource.
    pub fn to_prometheus(&self) -> String {
        use fmt::Write as _;
        let mut out = String::new();
        let mut family =
            |name: &str, kind: &str, help: &str, lines: &mut dyn FnMut(&mut String)| {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} {kind}");
                lines(&mut out);
            };
        let resources = &self.resources;
        family(
            "keylock_acquisitions_total",
            "counter",
            "Lock acquisitions.",
            &mut |out| {
                for r in resources {
                    let name = escape(&r.name);
                    let _ = writeln!(
                        out,
                        "keylock_acquisitions_total{{resource=\"{name}\",mode=\"read\"}} {}",
                        r.read_acquisitions
                    );
                    let _ = writeln!(
                        out,
                        "keylock_acquisitions_total{{resource=\"{name}\",mode=\"write\"}} {}",
                        r.write_acquisitions
                    );
                }
            },
        );
        let per_resource: [Metric; 11] = [
            (
                "keylock_errors_while_held_total",
                "counter",
                "Annotated bodies that returned an error while holding the lock.",
                |r| r.errors_while_held,
            ),
            (
                "keylock_evictions_total",
                "counter",
                "Idle key entries removed.",
                |r| r.evictions,
            ),
            (
                "keylock_contended_total",
                "counter",
                "Acquisitions that had to wait.",
                |r| r.contended,
            ),
            (
                "keylock_timeouts_total",
                "counter",
                "Acquisitions that timed out.",
                |r| r.timeouts,
            ),
            (
                "keylock_long_waits_total",
                "counter",
                "Acquisitions still queued past the slow-wait threshold.",
                |r| r.long_waits,
            ),
            (
                "keylock_busy_total",
                "counter",
                "Non-waiting acquisitions that found the lock held.",
                |r| r.busy,
            ),
            (
                "keylock_panics_while_held_total",
                "counter",
                "Guards released while unwinding from a panic.",
                |r| r.panics_while_held,
            ),
            ("keylock_holders", "gauge", "Holders right now.", |r| {
                r.holders as u64
            }),
            (
                "keylock_peak_waiters",
                "gauge",
                "The most callers queued at once.",
                |r| r.peak_waiters as u64,
            ),
            (
                "keylock_waiters",
                "gauge",
                "Callers queued right now.",
                |r| r.waiters as u64,
            ),
            (
                "keylock_live_keys",
                "gauge",
                "Keys held or waited for right now.",
                |r| r.live_keys as u64,
            ),
        ];
        for (metric, kind, help, value) in per_resource {
            family(metric, kind, help, &mut |out| {
                for r in resources {
                    let _ = writeln!(
                        out,
                        "{metric}{{resource=\"{}\"}} {}",
                        escape(&r.name),
                        value(r)
                    );
                }
            });
        }
        let histograms: [HistogramMetric; 2] = [
            (
                "keylock_wait_seconds",
                "How long contended acquisitions waited.",
                |r| &r.wait,
            ),
            (
                "keylock_hold_seconds",
                "How long locks were held (when hold timing is on).",
                |r| &r.hold,
            ),
        ];
        for (metric, help, distribution) in histograms {
            family(metric, "histogram", help, &mut |out| {
                for r in resources {
                    let name = escape(&r.name);
                    let d = distribution(r);
                    let mut cumulative = 0;
                    let last = d.buckets.len().saturating_sub(1);
                    for (index, (bound, count)) in d.buckets.iter().enumerate() {
                        cumulative += count;
                        if index < last {
                            let _ = writeln!(
                                out,
                                "{metric}_bucket{{resource=\"{name}\",le=\"{}\"}} {cumulative}",
                                bound.as_secs_f64()
                            );
                        }
                    }
                    let _ = writeln!(
                        out,
                        "{metric}_bucket{{resource=\"{name}\",le=\"+Inf\"}} {}",
                        d.count
                    );
                    let _ = writeln!(
                        out,
                        "{metric}_sum{{resource=\"{name}\"}} {}",
                        d.sum.as_secs_f64()
                    );
                    let _ = writeln!(out, "{metric}_count{{resource=\"{name}\"}} {}", d.count);
                }
            });
        }
        let per_scope: [DedupMetric; 2] = [
            (
                "keylock_duplicates_total",
                "counter",
                "Duplicates turned away by a dedup scope.",
                |d| d.duplicates,
            ),
            (
                "keylock_dedup_remembered",
                "gauge",
                "Keys a dedup scope remembers as handled.",
                |d| d.remembered as u64,
            ),
        ];
        let dedup = &self.dedup;
        for (metric, kind, help, value) in per_scope {
            family(metric, kind, help, &mut |out| {
                for d in dedup {
                    let _ = writeln!(
                        out,
                        "{metric}{{scope=\"{}\"}} {}",
                        escape(&d.name),
                        value(d)
                    );
                }
            });
        }
        out
    }
}

/// A metric family: name, type, help text, and the figure it reports.
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ResourceStats) -> u64,
);

/// A dedup scope's metric family: name, type, help text, and its figure.
type DedupMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&DedupStats) -> u64,
);

/// A histogram family: name, help text, and the distribution it reports.
type HistogramMetric = (
    &'static str,
    &'static str,
    fn(&ResourceStats) -> &Distribution,
);

/// Escapes a label value for the Prometheus text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            "resource",
            "reads",
            "writes",
            "contended",
            "timeouts",
            "busy",
            "errors",
            "panics",
            "holders",
            "waiters",
            "live keys",
            "wait p50",
            "wait p99",
            "wait max",
        ];
        let rows: Vec<[String; 14]> = self
            .resources
            .iter()
            .map(|r| {
                [
                    r.name.clone(),
                    r.read_acquisitions.to_string(),
                    r.write_acquisitions.to_string(),
                    r.contended.to_string(),
                    r.timeouts.to_string(),
                    r.busy.to_string(),
                    r.errors_while_held.to_string(),
                    r.panics_while_held.to_string(),
                    r.holders.to_string(),
                    r.waiters.to_string(),
                    r.live_keys.to_string(),
                    format!("{:?}", r.wait.p50),
                    format!("{:?}", r.wait.p99),
                    format!("{:?}", r.wait.max),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: &[&str]| -> fmt::Result {
            for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
                if index == 0 {
                    write!(f, "{cell:<width$}")?;
                } else {
                    write!(f, "  {cell:>width$}")?;
                }
            }
            writeln!(f)
        };
        line(f, &header)?;
        for row in &rows {
            line(f, &row.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        for d in &self.dedup {
            writeln!(
                f,
                "dedup {}: {} duplicates skipped, {} remembered (capacity {}, ttl {:?}), {} in flight",
                d.name, d.duplicates, d.remembered, d.capacity, d.ttl, d.in_flight
            )?;
        }
        for resource in &self.resources {
            for who in &resource.live {
                let role = match who.role {
                    crate::live::Role::Holding => "holds",
                    crate::live::Role::Waiting => "waits for",
                };
                write!(f, "  {} {role} the {} lock", resource.name, who.access)?;
                if let Some(key) = &who.key {
                    write!(f, " on key {key}")?;
                }
                write!(
                    f,
                    " for {:?}, from {} on thread {}",
                    who.duration, who.location, who.thread
                )?;
                if let Some(task) = &who.task {
                    write!(f, " (task {task})")?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stay_exact_across_threads() {
        let counters = std::sync::Arc::new(Counters::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counters = counters.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        counters.record(Event::Acquired {
                            access: if i % 2 == 0 {
                                Access::Read
                            } else {
                                Access::Write
                            },
                            waited: (i % 10 == 0).then_some(Duration::from_micros(3)),
                        });
                    }
                    counters.record(Event::TimedOut);
                    counters.record(Event::Busy);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = counters.snapshot("r", Occupancy::default());
        assert_eq!(stats.read_acquisitions, 20_000);
        assert_eq!(stats.write_acquisitions, 20_000);
        assert_eq!(stats.contended, 4_000);
        assert_eq!(stats.wait.count, 4_000);
        assert_eq!(stats.timeouts, 4);
        assert_eq!(stats.busy, 4);
    }

    #[test]
    fn distribution_bounds_hold() {
        let histogram = Histogram::default();
        for micros in 1..=100u64 {
            histogram.record(Duration::from_micros(micros));
        }
        let d = histogram.snapshot();
        assert_eq!(d.count, 100);
        assert_eq!(d.min, Duration::from_micros(1));
        assert_eq!(d.max, Duration::from_micros(100));
        assert_eq!(d.mean, Duration::from_nanos(50_500));
        // Percentiles are upper bounds within a factor of two.
        assert!(d.p50 >= Duration::from_micros(50) && d.p50 <= Duration::from_micros(100));
        assert!(d.p90 >= Duration::from_micros(90) && d.p90 <= Duration::from_micros(100));
        assert_eq!(d.p99, Duration::from_micros(100));
        assert_eq!(d.buckets.iter().map(|(_, c)| c).sum::<u64>(), 100);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn empty_distribution_is_zero() {
        assert_eq!(Histogram::default().snapshot(), Distribution::default());
    }
}

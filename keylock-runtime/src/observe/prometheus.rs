//! The Prometheus text exposition format (version 0.0.4) of a [`Stats`]
//! snapshot.

use std::fmt::Write as _;

use super::histogram::Distribution;
use super::snapshot::{DedupStats, ResourceStats, Stats};

impl Stats {
    /// The snapshot in the Prometheus text exposition format (version
    /// 0.0.4): counters, gauges and a wait-time histogram per resource.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        acquisitions(&mut out, &self.resources);
        per_resource(&mut out, &self.resources);
        histograms(&mut out, &self.resources);
        per_scope(&mut out, &self.dedup);
        family(
            &mut out,
            "keylock_deadlocks_reported_total",
            "counter",
            "Deadlocks the registry's watchdog reported.",
            |out| {
                let _ = writeln!(
                    out,
                    "keylock_deadlocks_reported_total {}",
                    self.deadlocks_reported
                );
            },
        );
        family(
            &mut out,
            "keylock_lock_order_reports_total",
            "counter",
            "Lock-order inversions the registry reported.",
            |out| {
                let _ = writeln!(
                    out,
                    "keylock_lock_order_reports_total {}",
                    self.lock_order_reports
                );
            },
        );
        out
    }
}

/// Writes one metric family: its help and type lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: impl FnOnce(&mut String)) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    samples(out);
}

/// Acquisitions per resource and mode.
fn acquisitions(out: &mut String, resources: &[ResourceStats]) {
    family(
        out,
        "keylock_acquisitions_total",
        "counter",
        "Lock acquisitions.",
        |out| {
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
}

/// The counters and gauges with one sample per resource.
fn per_resource(out: &mut String, resources: &[ResourceStats]) {
    let per_resource: [Metric; 12] = [
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
            "keylock_leases_lost_total",
            "counter",
            "Backend locks found lost when their guard was released.",
            |r| r.leases_lost,
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
        family(out, metric, kind, help, |out| {
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
}

/// The wait and hold histograms, cumulative buckets per resource.
fn histograms(out: &mut String, resources: &[ResourceStats]) {
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
        family(out, metric, "histogram", help, |out| {
            for r in resources {
                histogram(out, metric, &escape(&r.name), distribution(r));
            }
        });
    }
}

/// The samples of one resource's histogram.
fn histogram(out: &mut String, metric: &str, name: &str, d: &Distribution) {
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

/// The figures of the dedup scopes.
fn per_scope(out: &mut String, scopes: &[DedupStats]) {
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
    for (metric, kind, help, value) in per_scope {
        family(out, metric, kind, help, |out| {
            for d in scopes {
                let _ = writeln!(
                    out,
                    "{metric}{{scope=\"{}\"}} {}",
                    escape(&d.name),
                    value(d)
                );
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }
}

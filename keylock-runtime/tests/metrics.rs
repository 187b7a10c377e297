//! The `metrics` feature reports each figure to the installed recorder.
#![cfg(feature = "metrics")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keylock_runtime::Registry;
use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// Counts increments and histogram samples by metric name and labels.
#[derive(Default)]
struct Capture {
    counters: Mutex<HashMap<String, Arc<Count>>>,
    samples: Mutex<HashMap<String, Arc<Count>>>,
}

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::SeqCst);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::SeqCst);
    }
}

impl HistogramFn for Count {
    fn record(&self, _: f64) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn describe(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|label| format!("{}={}", label.key(), label.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let count = self
            .counters
            .lock()
            .unwrap()
            .entry(describe(key))
            .or_default()
            .clone();
        Counter::from_arc(count)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let count = self
            .samples
            .lock()
            .unwrap()
            .entry(describe(key))
            .or_default()
            .clone();
        Histogram::from_arc(count)
    }
}

fn value(map: &Mutex<HashMap<String, Arc<Count>>>, name: &str) -> u64 {
    map.lock()
        .unwrap()
        .get(name)
        .map_or(0, |count| count.0.load(Ordering::SeqCst))
}

#[test]
fn figures_reach_the_metrics_recorder() {
    let capture = Arc::new(Capture::default());
    metrics::set_global_recorder(CaptureHandle(capture.clone())).unwrap();

    let registry = Registry::new();
    let db = registry.lock("db");
    drop(db.read_blocking());
    let held = db.write_blocking();
    assert!(db.try_write().is_err());
    assert!(db.write_blocking_timeout(Duration::from_millis(1)).is_err());
    let waiter = {
        let db = db.clone();
        std::thread::spawn(move || drop(db.write_blocking()))
    };
    while db.waiters() == 0 {
        std::thread::yield_now();
    }
    drop(held);
    waiter.join().unwrap();
    let seen = registry.dedup::<u64>("events");
    seen.claim(&1).unwrap().commit();
    assert!(seen.claim(&1).is_err());

    let counters = &capture.counters;
    assert_eq!(
        value(
            counters,
            "keylock_acquisitions_total{mode=read,resource=db}"
        ),
        1
    );
    assert_eq!(
        value(
            counters,
            "keylock_acquisitions_total{mode=write,resource=db}"
        ),
        2
    );
    assert_eq!(value(counters, "keylock_busy_total{resource=db}"), 1);
    assert_eq!(value(counters, "keylock_timeouts_total{resource=db}"), 1);
    assert_eq!(value(counters, "keylock_contended_total{resource=db}"), 1);
    assert_eq!(
        value(&capture.samples, "keylock_wait_seconds{resource=db}"),
        1
    );
    assert_eq!(value(counters, "keylock_duplicates_total{scope=events}"), 1);
}

struct CaptureHandle(Arc<Capture>);

impl Recorder for CaptureHandle {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.0.describe_counter(key, unit, text);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.0.describe_gauge(key, unit, text);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, text: SharedString) {
        self.0.describe_histogram(key, unit, text);
    }
    fn register_counter(&self, key: &Key, meta: &Metadata<'_>) -> Counter {
        self.0.register_counter(key, meta)
    }
    fn register_gauge(&self, key: &Key, meta: &Metadata<'_>) -> Gauge {
        self.0.register_gauge(key, meta)
    }
    fn register_histogram(&self, key: &Key, meta: &Metadata<'_>) -> Histogram {
        self.0.register_histogram(key, meta)
    }
}

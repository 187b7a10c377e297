//! A wait past the slow-wait threshold is reported while it still waits,
//! not only once it ends: a hang shows up in the logs and the statistics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use keylock::Registry;

const THRESHOLD: Duration = Duration::from_millis(30);

/// What a `tracing` subscriber wrote.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Waits (at most 5 s) until `what` was written; the text so far.
    fn wait_for(&self, what: &str) -> String {
        let started = Instant::now();
        while !self.text().contains(what) && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.text()
    }
}

/// A subscriber that writes into a buffer, as a dispatcher to install
/// where the waits happen.
fn capture() -> (Buffer, tracing::Dispatch) {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (buffer, tracing::Dispatch::new(subscriber))
}

#[test]
fn a_blocked_thread_is_reported_while_it_still_waits() {
    let registry = Registry::builder().slow_wait_warning(THRESHOLD).build();
    let keys = registry.keyed::<u64>("sessions");
    let held = keys.write_blocking(&7);
    let (buffer, dispatch) = capture();
    let waiter = {
        let keys = keys.clone();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || drop(keys.write_blocking(&7)))
        })
    };
    let output = buffer.wait_for("still waiting for a lock");
    // Reported while it still waits: the holder has not released.
    assert_eq!(keys.waiters(&7), 1);
    assert!(output.contains("still waiting for a lock"), "{output}");
    assert!(output.contains("resource=\"sessions\""), "{output}");
    assert!(output.contains("key=\"7\""), "{output}");
    assert!(output.contains("access=\"write\""), "{output}");
    // The waiter's own call site, not keylock's.
    assert!(output.contains("waiter=tests/long_waits.rs:"), "{output}");
    assert_eq!(registry.stats().resource("sessions").unwrap().long_waits, 1);
    drop(held);
    waiter.join().unwrap();
    let sessions = registry.stats().resource("sessions").unwrap().clone();
    assert_eq!(sessions.long_waits, 1);
    assert_eq!(sessions.contended, 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_queued_task_is_reported_while_it_still_waits() {
    let registry = Registry::builder().slow_wait_warning(THRESHOLD).build();
    let db = registry.resource("db");
    let (buffer, dispatch) = capture();

    // A wait shorter than the threshold is not reported, then or later.
    let held = db.write().await;
    let mut short = Box::pin(db.read());
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(short.as_mut().now_or_never().is_none());
    });
    drop(held);
    drop(short.await);
    std::thread::sleep(THRESHOLD * 2);
    assert!(
        !buffer.text().contains("still waiting"),
        "{}",
        buffer.text()
    );
    assert_eq!(registry.stats().resource("db").unwrap().long_waits, 0);

    let held = db.write().await;
    let mut waiting = Box::pin(db.read());
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(waiting.as_mut().now_or_never().is_none());
    });
    let output = buffer.wait_for("still waiting for a lock");
    assert!(output.contains("still waiting for a lock"), "{output}");
    assert!(output.contains("resource=\"db\""), "{output}");
    assert!(output.contains("access=\"read\""), "{output}");
    assert!(output.contains("waiter=tests/long_waits.rs:"), "{output}");
    assert_eq!(registry.stats().resource("db").unwrap().long_waits, 1);
    drop(held);
    drop(waiting.await);
    // A dropped wait is not reported either.
    let held = db.write().await;
    let mut dropped = Box::pin(db.write());
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(dropped.as_mut().now_or_never().is_none());
    });
    drop(dropped);
    std::thread::sleep(THRESHOLD * 2);
    drop(held);
    assert_eq!(registry.stats().resource("db").unwrap().long_waits, 1);
}

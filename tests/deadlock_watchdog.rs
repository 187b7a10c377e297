//! The deadlock watchdog (`RegistryBuilder::deadlock_watchdog`) reports a
//! cycle of waits as soon as it forms: a `tracing` error naming its waits,
//! and the `deadlocks_reported` figure. Its own test binary, for the global
//! subscriber that sees the watchdog's thread.

use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use keylock::Registry;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_deadlock_that_forms_is_reported_once_while_it_lasts() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();
    let registry = Registry::builder()
        .deadlock_watchdog(Duration::from_millis(10))
        .build();
    let (a_held, wait_a) = mpsc::channel();
    let (b_held, wait_b) = mpsc::channel();
    let take = |mine: &'static str,
                other: &'static str,
                held: mpsc::Sender<()>,
                wait: mpsc::Receiver<()>| {
        let registry = registry.clone();
        std::thread::spawn(move || {
            let _mine = registry.lock(mine).write_blocking();
            held.send(()).unwrap();
            wait.recv().unwrap();
            registry
                .lock(other)
                .write_blocking_timeout(Duration::from_millis(800))
                .map(drop)
        })
    };
    let first = take("a", "b", a_held, wait_b);
    let second = take("b", "a", b_held, wait_a);
    let started = Instant::now();
    while registry.stats().deadlocks_reported == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reported"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Reported once, however many times the watchdog looks while it lasts.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(registry.stats().deadlocks_reported, 1);
    let outcomes = [first.join().unwrap(), second.join().unwrap()];
    assert!(outcomes.iter().any(Result::is_err));
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("deadlock: a cycle of waits formed"), "{text}");
    assert!(
        text.contains("lock on `a`") && text.contains("lock on `b`"),
        "{text}"
    );
    assert!(text.contains("deadlock_watchdog.rs"), "{text}");
    assert!(registry
        .stats()
        .to_prometheus()
        .contains("keylock_deadlocks_reported_total 1"));
}

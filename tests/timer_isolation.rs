//! Regression test: the long-wait reports run the subscriber on a thread of
//! their own, so a slow subscriber delays no timeout of the process.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keylock::Registry;

/// A `tracing` writer that takes `delay` per write, as a subscriber writing
/// to a full pipe or a slow terminal does.
#[derive(Clone)]
struct SlowWriter {
    delay: Duration,
    written: Arc<Mutex<Vec<u8>>>,
}

impl std::io::Write for SlowWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        std::thread::sleep(self.delay);
        self.written.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The tests share the timer thread: run them one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn slow_dispatch(delay: Duration) -> (Arc<Mutex<Vec<u8>>>, tracing::Dispatch) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let writer = SlowWriter {
        delay,
        written: written.clone(),
    };
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (written, tracing::Dispatch::new(subscriber))
}

/// A `write_timeout(50ms)` on an unrelated registry and lock returns
/// `Err(Timeout)` about 50 ms after it starts, while another registry's
/// "still waiting" report is being written through a subscriber that takes
/// 1.5 s a line.
#[test]
fn a_slow_subscriber_delays_no_timeout() {
    let _serial = serial();
    // Registry 1: a wait that passes its slow-wait threshold, reported
    // through a subscriber that takes 1.5 s per line.
    let noisy = Registry::builder()
        .slow_wait_warning(Duration::from_millis(20))
        .build();
    let noisy_lock = noisy.lock("noisy");
    let held = noisy_lock.write_blocking();
    let (written, dispatch) = slow_dispatch(Duration::from_millis(1500));
    let waiter = {
        let lock = noisy_lock.clone();
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || drop(lock.write_blocking()));
        })
    };
    // Let the report start (the threshold is 20 ms).
    std::thread::sleep(Duration::from_millis(100));

    // Registry 2, unrelated: a timed async wait on a held lock.
    let quiet = Registry::new();
    let quiet_lock = quiet.lock("quiet");
    let quiet_held = quiet_lock.write_blocking();
    let (done, outcome) = mpsc::channel();
    {
        let lock = quiet_lock.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let result = futures::executor::block_on(lock.write_timeout(Duration::from_millis(50)));
            let _ = done.send((result.is_err(), started.elapsed()));
        });
    }
    let (timed_out, took) = outcome
        .recv_timeout(Duration::from_secs(10))
        .expect("the timed wait never ended");
    drop(quiet_held);
    drop(held);
    waiter.join().unwrap();
    assert!(!written.lock().unwrap().is_empty());
    assert!(timed_out);
    assert!(
        took < Duration::from_millis(500),
        "a 50 ms timeout took {took:?}"
    );
}

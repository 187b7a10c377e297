//! Regression test: the timer thread catches a waker that panics, also
//! with a panic payload whose own drop panics, and goes on firing every
//! later timeout.

use std::future::Future;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use keylock::Registry;

struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panics too");
    }
}

/// A waker whose `wake` panics with a payload whose drop panics.
struct BombWaker;

impl Wake for BombWaker {
    fn wake(self: Arc<Self>) {
        std::panic::panic_any(Bomb);
    }
}

/// Expected: after a broken waker, later timeouts still fire (the timer
/// module says a panicking waker "ends nothing but that call"). Actual: the
/// timer thread died when the caught payload was dropped, and a
/// `write_timeout(50ms)` on a held lock never returns.
#[test]
fn a_waker_panic_whose_payload_panics_on_drop_stops_no_later_timeout() {
    std::panic::set_hook(Box::new(|_| {}));
    let registry = Registry::new();
    let lock = registry.lock("bomb");
    let held = lock.write_blocking();
    {
        // One timed wait, polled once with the broken waker, then left
        // pending until the timer thread wakes it.
        let mut wait = Box::pin(lock.write_timeout(Duration::from_millis(10)));
        let waker = Waker::from(Arc::new(BombWaker));
        let mut cx = Context::from_waker(&waker);
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        std::thread::sleep(Duration::from_millis(200));
        // Dropped without waking anything.
        drop(wait);
    }
    let _ = std::panic::take_hook();
    // Any later timed wait, with an ordinary executor.
    let (done, outcome) = mpsc::channel();
    {
        let lock = lock.clone();
        std::thread::spawn(move || {
            let result = futures::executor::block_on(lock.write_timeout(Duration::from_millis(50)));
            let _ = done.send(result.is_err());
        });
    }
    let ended = outcome.recv_timeout(Duration::from_secs(5));
    drop(held);
    assert_eq!(ended, Ok(true), "a 50 ms timeout had not fired after 5 s");
}

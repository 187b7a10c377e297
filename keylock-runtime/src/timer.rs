//! Timeouts for async acquisitions, on whatever executor runs them.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Runs `future` for at most `timeout`; `None` when time ran out (the future
/// is then dropped, which for an acquisition cancels it cleanly).
///
/// Inside a Tokio runtime, Tokio's timer is used (so paused time in tests
/// works). Elsewhere, one helper thread sleeps until the deadline.
pub(crate) async fn timeout<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return tokio::time::timeout(timeout, future).await.ok();
    }
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        return Some(future.await);
    };
    let mut future = std::pin::pin!(future);
    let alarm = Arc::new(Alarm::default());
    let mut armed = false;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if alarm.check_and_register(cx.waker()) {
            return Poll::Ready(None);
        }
        if !armed {
            armed = true;
            let alarm = Arc::clone(&alarm);
            std::thread::spawn(move || {
                let now = Instant::now();
                if now < deadline {
                    std::thread::sleep(deadline - now);
                }
                alarm.fire();
            });
        }
        Poll::Pending
    })
    .await
}

#[derive(Default)]
struct Alarm {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Alarm {
    fn check_and_register(&self, waker: &Waker) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 {
            return true;
        }
        state.1 = Some(waker.clone());
        false
    }

    fn fire(&self) {
        let waker = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.0 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_without_tokio() {
        let started = Instant::now();
        let out = futures::executor::block_on(timeout(
            Duration::from_millis(30),
            std::future::pending::<()>(),
        ));
        assert_eq!(out, None);
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn completes_without_tokio() {
        let out = futures::executor::block_on(timeout(Duration::from_secs(5), async { 7 }));
        assert_eq!(out, Some(7));
    }
}

//! How keylock waits for a backend: one attempt at a time, with backoff
//! between attempts, so that a waiter holds nothing in the backend and a
//! cancelled or timed-out wait leaves nothing behind.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::{Backend, BackendError, Intent, Lease, Target};
use crate::access::Access;
use crate::error::Error;
use crate::observe::tracing_out;
use crate::timer;

/// The first pause after the backend said "held elsewhere"; it doubles up
/// to [`BUSY_PAUSE_MAX`]. Short, because a holder in another process may
/// release at any moment; bounded, so that a waiter costs the backend at
/// most one attempt per [`BUSY_PAUSE_MAX`].
const BUSY_PAUSE_MIN: Duration = Duration::from_micros(50);
const BUSY_PAUSE_MAX: Duration = Duration::from_millis(2);

/// The first pause after the backend could not be asked; it doubles up to
/// [`FAILURE_PAUSE_MAX`].
const FAILURE_PAUSE_MIN: Duration = Duration::from_millis(10);
const FAILURE_PAUSE_MAX: Duration = Duration::from_secs(1);

/// What a wait does when the backend cannot be asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failures {
    /// Returns [`Error::Backend`]: the caller can report it (a timed or
    /// non-waiting acquisition).
    Report,
    /// Warns and tries again with backoff: the caller cannot report it (an
    /// acquisition whose result is the guard itself).
    Retry,
}

/// One caller's wait for a backend: the pauses between its attempts, and
/// the intent it announced once an attempt found the lock held, kept until
/// the wait ends, however it ends.
struct Attempts<'a> {
    backend: &'a dyn Backend,
    target: &'a Target,
    access: Access,
    failures: Failures,
    busy: Duration,
    failure: Duration,
    intent: Option<Option<Box<dyn Intent>>>,
}

impl<'a> Attempts<'a> {
    fn new(
        backend: &'a dyn Backend,
        target: &'a Target,
        access: Access,
        failures: Failures,
    ) -> Self {
        Attempts {
            backend,
            target,
            access,
            failures,
            busy: BUSY_PAUSE_MIN,
            failure: FAILURE_PAUSE_MIN,
            intent: None,
        }
    }

    /// What follows an attempt: the lease, or the pause before the next
    /// attempt, or the error when failures are reported.
    fn after(
        &mut self,
        attempt: Result<Option<Box<dyn Lease>>, BackendError>,
    ) -> Result<Next, Error> {
        match attempt {
            Ok(Some(lease)) => Ok(Next::Granted(lease)),
            Ok(None) => {
                if self.intent.is_none() {
                    self.intent = Some(self.backend.announce(self.target, self.access));
                }
                let pause = self.busy;
                self.busy = (self.busy * 2).min(BUSY_PAUSE_MAX);
                Ok(Next::Pause(pause))
            }
            Err(cause) => {
                let error = describe(self.backend, self.target, self.access, &cause);
                if self.failures == Failures::Report {
                    return Err(error);
                }
                let pause = self.failure;
                self.failure = (self.failure * 2).min(FAILURE_PAUSE_MAX);
                tracing_out::backend_retry(&error, pause);
                Ok(Next::Pause(pause))
            }
        }
    }
}

/// What a wait does after an attempt.
enum Next {
    Granted(Box<dyn Lease>),
    Pause(Duration),
}

/// Waits until `backend` grants `target`, as a future that holds nothing
/// in the backend between attempts: dropping it cancels the wait cleanly.
pub(crate) async fn acquire(
    backend: Arc<dyn Backend>,
    target: Target,
    access: Access,
    not_before: Option<Instant>,
    failures: Failures,
) -> Result<Box<dyn Lease>, Error> {
    if let Some(until) = not_before {
        timer::sleep(until.saturating_duration_since(Instant::now())).await;
    }
    let mut attempts = Attempts::new(&*backend, &target, access, failures);
    loop {
        let attempt = backend.try_lock(&target, access).await;
        match attempts.after(attempt)? {
            Next::Granted(lease) => return Ok(lease),
            // keylock's own timer: works on any executor.
            Next::Pause(pause) => timer::sleep(pause).await,
        }
    }
}

/// Blocks until `backend` grants `target` or `deadline` passes (`Ok(None)`).
pub(crate) fn acquire_blocking(
    backend: &dyn Backend,
    target: &Target,
    access: Access,
    not_before: Option<Instant>,
    deadline: Option<Instant>,
    failures: Failures,
) -> Result<Option<Box<dyn Lease>>, Error> {
    if let Some(until) = not_before {
        let until = deadline.map_or(until, |deadline| until.min(deadline));
        std::thread::sleep(until.saturating_duration_since(Instant::now()));
    }
    let mut attempts = Attempts::new(backend, target, access, failures);
    loop {
        let pause = match attempts.after(block_on(backend.try_lock(target, access)))? {
            Next::Granted(lease) => return Ok(Some(lease)),
            Next::Pause(pause) => pause,
        };
        let pause = match deadline {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                pause.min(left)
            }
            None => pause,
        };
        std::thread::sleep(pause);
    }
}

/// One attempt, from a thread that may block for its length.
pub(crate) fn try_once(
    backend: &dyn Backend,
    target: &Target,
    access: Access,
) -> Result<Option<Box<dyn Lease>>, Error> {
    block_on(backend.try_lock(target, access))
        .map_err(|cause| describe(backend, target, access, &cause))
}

/// The error for a backend that could not be asked.
fn describe(backend: &dyn Backend, target: &Target, access: Access, cause: &BackendError) -> Error {
    Error::Backend {
        backend: backend.name().to_owned(),
        resource: target.resource().to_owned(),
        key: target.key().map(str::to_owned),
        access,
        message: cause.to_string(),
    }
}

/// Runs a backend's future to completion on this thread. A file backend's
/// attempt is ready at once; a network backend's parks the thread until its
/// reply arrives.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }

        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }

    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

//! Timeouts for async acquisitions, on whatever executor runs them.
//!
//! One timer serves every timed wait in the process: a single thread,
//! started the first time a timed wait has to queue, that sleeps until the
//! earliest deadline of a table of pending deadlines and wakes the tasks
//! whose deadlines passed. A wait adds its deadline only when it is pending
//! (an acquisition that succeeds at once never touches the timer), and
//! removes it, with its waker, as soon as it completes or is dropped: the
//! table holds exactly the waits that are still pending.
//!
//! The same thread reports waits that outlast the registry's slow-wait
//! threshold while they still wait ([`call_at`]).
//!
//! Why not Tokio's timer inside a Tokio runtime: a runtime built without
//! `enable_time` has no timer, and `tokio::time` then panics; there is no
//! public way to ask a runtime whether it has one, and the panic would come
//! only when a wait is contended, so tests pass and production panics. The
//! cost of keylock's own timer is that Tokio's paused clock
//! (`start_paused`, `tokio::time::pause`) does not apply to lock timeouts:
//! they always follow real time.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::sync::{self, Mutex, Thread};

/// Runs `future` for at most `timeout`; `None` when time ran out (the future
/// is then dropped, which for an acquisition cancels it cleanly).
pub(crate) async fn timeout<F: Future>(timeout: Duration, future: F) -> Option<F::Output> {
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        return Some(future.await);
    };
    let mut future = pin!(future);
    let mut alarm = Alarm {
        deadline,
        id: None,
        cancelled: None,
    };
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if Instant::now() >= deadline {
            return Poll::Ready(None);
        }
        alarm.set(cx);
        Poll::Pending
    })
    .await
}

/// Waits `duration` on keylock's timer, on any executor.
pub(crate) async fn sleep(duration: Duration) {
    timeout(duration, std::future::pending::<()>()).await;
}

/// Calls `call` once `deadline` passes, unless the returned alarm is
/// dropped first. `call` runs on a report thread of its own, never on the
/// timer thread, so the user code it may reach (a key's `Debug`, a
/// subscriber) cannot delay a timeout; a panic in it is caught, and ends
/// nothing but that call.
///
/// Under loom, nothing is armed: the timer thread would outlive a model's
/// execution, and the reports it makes are not part of what the models
/// check.
pub(crate) fn call_at(deadline: Instant, call: impl Fn() + Send + Sync + 'static) -> Alarm {
    if cfg!(loom) {
        drop(call);
        return Alarm {
            deadline,
            id: None,
            cancelled: None,
        };
    }
    /// The call, handed to the report thread when due; skipped there if
    /// its alarm was dropped meanwhile.
    struct Call<F> {
        call: F,
        cancelled: Arc<std::sync::atomic::AtomicBool>,
    }
    impl<F: Fn() + Send + Sync + 'static> Wake for Call<F> {
        fn wake(self: Arc<Self>) {
            reports::run(move || {
                if !self.cancelled.load(std::sync::atomic::Ordering::Acquire) {
                    (self.call)();
                }
            });
        }
    }
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let call = Call {
        call,
        cancelled: Arc::clone(&cancelled),
    };
    let id = Timer::get().insert(deadline, Waker::from(Arc::new(call)));
    Alarm {
        deadline,
        id: Some(id),
        cancelled: Some(cancelled),
    }
}

/// The thread that runs due alarm calls, so that the user code they reach
/// (a key's `Debug`, a `tracing` subscriber) never delays a timeout.
/// Process-wide statics, so std types (loom cannot model statics).
mod reports {
    use std::sync::mpsc::{self, Sender};
    use std::sync::{Mutex, OnceLock};

    type Job = Box<dyn FnOnce() + Send>;

    /// Runs `job` on the report thread, started on first use; if it cannot
    /// be started, the job is dropped unrun (a report, never a wake-up).
    pub(super) fn run(job: impl FnOnce() + Send + 'static) {
        static QUEUE: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
        let queue = QUEUE.get_or_init(|| {
            let (send, receive) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("keylock-reports".into())
                .spawn(move || {
                    for job in receive {
                        super::run_caught(job);
                    }
                })
                .ok()
                .map(|_| Mutex::new(send))
        });
        if let Some(queue) = queue {
            let send = match queue.lock() {
                Ok(send) => send,
                Err(poisoned) => poisoned.into_inner(),
            };
            let _ = send.send(Box::new(job));
        }
    }
}

/// Runs `call`, so that a panic in it, or in dropping its payload, ends
/// nothing but that call.
fn run_caught(call: impl FnOnce()) {
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(call)) {
        if let Err(again) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            // A payload whose drop panics too is leaked, not dropped.
            std::mem::forget(again);
        }
    }
}

/// A pending entry in the timer; removed (with its waker) when dropped.
pub(crate) struct Alarm {
    deadline: Instant,
    /// Set once the entry is in the timer's table.
    id: Option<u64>,
    /// For a call: tells the report thread not to make it.
    cancelled: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Alarm {
    /// Adds the entry, or updates its waker.
    fn set(&mut self, cx: &mut Context<'_>) {
        let timer = Timer::get();
        match self.id {
            Some(id) => timer.update(self.deadline, id, cx.waker()),
            None => self.id = Some(timer.insert(self.deadline, cx.waker().clone())),
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some(cancelled) = &self.cancelled {
            cancelled.store(true, std::sync::atomic::Ordering::Release);
        }
        if let Some(id) = self.id {
            Timer::get().remove(self.deadline, id);
        }
    }
}

/// The process's one timer.
struct Timer {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Pending deadlines, earliest first, with the waker to call.
    entries: BTreeMap<(Instant, u64), Waker>,
    next_id: u64,
    /// The timer thread, once started.
    thread: Option<Thread>,
    /// The deadline the timer thread sleeps until, if it sleeps until one.
    sleeping_until: Option<Instant>,
}

impl Timer {
    fn get() -> &'static Timer {
        static TIMER: OnceLock<Timer> = OnceLock::new();
        TIMER.get_or_init(|| Timer {
            table: Mutex::new(Table::default()),
        })
    }

    fn insert(&'static self, deadline: Instant, waker: Waker) -> u64 {
        let mut table = sync::lock(&self.table);
        let id = table.next_id;
        table.next_id += 1;
        table.entries.insert((deadline, id), waker);
        // Wake the thread only when it would sleep past this deadline.
        let wake = if table.thread.is_none() {
            table.thread = Some(self.start());
            None
        } else if table.sleeping_until.is_some_and(|until| until <= deadline) {
            None
        } else {
            table.thread.clone()
        };
        drop(table);
        if let Some(thread) = wake {
            thread.unpark();
        }
        id
    }

    fn update(&self, deadline: Instant, id: u64, waker: &Waker) {
        let mut table = sync::lock(&self.table);
        if let Some(stored) = table.entries.get_mut(&(deadline, id)) {
            if !stored.will_wake(waker) {
                *stored = waker.clone();
            }
        }
    }

    fn remove(&self, deadline: Instant, id: u64) {
        let waker = sync::lock(&self.table).entries.remove(&(deadline, id));
        // Dropped outside the table's lock: dropping a waker runs executor
        // code.
        drop(waker);
    }

    /// How many waits the timer holds; for tests.
    #[cfg(test)]
    fn pending(&self) -> usize {
        sync::lock(&self.table).entries.len()
    }

    fn start(&'static self) -> Thread {
        let spawned = sync::Builder::new()
            .name("keylock-timer".into())
            .spawn(move || self.run());
        match spawned {
            Ok(handle) => handle.thread().clone(),
            Err(error) => panic!("keylock could not start its timer thread: {error}"),
        }
    }

    /// The timer thread: wakes the waits whose deadlines passed, then
    /// sleeps until the next deadline, or until a new earlier one arrives.
    fn run(&self) {
        let mut due = Vec::new();
        loop {
            let now = Instant::now();
            let mut table = sync::lock(&self.table);
            while let Some(entry) = table.entries.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
            let next = table.entries.keys().next().map(|(deadline, _)| *deadline);
            table.sleeping_until = next;
            drop(table);
            for waker in due.drain(..) {
                // A waker is executor code (reports go on to their own
                // thread): it may not stop the timer.
                run_caught(|| waker.wake());
            }
            match next {
                // From now, not from before the wakers ran.
                Some(deadline) => {
                    sync::park_timeout(deadline.saturating_duration_since(Instant::now()))
                }
                None => sync::park(),
            }
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

    #[test]
    fn fires_in_deadline_order_whatever_the_order_of_arrival() {
        let started = Instant::now();
        let mut pool = futures::executor::LocalPool::new();
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        for millis in [60u64, 20, 40] {
            let order = order.clone();
            futures::task::LocalSpawnExt::spawn_local(&pool.spawner(), async move {
                let out =
                    timeout(Duration::from_millis(millis), std::future::pending::<()>()).await;
                assert_eq!(out, None);
                assert!(started.elapsed() >= Duration::from_millis(millis));
                order.borrow_mut().push(millis);
            })
            .unwrap();
        }
        pool.run();
        assert_eq!(*order.borrow(), [20, 40, 60]);
    }

    #[test]
    fn dropped_waits_leave_the_timer_at_once() {
        let mut futures: Vec<_> = (0..100)
            .map(|_| {
                Box::pin(timeout(
                    Duration::from_secs(3600),
                    std::future::pending::<()>(),
                ))
            })
            .collect();
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        for future in &mut futures {
            assert!(future.as_mut().poll(&mut cx).is_pending());
        }
        // Other tests share the timer: count only what this one added.
        let with = Timer::get().pending();
        assert!(with >= 100);
        drop(futures);
        assert!(Timer::get().pending() <= with - 100);
    }
}

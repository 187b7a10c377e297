//! `#[dedup]` and the dedup runtime: an event delivered twice is handled once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use keylock::{dedup, write_lock, DedupOptions, ManualClock, Registry};

static RUNS: AtomicUsize = AtomicUsize::new(0);
static ONE_ID: LazyLock<Registry> = LazyLock::new(Registry::new);

#[dedup(id, registry = ONE_ID)]
async fn handle_once(id: u64) {
    RUNS.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_tasks_one_id_one_run() {
    let tasks: Vec<_> = (0..1_000).map(|_| tokio::spawn(handle_once(1))).collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

static THREAD_RUNS: AtomicUsize = AtomicUsize::new(0);
static THREADS: LazyLock<Registry> = LazyLock::new(Registry::new);

#[dedup(id, registry = THREADS)]
fn handle_on_thread(id: u64) {
    THREAD_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1));
}

#[test]
fn thousand_concurrent_threads_one_id_one_run() {
    let barrier = Arc::new(std::sync::Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..20 {
                    handle_on_thread(7);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(THREAD_RUNS.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_ids_ten_copies_each() {
    let registry = Registry::new();
    let seen = registry.dedup::<u64>("events");
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for copy in 0..10 {
        for id in 0..100u64 {
            let seen = seen.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                if let Ok(claim) = seen.claim(&id) {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    claim.commit();
                }
                copy
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 100);
    assert_eq!(seen.len(), 100);
    assert_eq!(seen.duplicates(), 900);
}

// The seed bot's double event: two deliveries within a millisecond.

struct Message {
    id: u64,
    text: &'static str,
}

struct ReplyBot {
    registry: Registry,
    replies: std::sync::Mutex<Vec<String>>,
}

impl ReplyBot {
    #[dedup(message.id, ttl = "10m", registry = self.registry)]
    async fn on_message(&self, message: &Message) {
        tokio::time::sleep(Duration::from_millis(5)).await; // a model call
        self.replies
            .lock()
            .unwrap()
            .push(format!("re: {}", message.text));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_event_gets_one_reply() {
    let bot = Arc::new(ReplyBot {
        registry: Registry::new(),
        replies: std::sync::Mutex::default(),
    });
    let deliver = |bot: Arc<ReplyBot>| {
        tokio::spawn(async move {
            bot.on_message(&Message {
                id: 99,
                text: "hello",
            })
            .await;
        })
    };
    let first = deliver(bot.clone());
    tokio::time::sleep(Duration::from_micros(300)).await;
    let second = deliver(bot.clone());
    first.await.unwrap();
    second.await.unwrap();
    // And a replay after the first one finished.
    bot.on_message(&Message {
        id: 99,
        text: "hello",
    })
    .await;
    assert_eq!(*bot.replies.lock().unwrap(), ["re: hello"]);
}

// Failure, cancellation, panics.

static FAILS: LazyLock<Registry> = LazyLock::new(Registry::new);
static FAIL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, PartialEq)]
enum JobError {
    Failed,
    Duplicate,
}

impl From<keylock::Error> for JobError {
    fn from(error: keylock::Error) -> Self {
        assert!(error.is_duplicate());
        JobError::Duplicate
    }
}

#[dedup("jobs", id, registry = FAILS)]
fn job(id: u64, fail: bool) -> Result<u64, JobError> {
    FAIL_RUNS.fetch_add(1, Ordering::SeqCst);
    if fail {
        return Err(JobError::Failed);
    }
    Ok(id)
}

#[dedup("kept", id, keep_on_error = true, registry = FAILS)]
fn kept_job(id: u64, fail: bool) -> Result<u64, JobError> {
    if fail {
        Err(JobError::Failed)?;
    }
    Ok(id)
}

#[test]
fn failed_first_call_lets_the_retry_run() {
    assert_eq!(job(1, true), Err(JobError::Failed));
    assert_eq!(job(1, false), Ok(1));
    assert_eq!(job(1, false), Err(JobError::Duplicate));
    assert_eq!(FAIL_RUNS.load(Ordering::SeqCst), 2);

    assert_eq!(kept_job(1, true), Err(JobError::Failed));
    assert_eq!(kept_job(1, false), Err(JobError::Duplicate));
}

#[dedup("panics", id, registry = FAILS)]
fn panics_once(id: u64, panic: bool) -> Option<u64> {
    assert!(!panic, "first call panics");
    Some(id)
}

#[test]
fn panicking_first_call_releases_its_claim() {
    assert!(std::panic::catch_unwind(|| panics_once(3, true)).is_err());
    assert_eq!(panics_once(3, false), Some(3));
    assert_eq!(panics_once(3, false), None);
}

#[tokio::test]
async fn cancelled_first_call_releases_its_claim_once() {
    let registry = Registry::new();
    let seen = registry.dedup::<u64>("cancel");
    let runs = Arc::new(AtomicUsize::new(0));
    let first = {
        let seen = seen.clone();
        async move {
            let _claim = seen.claim(&1).unwrap();
            std::future::pending::<()>().await;
        }
    };
    assert!(tokio::time::timeout(Duration::from_millis(5), first)
        .await
        .is_err());
    assert!(!seen.is_in_flight(&1));
    assert_eq!(seen.len(), 0);
    let claim = seen.claim(&1).unwrap();
    runs.fetch_add(1, Ordering::SeqCst);
    claim.commit();
    assert!(seen.claim(&1).is_err());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

static WAITERS: LazyLock<Registry> = LazyLock::new(Registry::new);
static WAIT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[dedup("wait", id, in_flight = "wait", registry = WAITERS)]
async fn waiting_handler(id: u64, hang: bool) {
    WAIT_RUNS.fetch_add(1, Ordering::SeqCst);
    if hang {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_first_call_lets_exactly_one_waiter_run() {
    let first = tokio::spawn(waiting_handler(5, true));
    while WAIT_RUNS.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let waiters: Vec<_> = (0..10)
        .map(|_| tokio::spawn(waiting_handler(5, false)))
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        WAIT_RUNS.load(Ordering::SeqCst),
        1,
        "waiters ran while the first call was in flight"
    );
    first.abort();
    for waiter in waiters {
        waiter.await.unwrap();
    }
    assert_eq!(WAIT_RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_skip_when_the_first_call_succeeds() {
    let registry = Registry::new();
    let seen = registry.dedup::<u64>("w");
    let claim = seen.claim(&1).unwrap();
    let waiter = {
        let seen = seen.clone();
        tokio::spawn(async move { seen.claim_or_wait(&1).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(!waiter.is_finished());
    claim.commit();
    assert!(waiter.await.unwrap().unwrap_err().is_duplicate());
}

// Time and memory bounds.

#[test]
fn ttl_expiry_with_a_manual_clock() {
    let clock = ManualClock::new();
    let registry = Registry::builder().clock(clock.clone()).build();
    let seen =
        registry.dedup_with::<String>("ttl", DedupOptions::new().ttl(Duration::from_secs(600)));
    seen.claim("a").unwrap().commit();
    clock.advance(Duration::from_secs(599));
    assert!(seen.claim("a").is_err());
    clock.advance(Duration::from_secs(1));
    assert!(seen.claim("a").is_ok());
}

#[test]
fn capacity_bounds_memory_oldest_first() {
    let registry = Registry::new();
    let seen = registry.dedup_with::<u64>("cap", DedupOptions::new().capacity(1_000));
    for id in 0..1_000_000u64 {
        seen.claim(&id).unwrap().commit();
    }
    assert_eq!(seen.len(), 1_000);
    assert!(seen.is_remembered(&999_999));
    assert!(!seen.is_remembered(&998_999));
}

// Return types and stacking.

static SHAPES: LazyLock<Registry> = LazyLock::new(Registry::new);

#[dedup(id, on_duplicate = -1, registry = SHAPES)]
fn with_default(id: i64) -> i64 {
    id
}

#[dedup(key = (a, b), registry = SHAPES)]
fn pair(a: u8, b: u8) -> Option<u16> {
    Some(u16::from(a) + u16::from(b))
}

static ORDER: LazyLock<Registry> = LazyLock::new(Registry::new);

#[dedup(id, registry = ORDER, on_duplicate = false)]
#[write_lock("stacked", key = id, registry = ORDER)]
fn dedup_then_lock(id: u64) -> bool {
    ORDER.keyed::<u64>("stacked").is_locked(&id)
}

#[test]
fn return_types_and_stacking() {
    assert_eq!(with_default(4), 4);
    assert_eq!(with_default(4), -1);
    assert_eq!(pair(1, 2), Some(3));
    assert_eq!(pair(1, 2), None);
    assert_eq!(pair(2, 1), Some(3));
    assert!(dedup_then_lock(1));
    assert!(!dedup_then_lock(1), "a duplicate must not run");
}

#[async_trait::async_trait]
trait Handler {
    async fn handle(&self, id: u64) -> Result<u64, keylock::Error>;
}

struct ViaAsyncTrait(Registry, AtomicUsize);

#[async_trait::async_trait]
impl Handler for ViaAsyncTrait {
    #[dedup(id, registry = self.0)]
    async fn handle(&self, id: u64) -> Result<u64, keylock::Error> {
        self.1.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_trait_methods_are_deduplicated_over_their_whole_body() {
    let handler = Arc::new(ViaAsyncTrait(Registry::new(), AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let handler = handler.clone();
            tokio::spawn(async move { handler.handle(1).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(1) => ok += 1,
            Err(error) => assert!(error.is_duplicate()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(handler.1.load(Ordering::SeqCst), 1);
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn deduplicated_futures_stay_send() {
    assert_send(&handle_once(1));
    assert_send(&waiting_handler(1, false));
}

//! Functions declared to return a future hold their lock (or dedup claim)
//! until the future completes, not just while it is built.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use futures::future::BoxFuture;
use keylock::{dedup, write_lock, Registry};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// Counts callers inside at once, and the most there ever were.
struct Overlap {
    inside: AtomicUsize,
    peak: AtomicUsize,
}

impl Overlap {
    const fn new() -> Self {
        Overlap {
            inside: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    async fn visit(&self) {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

static IMPL_FUTURE: Overlap = Overlap::new();
static PINNED: Overlap = Overlap::new();
static BOXED: Overlap = Overlap::new();

#[write_lock("impl-future", key = id, registry = REGISTRY)]
fn impl_future(id: u64) -> impl Future<Output = u64> + Send {
    async move {
        IMPL_FUTURE.visit().await;
        id
    }
}

#[write_lock("pinned", key = id, registry = REGISTRY)]
fn pinned(id: u64) -> Pin<Box<dyn Future<Output = u64> + Send>> {
    let future = async move {
        PINNED.visit().await;
        id
    };
    Box::pin(future)
}

#[write_lock("boxed", registry = REGISTRY, timeout = "5s")]
fn boxed(id: &u64) -> BoxFuture<'_, Result<u64, keylock::Error>> {
    Box::pin(async move {
        BOXED.visit().await;
        Ok(*id)
    })
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[dedup(id, registry = REGISTRY)]
fn handle_once(id: u64) -> impl Future<Output = Option<u64>> {
    async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        RUNS.fetch_add(1, Ordering::SeqCst);
        Some(id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_covers_an_impl_future_until_it_completes() {
    let calls: Vec<_> = (0..8).map(|_| tokio::spawn(impl_future(1))).collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 1);
    }
    assert_eq!(IMPL_FUTURE.peak(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lock_covers_a_pinned_boxed_future_until_it_completes() {
    let calls: Vec<_> = (0..8).map(|_| tokio::spawn(pinned(1))).collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 1);
    }
    assert_eq!(PINNED.peak(), 1);
}

#[tokio::test]
async fn lock_covers_a_box_future_until_it_completes() {
    let ids = [1, 2, 3, 4];
    let results = futures::future::join_all(ids.iter().map(boxed)).await;
    assert_eq!(results, vec![Ok(1), Ok(2), Ok(3), Ok(4)]);
    assert_eq!(BOXED.peak(), 1);
}

#[tokio::test]
async fn held_until_the_returned_future_completes() {
    let future = impl_future(7);
    // Building the future takes nothing.
    assert!(!REGISTRY.keyed::<u64>("impl-future").is_locked(&7));
    let running = tokio::spawn(future);
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert!(REGISTRY.keyed::<u64>("impl-future").is_locked(&7));
    assert_eq!(running.await.unwrap(), 7);
    assert!(!REGISTRY.keyed::<u64>("impl-future").is_locked(&7));
}

#[tokio::test]
async fn dedup_claim_covers_the_returned_future() {
    let (first, second) = futures::join!(handle_once(9), handle_once(9));
    assert_eq!((first, second), (Some(9), None));
    assert_eq!(RUNS.load(Ordering::SeqCst), 1);
}

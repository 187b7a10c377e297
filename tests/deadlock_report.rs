//! `Registry::deadlocks()` (the wait-for reporter): cycles of waits among
//! current holders and waiters, across threads and tasks, reported without
//! changing anything; nothing is reported without a cycle.

use std::fmt;
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use keylock::Registry;

fn tracked() -> Registry {
    Registry::builder().track_holders(true).build()
}

/// Polls `condition` until it holds, for at most 10 s.
fn eventually(mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn two_threads_taking_two_locks_in_opposite_orders_are_reported() {
    let registry = tracked();
    let (a_held, wait_a) = mpsc::channel();
    let (b_held, wait_b) = mpsc::channel();
    let first = {
        let registry = registry.clone();
        std::thread::spawn(move || {
            let _a = registry.lock("a").write_blocking();
            a_held.send(()).unwrap();
            wait_b.recv().unwrap();
            // Bounded, so the test ends: the report comes while it waits.
            registry
                .lock("b")
                .write_blocking_timeout(Duration::from_millis(1_500))
                .map(drop)
        })
    };
    let second = {
        let registry = registry.clone();
        std::thread::spawn(move || {
            let _b = registry.lock("b").write_blocking();
            b_held.send(()).unwrap();
            wait_a.recv().unwrap();
            registry
                .lock("a")
                .write_blocking_timeout(Duration::from_millis(1_500))
                .map(drop)
        })
    };
    eventually(|| registry.lock("a").waiters() == 1 && registry.lock("b").waiters() == 1);
    let deadlocks = registry.deadlocks();
    assert_eq!(deadlocks.len(), 1, "{deadlocks:#?}");
    let cycle = &deadlocks[0].cycle;
    assert_eq!(cycle.len(), 2);
    let resources: Vec<&str> = cycle.iter().map(|wait| wait.resource.as_str()).collect();
    assert!(
        resources.contains(&"a") && resources.contains(&"b"),
        "{cycle:#?}"
    );
    for (wait, next) in cycle.iter().zip(cycle.iter().cycle().skip(1)) {
        assert_eq!(wait.holder, next.waiter, "{cycle:#?}");
        assert!(wait.waiting_at.contains("deadlock_report.rs"), "{wait:?}");
        assert!(wait.held_at.contains("deadlock_report.rs"), "{wait:?}");
        assert!(wait.waiter.starts_with("thread "), "{wait:?}");
    }
    // Reporting changed nothing: both still wait, until one times out and
    // lets the other through.
    assert_eq!(registry.lock("a").waiters(), 1);
    let outcomes = [first.join().unwrap(), second.join().unwrap()];
    assert!(outcomes.iter().any(Result::is_err), "{outcomes:?}");
    assert!(registry.deadlocks().is_empty());
}

#[test]
fn tasks_waiting_in_a_cycle_are_reported_by_task() {
    let registry = tracked();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let keys = registry.keyed::<u64>("accounts");
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let transfer = |from: u64, to: u64| {
        let keys = keys.clone();
        let barrier = barrier.clone();
        runtime.spawn(async move {
            let _from = keys.write(&from).await;
            barrier.wait().await;
            keys.key(&to)
                .write_timeout(Duration::from_millis(1_500))
                .await
                .map(drop)
        })
    };
    let one = transfer(1, 2);
    let two = transfer(2, 1);
    eventually(|| keys.waiters(&1) == 1 && keys.waiters(&2) == 1);
    let deadlocks = registry.deadlocks();
    assert_eq!(deadlocks.len(), 1, "{deadlocks:#?}");
    let cycle = &deadlocks[0].cycle;
    assert!(
        cycle.iter().all(|wait| wait.waiter.starts_with("task ")),
        "{cycle:#?}"
    );
    let keys_waited: Vec<_> = cycle.iter().map(|wait| wait.key.clone()).collect();
    assert!(keys_waited.contains(&Some("1".into())) && keys_waited.contains(&Some("2".into())));
    // The first to time out releases its key, and the other goes on.
    let outcomes = [
        runtime.block_on(one).unwrap(),
        runtime.block_on(two).unwrap(),
    ];
    assert!(outcomes.iter().any(Result::is_err), "{outcomes:?}");
}

#[test]
fn plain_contention_is_no_deadlock() {
    let registry = tracked();
    let held = registry.lock("db").write_blocking();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let registry = registry.clone();
            std::thread::spawn(move || drop(registry.lock("db").read_blocking()))
        })
        .collect();
    eventually(|| registry.lock("db").waiters() == 3);
    assert!(registry.deadlocks().is_empty());
    drop(held);
    for waiter in waiters {
        waiter.join().unwrap();
    }
}

#[test]
fn without_the_live_view_nothing_is_reported() {
    let registry = Registry::new();
    let _a = registry.lock("a").write_blocking();
    assert!(registry.deadlocks().is_empty());
}

/// `k` threads hold read "a" and ask for write "b"; `k` threads hold read
/// "b" and ask for write "a". A real deadlock of 2k threads (a read then
/// upgrade pattern across two resources); the wait-for graph is the
/// complete bipartite graph K(k,k), whose simple cycles grow factorially.
fn bipartite(k: usize) -> (Duration, usize) {
    let registry = tracked();
    let barrier = Arc::new(Barrier::new(2 * k));
    let mut threads = Vec::new();
    for side in 0..2 {
        for _ in 0..k {
            let registry = registry.clone();
            let barrier = barrier.clone();
            threads.push(std::thread::spawn(move || {
                let (mine, other) = if side == 0 { ("a", "b") } else { ("b", "a") };
                let _held = registry.lock(mine).read_blocking();
                barrier.wait();
                let _ = registry
                    .lock(other)
                    .write_blocking_timeout(Duration::from_secs(30));
            }));
        }
    }
    eventually(|| registry.lock("a").waiters() == k && registry.lock("b").waiters() == k);
    let started = Instant::now();
    let found = registry.deadlocks().len();
    let took = started.elapsed();
    // Let everyone go: nothing releases until timeouts, so this test is slow
    // to end; detach the threads instead.
    drop(threads);
    (took, found)
}

/// Regression: listing every simple cycle grew factorially with the
/// participants; one shortest cycle per participant stays small and fast.
#[test]
fn many_participants_in_one_deadlock_are_reported_quickly() {
    for k in 2..=6 {
        let (took, found) = bipartite(k);
        assert!(found >= 1 && found <= 2 * k, "k = {k}: {found} cycles");
        assert!(
            took < Duration::from_secs(1),
            "k = {k}: {found} cycles took {took:?}"
        );
    }
}

/// Keys with a `Debug` that hides part of the key (a redacted secret, a
/// summary) are different locks that the report takes for one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ApiKey {
    tenant: u32,
    secret: u32,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(tenant {}, ****)", self.tenant)
    }
}

/// Regression: T1 holds key (1, 1) and waits for "x"; T2 holds "x" and
/// waits for key (1, 2), held by T3, which waits for nothing. No cycle,
/// though both keys print alike.
#[test]
fn distinct_keys_with_equal_debug_are_distinct_locks() {
    let registry = tracked();
    let keys = registry.keyed::<ApiKey>("api_keys");
    let one = ApiKey {
        tenant: 1,
        secret: 1,
    };
    let two = ApiKey {
        tenant: 1,
        secret: 2,
    };
    let t3_guard = keys.write_blocking(&two); // T3 is this thread: waits for nothing
    let (x_held_tx, x_held_rx) = std::sync::mpsc::channel();
    let t2 = {
        let registry = registry.clone();
        let keys = keys.clone();
        let two = two.clone();
        std::thread::spawn(move || {
            let _x = registry.lock("x").write_blocking();
            x_held_tx.send(()).unwrap();
            drop(keys.write_blocking(&two));
        })
    };
    x_held_rx.recv().unwrap();
    let t1 = {
        let registry = registry.clone();
        let keys = keys.clone();
        std::thread::spawn(move || {
            let _one = keys.write_blocking(&one);
            drop(registry.lock("x").write_blocking());
        })
    };
    eventually(|| registry.lock("x").waiters() == 1 && keys.waiters(&two) == 1);
    let deadlocks = registry.deadlocks();
    drop(t3_guard);
    t2.join().unwrap();
    t1.join().unwrap();
    assert!(
        deadlocks.is_empty(),
        "no deadlock (everyone finished), yet reported: {deadlocks:#?}"
    );
}

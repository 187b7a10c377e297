//! Statistics: exact counts after a scripted workload, distributions within
//! bounds, the live view of holders and waiters, and the outputs.

use std::sync::Arc;
use std::time::Duration;

use keylock::{write_lock, Registry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_workload_gives_exact_counts() {
    let registry = Registry::new();
    let db = registry.resource("db");
    for _ in 0..3 {
        drop(db.read().await);
    }
    for _ in 0..2 {
        drop(db.write().await);
    }
    // One contended write: queued for about 30 ms.
    let held = db.write().await;
    let waiter = {
        let db = db.clone();
        tokio::spawn(async move { drop(db.write().await) })
    };
    while db.lock().waiters() == 0 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    // One busy attempt and one timeout while it is held.
    assert!(db.lock().try_read().is_err());
    assert!(db
        .lock()
        .read_timeout(Duration::from_millis(5))
        .await
        .is_err());
    drop(held);
    waiter.await.unwrap();

    let stats = registry.stats();
    let db = stats.resource("db").unwrap();
    assert_eq!(db.read_acquisitions, 3);
    assert_eq!(db.write_acquisitions, 2 + 1 + 1);
    assert_eq!(db.contended, 1);
    assert_eq!(db.busy, 1);
    assert_eq!(db.timeouts, 1);
    assert_eq!(db.wait.count, 1);
    assert!(db.wait.min >= Duration::from_millis(30), "{:?}", db.wait);
    assert!(db.wait.max < Duration::from_secs(5));
    assert!(db.wait.p50 >= db.wait.min && db.wait.p50 <= db.wait.max);
    assert_eq!((db.holders, db.waiters, db.live_keys), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_and_waiters_are_listed_while_they_hold_and_queue() {
    let registry = Registry::new();
    let keys = registry.keyed::<u64>("channels");
    let a = keys.write(&1).await;
    let b1 = keys.read(&2).await;
    let b2 = keys.read(&2).await;
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let keys = keys.clone();
            tokio::spawn(async move { drop(keys.write(&1).await) })
        })
        .collect();
    // Queued, and counted as waiting (the count follows the queue by a
    // moment: a task counts itself after it queued).
    while keys.waiters(&1) < 3 || registry.stats().resource("channels").unwrap().peak_waiters < 3 {
        tokio::task::yield_now().await;
    }
    let stats = registry.stats();
    let channels = stats.resource("channels").unwrap();
    assert_eq!(channels.holders, 3, "one writer and two readers");
    assert_eq!(channels.waiters, 3);
    assert_eq!(channels.live_keys, 2);
    drop((a, b1, b2));
    for task in queued {
        task.await.unwrap();
    }
    let channels = registry.stats().resource("channels").unwrap().clone();
    assert_eq!(
        (channels.holders, channels.waiters, channels.live_keys),
        (0, 0, 0)
    );
    assert_eq!(channels.write_acquisitions, 4);
    assert_eq!(channels.read_acquisitions, 2);
    assert_eq!(channels.contended, 3);
    assert_eq!(channels.peak_waiters, 3);
}

#[test]
fn evictions_count_the_idle_entries_swept() {
    let registry = Registry::new();
    let keys = registry.keyed::<u64>("many");
    for key in 0..3_000u64 {
        drop(keys.write_blocking(&key));
    }
    let evictions = registry.stats().resource("many").unwrap().evictions;
    assert!(evictions > 0);
    assert_eq!(evictions + keys.entries_in_memory() as u64, 3_000);
}

#[test]
fn counts_stay_exact_under_two_threads() {
    let registry = Registry::new();
    let threads: Vec<_> = (0..2u64)
        .map(|thread| {
            let keys = registry.keyed::<u64>("k");
            std::thread::spawn(move || {
                for i in 0..100_000u64 {
                    // Half on a shared key, half on the thread's own.
                    let key = if i % 2 == 0 { 0 } else { thread + 1 };
                    drop(keys.write_blocking(&key));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = registry.stats();
    let k = stats.resource("k").unwrap();
    assert_eq!(k.write_acquisitions, 200_000);
    assert_eq!(k.wait.count, k.contended);
}

static PANICS: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::new);

#[write_lock("fragile", registry = PANICS)]
fn fragile() {
    panic!("boom");
}

#[test]
fn panics_while_held_are_counted() {
    assert!(std::panic::catch_unwind(fragile).is_err());
    assert!(std::panic::catch_unwind(fragile).is_err());
    assert_eq!(
        PANICS
            .stats()
            .resource("fragile")
            .unwrap()
            .panics_while_held,
        2
    );
}

#[test]
fn table_lists_every_resource_aligned() {
    let registry = Registry::new();
    drop(registry.lock("db").write_blocking());
    drop(
        registry
            .key_lock("a-much-longer-resource-name", &1u64)
            .read_blocking(),
    );
    let table = registry.stats().to_string();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("resource"));
    assert!(lines[1].starts_with("a-much-longer-resource-name"));
    assert!(lines[2].starts_with("db "));
    // Aligned: every line has the same width.
    assert!(
        lines.iter().all(|line| line.len() == lines[0].len()),
        "{table}"
    );
}

#[test]
fn prometheus_output_parses_with_a_real_parser() {
    let registry = Registry::new();
    let db = registry.resource("db-main");
    drop(db.lock().read_blocking());
    let held = db.lock().write_blocking();
    let waiter = {
        let db = db.clone();
        std::thread::spawn(move || drop(db.lock().write_blocking()))
    };
    while db.lock().waiters() == 0 {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(2));
    drop(held);
    waiter.join().unwrap();

    let text = registry.stats().to_prometheus();
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition format");
    let find = |name: &str, mode: Option<&str>| {
        scrape
            .samples
            .iter()
            .find(|sample| {
                sample.metric == name
                    && sample.labels.get("resource") == Some("db-main")
                    && mode.is_none_or(|mode| sample.labels.get("mode") == Some(mode))
            })
            .map(|sample| sample.value.clone())
    };
    assert!(matches!(
        find("keylock_acquisitions_total", Some("read")),
        Some(prometheus_parse::Value::Counter(v)) if v == 1.0
    ));
    assert!(matches!(
        find("keylock_acquisitions_total", Some("write")),
        Some(prometheus_parse::Value::Counter(v)) if v == 2.0
    ));
    assert!(matches!(
        find("keylock_waiters", None),
        Some(prometheus_parse::Value::Gauge(v)) if v == 0.0
    ));
    match find("keylock_wait_seconds", None) {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            assert_eq!(buckets.last().unwrap().count, 1.0);
        }
        other => panic!("no wait histogram: {other:?}\n{text}"),
    }
}

#[test]
fn snapshot_is_cheap_to_clone_and_compare() {
    let registry = Registry::new();
    drop(registry.lock("db").write_blocking());
    let first = registry.stats();
    let second = registry.stats();
    assert_eq!(first, second);
    let shared = Arc::new(first);
    assert_eq!(shared.resources.len(), 1);
}

#[test]
fn statistics_can_be_switched_off() {
    let registry = Registry::builder().statistics(false).build();
    let held = registry.lock("db").write_blocking();
    assert!(registry.lock("db").try_write().is_err());
    let stats = registry.stats();
    let db = stats.resource("db").unwrap();
    assert_eq!((db.write_acquisitions, db.busy), (0, 0));
    assert_eq!(db.holders, 1, "the live view still works");
    drop(held);
}

#[test]
fn snapshot_round_trips_through_json() {
    let registry = Registry::new();
    let keys = registry.keyed::<u64>("sessions");
    drop(keys.write_blocking(&1));
    let held = keys.write_blocking(&2);
    let json = serde_json::to_string(&registry.stats()).unwrap();
    let back: keylock::Stats = serde_json::from_str(&json).unwrap();
    assert_eq!(back, registry.stats());
    assert_eq!(back.resource("sessions").unwrap().holders, 1);
    assert!(json.contains("\"write_acquisitions\":2"), "{json}");
    drop(held);
}

/// Captures what `tracing` writes while `body` runs on this thread.
fn capture_events(body: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, body);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[test]
fn long_holds_are_timed_and_reported() {
    let registry = Registry::builder()
        .long_hold_warning(Duration::from_millis(10))
        .build();
    let output = capture_events(|| {
        let guard = registry.key_lock("sessions", &42u64).write_blocking();
        std::thread::sleep(Duration::from_millis(20));
        drop(guard);
        drop(registry.lock("db").read_blocking());
    });
    assert!(output.contains("lock held long"), "{output}");
    // The warning names the holder: where the lock was taken.
    assert!(output.contains("holder=tests/stats.rs:"), "{output}");
    assert!(
        output.contains("sessions") && output.contains("42"),
        "{output}"
    );
    let stats = registry.stats();
    let sessions = stats.resource("sessions").unwrap();
    assert_eq!(sessions.hold.count, 1);
    assert!(sessions.hold.min >= Duration::from_millis(20));
    assert_eq!(stats.resource("db").unwrap().hold.count, 1);
}

#[test]
fn timeouts_slow_waits_and_duplicates_are_reported() {
    let registry = Registry::builder()
        .slow_wait_warning(Duration::from_millis(5))
        .build();
    let output = capture_events(|| {
        let held = registry.lock("db").write_blocking();
        assert!(registry
            .lock("db")
            .write_blocking_timeout(Duration::from_millis(5))
            .is_err());
        let lock = registry.lock("db");
        let waiter = std::thread::spawn(move || drop(lock.write_blocking()));
        while registry.lock("db").waiters() == 0 {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(15));
        drop(held);
        waiter.join().unwrap();
        let seen = registry.dedup::<u64>("events");
        seen.claim(&1).unwrap().commit();
        assert!(seen.claim(&1).is_err());
    });
    assert!(output.contains("timed out after"), "{output}");
    assert!(output.contains("duplicate skipped"), "{output}");
    // The waiter ran on another thread, outside this capture; its wait is
    // in the statistics.
    let db = registry.stats().resource("db").unwrap().clone();
    assert_eq!(db.contended, 1);
    assert!(db.wait.max >= Duration::from_millis(15));
}

#[tokio::test(flavor = "current_thread")]
async fn slow_waits_are_warned_about() {
    let registry = Registry::builder()
        .slow_wait_warning(Duration::from_millis(5))
        .build();
    let db = registry.resource("db");
    let held = db.write().await;
    let mut waiting = Box::pin(db.write());
    let output = capture_events(|| {
        assert!(futures::FutureExt::now_or_never(waiting.as_mut()).is_none());
        std::thread::sleep(Duration::from_millis(10));
        drop(held);
        assert!(futures::FutureExt::now_or_never(waiting.as_mut()).is_some());
    });
    assert!(output.contains("waited long for a lock"), "{output}");
}

static TRACKED: std::sync::LazyLock<Registry> =
    std::sync::LazyLock::new(|| Registry::builder().track_holders(true).build());

#[write_lock("tracked", key = channel, registry = TRACKED)]
async fn tracked_handler(channel: u64, hold: Duration) {
    tokio::time::sleep(hold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_view_names_holders_and_waiters() {
    let holder = tokio::spawn(tracked_handler(7, Duration::from_millis(200)));
    while !TRACKED.keyed::<u64>("tracked").is_locked(&7) {
        tokio::task::yield_now().await;
    }
    let waiter = tokio::spawn(tracked_handler(7, Duration::ZERO));
    let thread_waiter = std::thread::Builder::new()
        .name("sync-worker".into())
        .spawn(|| drop(TRACKED.keyed::<u64>("tracked").write_blocking(&7)))
        .unwrap();
    while TRACKED.keyed::<u64>("tracked").waiters(&7) < 2 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;

    let stats = TRACKED.stats();
    let live = &stats.resource("tracked").unwrap().live;
    assert_eq!(live.len(), 3, "{live:#?}");
    let holding = &live[0];
    assert_eq!(holding.role, keylock::Role::Holding);
    assert_eq!(holding.key.as_deref(), Some("7"));
    assert_eq!(holding.access, keylock::Access::Write);
    assert!(
        holding.location.starts_with("tests/stats.rs:"),
        "{}",
        holding.location
    );
    assert!(holding.task.is_some());
    assert!(holding.duration >= Duration::from_millis(20));
    assert!(live[1..]
        .iter()
        .all(|who| who.role == keylock::Role::Waiting));
    let sync_waiter = live
        .iter()
        .find(|who| who.thread == "sync-worker")
        .expect("the blocking waiter is listed");
    assert!(sync_waiter.task.is_none());
    assert!(sync_waiter.location.starts_with("tests/stats.rs:"));
    let table = stats.to_string();
    assert!(
        table.contains("tracked holds the write lock on key 7"),
        "{table}"
    );

    holder.await.unwrap();
    waiter.await.unwrap();
    thread_waiter.join().unwrap();
    assert!(TRACKED.stats().resource("tracked").unwrap().live.is_empty());
}

#[test]
fn dedup_scopes_report_duplicates() {
    let registry = Registry::new();
    let seen = registry.dedup::<u64>("messages");
    seen.claim(&1).unwrap().commit();
    let running = seen.claim(&2).unwrap();
    assert!(seen.claim(&1).is_err());
    assert!(seen.claim(&2).is_err());
    let stats = registry.stats();
    let messages = stats.dedup_scope("messages").unwrap();
    assert_eq!(messages.duplicates, 2);
    assert_eq!((messages.remembered, messages.in_flight), (1, 1));
    assert!(stats
        .to_string()
        .contains("dedup messages: 2 duplicates skipped"));
    assert!(stats
        .to_prometheus()
        .contains("keylock_duplicates_total{scope=\"messages\"} 2"));
    drop(running);
}

#[test]
fn recent_operations_are_kept_newest_first_and_bounded() {
    let registry = Registry::builder().track_holders(true).build();
    let lock = registry.key_lock("ops", &5u64);
    let held = lock.write_blocking();
    assert!(lock.try_read().is_err());
    assert!(lock
        .read_blocking_timeout(Duration::from_millis(2))
        .is_err());
    drop(held);
    let stats = registry.stats();
    let kinds: Vec<keylock::OperationKind> = stats
        .resource("ops")
        .unwrap()
        .recent
        .iter()
        .map(|op| op.kind)
        .collect();
    use keylock::OperationKind::*;
    assert_eq!(kinds, [Released, TimedOut, Busy, Acquired]);
    let released = &stats.resource("ops").unwrap().recent[0];
    assert_eq!(released.key.as_deref(), Some("5"));
    assert!(released.location.starts_with("tests/stats.rs:"));
    assert!(released.took.unwrap() >= Duration::from_millis(2));

    for _ in 0..200 {
        drop(lock.read_blocking());
    }
    let stats = registry.stats();
    let recent = &stats.resource("ops").unwrap().recent;
    assert_eq!(recent.len(), keylock::RECENT_OPERATIONS);
}

static FAILING: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::new);

#[write_lock("failing", key = id, registry = FAILING)]
fn may_fail(id: u64, fail: bool) -> Result<u64, String> {
    if fail {
        return Err("no".into());
    }
    Ok(id)
}

#[write_lock("failing-async", registry = FAILING)]
async fn may_fail_async(fail: bool) -> Result<(), std::num::ParseIntError> {
    if fail {
        "x".parse::<u32>()?;
    }
    Ok(())
}

#[test]
fn bodies_failing_while_holding_are_counted() {
    assert!(may_fail(1, true).is_err());
    assert!(may_fail(1, false).is_ok());
    assert!(may_fail(2, true).is_err());
    futures::executor::block_on(async {
        assert!(may_fail_async(true).await.is_err());
        assert!(may_fail_async(false).await.is_ok());
    });
    let stats = FAILING.stats();
    assert_eq!(stats.resource("failing").unwrap().errors_while_held, 2);
    assert_eq!(stats.resource("failing").unwrap().write_acquisitions, 3);
    assert_eq!(
        stats.resource("failing-async").unwrap().errors_while_held,
        1
    );
    assert!(stats
        .to_prometheus()
        .contains("keylock_errors_while_held_total{resource=\"failing\"} 2"));
}

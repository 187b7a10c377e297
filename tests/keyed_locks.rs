//! The per-key scenarios users pinned in their own bots.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{registry, strict_registry, Log, Section};
use tokio::time::sleep;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn same_key_holders_never_overlap() {
    let keys = registry().keyed::<u64>("sessions");
    let section = Arc::new(Section::default());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let keys = keys.clone();
            let section = section.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    let _guard = keys.write(&1).await;
                    let _inside = section.enter();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(section.entries(), 400);
    assert_eq!(section.overlaps(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_keys_overlap() {
    let keys = registry().keyed::<u64>("sessions");
    let section = Arc::new(Section::default());
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let tasks: Vec<_> = (0..3u64)
        .map(|key| {
            let keys = keys.clone();
            let section = section.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let _guard = keys.write(&key).await;
                let _inside = section.enter();
                // Every holder waits for the others while holding its key:
                // this only finishes if all three keys are held at once.
                barrier.wait().await;
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("keys blocked each other")
            .unwrap();
    }
    assert_eq!(section.peak(), 3, "all three keys were held at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_one_key_run_in_arrival_order() {
    let keys = registry().keyed::<u64>("channel");
    let log = Arc::new(Log::default());
    let mut tasks = Vec::new();
    for message in 0..3 {
        let task_keys = keys.clone();
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let _guard = task_keys.write(&7).await;
            log.push(format!("start {message}"));
            sleep(Duration::from_millis(20)).await;
            log.push(format!("end {message}"));
        }));
        // Let each message queue before the next one arrives.
        while keys.waiters(&7) + usize::from(keys.is_locked(&7)) < message + 1 {
            tokio::task::yield_now().await;
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        log.take(),
        ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]
    );
}

#[tokio::test]
async fn contended_acquire_waits_then_proceeds() {
    let keys = registry().keyed::<u64>("channel");
    let guard = keys.write(&1).await;
    let waiter = {
        let keys = keys.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let _guard = keys.write(&1).await;
            started.elapsed()
        })
    };
    sleep(Duration::from_millis(50)).await;
    assert_eq!(keys.waiters(&1), 1);
    assert!(!waiter.is_finished());
    drop(guard);
    let waited = waiter.await.unwrap();
    assert!(waited >= Duration::from_millis(40), "waited {waited:?}");
    assert_eq!(keys.live_keys(), 0);
}

#[tokio::test]
async fn released_after_holder_returns_error() {
    let keys = registry().keyed::<u64>("channel");
    async fn handler(keys: &keylock::Keyed<u64>) -> Result<(), &'static str> {
        let _guard = keys.write(&1).await;
        Err("handler failed")?;
        Ok(())
    }
    assert_eq!(handler(&keys).await, Err("handler failed"));
    assert!(!keys.is_locked(&1));
    assert!(keys.try_write(&1).is_ok());
}

#[tokio::test]
async fn released_after_holder_panics() {
    let keys = registry().keyed::<u64>("channel");
    let task = {
        let keys = keys.clone();
        tokio::spawn(async move {
            let _guard = keys.write(&1).await;
            panic!("handler panicked");
        })
    };
    assert!(task.await.unwrap_err().is_panic());
    assert!(!keys.is_locked(&1));
    assert_eq!(keys.live_keys(), 0);

    let blocking = {
        let keys = keys.clone();
        std::thread::spawn(move || {
            let _guard = keys.write_blocking(&1);
            panic!("sync handler panicked");
        })
    };
    assert!(blocking.join().is_err());
    assert!(keys.try_write(&1).is_ok());
}

#[tokio::test]
async fn released_after_holder_times_out() {
    let keys = registry().keyed::<u64>("channel");
    let outer = tokio::time::timeout(Duration::from_millis(20), async {
        let _guard = keys.write(&1).await;
        sleep(Duration::from_secs(60)).await;
    })
    .await;
    assert!(outer.is_err());
    assert!(!keys.is_locked(&1));
    assert!(keys.try_write(&1).is_ok());
}

#[tokio::test]
async fn same_resource_and_key_give_the_same_lock() {
    let registry = registry();
    let guard = registry.keyed::<u64>("sessions").write(&5).await;
    // A fresh handle, through each entry point, sees the same lock.
    assert!(registry.keyed::<u64>("sessions").is_locked(&5));
    assert!(registry.key_lock("sessions", &5u64).is_write_locked());
    assert!(registry.resource("sessions").key(&5u64).try_read().is_err());
    // Another key, another resource or another registry do not.
    assert!(!registry.keyed::<u64>("sessions").is_locked(&6));
    assert!(!registry.keyed::<u64>("other").is_locked(&5));
    assert!(!common::registry().keyed::<u64>("sessions").is_locked(&5));
    drop(guard);
}

#[tokio::test]
async fn string_keys_are_looked_up_by_str() {
    let users = registry().keyed::<String>("users");
    let guard = users.write("alice").await;
    assert!(users.is_locked("alice"));
    assert!(users.is_locked(&String::from("alice")));
    assert!(users.try_write("alice").unwrap_err().is_busy());
    assert!(users.try_write("bob").is_ok());
    drop(guard);
    assert_eq!(users.live_keys(), 0);
}

#[tokio::test]
async fn equal_keys_share_and_distinct_keys_never_do() {
    // Keys are compared, never hashed down to a number.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Collides(u32);
    impl std::hash::Hash for Collides {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            0u8.hash(state);
        }
    }
    let keys = registry().keyed::<Collides>("collisions");
    let _one = keys.write(&Collides(1)).await;
    assert!(keys.try_write(&Collides(2)).is_ok());
    assert!(keys.try_write(&Collides(1)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_registry_hands_over_in_queue_order() {
    let keys = strict_registry().keyed::<u64>("k");
    let log = Arc::new(Log::default());
    let first = keys.write(&1).await;
    let mut tasks = Vec::new();
    for i in 0..5 {
        let task_keys = keys.clone();
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let _guard = task_keys.write(&1).await;
            log.push(i.to_string());
        }));
        while keys.waiters(&1) < i + 1 {
            tokio::task::yield_now().await;
        }
    }
    drop(first);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(log.take(), ["0", "1", "2", "3", "4"]);
}

#[tokio::test]
async fn key_stays_locked_after_every_keyed_handle_is_dropped() {
    // Regression: the key map must live as long as its resource, or a held
    // key would be forgotten and a second lock created for it.
    let registry = registry();
    let guard = registry.keyed::<u64>("sessions").write(&1).await;
    assert!(registry.keyed::<u64>("sessions").try_write(&1).is_err());
    assert!(registry.keyed::<u64>("sessions").is_locked(&1));
    drop(guard);
    assert!(registry.keyed::<u64>("sessions").try_write(&1).is_ok());
}

/// L3: the documented bound on idle entries. A map never holds more than
/// about twice the keys live at its last sweep (at least 1,024); keys that
/// went idle are swept once new keys arrive.
#[test]
fn entries_stay_within_twice_the_keys_live_at_the_last_sweep() {
    let registry = keylock::Registry::new();
    let keys = registry.keyed::<u64>("bounded");
    let held: Vec<_> = (0..5_000u64).map(|key| keys.key(&key)).collect();
    let mut most = 0;
    for key in 1_000_000..1_050_000u64 {
        drop(keys.write_blocking(&key));
        most = most.max(keys.entries_in_memory());
    }
    // The key being inserted is live during the sweep it triggers.
    assert!(most <= 2 * 5_001 + 1, "{most} entries for 5,000 live keys");
    drop(held);
    // Nothing inserted since: the idle entries are still there.
    assert!(keys.entries_in_memory() >= 5_000);
    let mut most = 0;
    for key in 2_000_000..2_050_000u64 {
        drop(keys.write_blocking(&key));
        most = most.max(keys.entries_in_memory());
    }
    assert!(most <= 2 * 5_001 + 1, "{most} entries");
    assert!(
        keys.entries_in_memory() <= 1_025,
        "{}",
        keys.entries_in_memory()
    );
    assert_eq!(keys.live_keys(), 0);
}

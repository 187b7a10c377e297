//! One lock for threads and tasks: each excludes the other.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{registry, Section};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_holder_blocks_task() {
    let keys = registry().keyed::<u64>("k");
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let released = Arc::new(AtomicBool::new(false));
    let thread = {
        let keys = keys.clone();
        let released = released.clone();
        std::thread::spawn(move || {
            let guard = keys.write_blocking(&1);
            held_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            released.store(true, Ordering::SeqCst);
            drop(guard);
        })
    };
    held_rx.recv().unwrap();
    let _guard = keys.write(&1).await;
    assert!(
        released.load(Ordering::SeqCst),
        "task got the key while a thread held it"
    );
    thread.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_holder_blocks_thread() {
    let keys = registry().keyed::<u64>("k");
    let guard = keys.write(&1).await;
    let released = Arc::new(AtomicBool::new(false));
    let thread = {
        let keys = keys.clone();
        let released = released.clone();
        std::thread::spawn(move || {
            let _guard = keys.read_blocking(&1);
            assert!(
                released.load(Ordering::SeqCst),
                "thread got the key while a task held it"
            );
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(keys.waiters(&1), 1);
    released.store(true, Ordering::SeqCst);
    drop(guard);
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
}

#[test]
fn threads_and_tasks_hammering_one_key_never_overlap() {
    let registry = registry();
    let keys = registry.keyed::<u64>("k");
    let section = Arc::new(Section::default());
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let keys = keys.clone();
            let section = section.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    let _guard = keys.write_blocking(&1);
                    let _inside = section.enter();
                }
            })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let keys = keys.clone();
                let section = section.clone();
                tokio::spawn(async move {
                    for _ in 0..1_000 {
                        let _guard = keys.write(&1).await;
                        let _inside = section.enter();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(section.entries(), 8_000);
    assert_eq!(section.overlaps(), 0);
    assert_eq!(keys.live_keys(), 0);
}

#[test]
fn blocking_acquisition_works_without_a_runtime() {
    let db = registry().resource("db");
    let read = db.lock().read_blocking();
    let timeout = db
        .lock()
        .write_blocking_timeout(Duration::from_millis(20))
        .unwrap_err();
    assert!(timeout.is_timeout());
    drop(read);
    let _write = db
        .lock()
        .write_blocking_timeout(Duration::from_millis(20))
        .unwrap();
}

#[test]
fn async_timeout_works_on_another_executor() {
    let db = registry().resource("db");
    let _held = db.lock().write_blocking();
    let result = futures::executor::block_on(db.lock().write_timeout(Duration::from_millis(20)));
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(db.lock().waiters(), 0);
}

//! Locks shared by processes through the file backend, proven with real
//! child processes: this test binary runs itself as the children (the
//! `child` test; see `tests/common/processes.rs`).

#![cfg(unix)]

use std::fs;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use keylock::{write_lock, FileBackend, Registry};

mod common;
use common::processes::{self, bump, signal, spawn, temp_dir, wait_line};

const CHILDREN: usize = 4;
const INCREMENTS: u64 = 150;

/// A registry whose resource "counter" is shared through `dir`.
fn shared_registry(dir: &Path) -> Registry {
    Registry::builder()
        .backend("counter", FileBackend::new(dir.join("locks")).unwrap())
        .build()
}

#[write_lock("counter", key = key, registry = registry)]
fn increment_blocking(registry: &Registry, key: u64, path: &Path) {
    bump(path);
}

#[write_lock("counter", key = key, registry = registry)]
async fn increment(registry: &Registry, key: u64, path: &Path) {
    bump(path);
}

/// The child side of every test here.
#[test]
fn child() {
    let Some((role, dir)) = processes::role() else {
        return;
    };
    let registry = shared_registry(&dir);
    let key: u64 = std::env::var("KEYLOCK_KEY").map_or(1, |key| key.parse().unwrap());
    match role.as_str() {
        "count-blocking" => {
            for _ in 0..INCREMENTS {
                increment_blocking(&registry, key, &dir.join("count"));
            }
        }
        "count-async" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            runtime.block_on(async {
                for _ in 0..INCREMENTS {
                    increment(&registry, key, &dir.join("count")).await;
                }
            });
        }
        "hold" => {
            let hold_ms: u64 =
                std::env::var("KEYLOCK_HOLD_MS").map_or(u64::MAX, |ms| ms.parse().unwrap());
            let guard = registry.keyed::<u64>("counter").write_blocking(&key);
            println!("held");
            std::io::stdout().flush().unwrap();
            std::thread::sleep(Duration::from_millis(hold_ms));
            drop(guard);
            println!("released");
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn processes_incrementing_one_key_lose_no_increment() {
    let dir = temp_dir("procs", "count");
    let children: Vec<Child> = (0..CHILDREN)
        .map(|n| {
            let role = if n % 2 == 0 {
                "count-blocking"
            } else {
                "count-async"
            };
            spawn(role, &dir, &[])
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let count: u64 = fs::read_to_string(dir.join("count"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(count, CHILDREN as u64 * INCREMENTS);
    // No lock file is still held: all can be removed.
    FileBackend::new(dir.join("locks"))
        .unwrap()
        .remove_idle()
        .unwrap();
    assert_eq!(
        fs::read_dir(dir.join("locks")).unwrap().count(),
        1,
        "only the fence counter"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn processes_on_different_keys_hold_at_once() {
    let dir = temp_dir("procs", "overlap");
    let hold = [("KEYLOCK_HOLD_MS", "3000".to_owned())];
    let mut first = spawn(
        "hold",
        &dir,
        &[hold[0].clone(), ("KEYLOCK_KEY", "1".into())],
    );
    let mut second = spawn(
        "hold",
        &dir,
        &[hold[0].clone(), ("KEYLOCK_KEY", "2".into())],
    );
    let started = Instant::now();
    let _first_out = wait_line(&mut first, "held");
    let _second_out = wait_line(&mut second, "held");
    // Both hold now: had the second waited for the first, it would have
    // printed only after three seconds.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(first.try_wait().unwrap().is_none() && second.try_wait().unwrap().is_none());
    // And this process can take a third key meanwhile, but not theirs.
    let registry = shared_registry(&dir);
    let counter = registry.keyed::<u64>("counter");
    assert!(counter.try_write(&3).is_ok());
    assert!(counter.try_write(&1).unwrap_err().is_busy());
    first.kill().unwrap();
    second.kill().unwrap();
    first.wait().unwrap();
    second.wait().unwrap();
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_holder_releases_at_once() {
    let dir = temp_dir("procs", "kill");
    let mut holder = spawn("hold", &dir, &[]);
    let _out = wait_line(&mut holder, "held");
    let registry = shared_registry(&dir);
    let counter = registry.keyed::<u64>("counter");
    let busy = counter.try_write(&1).unwrap_err();
    assert!(busy.is_busy(), "{busy}");
    holder.kill().unwrap(); // SIGKILL: no destructor runs
    holder.wait().unwrap();
    let started = Instant::now();
    let guard = counter
        .key(&1)
        .write_blocking_timeout(Duration::from_secs(5))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(guard.fence().is_some());
    drop(guard);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stopped_holder_blocks_others_only_while_stopped() {
    let dir = temp_dir("procs", "stop");
    let mut holder = spawn("hold", &dir, &[("KEYLOCK_HOLD_MS", "300".to_owned())]);
    let mut out = wait_line(&mut holder, "held");
    signal(&holder, "STOP");
    let registry = shared_registry(&dir);
    let counter = registry.keyed::<u64>("counter");
    // Well past its 300 ms hold, the stopped holder still holds.
    let waited = counter
        .key(&1)
        .write_blocking_timeout(Duration::from_millis(800))
        .unwrap_err();
    assert!(waited.is_timeout(), "{waited}");
    signal(&holder, "CONT");
    let guard = counter
        .key(&1)
        .write_blocking_timeout(Duration::from_secs(5))
        .unwrap();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.trim().ends_with("released"), "{line}");
    drop(guard);
    assert!(holder.wait().unwrap().success());
    fs::remove_dir_all(&dir).unwrap();
}

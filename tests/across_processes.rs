//! Locks shared by processes through the file backend, proven with real
//! child processes: this test binary runs itself as the children (the
//! `child` test, which does nothing unless `KEYLOCK_CHILD` names a role).

#![cfg(unix)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use keylock::{write_lock, FileBackend, Registry};

const CHILDREN: usize = 4;
const INCREMENTS: u64 = 150;

/// A fresh directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("keylock-procs-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A registry whose resource "counter" is shared through `dir`.
fn shared_registry(dir: &Path) -> Registry {
    Registry::builder()
        .backend("counter", FileBackend::new(dir.join("locks")).unwrap())
        .build()
}

/// Reads, then rewrites, a number in a file: two unexcluded callers lose
/// increments.
fn bump(path: &Path) {
    let now: u64 = fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    // Widen the window in which an unexcluded caller would interleave.
    std::thread::yield_now();
    fs::write(path, (now + 1).to_string()).unwrap();
}

#[write_lock("counter", key = key, registry = registry)]
fn increment_blocking(registry: &Registry, key: u64, path: &Path) {
    bump(path);
}

#[write_lock("counter", key = key, registry = registry)]
async fn increment(registry: &Registry, key: u64, path: &Path) {
    bump(path);
}

/// Starts this binary as a child process in `role`.
fn spawn(role: &str, dir: &Path, extra: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("KEYLOCK_CHILD", role)
        .env("KEYLOCK_DIR", dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in extra {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// Waits for the child's line `expected`, returning its output reader.
fn expect_line(child: &mut Child, expected: &str) -> BufReader<ChildStdout> {
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "the child ended before printing {expected:?}"
        );
        // The test harness may have printed `test child ... ` first.
        if line.trim().ends_with(expected) {
            return lines;
        }
    }
}

/// The child side of every test here.
#[test]
fn child() {
    let Ok(role) = std::env::var("KEYLOCK_CHILD") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("KEYLOCK_DIR").unwrap());
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
    let dir = temp_dir("count");
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
    let dir = temp_dir("overlap");
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
    let _first_out = expect_line(&mut first, "held");
    let _second_out = expect_line(&mut second, "held");
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
    let dir = temp_dir("kill");
    let mut holder = spawn("hold", &dir, &[]);
    let _out = expect_line(&mut holder, "held");
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

/// Sends `signal` (`STOP`, `CONT`) to a child.
fn signal(child: &Child, signal: &str) {
    // The shell's own `kill`: no package needed beyond the shell.
    let status = Command::new("sh")
        .args(["-c", &format!("kill -{signal} {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_stopped_holder_blocks_others_only_while_stopped() {
    let dir = temp_dir("stop");
    let mut holder = spawn("hold", &dir, &[("KEYLOCK_HOLD_MS", "300".to_owned())]);
    let mut out = expect_line(&mut holder, "held");
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

//! Adversarial checks of the backend tier and the file backend, across
//! real child processes: this binary runs itself in a role (see
//! `tests/common/processes.rs`). Each test names the
//! promise it attacks; the first five were failing when written (a stream
//! of readers starving a writer of another process, a stopped process
//! blocking every key through the shared fence counter, a timed set
//! reporting a backend failure as a timeout, a blocking wait hanging a
//! `current_thread` runtime, fences going down after the directory was
//! recreated).

#![cfg(unix)]

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keylock::{FileBackend, Registry};

mod common;
use common::processes::{self, bump, signal, spawn, temp_dir, wait_line};

const RES: &str = "attack";

fn registry(dir: &Path) -> Registry {
    Registry::builder()
        .backend(RES, FileBackend::new(dir.join("locks")).unwrap())
        .build()
}

/// The lock files someone still holds: those left idle for reuse are
/// removed first.
fn lock_files(dir: &Path) -> Vec<String> {
    FileBackend::new(dir.join("locks"))
        .unwrap()
        .remove_idle()
        .unwrap();
    fs::read_dir(dir.join("locks"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".lock"))
        .collect()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| v.parse().unwrap())
}

/// Appends one line to a log with one `write` (O_APPEND: atomic).
fn append(path: &Path, line: &str) {
    let mut file = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    file.write_all(line.as_bytes()).unwrap();
}

#[test]
fn child() {
    let Some((role, dir)) = processes::role() else {
        return;
    };
    let reg = registry(&dir);
    let keyed = reg.keyed::<u64>(RES);
    let run_ms = env_u64("KL_RUN_MS", 3000);
    let until = Instant::now() + Duration::from_millis(run_ms);
    match role.as_str() {
        // Threads that read key 1 so that their holds always overlap.
        "readers" => {
            let threads = env_u64("KL_THREADS", 3);
            let handles: Vec<_> = (0..threads)
                .map(|n| {
                    let keyed = keyed.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_micros(700 * n));
                        while Instant::now() < until {
                            let guard = keyed.read_blocking(&1);
                            std::thread::sleep(Duration::from_millis(2));
                            drop(guard);
                        }
                    })
                })
                .collect();
            println!("started");
            std::io::stdout().flush().unwrap();
            for handle in handles {
                handle.join().unwrap();
            }
        }
        // Writers of key 1 that hold most of the time.
        "writers" => {
            let threads = env_u64("KL_THREADS", 1);
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let keyed = keyed.clone();
                    std::thread::spawn(move || {
                        while Instant::now() < until {
                            let guard = keyed.write_blocking(&1);
                            std::thread::sleep(Duration::from_millis(1));
                            drop(guard);
                        }
                    })
                })
                .collect();
            println!("started");
            std::io::stdout().flush().unwrap();
            for handle in handles {
                handle.join().unwrap();
            }
        }
        // Many async tasks of one process queue for key 1.
        "async-writers" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let tasks: Vec<_> = (0..8)
                    .map(|_| {
                        let keyed = keyed.clone();
                        tokio::spawn(async move {
                            while Instant::now() < until {
                                let guard = keyed.write(&1).await;
                                std::thread::sleep(Duration::from_micros(300));
                                drop(guard);
                            }
                        })
                    })
                    .collect();
                println!("started");
                std::io::stdout().flush().unwrap();
                for task in tasks {
                    task.await.unwrap();
                }
            });
        }
        // Distinct keys taken and released as fast as possible.
        "churn" => {
            let handles: Vec<_> = (0..4u64)
                .map(|t| {
                    let keyed = keyed.clone();
                    std::thread::spawn(move || {
                        let mut n = 0u64;
                        while Instant::now() < until {
                            n += 1;
                            drop(keyed.write_blocking(&(1_000_000 + t * 64 + n % 64)));
                        }
                    })
                })
                .collect();
            println!("started");
            std::io::stdout().flush().unwrap();
            for handle in handles {
                handle.join().unwrap();
            }
        }
        // Mixed holders of key 1 logging fences and checking exclusion.
        "mixed" => mixed(&dir, &keyed, until),
        "idle-remover" => {
            let backend = FileBackend::new(dir.join("locks")).unwrap();
            while Instant::now() < until {
                let _ = backend.remove_idle();
                std::thread::yield_now();
            }
        }
        "cancel" => cancel_storm(&keyed, until),
        // Two registries of this process on one directory, on one
        // current_thread runtime: a task holds key 1 through the first,
        // another task of the same thread asks the second without timeout.
        "current-thread" => {
            let other = registry(&dir);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let holder = tokio::spawn({
                    let keyed = keyed.clone();
                    async move {
                        let guard = keyed.write(&1).await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        drop(guard);
                    }
                });
                tokio::task::yield_now().await;
                let waiter = tokio::spawn(async move {
                    drop(other.keyed::<u64>(RES).write_blocking(&1));
                });
                let _ = holder.await;
                let _ = waiter.await;
            });
            println!("done");
        }
        other => panic!("unknown role {other}"),
    }
}

/// Threads and tasks taking key 1 in every way: each holder logs
/// `W fence` / `R fence` and writers bump a counter, readers check that it
/// does not move while they read.
fn mixed(dir: &Path, keyed: &keylock::Keyed<u64>, until: Instant) {
    let log = dir.join("fences.log");
    let count = dir.join("count");
    let violations = Arc::new(AtomicUsize::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for n in 0..4u64 {
        let keyed = keyed.clone();
        let (log, count, violations, writes) = (
            log.clone(),
            count.clone(),
            violations.clone(),
            writes.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                let kind = (i + n) % 6;
                if kind == 5 {
                    // A reader: the counter must not move under it.
                    let guard = match i % 2 {
                        0 => keyed.read_blocking(&1),
                        _ => match keyed
                            .key(&1)
                            .read_blocking_timeout(Duration::from_millis(3))
                        {
                            Ok(guard) => guard,
                            Err(_) => continue,
                        },
                    };
                    append(&log, &format!("R {}\n", guard.fence().unwrap()));
                    let before = fs::read_to_string(&count).unwrap_or_default();
                    std::thread::yield_now();
                    let after = fs::read_to_string(&count).unwrap_or_default();
                    if before != after {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                    drop(guard);
                    continue;
                }
                let guard = match kind {
                    0 => Some(keyed.write_blocking(&1)),
                    1 => keyed
                        .key(&1)
                        .write_blocking_timeout(Duration::from_millis(2))
                        .ok(),
                    2 => keyed.try_write(&1).ok(),
                    3 => {
                        // A set holding key 1 and another key.
                        let set = keyed.write_many_blocking(&[&1, &(100 + n)]);
                        append(&log, "S 0\n");
                        bump(&count);
                        writes.fetch_add(1, Ordering::SeqCst);
                        drop(set);
                        None
                    }
                    _ => Some(keyed.write_blocking(&1)),
                };
                if let Some(guard) = guard {
                    append(&log, &format!("W {}\n", guard.fence().unwrap()));
                    bump(&count);
                    writes.fetch_add(1, Ordering::SeqCst);
                    drop(guard);
                }
            }
        }));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..4u64)
            .map(|n| {
                let keyed = keyed.clone();
                let (log, count, writes) = (log.clone(), count.clone(), writes.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while Instant::now() < until {
                        i += 1;
                        let guard = if (i + n).is_multiple_of(2) {
                            Some(keyed.write(&1).await)
                        } else {
                            keyed
                                .key(&1)
                                .write_timeout(Duration::from_micros(500 * (i % 7)))
                                .await
                                .ok()
                        };
                        if let Some(guard) = guard {
                            append(&log, &format!("W {}\n", guard.fence().unwrap()));
                            bump(&count);
                            writes.fetch_add(1, Ordering::SeqCst);
                            drop(guard);
                        }
                        if i.is_multiple_of(5) {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    for handle in handles {
        handle.join().unwrap();
    }
    println!(
        "writes {} read-violations {}",
        writes.load(Ordering::SeqCst),
        violations.load(Ordering::SeqCst)
    );
}

/// Async acquisitions dropped at random poll points.
fn cancel_storm(keyed: &keylock::Keyed<u64>, until: Instant) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..6u64)
            .map(|n| {
                let keyed = keyed.clone();
                tokio::spawn(async move {
                    let mut i = n;
                    while Instant::now() < until {
                        i = i
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let micros = (i >> 33) % 3000;
                        let key = 1 + (i >> 40) % 2;
                        match (i >> 50) % 3 {
                            0 => {
                                if let Ok(guard) = tokio::time::timeout(
                                    Duration::from_micros(micros),
                                    keyed.write(&key),
                                )
                                .await
                                {
                                    tokio::time::sleep(Duration::from_micros(micros / 4)).await;
                                    drop(guard);
                                }
                            }
                            1 => {
                                if let Ok(guard) = keyed
                                    .key(&key)
                                    .write_timeout(Duration::from_micros(micros))
                                    .await
                                {
                                    drop(guard);
                                }
                            }
                            _ => {
                                let _ = tokio::time::timeout(
                                    Duration::from_micros(micros),
                                    keyed.read(&key),
                                )
                                .await;
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    for key in [1u64, 2] {
        assert!(!keyed.is_locked(&key), "in-process lock {key} left held");
    }
    println!("done");
}

/// Promise 6: readers of one process whose holds overlap must not keep a
/// writer of another process out for as long as they run: the writer gets
/// the lock within a bounded time, as a queued writer does in-process
/// (it did not before waiting writers held readers back).
#[test]
fn overlapping_readers_of_one_process_do_not_starve_a_writer_of_another() {
    let dir = temp_dir("attack", "readers-starve");
    let mut child = spawn("readers", &dir, &[("KL_RUN_MS", "6000".into())]);
    let _out = wait_line(&mut child, "started");
    std::thread::sleep(Duration::from_millis(200));
    let reg = registry(&dir);
    let started = Instant::now();
    let got = reg
        .keyed::<u64>(RES)
        .key(&1)
        .write_blocking_timeout(Duration::from_secs(3));
    let waited = started.elapsed();
    let got = got.map(drop);
    let _ = child.kill();
    child.wait().unwrap();
    let _ = fs::remove_dir_all(&dir);
    assert!(
        got.is_ok(),
        "writer starved for {waited:?} by another process's readers"
    );
}

/// Promise 6, with writers: one thread that takes key 1 again as soon as it
/// released it (its local queue is empty at each release, so no turn is
/// left) must not keep another process out. Holds.
#[test]
fn a_writer_that_takes_again_at_once_does_not_starve_another_process() {
    let dir = temp_dir("attack", "writer-starve");
    let mut child = spawn("writers", &dir, &[("KL_RUN_MS", "6000".into())]);
    let _out = wait_line(&mut child, "started");
    std::thread::sleep(Duration::from_millis(200));
    let reg = registry(&dir);
    let started = Instant::now();
    let got = reg
        .keyed::<u64>(RES)
        .key(&1)
        .write_blocking_timeout(Duration::from_secs(3));
    let waited = started.elapsed();
    let got = got.map(drop);
    let _ = child.kill();
    child.wait().unwrap();
    let _ = fs::remove_dir_all(&dir);
    assert!(
        got.is_ok(),
        "writer starved for {waited:?} by a hot writer of another process"
    );
}

/// Promise 6 as stated: a process whose local queue never empties (several
/// threads, or many tasks) leaves turns; measure the worst wait of the
/// other process over several acquisitions.
#[test]
fn a_process_with_a_full_queue_leaves_turns() {
    for role in ["writers", "async-writers"] {
        let dir = temp_dir("attack", &format!("turns-{role}"));
        let mut child = spawn(
            role,
            &dir,
            &[("KL_RUN_MS", "8000".into()), ("KL_THREADS", "3".into())],
        );
        let _out = wait_line(&mut child, "started");
        std::thread::sleep(Duration::from_millis(200));
        let reg = registry(&dir);
        let lock = reg.keyed::<u64>(RES).key(&1);
        let mut worst = Duration::ZERO;
        let mut failures = 0;
        for _ in 0..30 {
            let started = Instant::now();
            match lock.write_blocking_timeout(Duration::from_millis(500)) {
                Ok(guard) => drop(guard),
                Err(_) => failures += 1,
            }
            worst = worst.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        child.wait().unwrap();
        let _ = fs::remove_dir_all(&dir);
        eprintln!("{role}: worst wait {worst:?}, failures {failures}/30");
        assert_eq!(failures, 0, "{role}: worst {worst:?}");
    }
}

/// Promises 6 and 2: a process stopped (SIGSTOP) at any moment, also
/// while it takes fencing tokens, blocks only the keys it holds: another
/// key stays free for every process, and no lock file stays held (when
/// every grant took the directory's counter lock, a stop inside it made
/// every key busy).
#[test]
fn a_stopped_process_blocks_only_the_keys_it_holds() {
    let dir = temp_dir("attack", "stop-fence");
    let mut child = spawn("churn", &dir, &[("KL_RUN_MS", "60000".into())]);
    let _out = wait_line(&mut child, "started");
    let reg = registry(&dir);
    let keyed = reg.keyed::<u64>(RES);
    let mut blocked = 0;
    let mut busy_free_key = 0;
    let mut left: Vec<String> = Vec::new();
    let rounds = 150;
    for round in 0..rounds {
        std::thread::sleep(Duration::from_micros(1000 + 137 * (round % 11)));
        signal(&child, "STOP");
        std::thread::sleep(Duration::from_millis(20));
        // Key 7 is never taken by the child.
        if keyed.try_write(&7).is_err() {
            busy_free_key += 1;
        }
        if keyed
            .key(&7)
            .write_blocking_timeout(Duration::from_millis(300))
            .is_err()
        {
            blocked += 1;
        }
        signal(&child, "CONT");
        // Nobody holds key 7 now: its lock file must be gone.
        if left.is_empty() {
            left = lock_files(&dir)
                .into_iter()
                .filter(|name| name.contains(".7."))
                .collect();
        }
    }
    let _ = child.kill();
    child.wait().unwrap();
    let _ = fs::remove_dir_all(&dir);
    eprintln!(
        "of {rounds} stops: key 7 blocked {blocked}, try_write busy {busy_free_key}, files left {left:?}"
    );
    assert_eq!(
        blocked, 0,
        "a key nobody holds was blocked by a stopped process"
    );
    assert_eq!(busy_free_key, 0, "try_write of a free key said busy");
    assert!(left.is_empty(), "lock file left behind: {left:?}");
}

/// Promises 1 and 3 together: every way to hold key 1, in three
/// processes, with `remove_idle` running all along in a fourth. Writers
/// must not lose increments, readers must not see the counter move, and
/// fences must increase in acquisition order (writers above everything
/// before them, readers carrying the last writer's backend token).
#[test]
fn mixed_holders_across_processes_exclude_and_fence_in_order() {
    let dir = temp_dir("attack", "mixed");
    let extra = [("KL_RUN_MS", "4000".to_owned())];
    let mut children: Vec<Child> = (0..3).map(|_| spawn("mixed", &dir, &extra)).collect();
    children.push(spawn("idle-remover", &dir, &extra));
    let mut writes = 0u64;
    let mut read_violations = 0u64;
    for child in &mut children[..3] {
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        for line in out.lines() {
            if let Some(rest) = line.split("writes ").nth(1) {
                let mut parts = rest.split(" read-violations ");
                writes += parts.next().unwrap().trim().parse::<u64>().unwrap();
                read_violations += parts.next().unwrap().trim().parse::<u64>().unwrap();
            }
        }
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let count: u64 = fs::read_to_string(dir.join("count"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let log = fs::read_to_string(dir.join("fences.log")).unwrap();
    let mut fence_violations = Vec::new();
    let (mut max_all, mut last_writer) = (0u64, 0u64);
    for (n, line) in log.lines().enumerate() {
        let (kind, fence) = line.split_once(' ').unwrap();
        let fence: u64 = fence.parse().unwrap();
        match kind {
            "W" => {
                if fence <= max_all {
                    fence_violations.push((n, line.to_owned(), max_all));
                }
                last_writer = fence;
            }
            // A reader carries the backend token of the last write grant.
            "R" => {
                if fence >> 16 < last_writer >> 16 {
                    fence_violations.push((n, line.to_owned(), last_writer));
                }
            }
            _ => continue,
        }
        max_all = max_all.max(fence);
    }
    let files = lock_files(&dir);
    let _ = fs::remove_dir_all(&dir);
    eprintln!(
        "writes {writes}, count {count}, read violations {read_violations}, fence violations {}",
        fence_violations.len()
    );
    assert_eq!(count, writes, "lost increments");
    assert_eq!(read_violations, 0);
    assert!(
        fence_violations.is_empty(),
        "{:?}",
        &fence_violations[..fence_violations.len().min(5)]
    );
    assert!(files.is_empty(), "lock files left: {files:?}");
}

/// Promise 2: async acquisitions dropped at every kind of poll point, in
/// two processes; afterwards this process takes both keys at once and no
/// lock file is left held.
#[test]
fn cancellation_storms_leave_nothing_behind() {
    let dir = temp_dir("attack", "cancel");
    let extra = [("KL_RUN_MS", "3000".to_owned())];
    let children: Vec<Child> = (0..2).map(|_| spawn("cancel", &dir, &extra)).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let reg = registry(&dir);
    let keyed = reg.keyed::<u64>(RES);
    assert!(keyed.try_write(&1).is_ok());
    assert!(keyed.try_write(&2).is_ok());
    let files = lock_files(&dir);
    let _ = fs::remove_dir_all(&dir);
    assert!(files.is_empty(), "lock files left: {files:?}");
}

/// Promise 7: timed and non-waiting acquisitions of a lock set report an
/// unusable directory as `Error::Backend`, as single locks do (the timed
/// set once retried the failure until its timeout and reported
/// `Error::Timeout`).
#[test]
fn sets_report_backend_errors_through_timed_acquisitions() {
    let dir = temp_dir("attack", "bad-dir");
    let reg = registry(&dir);
    // The lock directory becomes a regular file: every open fails.
    fs::remove_dir_all(dir.join("locks")).unwrap();
    fs::write(dir.join("locks"), "not a directory").unwrap();
    let keyed = reg.keyed::<u64>(RES);
    let single = keyed
        .key(&1)
        .write_blocking_timeout(Duration::from_millis(300));
    assert!(single.unwrap_err().is_backend());
    let tried = keyed.try_write_many(&[&1, &2]);
    assert!(tried.unwrap_err().is_backend());
    let blocking = keyed
        .key_set(&[&1, &2])
        .write_blocking_timeout(Duration::from_millis(300));
    assert!(blocking.unwrap_err().is_backend());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let single_async = runtime.block_on(keyed.key(&1).write_timeout(Duration::from_millis(300)));
    assert!(single_async.unwrap_err().is_backend());
    let started = Instant::now();
    let set_async = runtime.block_on(
        keyed
            .key_set(&[&1, &2])
            .write_timeout(Duration::from_millis(300)),
    );
    let error = set_async.unwrap_err();
    let _ = fs::remove_dir_all(&dir);
    assert!(
        error.is_backend(),
        "async timed set: {error} after {:?}",
        started.elapsed()
    );
}

/// Promise 3 after the directory is recreated: a backend that outlived its
/// directory and a new one must agree on the tokens of a key from then on
/// (they did not while each counted in its own counter file).
#[test]
fn fences_increase_after_the_directory_is_recreated() {
    let dir = temp_dir("attack", "recreated");
    let old = registry(&dir);
    for _ in 0..5 {
        drop(old.keyed::<u64>(RES).write_blocking(&1));
    }
    fs::remove_dir_all(dir.join("locks")).unwrap();
    fs::create_dir_all(dir.join("locks")).unwrap();
    let new = registry(&dir);
    let mut fences = Vec::new();
    for round in 0..4 {
        let reg = if round % 2 == 0 { &old } else { &new };
        let guard = reg.keyed::<u64>(RES).write_blocking(&1);
        fences.push(guard.fence().unwrap() >> 16);
        drop(guard);
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(
        fences.windows(2).all(|pair| pair[1] > pair[0]),
        "fences (backend tokens) in acquisition order: {fences:?}"
    );
}

/// Promise 5: odd keys stay in the directory and lock as themselves.
#[test]
fn hostile_keys_stay_in_the_directory_and_exclude() {
    let dir = temp_dir("attack", "hostile");
    let (a, b) = (registry(&dir), registry(&dir));
    let keys = [
        "x".repeat(10_000),
        "a\0b".to_owned(),
        "\"".to_owned(),
        "\"\"".to_owned(),
        "'; rm -rf /".to_owned(),
        "../../../../tmp/escape".to_owned(),
        "/etc/passwd".to_owned(),
        "..".to_owned(),
        String::new(),
        "日本語🔒\u{202e}".to_owned(),
        "\\".to_owned(),
        "a/b".to_owned(),
        "a.b".to_owned(),
    ];
    let ka = a.keyed::<String>(RES);
    let kb = b.keyed::<String>(RES);
    for key in &keys {
        let held = ka.write_blocking(key);
        for other in &keys {
            let result = kb.try_write(other);
            assert_eq!(result.is_ok(), other != key, "{key:?} / {other:?}");
        }
        let names = lock_files(&dir);
        assert_eq!(names.len(), 1, "{names:?}");
        let path = FileBackend::new(dir.join("locks"))
            .unwrap()
            .path_of(&keylock::Target::new(RES, Some(&format!("{key:?}"))));
        assert_eq!(path.parent().unwrap(), dir.join("locks"));
        assert!(path.exists());
        drop(held);
    }
    assert!(lock_files(&dir).is_empty());
    let _ = fs::remove_dir_all(&dir);
}

/// Promise 2: a parked lease whose next local holder gives up goes back to
/// the backend within a few milliseconds, for another registry of the same
/// directory.
#[test]
fn parked_leases_of_waiters_that_gave_up_go_back_quickly() {
    let dir = temp_dir("attack", "parked");
    let (a, b) = (registry(&dir), registry(&dir));
    let ka = a.keyed::<u64>(RES);
    let kb = b.keyed::<u64>(RES);
    let mut slow = Vec::new();
    for _ in 0..200 {
        let held = ka.write_blocking(&1);
        let lock = ka.key(&1);
        let gave_up = Arc::new(AtomicBool::new(false));
        let flag = gave_up.clone();
        let waiter = std::thread::spawn(move || {
            let result = lock.write_blocking_timeout(Duration::from_millis(2));
            flag.store(true, Ordering::SeqCst);
            result.is_ok()
        });
        while ka.waiters(&1) == 0 && !gave_up.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_micros(1900));
        drop(held);
        let _ = waiter.join().unwrap();
        let started = Instant::now();
        loop {
            if let Ok(guard) = kb.try_write(&1) {
                drop(guard);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "the lease never went back"
            );
            std::thread::sleep(Duration::from_micros(100));
        }
        slow.push(started.elapsed());
    }
    assert!(!ka.is_locked(&1));
    let files = lock_files(&dir);
    let _ = fs::remove_dir_all(&dir);
    slow.sort();
    eprintln!(
        "return times: median {:?}, worst {:?}",
        slow[slow.len() / 2],
        slow.last().unwrap()
    );
    assert!(files.is_empty(), "{files:?}");
}

/// A blocking acquisition whose holder is a task of the same
/// `current_thread` runtime, through another registry of the same
/// directory: as in-process, keylock panics with a message naming the fix
/// rather than hang the thread for good (as it once did through the
/// backend tier).
#[test]
fn a_blocking_wait_for_a_task_of_the_same_thread_does_not_hang() {
    let dir = temp_dir("attack", "current-thread");
    let mut child = spawn("current-thread", &dir, &[]);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(5) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if status.is_none() {
        let _ = child.kill();
        child.wait().unwrap();
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(status.is_some(), "the child hung (still blocked after 5 s)");
}

/// Promise 7: an untimed acquisition retries a failing backend and gets the
/// lock once the directory is usable again; a panic while holding releases
/// the lock for another registry and leaves no lock file held.
#[test]
fn untimed_waits_recover_and_panics_release() {
    let dir = temp_dir("attack", "recover");
    let reg = registry(&dir);
    fs::remove_dir_all(dir.join("locks")).unwrap();
    fs::write(dir.join("locks"), "not a directory").unwrap();
    let keyed = reg.keyed::<u64>(RES);
    let blocking = {
        let keyed = keyed.clone();
        std::thread::spawn(move || drop(keyed.write_blocking(&1)))
    };
    let asynchronous = {
        let keyed = keyed.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async { drop(keyed.write(&2).await) });
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(!blocking.is_finished() && !asynchronous.is_finished());
    fs::remove_file(dir.join("locks")).unwrap();
    fs::create_dir_all(dir.join("locks")).unwrap();
    let started = Instant::now();
    blocking.join().unwrap();
    asynchronous.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let panicked = {
        let keyed = keyed.clone();
        std::thread::spawn(move || {
            let _guard = keyed.write_blocking(&3);
            panic!("while holding");
        })
        .join()
    };
    assert!(panicked.is_err());
    let other = registry(&dir);
    assert!(other.keyed::<u64>(RES).try_write(&3).is_ok());
    assert!(!keyed.is_locked(&3));
    assert!(lock_files(&dir).is_empty(), "{:?}", lock_files(&dir));
    let _ = fs::remove_dir_all(&dir);
}

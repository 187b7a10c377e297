//! Guarantees L18 and L19 of `docs/guarantees.md`: lock-order checking
//! (`RegistryBuilder::lock_order`). Linux lockdep's self-test matrix
//! (AA, ABBA, ABBCCA, ABCABC, ABBCCDDA; write/write, read/write and read
//! recursion; on threads, on tasks and on one task), each reported before
//! the acquisition waits; consistent orders and lock sets never reported;
//! holders are tasks, also when they move between worker threads; guards
//! released on another thread leave nothing held; and property tests over
//! random programs.

use std::sync::mpsc;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use keylock::{write_lock, Access, Error, LockOrder, ReadGuard, Registry, WriteGuard};
use proptest::prelude::*;

/// Long enough that a wait that was not refused fails the test by timing
/// out, rather than passing by luck.
const PATIENCE: Duration = Duration::from_secs(5);

fn checked() -> Registry {
    Registry::builder().lock_order(LockOrder::Error).build()
}

/// One acquisition of a program: key `key` of resource `class`.
#[derive(Clone, Copy, Debug)]
struct Step {
    class: &'static str,
    key: u64,
    access: Access,
}

/// How the matrix takes its locks: lockdep's write/write, read/write
/// (each group's first lock read, the rest written) and read recursion
/// (every lock read: keylock's reads wait behind a queued writer, so
/// read-read inversions deadlock too).
#[derive(Clone, Copy, Debug)]
enum Modes {
    WriteWrite,
    ReadWrite,
    ReadRead,
}

/// Where each group of a program runs.
#[derive(Clone, Copy, Debug)]
enum On {
    /// Each group on a thread of its own, one after the other.
    Threads,
    /// Each group in a task of its own on a multi-thread runtime.
    Tasks,
    /// Every group in one task, one after the other.
    OneTask,
}

/// A guard kept for its drop.
#[allow(dead_code)]
enum Guard {
    Read(ReadGuard),
    Write(WriteGuard),
}

/// Groups of `(class, key)`: each group takes its locks nested, in order,
/// then releases them.
fn program(groups: &[&[(&'static str, u64)]], modes: Modes) -> Vec<Vec<Step>> {
    groups
        .iter()
        .map(|group| {
            group
                .iter()
                .enumerate()
                .map(|(index, &(class, key))| Step {
                    class,
                    key,
                    access: match (modes, index) {
                        (Modes::WriteWrite, _) | (Modes::ReadWrite, 1..) => Access::Write,
                        (Modes::ReadWrite, 0) | (Modes::ReadRead, _) => Access::Read,
                    },
                })
                .collect()
        })
        .collect()
}

fn take_blocking(registry: &Registry, step: Step) -> Result<Guard, Error> {
    let lock = registry.keyed::<u64>(step.class).key(&step.key);
    match step.access {
        Access::Read => lock.read_blocking_timeout(PATIENCE).map(Guard::Read),
        _ => lock.write_blocking_timeout(PATIENCE).map(Guard::Write),
    }
}

async fn take_async(registry: &Registry, step: Step) -> Result<Guard, Error> {
    let lock = registry.keyed::<u64>(step.class).key(&step.key);
    match step.access {
        Access::Read => lock.read_timeout(PATIENCE).await.map(Guard::Read),
        _ => lock.write_timeout(PATIENCE).await.map(Guard::Write),
    }
}

/// Runs one group; the error of the step refused, if any, checked to come
/// at once rather than after a wait.
fn group_blocking(registry: &Registry, group: &[Step]) -> Result<(), Error> {
    let mut guards = Vec::new();
    for &step in group {
        let started = Instant::now();
        match take_blocking(registry, step) {
            Ok(guard) => guards.push(guard),
            Err(error) => {
                assert!(started.elapsed() < PATIENCE / 2, "waited before {error}");
                return Err(error);
            }
        }
    }
    Ok(())
}

async fn group_async(registry: &Registry, group: &[Step]) -> Result<(), Error> {
    let mut guards = Vec::new();
    for &step in group {
        let started = Instant::now();
        match take_async(registry, step).await {
            Ok(guard) => guards.push(guard),
            Err(error) => {
                assert!(started.elapsed() < PATIENCE / 2, "waited before {error}");
                return Err(error);
            }
        }
    }
    Ok(())
}

/// Runs the groups one after another; stops at the first error and
/// returns it with the number of the group that made it. Before the last
/// group, another thread takes `blocked`, if given, and holds it to the
/// end.
fn run(
    registry: &Registry,
    groups: &[Vec<Step>],
    on: On,
    blocked: Option<Step>,
) -> Result<(), (usize, Error)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let last = groups.len() - 1;
    let block = |index: usize| {
        (index == last)
            .then_some(blocked)
            .flatten()
            .map(|step| blocker(registry, step))
    };
    match on {
        On::Threads => {
            let mut _blocker = None;
            for (index, group) in groups.iter().enumerate() {
                _blocker = block(index).or(_blocker);
                let (registry, group) = (registry.clone(), group.clone());
                std::thread::spawn(move || group_blocking(&registry, &group))
                    .join()
                    .unwrap()
                    .map_err(|error| (index, error))?;
            }
            Ok(())
        }
        On::Tasks => runtime.block_on(async {
            let mut _blocker = None;
            for (index, group) in groups.iter().enumerate() {
                _blocker = block(index).or(_blocker);
                let (registry, group) = (registry.clone(), group.clone());
                tokio::spawn(async move { group_async(&registry, &group).await })
                    .await
                    .unwrap()
                    .map_err(|error| (index, error))?;
            }
            Ok(())
        }),
        On::OneTask => {
            let (registry, groups) = (registry.clone(), groups.to_vec());
            runtime
                .block_on(runtime.spawn(async move {
                    let mut _blocker = None;
                    for (index, group) in groups.iter().enumerate() {
                        if index == last {
                            _blocker = blocked.map(|step| blocker(&registry, step));
                        }
                        group_async(&registry, group)
                            .await
                            .map_err(|error| (index, error))?;
                    }
                    Ok(())
                }))
                .unwrap()
        }
    }
}

/// Holds `step`'s lock on another thread until the returned sender is
/// dropped or sent to: an acquisition of it that is not refused at once
/// then waits, and the test sees it.
fn blocker(registry: &Registry, step: Step) -> mpsc::Sender<()> {
    let (release, released) = mpsc::channel::<()>();
    let (held, is_held) = mpsc::channel();
    let registry = registry.clone();
    std::thread::spawn(move || {
        let _guard = registry
            .keyed::<u64>(step.class)
            .key(&step.key)
            .write_blocking();
        held.send(()).unwrap();
        let _ = released.recv();
    });
    is_held.recv().unwrap();
    release
}

/// Runs a matrix case in every mode and on threads, tasks and one task:
/// every group but the last goes through; the last one's last acquisition
/// is refused before it waits (another thread holds that lock), naming a
/// cycle of `cycle` steps, each with its call sites.
fn expect_report(groups: &[&[(&'static str, u64)]], cycle: usize) {
    for modes in [Modes::WriteWrite, Modes::ReadWrite, Modes::ReadRead] {
        for on in [On::Threads, On::Tasks, On::OneTask] {
            let registry = checked();
            let program = program(groups, modes);
            let last_group = program.last().unwrap();
            let last = *last_group.last().unwrap();
            let taken_by_itself = last_group[..last_group.len() - 1]
                .iter()
                .any(|step| (step.class, step.key) == (last.class, last.key));
            let blocked = (!taken_by_itself).then_some(last);
            let outcome = run(&registry, &program, on, blocked);
            let context = format!("{groups:?} {modes:?} {on:?}");
            let Err((group, error)) = outcome else {
                panic!("not reported: {context}");
            };
            assert_eq!(group, program.len() - 1, "{context}: {error}");
            let Error::LockOrder {
                resource,
                key,
                access,
                requested_at,
                cycle: steps,
                ..
            } = &error
            else {
                panic!("{context}: {error:?}");
            };
            assert!(error.is_lock_order());
            assert_eq!(resource, last.class, "{context}");
            assert_eq!(key.as_deref(), Some(last.key.to_string().as_str()));
            assert_eq!(*access, last.access, "{context}");
            assert!(requested_at.contains("lock_order.rs"), "{context}");
            assert_eq!(steps.len(), cycle, "{context}: {error}");
            for (step, next) in steps.iter().zip(steps.iter().cycle().skip(1)) {
                assert_eq!(step.acquired, next.held, "{context}: {error}");
                assert!(step.held_at.contains("lock_order.rs"), "{context}");
                assert!(step.acquired_at.contains("lock_order.rs"), "{context}");
            }
            let message = error.to_string();
            assert!(message.contains("lock order inversion"), "{message}");
            assert!(message.contains(&format!("`{}`", last.class)), "{message}");
            assert_eq!(registry.stats().lock_order_reports, 1, "{context}");
        }
    }
}

/// L18: two keys of one resource nested by hand are two locks of one
/// class, as lockdep's AA: reported (take them as one set instead).
#[test]
fn l18_aa_two_keys_of_one_resource() {
    expect_report(&[&[("a", 1), ("a", 2)]], 1);
}

/// L18: one key asked for again by its holder.
#[test]
fn l18_aa_one_key_twice() {
    expect_report(&[&[("a", 1), ("a", 1)]], 1);
}

#[test]
fn l18_abba() {
    expect_report(&[&[("a", 0), ("b", 0)], &[("b", 0), ("a", 0)]], 2);
}

#[test]
fn l18_abbcca() {
    expect_report(
        &[
            &[("a", 0), ("b", 0)],
            &[("b", 0), ("c", 0)],
            &[("c", 0), ("a", 0)],
        ],
        3,
    );
}

#[test]
fn l18_abcabc() {
    expect_report(
        &[
            &[("a", 0), ("b", 0)],
            &[("c", 0), ("a", 0)],
            &[("b", 0), ("c", 0)],
        ],
        3,
    );
}

#[test]
fn l18_abbccdda() {
    expect_report(
        &[
            &[("a", 0), ("b", 0)],
            &[("b", 0), ("c", 0)],
            &[("c", 0), ("d", 0)],
            &[("d", 0), ("a", 0)],
        ],
        4,
    );
}

/// L18: the orders of the matrix taken consistently are never reported.
#[test]
fn l18_consistent_orders_are_not_reported() {
    let consistent: &[&[(&str, u64)]] = &[
        &[("a", 0), ("b", 0)],
        &[("b", 0), ("c", 0)],
        &[("a", 0), ("c", 0), ("d", 0)],
        &[("a", 5), ("b", 9), ("c", 1), ("d", 3)],
        &[("c", 0), ("d", 0)],
    ];
    for modes in [Modes::WriteWrite, Modes::ReadWrite, Modes::ReadRead] {
        for on in [On::Threads, On::Tasks, On::OneTask] {
            let registry = checked();
            let outcome = run(&registry, &program(consistent, modes), on, None);
            assert!(outcome.is_ok(), "{modes:?} {on:?}: {outcome:?}");
            assert_eq!(registry.stats().lock_order_reports, 0);
        }
    }
}

/// L18: without the setting nothing is checked (and nothing reported).
#[test]
fn l18_off_by_default() {
    let registry = Registry::new();
    let groups = program(
        &[&[("a", 0), ("b", 0)], &[("b", 0), ("a", 0)]],
        Modes::WriteWrite,
    );
    assert!(run(&registry, &groups, On::Threads, None).is_ok());
    assert_eq!(registry.stats().lock_order_reports, 0);
}

/// L18: the untimed acquisitions, whose output cannot carry the error,
/// panic with its message, blocking and async; the refused lock stays
/// free and the held one is released by the unwinding.
#[test]
fn l18_untimed_acquisitions_panic_with_the_message() {
    let registry = checked();
    drop(group_blocking(
        &registry,
        &program(&[&[("a", 0), ("b", 0)]], Modes::WriteWrite)[0],
    ));
    let thread_registry = registry.clone();
    let panicked = std::thread::spawn(move || {
        let _b = thread_registry.keyed::<u64>("b").write_blocking(&0);
        let _a = thread_registry.keyed::<u64>("a").write_blocking(&0);
    })
    .join()
    .unwrap_err();
    let message = panicked.downcast_ref::<String>().unwrap();
    assert!(message.contains("lock order inversion"), "{message}");
    assert!(!registry.keyed::<u64>("a").is_locked(&0));
    assert!(!registry.keyed::<u64>("b").is_locked(&0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let task_registry = registry.clone();
    let joined = runtime.block_on(runtime.spawn(async move {
        let _b = task_registry.keyed::<u64>("b").read(&0).await;
        let _a = task_registry.keyed::<u64>("a").read(&0).await;
    }));
    let panicked = joined.unwrap_err().into_panic();
    let message = panicked.downcast_ref::<String>().unwrap();
    assert!(message.contains("lock order inversion"), "{message}");
    assert!(!registry.keyed::<u64>("b").is_locked(&0));
    assert_eq!(registry.stats().lock_order_reports, 2);
}

static ATTRIBUTES: LazyLock<Registry> = LazyLock::new(checked);

#[write_lock("ledger", registry = ATTRIBUTES)]
fn ledger_then_audit() {
    audit_timed().unwrap();
}

#[write_lock("audit", registry = ATTRIBUTES)]
fn audit_then_ledger() -> Result<(), Error> {
    ledger_timed()
}

#[write_lock("audit", registry = ATTRIBUTES, timeout = "5s")]
fn audit_timed() -> Result<(), Error> {
    Ok(())
}

#[write_lock("ledger", registry = ATTRIBUTES, timeout = "5s")]
fn ledger_timed() -> Result<(), Error> {
    Ok(())
}

#[write_lock("ledger", registry = ATTRIBUTES)]
fn ledger_untimed() {}

#[write_lock("audit", registry = ATTRIBUTES)]
async fn audit_then_ledger_async() {
    ledger_async().await;
}

#[write_lock("ledger", registry = ATTRIBUTES)]
async fn ledger_async() {}

/// L18: annotated functions: a `timeout` returns the error, a function
/// without one panics with it, sync or async.
#[test]
fn l18_annotated_functions_return_or_panic() {
    std::thread::spawn(ledger_then_audit).join().unwrap();
    let error = std::thread::spawn(audit_then_ledger)
        .join()
        .unwrap()
        .unwrap_err();
    assert!(error.is_lock_order(), "{error}");
    assert_eq!(error.resource(), "ledger");
    let Error::LockOrder { cycle, .. } = &error else {
        unreachable!()
    };
    assert_eq!(cycle.len(), 2, "{error}");
    let panicked = std::thread::spawn(|| {
        #[write_lock("audit", registry = ATTRIBUTES)]
        fn audit_then_ledger_untimed() {
            ledger_untimed();
        }
        audit_then_ledger_untimed();
    })
    .join()
    .unwrap_err();
    let message = panicked.downcast_ref::<String>().unwrap();
    assert!(message.contains("lock order inversion"), "{message}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let joined = runtime.block_on(runtime.spawn(audit_then_ledger_async()));
    assert!(joined.unwrap_err().is_panic());
}

/// L18: in warn mode an inversion is logged (once per pair of
/// resources), counted, and goes ahead.
#[test]
fn l18_warn_mode_logs_counts_and_goes_ahead() {
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
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let registry = Registry::builder().lock_order(LockOrder::Warn).build();
    let groups = program(
        &[
            &[("a", 0), ("b", 0)],
            &[("b", 0), ("a", 0)],
            &[("b", 0), ("a", 0)],
        ],
        Modes::WriteWrite,
    );
    tracing::subscriber::with_default(subscriber, || {
        for group in &groups {
            group_blocking(&registry, group).unwrap();
        }
    });
    let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        output.matches("lock order inversion").count(),
        1,
        "{output}"
    );
    assert!(output.contains("WARN"), "{output}");
    assert_eq!(registry.stats().lock_order_reports, 1);
    let prometheus = registry.stats().to_prometheus();
    assert!(
        prometheus.contains("keylock_lock_order_reports_total 1"),
        "{prometheus}"
    );
}

/// L19: the keys of one set, in canonical order, never report, however
/// the caller lists them; a key of the set's resource taken by hand while
/// holding the set (or the reverse) does.
#[test]
fn l19_lock_sets_are_not_reported_nested_keys_are() {
    let registry = checked();
    let accounts = registry.keyed::<u64>("accounts");
    for (from, to) in [(1, 2), (2, 1), (3, 1), (1, 3)] {
        drop(accounts.key_set(&[&from, &to]).write_blocking());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        for (from, to) in [(1, 2), (2, 1)] {
            drop(accounts.key_set(&[&from, &to]).write().await);
            drop(
                accounts
                    .key_set(&[&from, &to])
                    .read_timeout(PATIENCE)
                    .await
                    .unwrap(),
            );
        }
    });
    // Whole resources in a set, then inside another resource.
    drop(registry.lock_set(&["ledger", "audit"]).write_blocking());
    {
        let _outer = registry.lock("outer").write_blocking();
        drop(registry.lock_set(&["audit", "ledger"]).write_blocking());
    }
    assert_eq!(registry.stats().lock_order_reports, 0);
    // Holding a set, one more key of its resource by hand.
    let set = accounts.key_set(&[&1, &2]).write_blocking();
    let error = accounts
        .key(&3)
        .write_blocking_timeout(PATIENCE)
        .unwrap_err();
    assert!(error.is_lock_order(), "{error}");
    drop(set);
    // Holding a key by hand, a set of its resource.
    let alone = accounts.write_blocking(&2);
    let error = accounts
        .key_set(&[&1, &2])
        .write_blocking_timeout(PATIENCE)
        .unwrap_err();
    assert!(error.is_lock_order(), "{error}");
    assert!(
        !accounts.is_locked(&1),
        "the refused set released its first key"
    );
    drop(alone);
    // The set's order of resources is recorded like any other.
    let ledger = registry.lock("ledger").write_blocking();
    let error = registry
        .lock("audit")
        .write_blocking_timeout(PATIENCE)
        .unwrap_err();
    assert!(error.is_lock_order(), "{error}");
    drop(ledger);
    assert_eq!(registry.stats().lock_order_reports, 3);
}

static BANK: LazyLock<Registry> = LazyLock::new(checked);

#[write_lock("bank", keys = [from, to], registry = BANK)]
async fn transfer(from: u64, to: u64) {
    tokio::task::yield_now().await;
    let _ = (from, to);
}

/// L19: transfers in both directions through `keys = [from, to]`, from
/// many tasks at once, never report.
#[test]
fn l19_transfers_through_a_key_set_never_report() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|task| {
                tokio::spawn(async move {
                    for round in 0..20 {
                        let (a, b) = (task % 4, (task + round + 1) % 5);
                        if a != b {
                            if task % 2 == 0 {
                                transfer(a, b).await;
                            } else {
                                transfer(b, a).await;
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
    assert_eq!(BANK.stats().lock_order_reports, 0);
}

/// L18: a guard released on another thread than the one that took it
/// leaves nothing counted as held: its taker's later locks record no
/// order after it.
#[test]
fn l18_a_guard_released_elsewhere_is_no_longer_held() {
    let registry = checked();
    let a = registry.lock("a").write_blocking();
    std::thread::spawn(move || drop(a)).join().unwrap();
    drop(registry.lock("b").write_blocking());
    // No order a -> b was recorded, so b then a is no inversion.
    let groups = program(&[&[("b", 0), ("a", 0)]], Modes::WriteWrite);
    let registry_keyed = checked();
    let a = registry_keyed.keyed::<u64>("a").write_blocking(&0);
    std::thread::spawn(move || drop(a)).join().unwrap();
    drop(registry_keyed.keyed::<u64>("b").write_blocking(&0));
    assert!(run(&registry_keyed, &groups, On::Threads, None).is_ok());
    // A task's guard dropped by another task, likewise.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tasks = checked();
    let in_runtime = tasks.clone();
    runtime.block_on(async move {
        let registry = in_runtime.clone();
        tokio::spawn(async move {
            let a = registry.keyed::<u64>("a").write(&0).await;
            tokio::spawn(async move { drop(a) }).await.unwrap();
            drop(registry.keyed::<u64>("b").write(&0).await);
        })
        .await
        .unwrap();
    });
    assert!(run(&tasks, &groups, On::Tasks, None).is_ok());
    assert_eq!(tasks.stats().lock_order_reports, 0);
}

/// L18: a task that moves to another worker thread while it holds a lock
/// is still its holder: the order it takes after the move is recorded, so
/// the inverse order is reported.
#[test]
fn l18_a_task_that_moves_between_threads_is_still_the_holder() {
    let registry = checked();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    let in_task = registry.clone();
    let moved = runtime.block_on(runtime.spawn(async move {
        let _a = in_task.keyed::<u64>("a").write(&0).await;
        let before = std::thread::current().id();
        let mut moved = false;
        for _ in 0..2_000 {
            // Woken from a thread outside the runtime: any worker may
            // pick the task up.
            let (wake, woken) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || wake.send(()));
            woken.await.unwrap();
            if std::thread::current().id() != before {
                moved = true;
                break;
            }
        }
        let _b = in_task.keyed::<u64>("b").write(&0).await;
        moved
    }));
    assert!(moved.unwrap(), "the task never moved to another worker");
    let groups = program(&[&[("b", 0), ("a", 0)]], Modes::WriteWrite);
    let outcome = run(&registry, &groups, On::Tasks, None);
    let Err((0, error)) = outcome else {
        panic!("not reported: {outcome:?}");
    };
    assert!(error.is_lock_order(), "{error}");
}

/// What a random program takes, step by step: a class with one key, or
/// a set of keys of one class.
#[derive(Clone, Debug)]
enum Take {
    One { class: usize, key: u64, read: bool },
    Set { class: usize, keys: Vec<u64> },
}

/// A random program over `classes` classes whose groups each take
/// classes in increasing rank of one random global order.
fn consistent_program(classes: usize) -> impl Strategy<Value = (Vec<usize>, Vec<Vec<Take>>)> {
    let order = Just((0..classes).collect::<Vec<_>>()).prop_shuffle();
    let groups = prop::collection::vec(
        prop::collection::vec(
            (
                any::<bool>(),
                0..4u64,
                any::<bool>(),
                prop::collection::vec(0..6u64, 1..4),
            ),
            classes,
        ),
        1..8,
    );
    (order, groups).prop_map(|(order, groups)| {
        let program = groups
            .into_iter()
            .map(|choices| {
                // Rank by rank: each class taken or not, alone or as a set.
                order
                    .iter()
                    .zip(choices)
                    .filter(|(_, (taken, ..))| *taken)
                    .map(|(&class, (_, key, read, keys))| {
                        if key == 3 {
                            Take::Set { class, keys }
                        } else {
                            Take::One { class, key, read }
                        }
                    })
                    .collect()
            })
            .collect();
        (order, program)
    })
}

/// A guard kept for its drop.
#[allow(dead_code)]
enum Held {
    One(Guard),
    Set(keylock::WriteSetGuard),
}

fn name(class: usize) -> String {
    format!("class{class}")
}

fn take(registry: &Registry, take: &Take) -> Result<Held, Error> {
    match take {
        Take::One { class, key, read } => take_blocking(
            registry,
            Step {
                class: Box::leak(name(*class).into_boxed_str()),
                key: *key,
                access: if *read { Access::Read } else { Access::Write },
            },
        )
        .map(Held::One),
        Take::Set { class, keys } => {
            let keys: Vec<&u64> = keys.iter().collect();
            registry
                .keyed::<u64>(&name(*class))
                .key_set(&keys)
                .write_blocking_timeout(PATIENCE)
                .map(Held::Set)
        }
    }
}

async fn take_in_task(registry: &Registry, take: &Take) -> Result<Held, Error> {
    match take {
        Take::One { class, key, read } => {
            let lock = registry.keyed::<u64>(&name(*class)).key(key);
            if *read {
                lock.read_timeout(PATIENCE)
                    .await
                    .map(|g| Held::One(Guard::Read(g)))
            } else {
                lock.write_timeout(PATIENCE)
                    .await
                    .map(|g| Held::One(Guard::Write(g)))
            }
        }
        Take::Set { class, keys } => {
            let keys: Vec<&u64> = keys.iter().collect();
            let set = registry.keyed::<u64>(&name(*class)).key_set(&keys);
            set.write_timeout(PATIENCE).await.map(Held::Set)
        }
    }
}

/// Runs a program group by group on this thread (or in one task of a
/// current-thread runtime); the first refusal, with its group's number.
fn run_program(
    registry: &Registry,
    program: &[Vec<Take>],
    in_task: bool,
) -> Result<(), (usize, Error)> {
    if in_task {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        return runtime.block_on(async {
            for (index, group) in program.iter().enumerate() {
                let mut held = Vec::new();
                for step in group {
                    held.push(take_in_task(registry, step).await.map_err(|e| (index, e))?);
                }
            }
            Ok(())
        });
    }
    for (index, group) in program.iter().enumerate() {
        let mut held = Vec::new();
        for step in group {
            held.push(take(registry, step).map_err(|error| (index, error))?);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// L18: programs whose groups all follow one global order (with sets
    /// of keys anywhere in it) never report.
    #[test]
    fn l18_consistent_programs_never_report(
        (_, program) in (2..6usize).prop_flat_map(consistent_program),
        in_task in any::<bool>(),
    ) {
        let registry = checked();
        let outcome = run_program(&registry, &program, in_task);
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
        prop_assert_eq!(registry.stats().lock_order_reports, 0);
    }

    /// L18: the same programs with a chain of orders from one class to a
    /// later one inserted anywhere, and then the two taken the other way
    /// round, always report, at that last acquisition, before it waits.
    #[test]
    fn l18_an_inverted_pair_always_reports(
        (order, program, picks) in (3..6usize).prop_flat_map(|classes| {
            (consistent_program(classes), prop::collection::vec(any::<prop::sample::Index>(), 4))
                .prop_map(|((order, program), picks)| (order, program, picks))
        }),
        in_task in any::<bool>(),
    ) {
        let classes = order.len();
        let (mut first, mut second) = (picks[0].index(classes), picks[1].index(classes));
        if first == second {
            second = (second + 1) % classes;
        }
        if first > second {
            std::mem::swap(&mut first, &mut second);
        }
        // A chain of ranks first < .. < second, each step a group.
        let middle = first + 1 + picks[2].index(classes);
        let mut ranks = vec![first];
        if middle < second {
            ranks.push(middle);
        }
        ranks.push(second);
        let mut program = program;
        for pair in ranks.windows(2) {
            let at = picks[3].index(program.len() + 1);
            program.insert(at, vec![
                Take::One { class: order[pair[0]], key: 0, read: false },
                Take::One { class: order[pair[1]], key: 0, read: true },
            ]);
        }
        let (low, high) = (order[first], order[second]);
        program.push(vec![
            Take::One { class: high, key: 1, read: true },
            Take::One { class: low, key: 1, read: false },
        ]);
        let registry = checked();
        let (last, program) = program.split_last().unwrap();
        let outcome = run_program(&registry, program, in_task);
        prop_assert!(outcome.is_ok(), "{:?}", outcome);
        let _blocker = blocker(&registry, Step {
            class: Box::leak(name(low).into_boxed_str()),
            key: 1,
            access: Access::Write,
        });
        let outcome = run_program(&registry, std::slice::from_ref(last), in_task);
        let Err((0, error)) = outcome else {
            return Err(TestCaseError::fail(format!("not reported: {outcome:?}")));
        };
        prop_assert!(error.is_lock_order(), "{}", error);
        prop_assert_eq!(error.resource(), name(low));
    }
}

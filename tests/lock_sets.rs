//! L15: several locks in one attribute (`keys = [from, to]`, or several
//! resource names) are taken in one canonical order and released together,
//! so overlapping sets never deadlock; a set's timeout is one deadline, and
//! a set that gives up or is cancelled holds nothing.

mod common;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::Section;
use futures::FutureExt;
use keylock::{read_lock, write_lock, Registry};

const ACCOUNTS: usize = 4;
const OPENING_BALANCE: i64 = 1_000;

/// Accounts whose balances are read, then written: an unlocked transfer
/// would lose money to a concurrent one.
struct Bank {
    registry: Registry,
    balances: Vec<AtomicI64>,
    timeouts: AtomicUsize,
}

impl Bank {
    fn new() -> Arc<Self> {
        Arc::new(Bank {
            registry: Registry::new(),
            balances: (0..ACCOUNTS)
                .map(|_| AtomicI64::new(OPENING_BALANCE))
                .collect(),
            timeouts: AtomicUsize::new(0),
        })
    }

    fn total(&self) -> i64 {
        self.balances
            .iter()
            .map(|balance| balance.load(Ordering::SeqCst))
            .sum()
    }

    fn account(&self, id: u64) -> &AtomicI64 {
        &self.balances[usize::try_from(id).unwrap()]
    }

    #[write_lock("accounts", keys = [from, to], registry = self.registry)]
    async fn transfer(&self, from: u64, to: u64, amount: i64) {
        let debit = self.account(from).load(Ordering::SeqCst) - amount;
        tokio::task::yield_now().await;
        let credit = self.account(to).load(Ordering::SeqCst) + amount;
        self.account(from).store(debit, Ordering::SeqCst);
        self.account(to).store(credit, Ordering::SeqCst);
    }

    #[write_lock("accounts", keys = [from, to], registry = self.registry)]
    fn transfer_blocking(&self, from: u64, to: u64, amount: i64) {
        let debit = self.account(from).load(Ordering::SeqCst) - amount;
        std::thread::yield_now();
        let credit = self.account(to).load(Ordering::SeqCst) + amount;
        self.account(from).store(debit, Ordering::SeqCst);
        self.account(to).store(credit, Ordering::SeqCst);
    }

    #[write_lock("accounts", keys = [from, to], registry = self.registry, timeout = "50ms")]
    async fn transfer_within(&self, from: u64, to: u64) -> Result<(), keylock::Error> {
        Ok(())
    }

    #[write_lock("accounts", keys = [from, to], registry = self.registry, timeout = "50ms")]
    fn transfer_within_blocking(&self, from: u64, to: u64) -> Result<(), keylock::Error> {
        Ok(())
    }

    /// The transfer as two nested single locks: `from`, then `to`.
    #[write_lock("accounts", key = from, registry = self.registry)]
    async fn nested_transfer(&self, from: u64, to: u64, both_hold_one: &tokio::sync::Barrier) {
        both_hold_one.wait().await;
        if self.nested_credit(to).await.is_err() {
            self.timeouts.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[write_lock("accounts", key = to, registry = self.registry, timeout = "100ms")]
    async fn nested_credit(&self, to: u64) -> Result<(), keylock::Error> {
        Ok(())
    }

    #[write_lock("accounts", keys = [a, b], registry = self.registry)]
    fn holds_keys(&self, a: u64, b: u64) -> (bool, bool) {
        let accounts = self.registry.keyed::<u64>("accounts");
        (accounts.is_locked(&a), accounts.is_locked(&b))
    }

    #[read_lock("accounts", keys = [a, b], registry = self.registry, on_busy = "skip")]
    fn audit_pair(&self, a: u64, b: u64) -> Option<i64> {
        Some(self.account(a).load(Ordering::SeqCst) + self.account(b).load(Ordering::SeqCst))
    }

    #[write_lock("accounts", keys = [a, b], registry = self.registry)]
    fn panics_holding(&self, a: u64, b: u64) {
        panic!("the body of a set panicked while holding {a} and {b}");
    }
}

/// Account pairs in both directions, so that half the transfers list the
/// keys in the other half's reverse order.
fn pair(task: usize, round: usize) -> (u64, u64) {
    let from = (task + round) % ACCOUNTS;
    let step = 1 + (task % (ACCOUNTS - 1));
    let to = (from + step) % ACCOUNTS;
    (from as u64, to as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn l15_transfers_in_both_directions_from_64_tasks_neither_deadlock_nor_lose_money() {
    let bank = Bank::new();
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let bank = Arc::clone(&bank);
            tokio::spawn(async move {
                for round in 0..100 {
                    let (from, to) = pair(task, round);
                    bank.transfer(from, to, 1 + (round as i64 % 7)).await;
                }
            })
        })
        .collect();
    let all = futures::future::join_all(tasks);
    let finished = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("the transfers deadlocked");
    for task in finished {
        task.unwrap();
    }
    assert_eq!(bank.total(), OPENING_BALANCE * ACCOUNTS as i64);
    assert_eq!(bank.registry.keyed::<u64>("accounts").live_keys(), 0);
}

#[test]
fn l15_transfers_in_both_directions_from_64_threads_neither_deadlock_nor_lose_money() {
    let bank = Bank::new();
    let (done, finished) = std::sync::mpsc::channel();
    for thread in 0..64 {
        let bank = Arc::clone(&bank);
        let done = done.clone();
        std::thread::spawn(move || {
            for round in 0..100 {
                let (from, to) = pair(thread, round);
                bank.transfer_blocking(from, to, 1 + (round as i64 % 7));
            }
            done.send(()).unwrap();
        });
    }
    for _ in 0..64 {
        finished
            .recv_timeout(Duration::from_secs(60))
            .expect("the transfers deadlocked");
    }
    assert_eq!(bank.total(), OPENING_BALANCE * ACCOUNTS as i64);
}

/// The companion: the same two transfers with two nested single locks, in
/// opposite orders, deadlock as soon as each holds its first lock (the
/// barrier makes sure of that), and only the inner timeout ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l15_nested_single_locks_in_opposite_orders_deadlock_where_the_set_does_not() {
    let bank = Bank::new();
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let transfers: Vec<_> = [(0, 1), (1, 0)]
        .into_iter()
        .map(|(from, to)| {
            let (bank, barrier) = (Arc::clone(&bank), Arc::clone(&barrier));
            tokio::spawn(async move { bank.nested_transfer(from, to, &barrier).await })
        })
        .collect();
    for transfer in futures::future::join_all(transfers).await {
        transfer.unwrap();
    }
    // Each held one account and waited for the other: the first to give
    // up let the other through.
    assert!(bank.timeouts.load(Ordering::SeqCst) >= 1);

    // The same pairs as sets: both complete.
    let transfers: Vec<_> = [(0, 1), (1, 0)]
        .into_iter()
        .map(|(from, to)| {
            let bank = Arc::clone(&bank);
            tokio::spawn(async move { bank.transfer(from, to, 5).await })
        })
        .collect();
    let all = futures::future::join_all(transfers);
    for transfer in tokio::time::timeout(Duration::from_secs(10), all)
        .await
        .expect("a set deadlocked")
    {
        transfer.unwrap();
    }
    assert_eq!(bank.total(), OPENING_BALANCE * ACCOUNTS as i64);
}

#[tokio::test]
async fn l15_a_timed_out_set_holds_nothing_and_leaves_no_waiter() {
    let bank = Bank::new();
    let accounts = bank.registry.keyed::<u64>("accounts");
    let to = accounts.write(&2).await;
    // Account 1 comes first: it is taken, then the set waits for 2.
    let error = bank.transfer_within(1, 2).await.unwrap_err();
    assert!(error.is_timeout());
    assert_eq!(
        error.key(),
        Some("2"),
        "the error names the lock it waited for"
    );
    assert!(
        !accounts.is_locked(&1),
        "the account taken first was released"
    );
    assert_eq!(accounts.waiters(&2), 0);
    drop(to);
    assert_eq!(accounts.live_keys(), 0);
    let stats = bank.registry.stats();
    assert_eq!(stats.resource("accounts").unwrap().timeouts, 1);
    bank.transfer_within(1, 2).await.unwrap();
}

#[test]
fn l15_a_timed_out_blocking_set_holds_nothing_and_leaves_no_waiter() {
    let bank = Bank::new();
    let accounts = bank.registry.keyed::<u64>("accounts");
    let to = accounts.write_blocking(&2);
    let started = std::time::Instant::now();
    let error = bank.transfer_within_blocking(1, 2).unwrap_err();
    assert!(error.is_timeout());
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(!accounts.is_locked(&1));
    assert_eq!(accounts.waiters(&2), 0);
    drop(to);
    bank.transfer_within_blocking(2, 1).unwrap();
}

/// One deadline for the whole set: a set that waits 300 ms for its first
/// lock has 100 ms left for its second, not a fresh 400 ms.
#[tokio::test]
async fn l15_the_timeout_is_one_deadline_for_the_whole_set() {
    let registry = Registry::new();
    let accounts = registry.keyed::<u64>("accounts");
    let first = accounts.write(&1).await;
    let second = accounts.write(&2).await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        drop(second);
    });
    let started = std::time::Instant::now();
    let error = accounts
        .key_set(&[&2, &1])
        .write_timeout(Duration::from_millis(400))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(error.key(), Some("2"));
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    // A deadline per lock would have given up after 700 ms at the earliest.
    assert!(waited < Duration::from_millis(650), "{waited:?}");
    assert!(!accounts.is_locked(&1));
}

#[tokio::test]
async fn l15_a_set_cancelled_midway_releases_what_it_took() {
    let registry = Registry::new();
    let accounts = registry.keyed::<u64>("accounts");
    let to = accounts.write(&2).await;
    let mut both = accounts.write_many(&[&2, &1]);
    assert!(futures::poll!(&mut both).is_pending());
    assert!(accounts.is_locked(&1), "account 1 comes first and is held");
    assert_eq!(accounts.waiters(&2), 1);
    drop(both);
    assert!(!accounts.is_locked(&1));
    assert_eq!(accounts.waiters(&2), 0);
    drop(to);
    assert_eq!(accounts.live_keys(), 0);

    // The same through an annotated function whose task is aborted.
    let bank = Bank::new();
    let accounts = bank.registry.keyed::<u64>("accounts");
    let to = accounts.write(&2).await;
    let waiting = {
        let bank = Arc::clone(&bank);
        tokio::spawn(async move { bank.transfer(1, 2, 10).await })
    };
    while accounts.waiters(&2) == 0 {
        tokio::task::yield_now().await;
    }
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    assert!(!accounts.is_locked(&1));
    assert_eq!(accounts.waiters(&2), 0);
    drop(to);
    assert_eq!(bank.total(), OPENING_BALANCE * ACCOUNTS as i64);
}

#[test]
fn l15_equal_keys_are_locked_once() {
    let bank = Bank::new();
    assert_eq!(bank.holds_keys(3, 3), (true, true));
    let accounts = bank.registry.keyed::<u64>("accounts");
    assert_eq!(accounts.key_set(&[&3, &1, &3, &1]).len(), 2);
    let guard = accounts.write_many_blocking(&[&3, &3]);
    assert_eq!(guard.locks().count(), 1);
}

#[test]
fn l15_keys_are_taken_in_their_order() {
    let registry = Registry::new();
    let names = registry.keyed::<String>("names");
    let set = names.key_set(&["carol", "alice", "bob"]);
    let order: Vec<String> = set.locks().map(|lock| lock.key().unwrap()).collect();
    assert_eq!(order, ["\"alice\"", "\"bob\"", "\"carol\""]);
    let pairs = registry.keyed::<(u32, u32)>("pairs");
    let set = pairs.key_set(&[&(2, 0), &(1, 9), &(1, 2)]);
    let order: Vec<String> = set.locks().map(|lock| lock.key().unwrap()).collect();
    assert_eq!(order, ["(1, 2)", "(1, 9)", "(2, 0)"]);
}

#[test]
fn l15_a_panic_releases_every_lock_of_the_set() {
    let bank = Bank::new();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bank.panics_holding(0, 1);
    }));
    assert!(caught.is_err());
    let accounts = bank.registry.keyed::<u64>("accounts");
    assert!(!accounts.is_locked(&0) && !accounts.is_locked(&1));
    let stats = bank.registry.stats();
    assert_eq!(stats.resource("accounts").unwrap().panics_while_held, 2);
}

#[test]
fn l15_read_sets_share_and_exclude_writers() {
    let bank = Bank::new();
    let accounts = bank.registry.keyed::<u64>("accounts");
    let readers = accounts.read_many_blocking(&[&1, &2]);
    assert_eq!(bank.audit_pair(2, 3), Some(2 * OPENING_BALANCE));
    assert!(accounts.try_write(&2).unwrap_err().is_busy());
    assert!(accounts.try_write_many(&[&3, &2]).unwrap_err().is_busy());
    assert!(
        !accounts.is_locked(&3),
        "a failed try releases what it took"
    );
    drop(readers);
    let writer = accounts.write_many_blocking(&[&2]);
    assert_eq!(bank.audit_pair(2, 3), None);
    drop(writer);
}

// Whole resources.

struct Books {
    registry: Registry,
    ledger: Section,
    audit: Section,
}

impl Books {
    #[write_lock("ledger", "audit", registry = self.registry)]
    fn close_both(&self) {
        let _ledger = self.ledger.enter();
        let _audit = self.audit.enter();
        std::thread::sleep(Duration::from_micros(50));
    }

    #[write_lock("audit", "ledger", registry = self.registry)]
    async fn close_both_async(&self) {
        let _ledger = self.ledger.enter();
        let _audit = self.audit.enter();
        tokio::task::yield_now().await;
    }

    #[write_lock("ledger", registry = self.registry)]
    fn post(&self) {
        let _ledger = self.ledger.enter();
        std::thread::sleep(Duration::from_micros(50));
    }

    #[write_lock("audit", registry = self.registry)]
    fn check(&self) {
        let _audit = self.audit.enter();
        std::thread::sleep(Duration::from_micros(50));
    }

    #[write_lock("audit", "ledger", registry = self.registry, on_busy = "skip")]
    fn try_close_both(&self) -> Option<()> {
        Some(())
    }

    #[read_lock("ledger", "audit", registry = self.registry)]
    fn read_both(&self) -> bool {
        self.registry.lock("ledger").readers() == 1 && self.registry.lock("audit").readers() == 1
    }
}

#[test]
fn l15_a_set_of_resources_excludes_single_holders_of_each() {
    let books = Arc::new(Books {
        registry: Registry::new(),
        ledger: Section::default(),
        audit: Section::default(),
    });
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let books = &books;
            scope.spawn(move || {
                for _ in 0..50 {
                    match thread % 4 {
                        0 => books.close_both(),
                        1 => futures::executor::block_on(books.close_both_async()),
                        2 => books.post(),
                        _ => books.check(),
                    }
                }
            });
        }
    });
    assert_eq!(books.ledger.overlaps(), 0);
    assert_eq!(books.audit.overlaps(), 0);
    assert_eq!(books.ledger.entries(), 300);

    let audit = books.registry.lock("audit").write_blocking();
    assert_eq!(books.try_close_both(), None);
    assert!(
        !books.registry.lock("ledger").is_locked(),
        "nothing stays held"
    );
    drop(audit);
    assert_eq!(books.try_close_both(), Some(()));
    assert!(books.read_both());
    let both = books
        .registry
        .write_many(&["audit", "ledger", "audit"])
        .now_or_never()
        .unwrap();
    assert_eq!(both.locks().count(), 2);
}

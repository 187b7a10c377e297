use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use keylock::write_lock;

static BALANCE: AtomicU64 = AtomicU64::new(0);

// The read happens while the future is built, before the lock is taken.
#[write_lock("accounts")]
fn deposit(amount: u64) -> impl Future<Output = ()> {
    let balance = BALANCE.load(Ordering::SeqCst);
    async move { BALANCE.store(balance + amount, Ordering::SeqCst) }
}

fn main() {}

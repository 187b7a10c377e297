use std::future::Future;

use keylock::write_lock;

fn read_balance() -> u64 {
    7
}

// `read_balance()` runs while the future is built, before the lock.
#[write_lock("accounts")]
fn balance() -> impl Future<Output = u64> {
    std::future::ready(read_balance())
}

fn main() {}

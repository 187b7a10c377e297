use std::future::Future;

use keylock::write_lock;

#[write_lock("jobs")]
fn job() -> impl Future<Output = ()> + Unpin {
    std::future::ready(())
}

fn main() {}

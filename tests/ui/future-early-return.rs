use std::future::Future;
use std::pin::Pin;

use keylock::write_lock;

async fn cached() {}

// The early return's future would run without the lock.
#[write_lock("cache")]
fn lookup(hit: bool) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    if hit {
        return Box::pin(cached());
    }
    Box::pin(async move {})
}

fn main() {}

use std::future::Future;
use std::pin::Pin;

use keylock::write_lock;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn work() {}

// The future inside the `Result` would run after the lock is released.
#[write_lock("jobs")]
fn job() -> Result<Job, String> {
    Ok(Box::pin(work()))
}

fn main() {}

use std::future::Future;
use std::pin::Pin;

use keylock::write_lock;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

async fn work() {}

// The alias hides the future: the lock would cover only building it.
#[write_lock("jobs")]
fn job() -> Job {
    Box::pin(work())
}

fn main() {}

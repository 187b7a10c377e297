//! The same hidden future as tests/ui/future-behind-alias.rs, reached
//! through a module whose name ends in `impl`: the lock covers only the
//! building of the future, and this should not compile.
use keylock::write_lock;

mod backend_impl {
    pub type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

async fn work() {}

#[write_lock("jobs")]
fn job() -> backend_impl::Job {
    Box::pin(work())
}

fn main() {}

use std::future::Future;

use keylock::write_lock;

#[write_lock("db")]
fn save() -> Box<dyn Future<Output = ()> + Unpin> {
    Box::new(std::future::ready(()))
}

fn main() {}

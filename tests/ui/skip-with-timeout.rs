use keylock::write_lock;

#[write_lock("db", on_busy = "skip", timeout = "1s")]
fn handle() {}

fn main() {}

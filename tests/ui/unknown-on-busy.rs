use keylock::write_lock;

#[write_lock("db", on_busy = "queue")]
fn handle() {}

fn main() {}

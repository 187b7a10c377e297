use keylock::write_lock;

#[write_lock("db", tiemout = "1s")]
fn handle() {}

fn main() {}

use keylock::write_lock;

#[write_lock("accounts", keys = [])]
fn transfer() {}

fn main() {}

use keylock::write_lock;

#[write_lock("ledger", "audit", "ledger")]
fn close() {}

fn main() {}

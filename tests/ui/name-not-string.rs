use keylock::read_lock;

#[read_lock(db)]
fn query() {}

fn main() {}

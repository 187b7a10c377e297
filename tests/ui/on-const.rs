use keylock::read_lock;

#[read_lock("db")]
const LIMIT: u32 = 10;

fn main() {}

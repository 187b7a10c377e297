use keylock::write_lock;

#[write_lock("db")]
const fn limit() -> u32 {
    10
}

fn main() {}

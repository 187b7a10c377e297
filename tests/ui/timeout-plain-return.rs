use keylock::write_lock;

#[write_lock("db", timeout = "30s")]
fn count() -> u32 {
    1
}

fn main() {}

use keylock::write_lock;

#[write_lock("db")]
struct Store {
    rows: Vec<u32>,
}

fn main() {}

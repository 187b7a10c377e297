use keylock::write_lock;

#[write_lock("db", on_busy = "skip")]
async fn count() -> u32 {
    1
}

fn main() {}

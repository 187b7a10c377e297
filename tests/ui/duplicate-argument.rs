use keylock::write_lock;

#[write_lock("db", timeout = "1s", timeout = "2s")]
fn handle() -> Option<()> {
    None
}

fn main() {}

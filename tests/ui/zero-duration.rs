use keylock::write_lock;

#[write_lock("db", timeout = "0ms")]
fn handle() -> Option<()> {
    None
}

fn main() {}

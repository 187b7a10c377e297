use keylock::write_lock;

#[write_lock("db", timeout = "30 seconds")]
fn handle() -> Option<()> {
    None
}

fn main() {}

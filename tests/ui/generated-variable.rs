use keylock::write_lock;

#[write_lock("db")]
fn handle() {
    drop(__keylock_guard_0);
}

fn main() {}

use keylock::write_lock;

#[write_lock("accounts", keys = from)]
fn transfer(from: u64) {
    let _ = from;
}

fn main() {}

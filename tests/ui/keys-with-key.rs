use keylock::write_lock;

#[write_lock("accounts", key = from, keys = [from, to])]
fn transfer(from: u64, to: u64) {
    let _ = (from, to);
}

fn main() {}

use keylock::{read_lock, write_lock};

#[write_lock("accounts", "ledger", keys = [from, to])]
fn transfer(from: u64, to: u64) {
    let _ = (from, to);
}

#[read_lock("accounts", "ledger", key = from)]
fn audit(from: u64) {
    let _ = from;
}

fn main() {}

use keylock::write_lock;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AccountId(u64);

#[write_lock("accounts", keys = [from, to])]
fn transfer(from: AccountId, to: AccountId) {
    let _ = (from, to);
}

fn main() {}

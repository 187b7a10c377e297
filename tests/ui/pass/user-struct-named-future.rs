//! A domain type named `Future` (a futures contract) is not a future.
use keylock::read_lock;

pub struct Future {
    pub symbol: &'static str,
}

#[read_lock("contracts")]
fn front_month() -> Option<Future> {
    Some(Future { symbol: "ESZ5" })
}

fn main() {
    let _ = front_month();
}

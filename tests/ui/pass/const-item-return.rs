//! A const item as a generic argument (heapless::Vec<u8, CAP> style).
use keylock::write_lock;

pub struct Buf<T, const N: usize>([T; N]);
const CAP: usize = 8;

#[write_lock("buf2")]
fn make() -> Buf<u8, CAP> {
    Buf([0; CAP])
}

fn main() {
    let _ = make();
}

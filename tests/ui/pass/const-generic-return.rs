//! A sync function returning a type with a const generic argument.
use keylock::write_lock;

pub struct Buf<const N: usize>([u8; N]);

#[write_lock("buf")]
fn make<const N: usize>() -> Buf<N> {
    Buf([0; N])
}

fn main() {
    let _ = make::<4>();
}

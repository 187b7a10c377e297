use keylock::dedup;

#[dedup(id)]
fn charge(id: u64) -> u32 {
    let _ = id;
    100
}

fn main() {}

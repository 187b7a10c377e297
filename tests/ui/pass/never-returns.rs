//! Compiles: a function that never returns, and a dedup on `impl Trait`.

use keylock::{dedup, write_lock};

#[write_lock("forever")]
pub fn run_forever() -> ! {
    loop {
        std::thread::park();
    }
}

#[dedup(id, on_duplicate = Vec::new().into_iter())]
pub fn numbers(id: u64) -> impl Iterator<Item = u64> {
    vec![id].into_iter()
}

fn main() {
    let _ = numbers(1).count();
}

// An argument error must not bring warnings about the function it is on:
// the stacked attribute's import stays used, the parameters stay used.
use keylock::{dedup, read_lock};

#[read_lock("a", tiemout = "1s")]
#[dedup(channel)]
fn handle(channel: u64, text: &str) -> usize {
    text.len() + channel as usize
}

fn main() {}

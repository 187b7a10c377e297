use keylock::dedup;

#[dedup(id, timeout = "1s")]
async fn on_message(id: u64) {
    let _ = id;
}

fn main() {}

use keylock::dedup;

#[dedup(id, ttl = "ten minutes")]
async fn on_message(id: u64) {
    let _ = id;
}

fn main() {}

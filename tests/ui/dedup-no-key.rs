use keylock::dedup;

#[dedup(ttl = "10m")]
async fn on_message(id: u64) {
    let _ = id;
}

fn main() {}

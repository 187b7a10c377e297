use keylock::dedup;

#[dedup(id, capacity = 0)]
async fn on_message(id: u64) {
    let _ = id;
}

fn main() {}

use keylock::dedup;

#[dedup(id, in_flight = "queue")]
async fn on_message(id: u64) {
    let _ = id;
}

fn main() {}

use keylock::write_lock;

#[write_lock("sessions", key = channel_id)]
fn handle(channel: u64) {
    let _ = channel;
}

fn main() {}

use keylock::write_lock;

struct NotAKey(f64);

#[write_lock("sessions", key = id)]
fn handle(id: NotAKey) {
    let _ = id.0;
}

fn main() {}

use keylock::{dedup, read_lock, write_lock};

#[write_lock(name = "db")]
fn save() {}

#[read_lock(resource = "db")]
fn load() {}

#[dedup(scope = "jobs", key = id)]
fn run(id: u64) {
    let _ = id;
}

fn main() {}

use keylock::write_lock;

#[write_lock("db")]
extern "C" fn callback() {}

fn main() {}

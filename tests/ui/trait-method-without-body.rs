use keylock::write_lock;

trait Handler {
    #[write_lock("db")]
    fn handle(&self);
}

fn main() {}

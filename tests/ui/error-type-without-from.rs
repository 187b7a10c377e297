use keylock::write_lock;

#[derive(Debug)]
struct MyError;

#[write_lock("db", timeout = "1s")]
fn handle() -> Result<(), MyError> {
    Ok(())
}

fn main() {}

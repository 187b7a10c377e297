use keylock::write_lock;

#[write_lock("db", timeout = "1s")]
fn save() -> Result<(), String> {
    Ok(())
}

fn main() {}

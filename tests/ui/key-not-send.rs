use std::rc::Rc;

use keylock::write_lock;

#[write_lock("sessions", key = name)]
fn handle(name: Rc<str>) {
    let _ = name.len();
}

fn main() {}

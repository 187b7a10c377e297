//! A domain type named `Stream` (a live video stream) is not a stream.
use keylock::read_lock;

#[derive(Debug)]
pub struct Stream {
    pub title: String,
}

#[read_lock("streams")]
fn live_streams() -> Vec<Stream> {
    vec![Stream { title: "x".into() }]
}

fn main() {
    let _ = live_streams();
}

//! Compiles: every argument and function shape, with the user's own error.

use keylock::{read_lock, write_lock, Registry};

#[derive(Debug)]
pub enum AppError {
    Lock(keylock::Error),
}

impl From<keylock::Error> for AppError {
    fn from(error: keylock::Error) -> Self {
        AppError::Lock(error)
    }
}

pub struct Service {
    registry: Registry,
}

impl Service {
    #[write_lock("sessions", key = channel_id, timeout = "1m30s", registry = self.registry)]
    pub async fn handle(&self, channel_id: u64) -> Result<(), AppError> {
        Ok(())
    }

    #[read_lock("db", on_busy = "skip", registry = &self.registry, guard = db)]
    pub fn query(&self) -> Option<usize> {
        Some(db.lock().readers())
    }

    #[write_lock(key = (a, b))]
    pub fn pair(&self, (a, b): (u8, u8)) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
        Ok(a + b)
    }
}

#[write_lock("x", crate = "::keylock", timeout = "250ms")]
pub async fn renamed() {}

fn main() {}

//! Compiles: the attribute forms the README and the crate docs show.

use keylock::{dedup, read_lock, write_lock};

pub struct Reply;

#[derive(Debug)]
pub struct BotError;

impl From<keylock::Error> for BotError {
    fn from(_: keylock::Error) -> Self {
        BotError
    }
}

pub struct Message {
    pub id: String,
    pub channel_id: u64,
}

pub struct Event {
    pub guild_id: u64,
    pub id: u64,
}

pub struct Rows;

pub struct Bot;

impl Bot {
    #[write_lock("sessions", key = channel_id, timeout = "30s")]
    pub async fn handle(&self, channel_id: u64, text: &str) -> Result<Reply, BotError> {
        let _ = text;
        Ok(Reply)
    }

    #[read_lock("db")]
    pub fn query(&self) -> Rows {
        Rows
    }

    #[dedup(message.id, ttl = "10m")]
    pub async fn on_message(&self, message: &Message) {}

    #[dedup(key = (event.guild_id, event.id), ttl = "10m", capacity = 50_000, in_flight = "wait")]
    pub async fn on_event(&self, event: &Event) {}

    #[write_lock(key = msg.channel_id, timeout = "30s")]
    pub async fn reply(&self, msg: &Message) -> Option<()> {
        Some(())
    }

    #[write_lock("unlock", on_busy = "skip")]
    pub async fn unlock(&self) {}
}

fn main() {}

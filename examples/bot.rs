//! A simulated chat bot: the job keylock exists for.
//!
//! Messages for many channels arrive concurrently. Each channel's messages
//! must be handled one at a time and in the order they arrived, while
//! different channels proceed in parallel. Replies are counted in a shared
//! store with a read-modify-write that would lose updates without a lock,
//! and snapshots of the store must be consistent.
//!
//! ```text
//! cargo run --example bot
//! cargo run --example bot -- --channels 16 --messages 5 --work-ms 10
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keylock::{read_lock, write_lock};

/// One incoming chat message.
struct Message {
    channel: u64,
    seq: u32,
}

/// A stand-in for a database: each call is atomic, but a read followed by
/// a write is not.
#[derive(Default)]
struct Store {
    replies: Mutex<HashMap<u64, u64>>,
}

impl Store {
    fn get(&self, channel: u64) -> u64 {
        self.replies
            .lock()
            .unwrap()
            .get(&channel)
            .copied()
            .unwrap_or(0)
    }

    fn set(&self, channel: u64, value: u64) {
        self.replies.lock().unwrap().insert(channel, value);
    }

    fn total(&self) -> u64 {
        self.replies.lock().unwrap().values().sum()
    }
}

/// The bot as its authors already had it; keylock adds the annotations.
struct Bot {
    work: Duration,
    store: Store,
    /// Per channel: the sequence numbers in the order they were handled.
    handled: Mutex<HashMap<u64, Vec<u32>>>,
    /// Per channel: handlers running right now, and the most ever at once.
    running: Mutex<HashMap<u64, (usize, usize)>>,
    /// Channels being handled right now, and the most at once.
    busy_channels: AtomicUsize,
    peak_channels: AtomicUsize,
}

impl Bot {
    fn new(work: Duration) -> Self {
        Bot {
            work,
            store: Store::default(),
            handled: Mutex::default(),
            running: Mutex::default(),
            busy_channels: AtomicUsize::new(0),
            peak_channels: AtomicUsize::new(0),
        }
    }

    /// One message at a time per channel; channels in parallel.
    #[write_lock("channels", key = message.channel, timeout = "30s")]
    async fn on_message(self: Arc<Self>, message: Message) -> Result<(), keylock::Error> {
        self.enter(message.channel);
        // Think about a reply.
        tokio::time::sleep(self.work).await;
        self.handled
            .lock()
            .unwrap()
            .entry(message.channel)
            .or_default()
            .push(message.seq);
        self.leave(message.channel);
        // Count the reply: a blocking call, as much existing code is.
        let bot = Arc::clone(&self);
        tokio::task::spawn_blocking(move || bot.count_reply(message.channel))
            .await
            .expect("count_reply panicked");
        Ok(())
    }

    /// A read-modify-write on the shared store: exclusive, and written as
    /// a plain sync function. Async snapshots wait for it and it for them.
    #[write_lock("store")]
    fn count_reply(&self, channel: u64) {
        let replies = self.store.get(channel);
        std::thread::sleep(Duration::from_micros(200));
        self.store.set(channel, replies + 1);
    }

    /// A consistent read of the whole store; many readers at once.
    #[read_lock("store")]
    async fn snapshot(&self) -> u64 {
        let before = self.store.total();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let after = self.store.total();
        assert_eq!(before, after, "store changed under a read lock");
        after
    }

    fn enter(&self, channel: u64) {
        let mut running = self.running.lock().unwrap();
        let (now, peak) = running.entry(channel).or_default();
        *now += 1;
        *peak = (*peak).max(*now);
        let busy = self.busy_channels.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_channels.fetch_max(busy, Ordering::SeqCst);
    }

    fn leave(&self, channel: u64) {
        self.running.lock().unwrap().entry(channel).or_default().0 -= 1;
        self.busy_channels.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Sizes of the simulation.
struct Config {
    channels: u64,
    messages: u32,
    work: Duration,
}

const USAGE: &str =
    "usage: bot [--channels N (1..=1000)] [--messages N (1..=1000)] [--work-ms N (0..=1000)]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut config = Config {
        channels: 8,
        messages: 10,
        work: Duration::from_millis(20),
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = |name: &str, max: u64, min: u64| -> Result<u64, String> {
            let text = args
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?;
            let number: u64 = text
                .parse()
                .map_err(|_| format!("{name} takes a whole number, got `{text}`\n{USAGE}"))?;
            if !(min..=max).contains(&number) {
                return Err(format!(
                    "{name} must be between {min} and {max}, got {number}\n{USAGE}"
                ));
            }
            Ok(number)
        };
        match flag.as_str() {
            "--channels" => config.channels = value("--channels", 1000, 1)?,
            "--messages" => {
                config.messages = u32::try_from(value("--messages", 1000, 1)?)
                    .map_err(|_| "--messages is too large".to_owned())?;
            }
            "--work-ms" => config.work = Duration::from_millis(value("--work-ms", 1000, 0)?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument `{other}`\n{USAGE}")),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let total = config.channels * u64::from(config.messages);
    println!(
        "keylock bot demo: {} channels x {} messages, {:?} of work per message",
        config.channels, config.messages, config.work
    );

    let bot = Arc::new(Bot::new(config.work));
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Messages arrive interleaved across channels, each in its own task, as
    // a gateway delivers them; a channel's next message arrives while its
    // previous one is still being handled.
    for seq in 0..config.messages {
        for channel in 0..config.channels {
            let bot = Arc::clone(&bot);
            tasks.push(tokio::spawn(bot.on_message(Message { channel, seq })));
        }
        // Meanwhile, someone reads the store.
        let reader = Arc::clone(&bot);
        tasks.push(tokio::spawn(async move {
            reader.snapshot().await;
            Ok(())
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut failures = 0;
    for task in tasks {
        if let Err(error) = task.await.expect("handler panicked") {
            eprintln!("handler failed: {error}");
            failures += 1;
        }
    }
    let elapsed = started.elapsed();

    let handled = bot.handled.lock().unwrap();
    let running = bot.running.lock().unwrap();
    let mut ok = failures == 0;
    for channel in 0..config.channels {
        let order = handled.get(&channel).cloned().unwrap_or_default();
        let in_order = order.windows(2).all(|pair| pair[0] < pair[1]);
        let peak = running.get(&channel).map_or(0, |(_, peak)| *peak);
        let good = in_order && peak <= 1 && order.len() == config.messages as usize;
        ok &= good;
        if channel < 5 || !good {
            println!(
                "  channel {channel}: {} messages, at most {peak} at a time, {} {}",
                order.len(),
                if in_order {
                    "in arrival order"
                } else {
                    "OUT OF ORDER"
                },
                if good { "ok" } else { "FAILED" }
            );
        }
    }
    if config.channels > 5 {
        println!("  ... and {} more channels", config.channels - 5);
    }
    let serial = config.work * u32::try_from(total).unwrap_or(u32::MAX);
    println!(
        "elapsed {:.2?}; one message at a time overall would take at least {:.2?}; \
         up to {} channels were handled at once",
        elapsed,
        serial,
        bot.peak_channels.load(Ordering::SeqCst)
    );
    let counted = bot.store.total();
    println!(
        "store: {counted} of {total} replies counted ({} lost updates), snapshots consistent",
        total - counted.min(total)
    );
    ok &= counted == total;
    println!(
        "\nlock statistics:\n{}",
        keylock::Registry::global().stats()
    );
    if ok {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("CHECKS FAILED");
        ExitCode::FAILURE
    }
}

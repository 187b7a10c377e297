//! A simulated chat bot: the job keylock exists for.
//!
//! Messages for many channels arrive concurrently. Each channel's messages
//! must be handled one at a time and in the order they arrived, while
//! different channels proceed in parallel. Replies are counted in a shared
//! store with a read-modify-write that would lose updates without a lock,
//! and snapshots of the store must be consistent.
//!
//! With `--processes N`, the bot runs as N processes, as a bot that grew
//! into shards does: each channel's messages are spread over all of them,
//! the channel lock is shared through keylock's file backend, and a reply
//! counter per channel lives in a file that every process reads and
//! rewrites. The proofs then hold across processes: no two processes
//! handle a channel at once, and no count is lost.
//!
//! ```text
//! cargo run --example bot
//! cargo run --example bot -- --channels 16 --messages 5 --work-ms 10
//! cargo run --example bot -- --processes 4
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keylock::{read_lock, write_lock, FileBackend, Registry};

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
    /// With several processes: the directory they share.
    shared: Option<PathBuf>,
}

impl Bot {
    fn new(work: Duration, shared: Option<PathBuf>) -> Self {
        Bot {
            work,
            shared,
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
        if let Some(shared) = &self.shared {
            count_across_processes(shared, message.channel);
        }
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

/// Holding the channel's lock, shared by every process: marks the channel
/// busy (finding it busy already means two processes overlap), and counts
/// the reply in the channel's counter file with a read and a rewrite, which
/// loses counts unless processes exclude each other.
fn count_across_processes(shared: &Path, channel: u64) {
    let busy = shared.join(format!("busy-{channel}"));
    if std::fs::File::create_new(&busy).is_err() {
        let overlaps = shared.join(format!("overlap-{channel}-{}", std::process::id()));
        let _ = std::fs::write(overlaps, "two processes handled this channel at once");
    }
    let counter = shared.join(format!("count-{channel}"));
    let count: u64 = std::fs::read_to_string(&counter)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0);
    std::thread::sleep(Duration::from_micros(100));
    std::fs::write(&counter, (count + 1).to_string()).expect("counter file");
    let _ = std::fs::remove_file(busy);
}

/// Sizes of the simulation.
struct Config {
    channels: u64,
    messages: u32,
    work: Duration,
    processes: u32,
    /// For a worker process: its number and the directory shared with the
    /// others.
    worker: Option<(u32, PathBuf)>,
}

impl Config {
    /// Whether this process handles message `seq` of `channel`: with
    /// several processes, a channel's messages go round them.
    fn handles(&self, channel: u64, seq: u32) -> bool {
        match &self.worker {
            None => true,
            Some((index, _)) => {
                (channel + u64::from(seq)) % u64::from(self.processes) == u64::from(*index)
            }
        }
    }
}

const USAGE: &str = "usage: bot [--channels N (1..=1000)] [--messages N (1..=1000)] \
                     [--work-ms N (0..=1000)] [--processes N (1..=16)]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut config = Config {
        channels: 8,
        messages: 10,
        work: Duration::from_millis(20),
        processes: 1,
        worker: None,
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
            "--processes" => {
                config.processes = u32::try_from(value("--processes", 16, 1)?)
                    .map_err(|_| "--processes is too large".to_owned())?;
            }
            // Set by the first process for the ones it starts.
            "--worker" => {
                let index = u32::try_from(value("--worker", 15, 0)?)
                    .map_err(|_| "--worker is too large".to_owned())?;
                let dir = args
                    .next()
                    .ok_or_else(|| format!("--worker needs a directory\n{USAGE}"))?;
                config.worker = Some((index, PathBuf::from(dir)));
            }
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
    if config.processes > 1 && config.worker.is_none() {
        return run_processes(&config);
    }
    let shared = config.worker.as_ref().map(|(_, dir)| dir.clone());
    if let Some(dir) = &shared {
        // The channel locks, shared by every process through files. The
        // annotations do not change.
        let backend = match FileBackend::new(dir.join("locks")) {
            Ok(backend) => backend,
            Err(error) => {
                eprintln!("cannot use {}: {error}", dir.display());
                return ExitCode::FAILURE;
            }
        };
        if Registry::builder()
            .backend("channels", backend)
            .build_global()
            .is_err()
        {
            eprintln!("the global registry was in use before it was configured");
            return ExitCode::FAILURE;
        }
    }
    let expected = |channel: u64| {
        (0..config.messages)
            .filter(|&seq| config.handles(channel, seq))
            .count()
    };
    let total: u64 = (0..config.channels)
        .map(|channel| expected(channel) as u64)
        .sum();
    match &config.worker {
        None => println!(
            "keylock bot demo: {} channels x {} messages, {:?} of work per message",
            config.channels, config.messages, config.work
        ),
        Some((index, _)) => println!(
            "process {index} of {}: {total} of the {} channels' messages",
            config.processes, config.channels
        ),
    }

    let bot = Arc::new(Bot::new(config.work, shared));
    let started = Instant::now();
    let mut tasks = Vec::new();
    // Messages arrive interleaved across channels, each in its own task, as
    // a gateway delivers them; a channel's next message arrives while its
    // previous one is still being handled.
    for seq in 0..config.messages {
        for channel in (0..config.channels).filter(|&channel| config.handles(channel, seq)) {
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
        let good = in_order && peak <= 1 && order.len() == expected(channel);
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
    if config.worker.is_some() {
        println!("elapsed {elapsed:.2?}");
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
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

/// Runs the bot as `config.processes` processes sharing one directory, and
/// checks what they did together.
fn run_processes(config: &Config) -> ExitCode {
    let dir = std::env::temp_dir().join(format!("keylock-bot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {error}", dir.display());
        return ExitCode::FAILURE;
    }
    println!(
        "keylock bot demo: {} channels x {} messages over {} processes sharing locks \
         through files in {}",
        config.channels,
        config.messages,
        config.processes,
        dir.display()
    );
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("cannot find this program to start it again: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let children: Vec<_> = (0..config.processes)
        .map(|index| {
            Command::new(&exe)
                .args(["--channels", &config.channels.to_string()])
                .args(["--messages", &config.messages.to_string()])
                .args(["--work-ms", &config.work.as_millis().to_string()])
                .args(["--processes", &config.processes.to_string()])
                .args(["--worker", &index.to_string()])
                .arg(&dir)
                .spawn()
        })
        .collect();
    let mut ok = true;
    for child in children {
        match child.and_then(|mut child| child.wait()) {
            Ok(status) => ok &= status.success(),
            Err(error) => {
                eprintln!("a process failed to run: {error}");
                ok = false;
            }
        }
    }
    let elapsed = started.elapsed();
    let mut counted = 0;
    let mut overlaps = 0;
    for channel in 0..config.channels {
        counted += std::fs::read_to_string(dir.join(format!("count-{channel}")))
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .unwrap_or(0);
    }
    if let Ok(entries) = std::fs::read_dir(&dir) {
        overlaps = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("overlap-"))
            .count();
    }
    let total = config.channels * u64::from(config.messages);
    println!(
        "all processes: elapsed {elapsed:.2?}; {counted} of {total} replies counted in the \
         shared files ({} lost updates); {overlaps} times two processes held a channel at once",
        total - counted.min(total)
    );
    ok &= counted == total && overlaps == 0;
    let _ = std::fs::remove_dir_all(&dir);
    if ok {
        println!("all checks passed");
        ExitCode::SUCCESS
    } else {
        println!("CHECKS FAILED");
        ExitCode::FAILURE
    }
}

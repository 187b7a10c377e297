//! An operator's view of a running bot: `/metrics` in the Prometheus text
//! format and `/locks` as JSON, served on 127.0.0.1 while a simulated
//! workload contends for per-channel locks.
//!
//! ```text
//! cargo run --example dashboard                     # port 9898, until Ctrl-C
//! cargo run --example dashboard -- --port 0 --seconds 30
//! curl http://127.0.0.1:9898/metrics
//! curl http://127.0.0.1:9898/locks
//! ```
//!
//! The server is a few lines of `std::net` so the example builds with no
//! web framework; point Prometheus or a browser at it.
//!
//! The handlers are annotated functions on the global registry, which
//! `main` configures once at start-up to track holders, so `/locks` lists
//! who holds and waits for each lock right now.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keylock::{read_lock, write_lock, Registry};

/// Serves `/metrics` and `/locks` for `registry` until `stop` is set.
pub fn serve(
    listener: TcpListener,
    registry: Registry,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // One bad client must not stop the server.
                let _ = respond(stream, &registry);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn respond(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request_line = String::new();
    BufReader::new(&stream).read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            registry.stats().to_prometheus(),
        ),
        ("GET", "/locks") => match serde_json::to_string_pretty(&registry.stats()) {
            Ok(json) => ("200 OK", "application/json", json),
            Err(error) => ("500 Internal Server Error", "text/plain", error.to_string()),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "try /metrics or /locks\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n".to_owned(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Configures the global registry, before anything uses it: track holders
/// for `/locks`, and warn about holds longer than a second.
pub fn configure() -> Result<&'static Registry, keylock::GlobalInUse> {
    Registry::builder()
        .track_holders(true)
        .long_hold_warning(Duration::from_secs(1))
        .build_global()
}

/// Handles one message: one at a time per channel.
#[write_lock("channels", key = channel)]
async fn on_message(channel: u64) {
    tokio::time::sleep(Duration::from_millis(2)).await;
}

/// Writes the store: alone.
#[write_lock("store")]
async fn save() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// Reads the store: beside other readers.
#[read_lock("store")]
async fn load() {}

/// A bot's traffic: messages for a handful of channels, each handled under
/// its channel's lock, and a store read and written under a named lock.
pub async fn workload(stop: Arc<AtomicBool>) {
    let mut tasks = Vec::new();
    for worker in 0..16u64 {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut message = 0u64;
            while !stop.load(Ordering::Relaxed) {
                message += 1;
                on_message((worker + message) % 5).await;
                if message.is_multiple_of(4) {
                    save().await;
                } else {
                    load().await;
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

struct Config {
    port: u16,
    seconds: Option<u64>,
}

const USAGE: &str = "usage: dashboard [--port N (0 picks a free one)] [--seconds N]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
    let mut config = Config {
        port: 9898,
        seconds: None,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--port" => {
                let value = value?;
                config.port = value.parse().map_err(|_| {
                    format!("--port takes a number from 0 to 65535, got `{value}`\n{USAGE}")
                })?;
            }
            "--seconds" => {
                let value = value?;
                let seconds: u64 = value.parse().map_err(|_| {
                    format!("--seconds takes a whole number, got `{value}`\n{USAGE}")
                })?;
                if seconds == 0 {
                    return Err(format!("--seconds must be at least 1\n{USAGE}"));
                }
                config.seconds = Some(seconds);
            }
            _ => return Err(format!("unknown argument `{flag}`\n{USAGE}")),
        }
    }
    Ok(config)
}

#[allow(dead_code)] // `main` is unused where the tests include this file.
fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(("127.0.0.1", config.port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on 127.0.0.1:{}: {error}", config.port);
            return ExitCode::FAILURE;
        }
    };
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let registry = match configure() {
        Ok(registry) => registry,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    println!("serving http://{address}/metrics and http://{address}/locks");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || serve(listener, registry.clone(), stop))
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    if let Some(seconds) = config.seconds {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            stop.store(true, Ordering::Relaxed);
        });
    }
    runtime.block_on(workload(stop.clone()));
    stop.store(true, Ordering::Relaxed);
    let served = server.join();
    println!(
        "ran {:.1?}; final figures:\n{}",
        started.elapsed(),
        registry.stats()
    );
    match served {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("server failed: {error}");
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::FAILURE,
    }
}

//! The dashboard example serves both endpoints while its workload runs, on
//! the global registry it configures (this test binary's only use of it).

#[path = "../examples/dashboard.rs"]
mod dashboard;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keylock::Registry;

fn get(address: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn serves_metrics_and_locks_while_the_workload_runs() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let registry = dashboard::configure().expect("the global registry is unused");
    assert_eq!(registry.id(), Registry::global().id());
    assert!(dashboard::configure().is_err(), "configured twice");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (registry, stop) = (registry.clone(), stop.clone());
        std::thread::spawn(move || dashboard::serve(listener, registry, stop))
    };
    let workload = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(dashboard::workload(stop));
        })
    };
    // Let the workload produce some contention.
    while registry
        .stats()
        .resource("channels")
        .is_none_or(|channels| channels.contended == 0)
    {
        std::thread::sleep(Duration::from_millis(5));
    }

    let (status, metrics) = get(address, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let scrape =
        prometheus_parse::Scrape::parse(metrics.lines().map(|line| Ok(line.to_owned()))).unwrap();
    assert!(scrape.samples.iter().any(|sample| {
        sample.metric == "keylock_acquisitions_total"
            && sample.labels.get("resource") == Some("channels")
            && matches!(sample.value, prometheus_parse::Value::Counter(v) if v > 0.0)
    }));

    let (status, locks) = get(address, "/locks");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let stats: keylock::Stats = serde_json::from_str(&locks).unwrap();
    let channels = stats.resource("channels").unwrap();
    assert!(channels.write_acquisitions > 0);
    assert!(channels.contended > 0);
    assert!(stats.resource("store").unwrap().acquisitions() > 0);
    // The annotated handlers run on the configured global registry, so the
    // live view names holders and where they took their lock.
    let mut listed = false;
    for _ in 0..200 {
        let (_, locks) = get(address, "/locks");
        let stats: keylock::Stats = serde_json::from_str(&locks).unwrap();
        let live = &stats.resource("channels").unwrap().live;
        if let Some(holder) = live.iter().find(|p| p.role == keylock::Role::Holding) {
            assert!(holder.location.contains("dashboard.rs"), "{holder:?}");
            assert!(holder.key.is_some(), "{holder:?}");
            listed = true;
            break;
        }
    }
    assert!(listed, "/locks never listed a holder");

    let (status, _) = get(address, "/nope");
    assert_eq!(status, "HTTP/1.1 404 Not Found");

    stop.store(true, Ordering::Relaxed);
    server.join().unwrap().unwrap();
    workload.join().unwrap();
}

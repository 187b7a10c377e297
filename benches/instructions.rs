//! Instruction counts, for comparisons this noisy machine's wall clock
//! cannot settle. Runs 200,000 uncontended acquisitions of one kind:
//!
//! ```text
//! cargo bench --no-run --bench instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/instructions-<hash> <mode>
//! ```
//!
//! with `<mode>` one of `none` (the fixed cost) or a name in [`MODES`]; per
//! operation: (total - none) / 200,000. Async modes run on a current-thread
//! runtime, `_blocking` modes on the main thread.

use std::hint::black_box;
use std::sync::Arc;

use dashmap::DashMap;

#[path = "common/by_hand.rs"]
mod by_hand;

const OPERATIONS: u64 = 200_000;

/// Every mode, in the order BENCHMARKS.md lists them.
const MODES: &[&str] = &[
    "keylock_named",
    "keylock_named_attribute",
    "tokio_rwlock",
    "keylock_keyed",
    "keylock_keyed_attribute",
    "dashmap_tokio_mutex",
    "keylock_handle_blocking",
    "keylock_named_attribute_blocking",
    "parking_lot_mutex",
    "keylock_keyed_blocking",
    "keylock_keyed_attribute_blocking",
    "dashmap_parking_lot",
    "keylock_named_by_hand",
    "keylock_keyed_by_hand",
    "keylock_keyed_by_hand_blocking",
    "keylock_keyed_lock_order",
    "keylock_keyed_blocking_lock_order",
    "keylock_keyed_nested",
    "keylock_keyed_nested_lock_order",
    "dedup_stream_attribute",
    "mutex_fxhashset_stream",
    "dedup_duplicate_attribute",
    "mutex_fxhashset_duplicate",
    "keylock_keyed_attribute_result",
    "keylock_keyed_attribute_str",
];

static ANNOTATED: std::sync::LazyLock<keylock::Registry> =
    std::sync::LazyLock::new(keylock::Registry::new);

#[keylock::write_lock("db", registry = ANNOTATED)]
async fn annotated_named() {
    black_box(());
}

#[keylock::write_lock("k", key = id, registry = ANNOTATED)]
async fn annotated_keyed(id: u64) {
    black_box(id);
}

/// As `annotated_keyed`, returning a `Result`: the body is then watched for
/// a lost backend lease (none here, as the resource is in-process).
#[keylock::write_lock("k", key = id, registry = ANNOTATED)]
async fn annotated_keyed_result(id: u64) -> Result<(), keylock::Error> {
    black_box(id);
    Ok(())
}

/// As `annotated_keyed`, with `&str` keys (`String` keys in the map).
#[keylock::write_lock("ks", key = id, registry = ANNOTATED)]
async fn annotated_keyed_str(id: &str) {
    black_box(id);
}

#[keylock::write_lock("db", registry = ANNOTATED)]
fn annotated_named_blocking() {
    black_box(());
}

#[keylock::write_lock("k", key = id, registry = ANNOTATED)]
fn annotated_keyed_blocking(id: u64) {
    black_box(id);
}

/// The stream of `benches/workload.rs`, at a capacity the 200,000 calls
/// pass early, so that most new ids also evict one.
#[keylock::dedup("events", id, capacity = 10_000, registry = ANNOTATED)]
fn annotated_dedup_stream(id: u64) {
    black_box(id);
}

#[keylock::dedup("duplicates", id, registry = ANNOTATED)]
fn annotated_dedup(id: u64) {
    black_box(id);
}

/// The `i`th id of a stream where about one delivery in four repeats one
/// of the 16 ids before it, as redelivered events do.
fn stream_id(i: u64) -> u64 {
    fn mix(mut x: u64) -> u64 {
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }
    let back = mix(!i) % 64;
    if back < 16 && i > 64 {
        mix(i - 1 - back)
    } else {
        mix(i)
    }
}

fn main() {
    let mode = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_else(|| "none".to_owned());
    // Decided once, so that every mode pays the same fixed cost per loop.
    let mode = MODES.iter().position(|known| *known == mode);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = keylock::Registry::new();
    let db = registry.resource("db");
    let handle = db.lock();
    let keys = registry.keyed::<u64>("k");
    // The same keyed locks in a registry that checks lock orders.
    let checked = keylock::Registry::builder()
        .lock_order(keylock::LockOrder::Error)
        .build();
    let checked_keys = checked.keyed::<u64>("k");
    let checked_outer = checked.lock("outer");
    let outer = registry.lock("outer");
    let rwlock = tokio::sync::RwLock::new(());
    let tokio_map: DashMap<u64, Arc<tokio::sync::Mutex<()>>> = DashMap::new();
    let mutex = parking_lot::Mutex::new(());
    let sync_map: DashMap<u64, Arc<parking_lot::Mutex<()>>> = DashMap::new();
    let set = parking_lot::Mutex::new(rustc_hash::FxHashSet::<u64>::default());
    let str_keys: Vec<String> = (0..8).map(|key| format!("channel-{key}")).collect();
    annotated_dedup(u64::MAX);
    set.lock().insert(u64::MAX);
    runtime.block_on(async {
        for i in 0..OPERATIONS {
            let key = i & 7;
            // Computed in every mode, so that the fixed cost includes it.
            let id = black_box(stream_id(i));
            match mode {
                Some(0) => drop(black_box(db.write().await)),
                Some(1) => annotated_named().await,
                Some(2) => drop(black_box(rwlock.write().await)),
                Some(3) => drop(black_box(keys.write(&key).await)),
                Some(4) => annotated_keyed(key).await,
                Some(5) => {
                    let lock = tokio_map.entry(key).or_default().clone();
                    drop(black_box(lock.lock().await));
                }
                Some(6) => drop(black_box(handle.write_blocking())),
                Some(7) => annotated_named_blocking(),
                Some(8) => drop(black_box(mutex.lock())),
                Some(9) => drop(black_box(keys.write_blocking(&key))),
                Some(10) => annotated_keyed_blocking(key),
                Some(11) => {
                    let lock = sync_map.entry(key).or_default().clone();
                    drop(black_box(lock.lock()));
                }
                Some(12) => by_hand::named().await,
                Some(13) => by_hand::keyed(key).await,
                Some(14) => by_hand::keyed_sync(key),
                Some(15) => drop(black_box(checked_keys.write(&key).await)),
                Some(16) => drop(black_box(checked_keys.write_blocking(&key))),
                // Two acquisitions per iteration, the second nested.
                Some(17) => {
                    let outer = outer.write().await;
                    drop(black_box(keys.write(&key).await));
                    drop(outer);
                }
                // The same, checking one edge each time.
                Some(18) => {
                    let outer = checked_outer.write().await;
                    drop(black_box(checked_keys.write(&key).await));
                    drop(outer);
                }
                Some(19) => annotated_dedup_stream(id),
                Some(20) => drop(black_box(set.lock().insert(id))),
                Some(21) => annotated_dedup(black_box(u64::MAX)),
                Some(22) => drop(black_box(set.lock().insert(black_box(u64::MAX)))),
                Some(23) => drop(black_box(annotated_keyed_result(key).await)),
                Some(24) => annotated_keyed_str(str_keys[key as usize].as_str()).await,
                _ => {}
            }
        }
    });
}

//! Instruction counts, for comparisons this noisy machine's wall clock
//! cannot settle. Runs 200,000 uncontended async acquisitions of one kind:
//!
//! ```text
//! cargo bench --no-run --bench instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/deps/instructions-<hash> <mode>
//! ```
//!
//! with `<mode>` one of `none` (the fixed cost), `keylock_named`,
//! `keylock_keyed`, `keylock_named_attribute`, `keylock_keyed_attribute`,
//! `tokio_rwlock`, `dashmap_tokio_mutex`; per operation:
//! (total - none) / 200,000.

use std::hint::black_box;
use std::sync::Arc;

use dashmap::DashMap;

const OPERATIONS: u64 = 200_000;

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

fn main() {
    let mode = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_else(|| "none".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = keylock::Registry::new();
    let db = registry.resource("db");
    let keys = registry.keyed::<u64>("k");
    let rwlock = tokio::sync::RwLock::new(());
    let map: DashMap<u64, Arc<tokio::sync::Mutex<()>>> = DashMap::new();
    runtime.block_on(async {
        for i in 0..OPERATIONS {
            match mode.as_str() {
                "keylock_named" => drop(black_box(db.write().await)),
                "keylock_keyed" => drop(black_box(keys.write(&(i & 7)).await)),
                "keylock_named_attribute" => annotated_named().await,
                "keylock_keyed_attribute" => annotated_keyed(i & 7).await,
                "tokio_rwlock" => drop(black_box(rwlock.write().await)),
                "dashmap_tokio_mutex" => {
                    let lock = map.entry(i & 7).or_default().clone();
                    drop(black_box(lock.lock().await));
                }
                _ => {}
            }
        }
    });
}

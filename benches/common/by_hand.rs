//! The benchmarks' annotated functions written by hand against the public
//! API, each handle kept in a `static` the way the expansion keeps it, so
//! that comparing the two measures what the expansion itself adds.

use std::hint::black_box;
use std::sync::LazyLock;

use keylock::{Keyed, Lock, Registry};

static NAMED: LazyLock<Lock> = LazyLock::new(|| Registry::new().lock("db"));
static KEYED: LazyLock<Keyed<u64>> = LazyLock::new(|| Registry::new().keyed("sessions"));
static SYNC_KEYED: LazyLock<Keyed<u64>> = LazyLock::new(|| Registry::new().keyed("sessions"));

pub async fn named() {
    let _guard = NAMED.write().await;
    black_box(());
}

pub async fn keyed(id: u64) {
    let _guard = KEYED.write(&id).await;
    black_box(id);
}

pub fn keyed_sync(id: u64) {
    let _guard = SYNC_KEYED.write_blocking(&id);
    black_box(id);
}

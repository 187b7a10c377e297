//! Compiles: future-returning functions that only capture values before
//! building their future, and types that merely have "Future" in their name.

use std::future::Future;
use std::sync::Arc;

use keylock::write_lock;

struct Db {
    rows: Arc<Vec<u64>>,
}

impl Db {
    // The common way to return a `'static` future from `&self`.
    #[write_lock("rows")]
    fn refresh(&self) -> impl Future<Output = usize> + Send + 'static {
        let rows = Arc::clone(&self.rows);
        async move { rows.len() }
    }

    #[write_lock("rows-by-hand")]
    fn count(&self) -> impl Future<Output = usize> + Send + 'static {
        let rows = self.rows.clone();
        let label = "rows".to_owned();
        count_rows(rows, label)
    }
}

async fn count_rows(rows: Arc<Vec<u64>>, _label: String) -> usize {
    rows.len()
}

struct FutureEvent(u64);

#[write_lock("events")]
fn next_event() -> FutureEvent {
    FutureEvent(1)
}

#[write_lock("event-list")]
fn all_events() -> Vec<FutureEvent> {
    vec![FutureEvent(2)]
}

fn main() {
    let db = Db {
        rows: Arc::new(vec![1, 2]),
    };
    let _ = (db.refresh(), db.count());
    assert_eq!(next_event().0 + all_events()[0].0, 3);
}

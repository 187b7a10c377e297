//! Annotated functions add no warnings, under rustc and clippy's pedantic
//! set (`cargo clippy --all-targets` checks this file).

#![deny(warnings, clippy::all, clippy::pedantic, unused_qualifications)]

use std::sync::LazyLock;

use keylock::{read_lock, write_lock, Registry};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// An error that carries lock failures.
#[derive(Debug)]
pub struct AppError(keylock::Error);

impl AppError {
    /// What went wrong with the lock.
    #[must_use]
    pub fn lock_error(&self) -> &keylock::Error {
        &self.0
    }
}

impl From<keylock::Error> for AppError {
    fn from(error: keylock::Error) -> Self {
        AppError(error)
    }
}

/// A struct users already have.
pub struct Store {
    registry: Registry,
    rows: Vec<u64>,
}

impl Store {
    /// Reads under a shared lock.
    #[read_lock("rows", registry = self.registry)]
    #[must_use]
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// Writes under an exclusive per-key lock, with a timeout.
    ///
    /// # Errors
    ///
    /// When the key stays busy for a second.
    #[write_lock("row", key = row, timeout = "1s", registry = self.registry)]
    pub async fn push(&mut self, row: u64) -> Result<(), AppError> {
        self.rows.push(row);
        Ok(())
    }

    /// Skips when busy; binds the guard.
    #[write_lock("rows", on_busy = "skip", guard = guard, registry = self.registry)]
    pub fn clear(&mut self) -> Option<usize> {
        let count = self.rows.len();
        self.rows.clear();
        drop(guard);
        Some(count)
    }
}

#[write_lock(key = name, registry = REGISTRY)]
fn by_name(name: &str) -> usize {
    name.len()
}

#[write_lock("pair", key = (a, b), registry = REGISTRY, timeout = "250ms")]
async fn pair(a: u8, b: u8) -> Option<u16> {
    Some(u16::from(a) + u16::from(b))
}

#[test]
fn annotated_functions_work_without_warnings() {
    let mut store = Store {
        registry: Registry::new(),
        rows: vec![1],
    };
    assert_eq!(store.row_count(), 1);
    assert_eq!(store.clear(), Some(1));
    assert_eq!(by_name("abc"), 3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if let Err(error) = store.push(2).await {
            panic!("{}", error.lock_error());
        }
        assert_eq!(pair(1, 2).await, Some(3));
    });
    assert_eq!(store.row_count(), 1);
}

/// Stacked attributes, each imported by name: no import looks unused.
pub struct Stacked;

impl Stacked {
    /// Deduplicated, then locked.
    #[keylock::dedup(id, registry = REGISTRY)]
    #[write_lock("stacked", key = id, registry = REGISTRY)]
    #[read_lock("stacked-db", registry = REGISTRY)]
    pub fn handle(&self, id: u64) {
        let _ = id;
    }
}

#[test]
fn stacked_attributes_work_without_warnings() {
    Stacked.handle(1);
    Stacked.handle(1);
}

/// Every `#[dedup]` form.
#[keylock::dedup("lint-dedup", id, ttl = "1m", capacity = 10, registry = REGISTRY)]
fn dedup_unit(id: u64) {
    let _ = id;
}

#[keylock::dedup(key = id, on_duplicate = 0, registry = REGISTRY)]
fn dedup_value(id: u64) -> u64 {
    id + 1
}

#[keylock::dedup(id, in_flight = "wait", keep_on_error = true, registry = REGISTRY)]
async fn dedup_wait(id: u64) -> Result<u64, AppError> {
    Ok(id)
}

#[test]
fn dedup_forms_work_without_warnings() {
    dedup_unit(1);
    assert_eq!(dedup_value(1), 2);
    assert_eq!(dedup_value(1), 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert!(dedup_wait(5).await.is_ok());
        assert!(dedup_wait(5).await.is_err());
    });
}

/// Every lock set form.
#[write_lock("lint-accounts", keys = [from, to], registry = REGISTRY, timeout = "1s")]
async fn transfer(from: u64, to: u64) -> Result<u64, AppError> {
    Ok(from + to)
}

#[read_lock("lint-names", keys = [a, b, "carol"], registry = REGISTRY, on_busy = "skip")]
fn names(a: &str, b: &str) -> Option<usize> {
    Some(a.len() + b.len())
}

#[write_lock("lint-ledger", "lint-audit", registry = REGISTRY, guard = books)]
fn close_books() -> usize {
    let count = books.locks().len();
    drop(books);
    count
}

#[write_lock("lint-set-future", keys = [id, id + 1], registry = REGISTRY)]
fn later(id: u64) -> impl std::future::Future<Output = u64> {
    async move { id }
}

#[test]
fn lock_sets_work_without_warnings() {
    assert_eq!(names("a", "bc"), Some(3));
    assert_eq!(close_books(), 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(transfer(1, 2).await.ok(), Some(3));
        assert_eq!(later(4).await, 4);
    });
}

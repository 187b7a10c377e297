//! `#[read_lock]` and `#[write_lock]` on every kind of function.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use common::Section;
use keylock::{read_lock, write_lock, Registry};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

#[derive(Debug, PartialEq)]
enum BotError {
    Lock(keylock::Error),
}

impl From<keylock::Error> for BotError {
    fn from(error: keylock::Error) -> Self {
        BotError::Lock(error)
    }
}

struct Bot {
    registry: Registry,
    section: Section,
    handled: AtomicUsize,
}

impl Bot {
    fn new() -> Self {
        Bot {
            registry: Registry::new(),
            section: Section::default(),
            handled: AtomicUsize::new(0),
        }
    }

    #[write_lock("sessions", key = channel_id, registry = self.registry)]
    async fn handle(&self, channel_id: u64, _text: &str) -> Result<u64, BotError> {
        let _inside = self.section.enter();
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(channel_id)
    }

    #[write_lock("sessions", key = channel_id, registry = &self.registry, timeout = "20ms")]
    async fn handle_with_timeout(&self, channel_id: u64) -> Result<(), BotError> {
        Ok(())
    }

    #[write_lock("sessions", key = channel_id, registry = self.registry, on_busy = "skip")]
    fn try_handle(&self, channel_id: u64) -> Option<u64> {
        Some(channel_id)
    }

    #[write_lock("sessions", key = channel_id, registry = self.registry, on_busy = "skip")]
    fn try_handle_unit(&self, channel_id: u64) {
        let _ = channel_id;
        self.handled.fetch_add(1, Ordering::SeqCst);
    }

    #[read_lock("db", registry = self.registry)]
    fn query(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }

    #[write_lock("db", registry = self.registry, guard = db)]
    fn write_then_release_early(&self) -> bool {
        assert!(db.lock().is_write_locked());
        drop(db);
        // Released before the function returns.
        self.registry.lock("db").try_write().is_ok()
    }

    #[write_lock("by-name", key = name, registry = self.registry)]
    fn by_str(&self, name: &str) -> bool {
        self.registry.keyed::<String>("by-name").is_locked(name)
    }

    #[write_lock("by-name", key = &user.name, registry = self.registry)]
    fn by_field_ref(&self, user: &User) -> bool {
        self.registry
            .keyed::<String>("by-name")
            .is_locked(&user.name)
    }

    #[write_lock("by-name", key = user.name, registry = self.registry)]
    fn by_field(&self, user: &User) -> bool {
        self.registry
            .keyed::<String>("by-name")
            .is_locked(&user.name)
    }

    #[write_lock("pairs", key = (a, b), registry = self.registry)]
    fn by_pattern(&self, (a, b): (u32, u32)) -> u32 {
        assert!(self
            .registry
            .keyed::<(u32, u32)>("pairs")
            .is_locked(&(a, b)));
        a + b
    }

    #[write_lock("owned", registry = self.registry)]
    fn by_value(self) -> Self {
        self
    }

    #[write_lock("arc", registry = self.registry, key = self.handled.load(Ordering::SeqCst))]
    async fn by_arc(self: Arc<Self>) -> usize {
        self.handled.load(Ordering::SeqCst)
    }

    #[write_lock("mutable", registry = self.registry)]
    fn by_mut(&mut self) -> &mut Self {
        self
    }

    #[write_lock("assoc", registry = REGISTRY)]
    fn associated() -> u8 {
        7
    }
}

struct User {
    name: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_methods_serialize_one_channel_and_parallelize_others() {
    let bot = Arc::new(Bot::new());
    let tasks: Vec<_> = (0..20u64)
        .map(|_| {
            let bot = bot.clone();
            tokio::spawn(async move { bot.handle(1, "hi").await.unwrap() })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 1);
    }
    assert_eq!(bot.section.overlaps(), 0);
    assert_eq!(bot.handled.load(Ordering::SeqCst), 20);

    let bot = Arc::new(Bot::new());
    let tasks: Vec<_> = (0..4u64)
        .map(|channel| {
            let bot = bot.clone();
            tokio::spawn(async move { bot.handle(channel, "hi").await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        bot.section.peak() > 1,
        "different channels never overlapped"
    );
}

#[tokio::test]
async fn timeout_returns_err_through_from() {
    let bot = Bot::new();
    let held = bot.registry.keyed::<u64>("sessions").write(&3).await;
    let result = bot.handle_with_timeout(3).await;
    match result {
        Err(BotError::Lock(keylock::Error::Timeout { key, .. })) => {
            assert_eq!(key.as_deref(), Some("3"));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(held);
    assert_eq!(bot.handle_with_timeout(3).await, Ok(()));
}

#[tokio::test]
async fn skip_returns_none_or_early() {
    let bot = Bot::new();
    assert_eq!(bot.try_handle(4), Some(4));
    let held = bot.registry.keyed::<u64>("sessions").write(&4).await;
    assert_eq!(bot.try_handle(4), None);
    bot.try_handle_unit(4);
    assert_eq!(bot.handled.load(Ordering::SeqCst), 0, "skipped body ran");
    drop(held);
    bot.try_handle_unit(4);
    assert_eq!(bot.handled.load(Ordering::SeqCst), 1);
}

#[test]
fn sync_methods_lock_and_release() {
    let bot = Bot::new();
    assert_eq!(bot.query(), 0);
    assert!(bot.write_then_release_early());
    assert!(bot.by_str("alice"));
    assert!(bot.by_field_ref(&User { name: "bob".into() }));
    assert!(bot.by_field(&User {
        name: "carol".into()
    }));
    assert_eq!(bot.by_pattern((2, 3)), 5);
    assert_eq!(Bot::associated(), 7);
    let mut bot = bot.by_value();
    let _ = bot.by_mut();
    assert_eq!(bot.registry.keyed::<String>("by-name").live_keys(), 0);
    assert!(!bot.registry.lock("db").is_locked());
}

#[tokio::test]
async fn arc_self_receiver() {
    let bot = Arc::new(Bot::new());
    assert_eq!(bot.clone().by_arc().await, 0);
}

// Free functions, generics, lifetimes, impl Trait, unsafe, other attributes.

static FREE: LazyLock<Registry> = LazyLock::new(Registry::new);

#[write_lock(registry = FREE)]
fn default_name() -> &'static str {
    let lock = FREE.lock("attributes::default_name");
    assert!(
        lock.is_write_locked(),
        "the default name is the function's path"
    );
    "ok"
}

#[write_lock("generic", key = key.clone(), registry = FREE)]
fn generic<K>(key: K) -> bool
where
    K: std::hash::Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    FREE.keyed::<K>("generic").is_locked(&key)
}

#[write_lock("lifetimes", registry = FREE)]
fn lifetimes<'a>(text: &'a str, _other: &str) -> &'a str {
    text
}

#[write_lock("impl-trait", key = items.len(), registry = FREE)]
fn impl_trait(items: impl ExactSizeIterator<Item = u8>) -> usize {
    items.count()
}

/// Documented.
///
/// # Safety
///
/// None needed; checks that `unsafe fn` is accepted.
#[must_use]
#[write_lock("unsafe", registry = FREE)]
#[allow(unsafe_code)]
unsafe fn unsafe_function() -> u8 {
    1
}

#[test]
fn free_functions() {
    assert_eq!(default_name(), "ok");
    // One resource has one key type, so a generic function is called with
    // one type per resource name.
    assert!(generic(5u64));
    assert!(generic(6u64));
    assert_eq!(lifetimes("a", "b"), "a");
    assert_eq!(impl_trait([1u8, 2, 3].into_iter()), 3);
    #[allow(unsafe_code)]
    let one = unsafe { unsafe_function() };
    assert_eq!(one, 1);
}

// Early return and `?` release.

#[write_lock("early", registry = FREE)]
fn early(fail: bool) -> Result<u32, std::num::ParseIntError> {
    if fail {
        return Ok(0);
    }
    let n: u32 = "x".parse()?;
    Ok(n)
}

#[write_lock("panics", registry = FREE)]
fn panics() {
    panic!("inside");
}

#[test]
fn early_return_question_mark_and_panic_release() {
    assert_eq!(early(true), Ok(0));
    assert!(early(false).is_err());
    assert!(!FREE.lock("early").is_locked());
    assert!(std::panic::catch_unwind(panics).is_err());
    assert!(!FREE.lock("panics").is_locked());
}

// Stacked attributes acquire in the written order.

static STACK: LazyLock<Registry> = LazyLock::new(Registry::new);

#[write_lock("first", registry = STACK)]
#[read_lock("second", registry = STACK)]
fn stacked() -> (bool, bool) {
    (
        STACK.lock("first").is_write_locked(),
        STACK.lock("second").readers() == 1,
    )
}

#[test]
fn stacked_attributes_both_hold() {
    assert_eq!(stacked(), (true, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stacked_attributes_acquire_in_written_order() {
    // Hold "second": the call takes "first", then waits on "second". If it
    // took them the other way round, "first" would still be free.
    let second = STACK.lock("second").write().await;
    let call = tokio::task::spawn_blocking(stacked);
    while STACK.lock("second").waiters() == 0 {
        tokio::task::yield_now().await;
    }
    assert!(STACK.lock("first").is_write_locked());
    drop(second);
    assert_eq!(call.await.unwrap(), (true, true));
}

// Traits: native async fn in traits, and #[async_trait].

trait Handler {
    async fn on_message(&self, channel: u64) -> u64;
}

struct Native(Registry, Section);

impl Handler for Native {
    #[write_lock("native", key = channel, registry = self.0)]
    async fn on_message(&self, channel: u64) -> u64 {
        let _inside = self.1.enter();
        tokio::time::sleep(Duration::from_millis(1)).await;
        channel
    }
}

#[async_trait::async_trait]
trait Boxed {
    async fn on_message(&self, channel: u64) -> u64;
}

struct ViaAsyncTrait(Registry, Section);

#[async_trait::async_trait]
impl Boxed for ViaAsyncTrait {
    #[write_lock("boxed", key = channel, registry = self.0)]
    async fn on_message(&self, channel: u64) -> u64 {
        let _inside = self.1.enter();
        assert!(
            self.0.keyed::<u64>("boxed").is_locked(&channel),
            "lock must cover the body"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        channel
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trait_methods_lock_their_whole_body() {
    let native = Arc::new(Native(Registry::new(), Section::default()));
    let boxed = Arc::new(ViaAsyncTrait(Registry::new(), Section::default()));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let native = native.clone();
        let boxed = boxed.clone();
        tasks.push(tokio::spawn(async move {
            native.on_message(1).await + boxed.on_message(1).await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 2);
    }
    assert_eq!(native.1.overlaps(), 0);
    assert_eq!(boxed.1.overlaps(), 0);
    assert_eq!(boxed.1.entries(), 10);
}

// The future of an annotated async fn stays Send.

fn assert_send<T: Send>(_: &T) {}

#[test]
fn annotated_futures_are_send() {
    let bot = Bot::new();
    assert_send(&bot.handle(1, "x"));
    assert_send(&bot.handle_with_timeout(1));
    let native = Native(Registry::new(), Section::default());
    assert_send(&native.on_message(1));
}

// Sync and async functions on one resource exclude each other.

static MIXED: LazyLock<Registry> = LazyLock::new(Registry::new);
static MIXED_SECTION: LazyLock<Section> = LazyLock::new(Section::default);

#[write_lock("mixed", key = key, registry = MIXED)]
fn mixed_sync(key: u64) {
    let _inside = MIXED_SECTION.enter();
    std::thread::sleep(Duration::from_micros(200));
}

#[write_lock("mixed", key = key, registry = MIXED)]
async fn mixed_async(key: u64) {
    let _inside = MIXED_SECTION.enter();
    tokio::time::sleep(Duration::from_micros(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_async_annotated_functions_exclude_each_other() {
    let thread = std::thread::spawn(|| {
        for _ in 0..100 {
            mixed_sync(1);
        }
    });
    for _ in 0..100 {
        mixed_async(1).await;
    }
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    assert_eq!(MIXED_SECTION.entries(), 200);
    assert_eq!(MIXED_SECTION.overlaps(), 0);
}

// Other attributes above and below.

#[tracing::instrument]
#[write_lock("traced-below", registry = FREE)]
async fn traced_above_lock(x: u32) -> u32 {
    assert!(FREE.lock("traced-below").is_write_locked());
    x
}

#[write_lock("traced-above", registry = FREE)]
#[tracing::instrument(skip_all)]
async fn traced_below_lock(x: u32) -> u32 {
    assert!(FREE.lock("traced-above").is_write_locked());
    x
}

#[tracing::instrument]
#[read_lock("traced-sync", registry = FREE)]
fn traced_sync(x: u32) -> u32 {
    assert_eq!(FREE.lock("traced-sync").readers(), 1);
    x
}

#[tokio::test]
async fn works_with_tracing_instrument_above_or_below() {
    assert_eq!(traced_above_lock(1).await, 1);
    assert_eq!(traced_below_lock(2).await, 2);
    assert_eq!(traced_sync(3), 3);
    assert!(!FREE.lock("traced-below").is_locked());
    assert!(!FREE.lock("traced-above").is_locked());
}

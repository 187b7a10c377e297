//! Guarantee L12 of `docs/guarantees.md`: one resource name is one set of
//! locks. Locking it whole in one place and per key in another, or with
//! keys of two types, would make unrelated locks under one name that do not
//! exclude each other; keylock refuses at the first such use, naming both
//! call sites, instead of silently not locking.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

use keylock::{write_lock, Registry};

fn panic_message(body: impl FnOnce()) -> String {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = catch_unwind(AssertUnwindSafe(body));
    std::panic::set_hook(hook);
    let payload = result.expect_err("the mixed use was accepted");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

static CHANNELS: LazyLock<Registry> = LazyLock::new(Registry::new);

#[write_lock("channels", key = id, registry = CHANNELS)]
fn by_u64(id: u64) -> u64 {
    id
}

#[write_lock("channels", key = 42, registry = CHANNELS)]
fn by_literal() -> u64 {
    42
}

#[write_lock("channels", registry = CHANNELS)]
fn whole() -> u64 {
    0
}

#[test]
fn annotated_functions_with_two_key_types_on_one_name_fail_at_first_use() {
    assert_eq!(by_u64(7), 7);
    let message = panic_message(|| {
        by_literal();
    });
    assert!(message.contains("resource \"channels\""), "{message}");
    assert!(message.contains("u64"), "{message}");
    assert!(message.contains("i32"), "{message}");
    assert!(message.contains("42u64"), "{message}");
    // Both call sites are named.
    assert_eq!(
        message.matches("one_name_one_lock.rs").count(),
        2,
        "{message}"
    );
    // The keyed use still works.
    assert_eq!(by_u64(8), 8);
    let message = panic_message(|| {
        whole();
    });
    assert!(message.contains("locked per key"), "{message}");
    assert!(message.contains("as a whole"), "{message}");
}

#[test]
fn whole_then_keyed_on_one_name_fails_at_first_keyed_use() {
    let registry = Registry::new();
    let db = registry.lock("db");
    drop(db.write_blocking());
    let message = panic_message(|| {
        registry.keyed::<u64>("db");
    });
    assert!(message.contains("locked as a whole"), "{message}");
    assert!(message.contains("u64"), "{message}");
    assert_eq!(
        message.matches("one_name_one_lock.rs").count(),
        2,
        "{message}"
    );
    // The whole lock still works, and so do other names.
    drop(registry.lock("db").write_blocking());
    drop(registry.keyed::<u64>("db-rows").write_blocking(&1));
}

#[test]
fn keys_of_two_types_through_the_api_fail_at_first_use() {
    let registry = Registry::new();
    drop(registry.keyed::<u64>("sessions").write_blocking(&1));
    let message = panic_message(|| {
        registry.key_lock("sessions", &1i64);
    });
    assert!(message.contains("keys of type u64"), "{message}");
    assert!(message.contains("i64"), "{message}");
    // The same key type from anywhere is the same lock.
    let guard = registry.keyed::<u64>("sessions").try_write(&1).unwrap();
    assert!(registry.key_lock("sessions", &1u64).is_write_locked());
    drop(guard);
}

#[test]
fn inspecting_a_resource_does_not_fix_its_use() {
    let registry = Registry::new();
    let resource = registry.resource("fresh");
    let _ = registry.stats();
    assert_eq!(resource.live_keys(), 0);
    drop(resource.keyed::<u64>().write_blocking(&1));
}

#[test]
fn dedup_scopes_with_two_key_types_on_one_name_fail_at_first_use() {
    let registry = Registry::new();
    let first = registry.dedup::<u64>("events");
    first.claim(&1).unwrap().commit();
    let message = panic_message(|| {
        registry.dedup::<i64>("events");
    });
    assert!(message.contains("dedup scope \"events\""), "{message}");
    assert!(
        message.contains("u64") && message.contains("i64"),
        "{message}"
    );
    assert_eq!(
        message.matches("one_name_one_lock.rs").count(),
        2,
        "{message}"
    );
    // The scope of the first type is intact.
    assert!(registry.dedup::<u64>("events").is_remembered(&1));
}

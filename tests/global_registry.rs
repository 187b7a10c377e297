//! Configuring the global registry after it was used fails clearly instead
//! of being ignored (this test binary's own process, so the global
//! registry's state is its own).

use keylock::{write_lock, Registry};

#[write_lock("jobs")]
fn job() -> bool {
    Registry::global().lock("jobs").is_write_locked()
}

#[test]
fn configuring_the_global_registry_after_first_use_is_an_error() {
    assert!(job(), "the annotation uses the global registry");
    let error = Registry::builder()
        .track_holders(true)
        .build_global()
        .expect_err("configured after first use");
    let message = error.to_string();
    assert!(message.contains("already exists"), "{message}");
    assert!(message.contains("build_global"), "{message}");
    // The registry in use keeps its settings: no live view.
    let stats = Registry::global().stats();
    assert!(stats.resource("jobs").unwrap().live.is_empty());
}

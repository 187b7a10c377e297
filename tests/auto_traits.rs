//! Guards and acquisition futures can cross threads.

use keylock::{
    Acquire, AcquireSet, Keyed, Lock, LockSet, ReadGuard, ReadSetGuard, Registry, Resource,
    WriteGuard, WriteSetGuard,
};

fn is_send<T: Send>() {}
fn is_sync<T: Sync>() {}
fn is_static<T: 'static>() {}
fn is_send_val<T: Send>(_: &T) {}

#[test]
fn guards_and_futures_are_send() {
    is_send::<ReadGuard>();
    is_send::<WriteGuard>();
    is_sync::<ReadGuard>();
    is_sync::<WriteGuard>();
    is_static::<WriteGuard>();
    is_send::<Acquire<ReadGuard>>();
    is_send::<Acquire<WriteGuard>>();
    is_send::<Lock>();
    is_sync::<Lock>();
    is_send::<Keyed<String>>();
    is_sync::<Resource>();
    is_send::<Registry>();
    is_sync::<Registry>();

    let registry = Registry::new();
    let lock = registry.lock("db");
    let keyed = registry.keyed::<String>("users");
    is_send_val(&lock.write_timeout(std::time::Duration::from_secs(1)));
    is_send_val(&lock.read_timeout(std::time::Duration::from_secs(1)));
    is_send_val(&keyed.write("a"));
    is_send_val(&async move {
        let _guard = keyed.write("a").await;
        std::future::ready(()).await;
    });
}

#[test]
fn set_guards_and_futures_are_send() {
    is_send::<ReadSetGuard>();
    is_send::<WriteSetGuard>();
    is_sync::<ReadSetGuard>();
    is_sync::<WriteSetGuard>();
    is_static::<WriteSetGuard>();
    is_send::<AcquireSet<ReadSetGuard>>();
    is_send::<AcquireSet<WriteSetGuard>>();
    is_send::<LockSet>();
    is_sync::<LockSet>();

    let registry = Registry::new();
    let keyed = registry.keyed::<String>("users");
    let set = keyed.key_set(&["a", "b"]);
    is_send_val(&set.write_timeout(std::time::Duration::from_secs(1)));
    is_send_val(&set.read_timeout(std::time::Duration::from_secs(1)));
    is_send_val(&registry.write_many(&["x", "y"]));
    is_send_val(&async move {
        let _guard = keyed.write_many(&["a", "b"]).await;
        std::future::ready(()).await;
    });
}

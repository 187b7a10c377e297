async fn save(&self) -> u64 {
    let __keylock_guard_0 = {
        let __keylock_lock = {
            static __KEYLOCK_SITE: ::keylock::__private::NamedSite = ::keylock::__private::NamedSite::new();
            let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
            __KEYLOCK_SITE.lock(__keylock_registry, || "db")
        };
        ::keylock::__private::acquire::<
            ::keylock::WriteGuard,
            _,
        >(__keylock_lock, ::keylock::__private::Block)
            .wait()
            .await
    };
    1
}

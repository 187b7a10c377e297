fn both() -> bool {
    {
        #[allow(unused_imports)]
        use ::keylock::__private::{ProbeFuture as _, ProbeValue as _};
        ::keylock::__private::sync_return(
            (&&::keylock::__private::ReturnProbe::<bool>::new()).kind(),
        );
    }
    let __keylock_guard_0 = {
        let __keylock_lock = {
            static __KEYLOCK_SITE: ::keylock::__private::NamedSite = ::keylock::__private::NamedSite::new();
            let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
            __KEYLOCK_SITE.lock(__keylock_registry, || "a")
        };
        ::keylock::__private::acquire::<
            ::keylock::ReadGuard,
            _,
        >(__keylock_lock, ::keylock::__private::Block)
            .block()
    };
    let b = {
        let __keylock_lock = {
            static __KEYLOCK_SITE: ::keylock::__private::NamedSite = ::keylock::__private::NamedSite::new();
            let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
            __KEYLOCK_SITE.lock(__keylock_registry, || "b")
        };
        ::keylock::__private::acquire_handed_out::<
            ::keylock::WriteGuard,
            _,
        >(__keylock_lock, ::keylock::__private::Block)
            .block()
    };
    #[allow(unused_imports)]
    use write_lock as _;
    b.lock().is_locked()
}

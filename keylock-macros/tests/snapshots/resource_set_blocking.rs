fn report() -> usize {
    {
        #[allow(unused_imports)]
        use ::keylock::__private::{ProbeFuture as _, ProbeValue as _};
        ::keylock::__private::sync_return(
            (&&::keylock::__private::ReturnProbe::<usize>::new()).kind(),
        );
    }
    let __keylock_guard_0 = {
        let __keylock_lock = {
            static __KEYLOCK_SITE: ::keylock::__private::SetSite = ::keylock::__private::SetSite::new();
            let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
            __KEYLOCK_SITE.lock_set(__keylock_registry, &["ledger", "audit"])
        };
        ::keylock::__private::acquire::<
            ::keylock::ReadSetGuard,
            _,
        >(__keylock_lock, ::keylock::__private::Block)
            .block()
    };
    1
}

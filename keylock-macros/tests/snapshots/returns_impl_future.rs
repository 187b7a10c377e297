fn fetch(id: u64) -> impl Future<Output = u64> {
    let __keylock_lock_0 = {
        static __KEYLOCK_SITE: ::keylock::__private::SiteCache = ::keylock::__private::SiteCache::new();
        let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
        {
            #[allow(unused_imports)]
            use ::keylock::__private::{
                KeyProbeOther as _, KeyProbeRef as _, KeyProbeRefOther as _,
                KeyProbeValue as _,
            };
            __KEYLOCK_SITE
                .key_lock(
                    __keylock_registry,
                    || "db",
                    ::keylock::__private::key_arg(
                        (&&&&::keylock::__private::KeyProbe(&(id))).key(),
                    ),
                )
        }
    };
    let __keylock_future = ::keylock::__private::call_once(move || {
        async move { id }
    });
    async move {
        let __keylock_guard_0 = {
            let __keylock_lock = __keylock_lock_0;
            ::keylock::__private::acquire::<
                ::keylock::WriteGuard,
                _,
            >(__keylock_lock, ::keylock::__private::Block)
                .wait()
                .await
        };
        __keylock_future.await
    }
}

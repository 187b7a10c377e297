fn query(name: &str) -> Option<usize> {
    {
        #[allow(unused_imports)]
        use ::keylock::__private::{ProbeFuture as _, ProbeValue as _};
        ::keylock::__private::sync_return(
            (&&::keylock::__private::ReturnProbe::<Option<usize>>::new()).kind(),
        );
        ::keylock::__private::sync_return(
            (&&::keylock::__private::ReturnProbe::<usize>::new()).kind(),
        );
    }
    let __keylock_guard_0 = {
        let __keylock_lock = {
            static __KEYLOCK_SITE: ::keylock::__private::SiteCache = ::keylock::__private::SiteCache::new();
            fn __keylock_marker() {}
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
                        || ::keylock::__private::fn_path(
                            ::core::any::type_name_of_val(&__keylock_marker),
                        ),
                        ::keylock::__private::key_arg(
                            (&&&&::keylock::__private::KeyProbe(&(name))).key(),
                        ),
                    )
            }
        };
        match ::keylock::__private::acquire::<
            ::keylock::ReadGuard,
            _,
        >(__keylock_lock, ::keylock::__private::Skip)
            .block()
        {
            ::core::result::Result::Ok(guard) => guard,
            ::core::result::Result::Err(__keylock_error) => {
                return ::keylock::__private::lock_failure(__keylock_error);
            }
        }
    };
    Some(name.len())
}

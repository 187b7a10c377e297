fn on_event(event: &Event) {
    let __keylock_claim_0 = {
        #[allow(unused_imports)]
        use ::keylock::__private::{
            KeyProbeOther as _, KeyProbeRef as _, KeyProbeRefOther as _,
            KeyProbeValue as _,
        };
        static __KEYLOCK_SITE: ::keylock::__private::SiteCache = ::keylock::__private::SiteCache::new();
        fn __keylock_marker() {}
        let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
        match ::keylock::__private::key_arg(
            (&&&&::keylock::__private::KeyProbe(&(event.id))).key(),
        ) {
            __keylock_key => {
                match __KEYLOCK_SITE
                    .dedup(
                        __keylock_registry,
                        || ::keylock::__private::fn_path(
                            ::core::any::type_name_of_val(&__keylock_marker),
                        ),
                        || {
                            ::keylock::DedupOptions::new()
                                .ttl(::core::time::Duration::from_millis(600000u64))
                        },
                        |__keylock_scope| ::keylock::__private::try_claim(
                            __keylock_scope,
                            __keylock_key,
                        ),
                    )
                {
                    ::core::result::Result::Ok(claim) => claim,
                    ::core::result::Result::Err(__keylock_error) => {
                        return ::keylock::__private::duplicate(move || {
                            __keylock_error.into_error()
                        });
                    }
                }
            }
        }
    };
    let __keylock_result: () = ::keylock::__private::call_once(move || -> () {
        run(event)
    });
    let __keylock_failed = {
        #[allow(unused_imports)]
        use ::keylock::__private::{OutcomeOther as _, OutcomeResult as _};
        (&&::keylock::__private::OutcomeProbe(&__keylock_result)).is_failure()
    };
    __keylock_claim_0.finish(__keylock_failed);
    __keylock_result
}

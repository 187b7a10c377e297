async fn transfer(from: u64, to: u64) -> Result<(), keylock::Error> {
    let __keylock_guard_0 = {
        let __keylock_lock = {
            static __KEYLOCK_SITE: ::keylock::__private::SiteCache = ::keylock::__private::SiteCache::new();
            let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
            {
                #[allow(unused_imports)]
                use ::keylock::__private::{
                    KeyProbeOther as _, KeyProbeRef as _, KeyProbeRefOther as _,
                    KeyProbeValue as _,
                };
                __KEYLOCK_SITE
                    .key_set(
                        __keylock_registry,
                        || "accounts",
                        &[
                            ::keylock::__private::key_arg(
                                (&&&&::keylock::__private::KeyProbe(&(from))).key(),
                            ),
                            ::keylock::__private::key_arg(
                                (&&&&::keylock::__private::KeyProbe(&(to))).key(),
                            ),
                        ],
                    )
            }
        };
        match ::keylock::__private::acquire::<
            ::keylock::WriteSetGuard,
            _,
        >(
                __keylock_lock,
                ::keylock::__private::Timeout(::core::time::Duration::from_millis(50u64)),
            )
            .wait()
            .await
        {
            ::core::result::Result::Ok(guard) => guard,
            ::core::result::Result::Err(__keylock_error) => {
                return ::keylock::__private::lock_failure(__keylock_error);
            }
        }
    };
    let __keylock_result: Result<(), keylock::Error> = match {
        let __keylock_body = async move { Ok(()) };
        if ::keylock::__private::GuardOutcome::has_lease(&__keylock_guard_0) {
            ::keylock::__private::unless_lease_lost(
                    &[
                        &__keylock_guard_0
                            as &(dyn ::keylock::__private::GuardOutcome + ::core::marker::Sync),
                    ],
                    __keylock_body,
                )
                .await
        } else {
            ::core::result::Result::Ok(__keylock_body.await)
        }
    } {
        ::core::result::Result::Ok(__keylock_output) => __keylock_output,
        ::core::result::Result::Err(__keylock_lost) => {
            #[allow(unused_imports)]
            use ::keylock::__private::{LostOther as _, LostResult as _};
            return (&&::keylock::__private::LostProbe::<
                Result<(), keylock::Error>,
            >::new())
                .lease_lost(__keylock_lost);
        }
    };
    let __keylock_failed = {
        #[allow(unused_imports)]
        use ::keylock::__private::{OutcomeOther as _, OutcomeResult as _};
        (&&::keylock::__private::OutcomeProbe(&__keylock_result)).is_failure()
    };
    ::keylock::__private::GuardOutcome::body_finished(
        &__keylock_guard_0,
        __keylock_failed,
    );
    __keylock_result
}

async fn job(id: u64) -> u32 {
    let __keylock_claim_0 = {
        #[allow(unused_imports)]
        use ::keylock::__private::{
            KeyProbeOther as _, KeyProbeRef as _, KeyProbeRefOther as _,
            KeyProbeValue as _,
        };
        static __KEYLOCK_SITE: ::keylock::__private::SiteCache = ::keylock::__private::SiteCache::new();
        let __keylock_registry: &::keylock::Registry = ::keylock::Registry::global();
        match ::keylock::__private::key_arg(
            (&&&&::keylock::__private::KeyProbe(&(id))).key(),
        ) {
            __keylock_key => {
                match __KEYLOCK_SITE
                    .dedup(
                        __keylock_registry,
                        || "jobs",
                        || ::keylock::DedupOptions::new(),
                        |__keylock_scope| __keylock_scope.claim_or_wait(__keylock_key),
                    )
                    .await
                {
                    ::core::result::Result::Ok(claim) => claim,
                    ::core::result::Result::Err(_) => return 0,
                }
            }
        }
    };
    let __keylock_result: u32 = async move { 1 }.await;
    let __keylock_failed = {
        #[allow(unused_imports)]
        use ::keylock::__private::{OutcomeOther as _, OutcomeResult as _};
        (&&::keylock::__private::OutcomeProbe(&__keylock_result)).is_failure()
    };
    __keylock_claim_0.finish(__keylock_failed);
    __keylock_result
}

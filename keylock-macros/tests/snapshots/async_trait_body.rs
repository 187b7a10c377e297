fn on_message<'a>(&'a self) -> Pin<Box<dyn Future<Output = u64> + Send + 'a>> {
    Box::pin(async move {
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
        let __keylock_result = async move { 1 }.await;
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
    })
}

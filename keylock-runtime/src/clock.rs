//! Time as the registry sees it: the system clock, or a manual one for
//! tests of expiry that must not sleep.

use crate::sync::{AtomicU64, Ordering};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A clock that moves only when told to; give it to
/// [`RegistryBuilder::clock`](crate::RegistryBuilder::clock) to test
/// time-to-live expiry without waiting.
///
/// ```
/// use std::time::Duration;
/// use keylock_runtime::{DedupOptions, ManualClock, Registry};
///
/// let clock = ManualClock::new();
/// let registry = Registry::builder().clock(clock.clone()).build();
/// let seen = registry.dedup_with::<u64>("events", DedupOptions::new().ttl(Duration::from_secs(60)));
/// seen.claim(&1).unwrap().commit();
/// assert!(seen.claim(&1).is_err());
/// clock.advance(Duration::from_secs(61));
/// assert!(seen.claim(&1).is_ok());
/// ```
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    start: Instant,
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock standing at the moment it was created.
    pub fn new() -> Self {
        ManualClock {
            inner: Arc::new(ManualInner {
                start: Instant::now(),
                offset_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.inner.offset_nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    fn now(&self) -> Instant {
        let offset = Duration::from_nanos(self.inner.offset_nanos.load(Ordering::SeqCst));
        self.inner
            .start
            .checked_add(offset)
            .unwrap_or(self.inner.start)
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field(
                "advanced",
                &Duration::from_nanos(self.inner.offset_nanos.load(Ordering::SeqCst)),
            )
            .finish()
    }
}

/// The registry's clock.
#[derive(Clone, Debug, Default)]
pub(crate) enum Clock {
    #[default]
    System,
    Manual(ManualClock),
}

impl Clock {
    pub(crate) fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Manual(clock) => clock.now(),
        }
    }
}

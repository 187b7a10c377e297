//! Future-returning shapes seen in real code.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use futures::future::{BoxFuture, FutureExt};
use keylock::write_lock;

pub struct Svc {
    state: Arc<u64>,
    count: u64,
}

pub trait FutureLike {
    fn get(&self) -> u8;
}
impl FutureLike for u8 {
    fn get(&self) -> u8 { *self }
}

impl Svc {
    #[write_lock("boxed")]
    fn boxed(&self) -> BoxFuture<'static, u64> {
        let state = self.state.clone();
        async move { *state }.boxed()
    }

    #[write_lock("pinned")]
    fn pinned(&self) -> Pin<Box<dyn Future<Output = Result<u64, keylock::Error>> + Send + '_>> {
        Box::pin(async move { Ok(self.count) })
    }

    #[write_lock("deref")]
    fn deref_capture(&self) -> impl Future<Output = u64> + Send + 'static {
        let count = self.count;
        async move { count }
    }

    #[write_lock("like")]
    fn like(&self) -> impl FutureLike {
        7u8
    }
}

fn main() {
    let s = Svc { state: Arc::new(1), count: 2 };
    let _ = (s.boxed(), s.pinned(), s.deref_capture(), s.like().get());
}

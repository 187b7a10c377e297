//! The locks held by the annotated futures being polled on this thread.
//!
//! An annotated `async fn` polls its body inside a *frame* that lists the
//! locks it holds (see [`Framed`]). Frames exist only while a poll runs,
//! on the thread that runs it, and nest as polls nest: when a future polls
//! another (awaits it), the inner poll runs inside the outer frame. So a
//! wait that would queue for a lock listed in an enclosing frame waits for
//! a future that cannot finish before the wait does: a deadlock. A sibling
//! future (another branch of the same `join!`) is polled outside the
//! holder's frame and waits as usual, and a task that moves to another
//! thread takes nothing along but its futures.

use std::cell::Cell;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll};

/// One held lock: the entry's address (compared, never followed) and
/// where the lock was taken.
type Mark = (usize, &'static Location<'static>);

/// Frames' marks a thread keeps; deeper ones are counted, not kept (a
/// wait nested that deep is not checked).
const DEPTH: usize = 32;

/// The marks of every frame being polled on this thread, outermost first.
struct Stack {
    len: Cell<usize>,
    marks: [Cell<Mark>; DEPTH],
}

thread_local! {
    static HELD: Stack = const {
        Stack {
            len: Cell::new(0),
            marks: [const { Cell::new(EMPTY) }; DEPTH],
        }
    };
}

/// The locks one annotated future holds, listed while it is polled: up to
/// one in place, more (a lock set) in a vector.
#[derive(Debug)]
pub struct Marks {
    len: usize,
    inline: [Mark; INLINE],
    more: Vec<Mark>,
}

/// Marks kept without an allocation.
const INLINE: usize = 1;

/// An unused slot.
const EMPTY: Mark = (0, Location::caller());

impl Default for Marks {
    fn default() -> Self {
        Marks::new()
    }
}

impl Marks {
    /// No locks yet.
    #[inline]
    pub const fn new() -> Self {
        Marks {
            len: 0,
            inline: [EMPTY; INLINE],
            more: Vec::new(),
        }
    }

    /// Lists the lock at `entry`, taken at `at`.
    #[inline]
    pub(crate) fn push(&mut self, entry: usize, at: &'static Location<'static>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = (entry, at),
            None => self.more.push((entry, at)),
        }
        self.len += 1;
    }

    fn inline(&self) -> &[Mark] {
        &self.inline[..self.len.min(INLINE)]
    }
}

/// An annotated future's body, polled in a frame that lists the locks the
/// future holds; see the module docs. The body is pinned where the
/// annotated function keeps it, so this wrapper moves nothing.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Framed<'a, F> {
    marks: &'a Marks,
    future: Pin<&'a mut F>,
}

impl<'a, F: Future> Framed<'a, F> {
    /// Polls `future` listing `marks` as held.
    #[inline]
    pub fn new(marks: &'a Marks, future: Pin<&'a mut F>) -> Self {
        Framed { marks, future }
    }
}

impl<F: Future> Future for Framed<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if this.marks.len == 0 {
            return this.future.as_mut().poll(cx);
        }
        let _frame = Frame::enter(this.marks);
        this.future.as_mut().poll(cx)
    }
}

/// A frame on this thread's stack; leaves it when dropped (also when the
/// poll unwinds).
struct Frame {
    depth: usize,
}

impl Frame {
    #[inline]
    fn enter(marks: &Marks) -> Frame {
        let depth = HELD
            .try_with(|held| {
                let depth = held.len.get();
                let mut len = depth;
                for mark in marks.inline().iter().chain(&marks.more) {
                    if let Some(slot) = held.marks.get(len) {
                        slot.set(*mark);
                    }
                    len += 1;
                }
                held.len.set(len);
                depth
            })
            .unwrap_or(usize::MAX);
        Frame { depth }
    }
}

impl Drop for Frame {
    #[inline]
    fn drop(&mut self) {
        if self.depth != usize::MAX {
            let _ = HELD.try_with(|held| held.len.set(self.depth));
        }
    }
}

/// Where an enclosing frame took the lock at `entry`, if one holds it.
#[cold]
pub(crate) fn held_by_enclosing_poll(entry: usize) -> Option<&'static Location<'static>> {
    HELD.try_with(|held| {
        let len = held.len.get().min(DEPTH);
        held.marks[..len]
            .iter()
            .map(Cell::get)
            .find(|(address, _)| *address == entry)
            .map(|(_, at)| at)
    })
    .ok()
    .flatten()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn marks_are_listed_only_while_their_future_is_polled() {
        let at = Location::caller();
        let mut marks = Marks::new();
        marks.push(7, at);
        let body = std::pin::pin!(async { held_by_enclosing_poll(7) });
        let inside = futures::executor::block_on(Framed::new(&marks, body));
        assert_eq!(inside, Some(at));
        assert_eq!(held_by_enclosing_poll(7), None);
    }

    #[test]
    fn frames_nest_and_unwind() {
        let at = Location::caller();
        let mut outer = Marks::new();
        outer.push(1, at);
        let mut inner = Marks::new();
        inner.push(2, at);
        inner.push(3, at);
        let body = std::pin::pin!(async {
            let nested = std::pin::pin!(async {
                (
                    held_by_enclosing_poll(1).is_some(),
                    held_by_enclosing_poll(3).is_some(),
                )
            });
            let nested = Framed::new(&inner, nested).await;
            (nested, held_by_enclosing_poll(3).is_some())
        });
        let seen = futures::executor::block_on(Framed::new(&outer, body));
        assert_eq!(seen, ((true, true), false));
        let outcome = std::panic::catch_unwind(|| {
            let mut marks = Marks::new();
            marks.push(9, at);
            let body = std::pin::pin!(async { panic!("unwinds") });
            futures::executor::block_on(Framed::new(&marks, body))
        });
        assert!(outcome.is_err());
        assert_eq!(held_by_enclosing_poll(9), None);
    }
}

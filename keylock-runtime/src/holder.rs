//! Who holds: the thread of a blocking holder and the call site it took
//! its lock at, stamped into one word, so that a lock entry records its
//! holder with one plain atomic store.
//!
//! Only blocking acquisitions of sync annotated functions are recorded, and
//! by thread: such a function runs to its end on its thread, and its guard
//! never leaves it, so whatever else runs on that thread meanwhile runs
//! inside it, and a wait there for the function's lock is a wait for
//! itself. A task is no such holder: one task may poll a future that holds
//! a lock beside another that waits for it (`join!`), which is no deadlock.

use std::cell::Cell;
use std::panic::Location;

use crate::sync;

/// A holder's stamp: its thread's number in the high half, the number of
/// its call site in the low half. 0 means nobody: thread numbers start at 1.
pub(crate) type Stamp = u64;

/// What this thread knows: its number (0 until first asked), and the last
/// call site it numbered, by address, with that site's number.
#[derive(Clone, Copy)]
struct ThisThread {
    number: u32,
    last_site: usize,
    last_site_number: u32,
}

thread_local! {
    static THIS_THREAD: Cell<ThisThread> = const {
        Cell::new(ThisThread { number: 0, last_site: 0, last_site_number: 0 })
    };
}

/// The stamp of the current thread holding a lock taken at `site`. A call
/// site that acquires again and again is numbered once per thread.
#[inline]
pub(crate) fn stamp(site: &'static Location<'static>) -> Stamp {
    let address = site as *const Location<'static> as usize;
    THIS_THREAD
        .try_with(|this| {
            let mut known = this.get();
            if known.number == 0 || known.last_site != address {
                known = learn(known, site);
                this.set(known);
            }
            (u64::from(known.number) << 32) | u64::from(known.last_site_number)
        })
        .unwrap_or(0)
}

/// Numbers this thread and `site`, as far as not done yet.
#[cold]
fn learn(mut known: ThisThread, site: &'static Location<'static>) -> ThisThread {
    if known.number == 0 {
        known.number = next_thread_number();
    }
    known.last_site = site as *const Location<'static> as usize;
    known.last_site_number = number_site(site);
    known
}

/// The current thread's number (0 once 2^32 - 1 threads were numbered),
/// which the lock-order check names thread holders by.
pub(crate) fn thread_number() -> u32 {
    THIS_THREAD
        .try_with(|this| {
            let mut known = this.get();
            if known.number == 0 {
                known.number = next_thread_number();
                this.set(known);
            }
            known.number
        })
        .unwrap_or(0)
}

/// A new thread number. A process-wide counter (plain std: loom cannot
/// model statics); the numbers only have to be distinct. After 2^32 - 1
/// threads, holders are no longer recorded (stamp 0): a self-deadlock then
/// hangs unreported.
fn next_thread_number() -> u32 {
    static NEXT_THREAD: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT_THREAD
        .fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |next| next.checked_add(1),
        )
        .unwrap_or(0)
}

/// Whether `stamp` is the current thread's.
#[inline]
pub(crate) fn is_this_thread(stamp: Stamp) -> bool {
    let number = THIS_THREAD.try_with(|this| this.get().number).unwrap_or(0);
    number != 0 && (stamp >> 32) == u64::from(number)
}

/// Call sites by number (a process-wide static, so a std mutex).
static SITES: std::sync::Mutex<Vec<&'static Location<'static>>> = std::sync::Mutex::new(Vec::new());

fn number_site(site: &'static Location<'static>) -> u32 {
    let mut sites = sync::lock_static(&SITES);
    let index = match sites.iter().position(|known| std::ptr::eq(*known, site)) {
        Some(index) => index,
        None => {
            sites.push(site);
            sites.len() - 1
        }
    };
    u32::try_from(index + 1).unwrap_or(0)
}

/// Where the holder of `stamp` took its lock; `None` if unknown.
pub(crate) fn site_of(stamp: Stamp) -> Option<&'static Location<'static>> {
    let index = usize::try_from(stamp & u64::from(u32::MAX))
        .ok()?
        .checked_sub(1)?;
    sync::lock_static(&SITES).get(index).copied()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn stamps_tell_threads_and_sites_apart() {
        let (first, second) = (Location::caller(), Location::caller());
        let a = stamp(first);
        assert_ne!(a, 0);
        assert_eq!(stamp(first), a);
        let b = stamp(second);
        assert_ne!(a, b);
        assert_eq!(stamp(first), a, "a site keeps its number");
        assert!(is_this_thread(a) && is_this_thread(b));
        assert_eq!(site_of(a), Some(first));
        assert_eq!(site_of(b), Some(second));
        let other = std::thread::spawn(move || stamp(first)).join().unwrap();
        assert!(!is_this_thread(other));
        assert_eq!(site_of(other), Some(first));
        assert!(!is_this_thread(0));
        assert_eq!(site_of(0), None);
    }
}

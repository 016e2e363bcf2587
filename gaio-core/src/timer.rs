//! `Timer`: the handle of a pending [`sleep_until`](crate::Submit::sleep_until).

use std::sync::atomic::{AtomicU64, Ordering};

/// The next timer's identity: unique in the process, so a handle given to
/// the wrong watcher names none of its timers.
static NEXT_TIMER: AtomicU64 = AtomicU64::new(1);

/// Names one [`sleep_until`](crate::Submit::sleep_until) request, to
/// cancel it with [`cancel_timer`](crate::Submit::cancel_timer).
///
/// Identities are unique in the process and never reused: cancelling a
/// timer that has fired already, or one of another watcher, does nothing.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use gaio_core::{Submit, Timer};
///
/// # fn f(w: &mut impl Submit<Context = &'static str, Buf = Vec<u8>>) -> Result<(), gaio_core::Error> {
/// let idle: Timer = w.sleep(Duration::from_secs(30), "idle")?;
/// // Traffic arrived: the idle timeout is off. Its completion still
/// // comes, with `Error::Cancelled`, handing the context back.
/// w.cancel_timer(idle)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timer(pub(crate) u64);

impl Timer {
    /// A fresh identity.
    pub(crate) fn next() -> Timer {
        Timer(NEXT_TIMER.fetch_add(1, Ordering::Relaxed))
    }
}

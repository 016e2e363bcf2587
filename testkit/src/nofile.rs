//! This process's limit on open descriptors (`RLIMIT_NOFILE`): reading it,
//! raising the soft limit for tests and load generators that open
//! thousands of sockets, and setting it to an exact value.
//!
//! The limit is process-wide: a test that changes it must not run beside
//! tests that open descriptors (gaio's integration tests take their
//! exclusive test lock first). Only the soft limit is changed here; the hard
//! limit, which only a privileged process may raise, is left as it is.
//!
//! Limits are `u64`, with `u64::MAX` standing for "unlimited"
//! (`RLIM_INFINITY`).

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The soft limit: the number of descriptors this process may have open
/// now (`u64::MAX` for unlimited).
pub fn soft_limit() -> u64 {
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// The hard limit: the most the soft limit may be raised to without
/// privileges (`u64::MAX` for unlimited).
pub fn hard_limit() -> u64 {
    getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX)
}

/// Raises the soft limit to `want`, or to the hard limit if that is lower,
/// and returns the soft limit now in force. Never lowers it: if it is
/// already at least that high, nothing changes and the current soft limit
/// is returned.
///
/// # Errors
/// What `setrlimit` reports (for example `EINVAL` on macOS, whose kernel
/// refuses a soft limit above `kern.maxfilesperproc` even when the hard
/// limit is unlimited). The limit is then unchanged.
pub fn raise_soft_limit(want: u64) -> io::Result<u64> {
    let cur = getrlimit(Resource::Nofile);
    let soft = want.min(cur.maximum.unwrap_or(u64::MAX));
    let now = cur.current.unwrap_or(u64::MAX);
    if now >= soft {
        return Ok(now);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: cur.maximum,
        },
    )?;
    Ok(soft)
}

/// Raises the soft limit to the hard limit, as far as the kernel allows,
/// and returns the soft limit now in force. Best effort: a refused change
/// leaves the limit as it was (what a benchmark's server and load
/// generator want: as many descriptors as they can get, and a report of
/// how many that is).
pub fn raise_soft_limit_to_hard() -> u64 {
    raise_soft_limit(u64::MAX).unwrap_or_else(|_| soft_limit())
}

/// Sets the soft limit to exactly `want` (at most the hard limit), lowering
/// it if it was higher, and returns the soft limit now in force: `want`
/// (or the hard limit), or the old soft limit if the kernel refused the
/// change.
///
/// For a tool that bounds its own descriptors on purpose (the abuse
/// tool's connection flood stops where it hits the limit). To make room
/// for more descriptors without ever lowering the limit, use
/// [`raise_soft_limit`].
pub fn set_soft_limit(want: u64) -> u64 {
    let cur = getrlimit(Resource::Nofile);
    let soft = want.min(cur.maximum.unwrap_or(u64::MAX));
    let set = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: cur.maximum,
        },
    );
    match set {
        Ok(()) => soft,
        Err(_) => cur.current.unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The limit is process-wide and the tests of this crate run on
    /// parallel threads: the tests that change it take turns.
    static LIMIT: Mutex<()> = Mutex::new(());

    /// Puts the soft limit back when dropped, a failing test included.
    struct Restore(u64);

    impl Drop for Restore {
        fn drop(&mut self) {
            set_soft_limit(self.0);
        }
    }

    #[test]
    fn the_soft_limit_is_within_the_hard_one() {
        assert!(soft_limit() <= hard_limit());
    }

    #[test]
    fn raising_never_lowers() {
        let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let before = soft_limit();
        assert_eq!(raise_soft_limit(1).unwrap(), before);
        assert_eq!(raise_soft_limit(before).unwrap(), before);
        assert_eq!(soft_limit(), before);
    }

    #[test]
    fn lowering_then_raising_back() {
        let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let before = soft_limit();
        let _restore = Restore(before);
        // Low, but far above what this test binary has open.
        let low = before.min(512) - 1;
        assert_eq!(set_soft_limit(low), low);
        assert_eq!(soft_limit(), low);
        assert_eq!(raise_soft_limit(low + 1).unwrap(), low + 1);
        assert_eq!(soft_limit(), low + 1);
        assert_eq!(raise_soft_limit(before).unwrap(), before);
    }

    #[test]
    fn raising_to_hard_reports_what_is_in_force() {
        let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let _restore = Restore(soft_limit());
        let got = raise_soft_limit_to_hard();
        assert_eq!(got, soft_limit());
        // Linux allows any soft limit up to the hard one; macOS may refuse
        // an unlimited hard limit (then nothing changed, see above).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(got, hard_limit());
    }

    #[test]
    fn setting_is_capped_at_the_hard_limit() {
        let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
        let _restore = Restore(soft_limit());
        let hard = hard_limit();
        if hard == u64::MAX {
            // Nothing to cap at (and macOS refuses an unlimited soft limit).
            return;
        }
        assert_eq!(set_soft_limit(u64::MAX), hard);
        assert_eq!(soft_limit(), hard);
    }
}

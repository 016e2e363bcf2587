//! One io_uring ring as the engine turns it: set up with the best flags
//! the probe found, entered at most once per turn (submitting and waiting
//! in the same call, the nearest deadline as the wait's timeout), and woken
//! from other threads through an eventfd the ring keeps a read on.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

/// The user data of the eventfd read that wakes the ring. The engine's
/// own user data never take this value.
pub(crate) const WAKE: u64 = u64::MAX;

/// The user data of the cancel sent for the wake read on drop.
const CANCEL_WAKE: u64 = u64::MAX - 1;

/// How long dropping a ring waits for its wake read to be cancelled
/// before it leaks the read's 8-byte target instead of freeing it under
/// the kernel.
const DROP_WAIT: Duration = Duration::from_secs(1);
/// How long one synchronous cancel waits before it asks again.
const CANCEL_RETRY: Duration = Duration::from_millis(10);
/// How long a synchronous cancel may take in all: a request that a
/// cancel cannot end within this is a kernel that does not keep its word.
const CANCEL_LIMIT: Duration = Duration::from_secs(5);

#[cfg(test)]
thread_local! {
    /// How many of this thread's next [`Ring::push`]es fail with `ENOMEM`,
    /// as a submission the kernel refuses would: for tests of what the
    /// callers leave behind.
    pub(crate) static FAIL_PUSHES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Wake-read targets leaked by rings dropped in tests.
#[cfg(test)]
static LEAKED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The calling thread's id, cached: `std::thread::current()` clones the
/// thread's handle (two atomic operations), and the ring asks on every
/// request. A thread whose locals are already torn down asks the slow way.
fn this_thread() -> std::thread::ThreadId {
    thread_local! {
        static ID: std::thread::ThreadId = std::thread::current().id();
    }
    ID.try_with(|id| *id)
        .unwrap_or_else(|_| std::thread::current().id())
}

/// A ring, its wake-up eventfd, and the eventfd read's target.
pub(crate) struct Ring {
    /// Dropped by hand, before the thread absorbs the teardown's notice
    /// (see `Drop`).
    uring: std::mem::ManuallyDrop<IoUring>,
    wake: Arc<OwnedFd>,
    /// Where the eventfd read puts the counter: the kernel writes it while
    /// the read is in flight, so it lives on the heap, at a fixed address.
    wake_target: Box<u64>,
    /// The eventfd read is in flight.
    wake_armed: bool,
    /// Single-issuer rings: made disabled, enabled by the first thread
    /// that enters (or cancels), which alone may enter from then on.
    binding: Binding,
    /// The last thread that entered the ring: the kernel enrolled it.
    entered_by: Option<std::thread::ThreadId>,
}

/// Which threads may use a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binding {
    /// Any thread, one at a time.
    Any,
    /// The first thread that makes a system call on it; none has yet.
    Unbound,
    /// That thread only.
    Bound(std::thread::ThreadId),
    /// None any more: requests were ended from a thread that could not
    /// enter the ring (see [`Ring::abandon`]).
    Abandoned,
}

/// Wakes a ring's waiting thread from any thread.
#[derive(Debug, Clone)]
pub(crate) struct Waker(Arc<OwnedFd>);

impl Waker {
    /// Adds one to the eventfd: the ring's read on it completes, and a wait
    /// in progress (or the next one) returns.
    pub(crate) fn wake(&self) -> io::Result<()> {
        match rustix::io::write(&*self.0, &1u64.to_ne_bytes()) {
            // The counter is at its maximum: a wake-up is pending anyway.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Ring {
    /// A ring with room for `entries` submissions, set up as the probe
    /// found best (`Unsupported` if no ring can be used here). With
    /// `one_thread`, only the thread that first enters it ever submits to
    /// it (`SINGLE_ISSUER` and `DEFER_TASKRUN`, where the kernel has both);
    /// without, or on a kernel without `DEFER_TASKRUN`, any thread may,
    /// one at a time (`COOP_TASKRUN`).
    ///
    /// Both or neither: a ring bound to a thread cannot be cancelled from
    /// another, so a watcher dropped elsewhere leaves its requests to the
    /// kernel and lets their memory go (`Inner::settle` in `poller.rs`). That
    /// is safe only with `DEFER_TASKRUN`, where a request's finished work
    /// runs when the bound thread enters this ring, which nothing can do
    /// once the watcher has left it; a single-issuer ring without it (Linux
    /// 6.0) runs that work on the bound thread at its next system call of
    /// any kind, which could write into memory already let go.
    ///
    /// A single-issuer ring is made disabled and bound to the first thread
    /// that enters it (see [`bind`](Self::bind)), so it may be made on one
    /// thread and used on another.
    pub(crate) fn new(entries: u32, one_thread: bool) -> io::Result<Ring> {
        let support = crate::probe().map_err(|why| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring cannot be used: {why}"),
            )
        })?;
        let mut builder = IoUring::builder();
        let single = one_thread && support.single_issuer && support.defer_taskrun;
        if single {
            // With the task-run flag the ring says when deferred work (a
            // request that ended, to be posted) waits for this thread's
            // entry: a turn that must not wait still enters then, or its
            // completions would never be posted (a watcher polled with a
            // zero timeout saw none). Linux 6.1 takes it with
            // DEFER_TASKRUN.
            builder
                .setup_single_issuer()
                .setup_r_disabled()
                .setup_defer_taskrun()
                .setup_taskrun_flag();
        } else if support.coop_taskrun || support.defer_taskrun {
            // DEFER_TASKRUN's kernels (6.1) have COOP_TASKRUN (5.19).
            // With the flag, the ring says when finished work waits for an
            // entry into the kernel: a turn that needs no wait makes no
            // system call otherwise.
            builder.setup_coop_taskrun().setup_taskrun_flag();
        }
        // Made on a thread of its own: the kernel enrolls the thread that
        // makes a ring, and tears that enrollment down with a signal-like
        // notice when the ring goes, which makes a timed blocking call on
        // that thread fail with EINTR. A thread that exits at once is
        // unenrolled on exit instead.
        let uring = off_thread(move || builder.build(entries))?;
        // Blocking: the ring's read on it waits inside the kernel.
        let wake = eventfd(0, EventfdFlags::CLOEXEC)?;
        Ok(Ring {
            uring: std::mem::ManuallyDrop::new(uring),
            wake: Arc::new(wake),
            wake_target: Box::new(0),
            wake_armed: false,
            binding: if single { Binding::Unbound } else { Binding::Any },
            entered_by: None,
        })
    }

    /// Makes sure the calling thread may use the ring: a single-issuer
    /// ring not yet bound is enabled for this thread; one bound to another
    /// thread refuses, saying so. Returns the calling thread.
    pub(crate) fn bind(&mut self) -> io::Result<std::thread::ThreadId> {
        let here = this_thread();
        match self.binding {
            Binding::Any => Ok(here),
            Binding::Bound(thread) if thread == here => Ok(here),
            Binding::Bound(_) => Err(io::Error::other(
                "this watcher's io_uring ring belongs to the thread that first ran its I/O; \
                 an inline watcher on io_uring stays on that thread (use Mode::Background or \
                 Backend::Epoll to move one between threads)",
            )),
            Binding::Unbound => {
                self.uring.submitter().register_enable_rings()?;
                self.binding = Binding::Bound(here);
                Ok(here)
            }
            Binding::Abandoned => Err(io::Error::other(
                "this watcher's io_uring ring was given up: a request in it had to be ended \
                 from a thread other than the one that ran its I/O (the watcher was used from \
                 another thread); close the watcher",
            )),
        }
    }

    /// Gives the ring up, for every thread: requests in it were ended
    /// from a thread that may not enter it, their records dropped without
    /// a cancel and their memory handed back. A bound ring runs what the
    /// kernel finished only when its thread enters it (`DEFER_TASKRUN`),
    /// and the kernel ends such work without running it when the ring
    /// closes, so the kernel never writes into that memory as long as no
    /// thread enters again: none may.
    pub(crate) fn abandon(&mut self) {
        self.binding = Binding::Abandoned;
    }

    /// True if the calling thread may use the ring (a single-issuer ring
    /// not yet bound binds to the first thread that uses it; an abandoned
    /// one is for no thread).
    pub(crate) fn usable_here(&self) -> bool {
        match self.binding {
            Binding::Any | Binding::Unbound => true,
            Binding::Bound(thread) => thread == this_thread(),
            Binding::Abandoned => false,
        }
    }

    /// A handle that wakes this ring from another thread.
    pub(crate) fn waker(&self) -> Waker {
        Waker(Arc::clone(&self.wake))
    }

    /// Queues `sqe`, submitting what is queued first if the submission
    /// queue is full.
    ///
    /// # Safety
    ///
    /// Whatever `sqe` points to (buffers, addresses, the descriptor) must
    /// stay valid until its completion has been taken from
    /// [`next_completion`](Self::next_completion), and its user data must
    /// not be [`WAKE`].
    pub(crate) unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        #[cfg(test)]
        if FAIL_PUSHES.with(|left| left.replace(left.get().saturating_sub(1)) > 0) {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        loop {
            // SAFETY: the caller keeps what the entry points to valid
            // until its completion (this function's contract).
            if unsafe { self.uring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            // Full: hand the queued entries to the kernel, which copies
            // them out, and try again.
            self.submit_only()?;
        }
    }

    /// One turn's entry into the kernel: submits what is queued and waits
    /// for a completion up to `timeout` (`None`: until one comes;
    /// `Some(ZERO)`: not at all). Skipped entirely when completions are
    /// already waiting and nothing is queued.
    pub(crate) fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.entered_by = Some(self.bind()?);
        self.arm_wake()?;
        let queued = !self.uring.submission().is_empty();
        if !self.uring.completion().is_empty() {
            return if queued { self.submit_only() } else { Ok(()) };
        }
        let entered = match timeout {
            // Nothing to hand over, nothing finished waiting to be posted:
            // looking costs no system call.
            Some(t) if t.is_zero() && !queued && !self.uring.submission().taskrun() => return Ok(()),
            Some(t) if t.is_zero() => self.uring.submitter().submit_and_wait(0),
            Some(t) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.uring.submitter().submit_with_args(1, &args)
            }
            None => self.uring.submitter().submit_and_wait(1),
        };
        match entered {
            Ok(_) => Ok(()),
            // The timeout passed, or a signal came: a turn with nothing.
            Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::TIME | Errno::INTR)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs the work the kernel deferred to this thread (a cancelled
    /// request's end, which lets go of its file), without waiting.
    pub(crate) fn run_deferred(&mut self) -> io::Result<()> {
        self.entered_by = Some(self.bind()?);
        let now = Timespec::new();
        match self
            .uring
            .submitter()
            .submit_with_args(1, &SubmitArgs::new().timespec(&now))
        {
            Ok(_) => Ok(()),
            Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::TIME | Errno::INTR)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Hands what is queued to the kernel without waiting.
    pub(crate) fn submit(&mut self) -> io::Result<()> {
        if self.uring.submission().is_empty() {
            return Ok(());
        }
        self.submit_only()
    }

    /// Cancels the request submitted with `user_data` and returns once
    /// the kernel is done with it (it ended, or will end with
    /// `ECANCELED` without touching its memory again); its completion
    /// comes through [`next_completion`](Self::next_completion) as any
    /// other. Submits what is queued first: a request still in the
    /// submission queue cannot be cancelled.
    pub(crate) fn cancel_sync(&mut self, user_data: u64) -> io::Result<()> {
        self.bind()?;
        self.submit()?;
        let limit = Instant::now() + CANCEL_LIMIT;
        loop {
            if Instant::now() > limit {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("a request was not cancelled within {CANCEL_LIMIT:?}"),
                ));
            }
            let cancel = io_uring::types::CancelBuilder::user_data(user_data);
            // Never without a timeout: the kernel finds a request whose
            // retry is under way (its readiness fired; with deferred task
            // running the retry waits for this thread) busy, runs the
            // retry, and then sleeps until some completion is posted. A
            // retry that is only re-armed (a send to a full socket) posts
            // none, and a cancel without a timeout then sleeps for ever
            // (seen in the model test). Asked again, it finds the request
            // re-armed and cancels it.
            let timeout = Timespec::new().nsec(CANCEL_RETRY.as_nanos() as u32);
            match self.uring.submitter().register_sync_cancel(Some(timeout), cancel) {
                // Cancelled, or ended before (its completion is posted).
                Ok(()) => return Ok(()),
                Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => return Ok(()),
                Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::INTR | Errno::TIME)) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The ring itself, to register buffers with.
    pub(crate) fn uring(&self) -> &IoUring {
        &self.uring
    }

    /// The next completion, the wake read's left out (it only re-arms).
    pub(crate) fn next_completion(&mut self) -> Option<cqueue::Entry> {
        loop {
            let cqe = self.uring.completion().next()?;
            if cqe.user_data() == WAKE {
                self.wake_armed = false;
                continue;
            }
            if cqe.user_data() == CANCEL_WAKE {
                continue;
            }
            return Some(cqe);
        }
    }

    fn submit_only(&mut self) -> io::Result<()> {
        self.entered_by = Some(self.bind()?);
        match self.uring.submitter().submit() {
            Ok(_) => Ok(()),
            Err(e) if Errno::from_io_error(&e) == Some(Errno::INTR) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Keeps a read on the eventfd in flight.
    fn arm_wake(&mut self) -> io::Result<()> {
        if self.wake_armed {
            return Ok(());
        }
        let target: *mut u64 = &mut *self.wake_target;
        let sqe = opcode::Read::new(types::Fd(self.wake.as_raw_fd()), target.cast(), 8)
            .build()
            .user_data(WAKE);
        // SAFETY: the target is a heap allocation owned by the ring, and
        // the eventfd an `Arc` the ring holds: both outlive the read, which
        // `Drop` cancels and waits for (or leaks the target).
        unsafe { self.push(&sqe) }?;
        self.wake_armed = true;
        Ok(())
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.end_wake_read();
        let enrolled = self.entered_by == Some(this_thread());
        // SAFETY: dropped once, here, and never used after.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.uring) };
        if enrolled {
            absorb_teardown_notice();
        }
    }
}

impl Ring {
    /// Cancels the wake read and waits for it (or leaks its target).
    fn end_wake_read(&mut self) {
        if !self.wake_armed {
            return;
        }
        if !self.usable_here() {
            // Bound to another thread: the cancel cannot be sent from
            // here. Leak the 8 bytes; closing the ring ends the read.
            #[cfg(test)]
            LEAKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::mem::forget(std::mem::replace(&mut self.wake_target, Box::new(0)));
            return;
        }
        // Cancel the wake read and wait for its completion before the
        // target is freed: the kernel may otherwise write to it after.
        let cancel = opcode::AsyncCancel::new(WAKE).build().user_data(CANCEL_WAKE);
        // SAFETY: a cancel points to no memory.
        let pushed = unsafe { self.uring.submission().push(&cancel) }.is_ok();
        let end = Instant::now() + DROP_WAIT;
        while pushed && self.wake_armed && Instant::now() < end {
            let ts = Timespec::new().nsec(10_000_000);
            let _ = self
                .uring
                .submitter()
                .submit_with_args(1, &SubmitArgs::new().timespec(&ts));
            while self.next_completion().is_some() {}
        }
        if self.wake_armed {
            // Not confirmed: leak the 8 bytes rather than free them under
            // the kernel.
            #[cfg(test)]
            LEAKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::mem::forget(std::mem::replace(&mut self.wake_target, Box::new(0)));
        }
    }
}

/// Runs `make` on a thread of its own (on this one if none can be made).
fn off_thread<T: Send>(make: impl FnOnce() -> T + Send) -> T {
    let mut make = Some(make);
    let made = std::thread::scope(|scope| {
        let job = make.take()?;
        std::thread::Builder::new()
            .name("gaio-uring-setup".into())
            .spawn_scoped(scope, job)
            .ok()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    match (made, make) {
        (Some(made), _) => made,
        (None, Some(make)) => make(),
        (None, None) => unreachable!("the job runs on the new thread or here"),
    }
}

/// Most a thread waits, when it dropped a ring it entered, for the
/// kernel's notice that its enrollment ends.
const NOTICE_WAIT: Duration = Duration::from_millis(200);

/// Takes the notice the kernel sends a thread enrolled in a ring being
/// torn down (task work with `TWA_SIGNAL`, after an RCU grace period): it
/// interrupts the thread's next interruptible wait, so a timed blocking
/// call the caller makes next (a socket read with `SO_RCVTIMEO`, say)
/// would fail with EINTR. A wait on an empty epoll instance takes it
/// instead: `epoll_wait` returns EINTR when the notice comes (the kernel
/// runs the notice's work on the way out), so the drop returns then.
/// (An empty `poll` would not do: the kernel restarts it after the
/// notice's work, since no signal came, and it sleeps its whole timeout.)
/// Without an epoll instance (no descriptor left), the wait is a sleep of
/// [`NOTICE_WAIT`], which the notice cannot shorten.
fn absorb_teardown_notice() {
    use rustix::event::{epoll, Timespec};
    let Ok(empty) = epoll::create(epoll::CreateFlags::CLOEXEC) else {
        std::thread::sleep(NOTICE_WAIT);
        return;
    };
    let until = Instant::now() + NOTICE_WAIT;
    let mut events: Vec<epoll::Event> = Vec::with_capacity(1);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let timeout = Timespec {
            tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        events.clear();
        // Nothing is registered: the wait only sleeps, until the notice
        // interrupts it.
        let waited = epoll::wait(
            &empty,
            rustix::buffer::spare_capacity(&mut events),
            Some(&timeout),
        );
        if waited == Err(Errno::INTR) {
            return;
        }
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("wake_armed", &self.wake_armed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    fn ring(entries: u32) -> Option<Ring> {
        match Ring::new(entries, true) {
            Ok(ring) => Some(ring),
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                eprintln!("NOT TESTED: io_uring cannot be used on this machine: {e}");
                None
            }
            Err(e) => panic!("ring: {e}"),
        }
    }

    fn nop(user_data: u64) -> squeue::Entry {
        opcode::Nop::new().build().user_data(user_data)
    }

    /// Enters until `n` completions came (bounded by `LIMIT`).
    fn collect(ring: &mut Ring, n: usize) -> Vec<u64> {
        let end = Instant::now() + LIMIT;
        let mut got = Vec::new();
        while got.len() < n {
            assert!(Instant::now() < end, "got {got:?} of {n}");
            ring.enter(Some(Duration::from_millis(100))).unwrap();
            while let Some(cqe) = ring.next_completion() {
                assert_eq!(cqe.result(), 0);
                got.push(cqe.user_data());
            }
        }
        got
    }

    /// Enters with a long limit and checks the ring did not wait (under a
    /// second): something was ready.
    fn enter_returns_at_once(ring: &mut Ring) {
        let started = Instant::now();
        ring.enter(Some(LIMIT)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_full_submission_queue_is_handed_over_not_refused() {
        let Some(mut ring) = ring(4) else { return };
        for i in 0..10 {
            // SAFETY: a no-op points to no memory.
            unsafe { ring.push(&nop(i)) }.unwrap();
        }
        let mut got = collect(&mut ring, 10);
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_wait_ends_at_its_timeout_never_before() {
        let Some(mut ring) = ring(8) else { return };
        let started = Instant::now();
        ring.enter(Some(Duration::from_millis(100))).unwrap();
        let took = started.elapsed();
        assert!(ring.next_completion().is_none());
        assert!(took >= Duration::from_millis(100), "returned after {took:?}");
        assert!(took < LIMIT, "returned after {took:?}");
        // The wake read is in flight: dropping the ring cancels it and sees
        // it end, at once (unconfirmed, it would leak the read's target).
        let dropping = Instant::now();
        drop(ring);
        assert!(dropping.elapsed() < DROP_WAIT / 2, "{:?}", dropping.elapsed());
        assert_eq!(LEAKED.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn a_wake_from_another_thread_ends_a_wait_and_none_is_lost() {
        let Some(mut ring) = ring(8) else { return };
        let waker = ring.waker();
        // A wake-up before the wait is kept for it.
        waker.wake().unwrap();
        enter_returns_at_once(&mut ring);
        // The turn takes its completions: the wake read's is not one.
        assert!(ring.next_completion().is_none(), "a wake-up is not a completion");
        // One during the wait ends it.
        let from = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.wake().unwrap();
        });
        let started = Instant::now();
        ring.enter(Some(LIMIT)).unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(40) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(ring.next_completion().is_none(), "a wake-up is not a completion");
        from.join().unwrap();
    }

    /// A thread that entered a ring gets the kernel's notice when the
    /// ring is dropped (after an RCU grace period); the drop takes it, as
    /// soon as it comes, so the thread's next timed blocking call is not
    /// interrupted. (Taken by a restarted `poll`, the drop waited out all
    /// of `NOTICE_WAIT`, 200 ms, every time.)
    #[test]
    fn dropping_an_entered_ring_takes_its_notice_as_it_comes() {
        let mut drops = Vec::new();
        for _ in 0..5 {
            let Some(mut ring) = ring(8) else { return };
            ring.enter(Some(Duration::ZERO)).unwrap();
            let dropping = Instant::now();
            drop(ring);
            drops.push(dropping.elapsed());
            // The notice, if the drop left it, would end this read early
            // with EINTR.
            let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
            ours.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let err = std::io::Read::read(&mut &ours, &mut [0; 8]).expect_err("nothing was sent");
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
        }
        drops.sort();
        assert!(
            drops[2] < NOTICE_WAIT / 2,
            "median drop {:?} (all: {drops:?}): the notice was not taken as it came",
            drops[2]
        );
    }

    #[test]
    fn completions_waiting_need_no_wait() {
        let Some(mut ring) = ring(8) else { return };
        for i in [1, 2] {
            // SAFETY: a no-op points to no memory.
            unsafe { ring.push(&nop(i)) }.unwrap();
        }
        ring.enter(Some(LIMIT)).unwrap();
        let first = ring.next_completion().expect("a no-op completes at once");
        assert_eq!(first.user_data(), 1);
        // The second is waiting already: entering must not wait.
        enter_returns_at_once(&mut ring);
        assert_eq!(ring.next_completion().map(|c| c.user_data()), Some(2));
    }
}

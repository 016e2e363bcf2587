//! Helpers shared by the integration tests: loopback socket pairs, bounded
//! waiting for completions, descriptor accounting and the fd limit, and the
//! process-wide test lock every test holds.
//!
//! # The test lock: [`exclusive`] and [`shared`]
//!
//! `cargo xtask test` runs every test in a process of its own (nextest), but
//! plain `cargo test` runs the tests of one file on parallel threads of one
//! process. Much of what these tests check belongs to the whole process: the
//! number of open descriptors ([`FdCheck`] counts `/proc/self/fd`), the
//! `gaio-watcher` threads, RLIMIT_NOFILE, RSS and CPU time, signal
//! dispositions and signals sent to the process's threads; and the tests
//! with thousands of connections use most of the descriptor budget. Run side
//! by side, such tests see each other's sockets and threads and run each
//! other out of descriptors. So every test holds, for its whole body, one of
//! two guards on one process-wide lock:
//!
//! * [`exclusive`]: the test runs alone in the process. For every test that
//!   measures or changes process-wide state (descriptor or thread counts,
//!   the fd limit, RSS, CPU time, signal handlers or signals sent to the
//!   process) or opens hundreds of descriptors or more. [`FdCheck::new`]
//!   takes it itself and keeps it until [`FdCheck::check`] returns (or the
//!   `FdCheck` is dropped): a leak-checked test is exclusive by construction.
//! * [`shared`]: for light tests that open a few descriptors and measure
//!   nothing process-wide. They run in parallel with each other, never
//!   with an exclusive one (whose counts they would disturb).
//!
//! Take the guard (or create the `FdCheck`) first thing in the test, before
//! opening a descriptor, starting a watcher or touching process state, and
//! keep it to the end: `let fds = util::FdCheck::new(); ... fds.check();`
//! or `let _lock = util::shared();` (not `let _ = ...`, which drops it at
//! once).
//!
//! Guards nest on one thread: inside an exclusive guard, further
//! `exclusive()`, `shared()` and `FdCheck`s are free (so a test may hold
//! `exclusive()` around helpers that create their own `FdCheck`); `shared()`
//! inside `shared()` is free too; `exclusive()` inside `shared()` panics (a
//! shared hold cannot be upgraded without deadlocking). The lock is released
//! when the thread's last guard is dropped, in whatever order they go.
//!
//! Taking the lock exclusively also waits (at most a second) for the
//! harness to settle: the threads of the tests that held it before may
//! still be exiting, and libtest starts a new test thread when one ends.
//! Once every other thread is a test waiting for the lock (or libtest's
//! idle main thread), no thread comes or goes, and no descriptor is opened
//! behind the test's back, until the exclusive holder lets go.
//!
//! A test that panics while holding the lock does not fail the tests after
//! it: the lock's poison is ignored (it guards no data; each test sets up
//! its own state).
//!
//! Guards are taken on the test's own thread (libtest names it after the
//! test) and cover the threads it spawns. Taking one on an unnamed spawned
//! thread panics: it would wait for the very test that spawned it.
//!
//! # Enforcement
//!
//! The helpers that open descriptors or create watchers ([`tcp_pair`],
//! [`tcp_pairs`], [`watcher`]) panic when the calling test holds no guard;
//! those that measure or change process-wide state ([`open_fds`],
//! [`raise_nofile`], [`sigpipe_default`]) and `tcp_pairs` of more than
//! [`SHARED_MAX_PAIRS`] pairs panic unless it is exclusive. Called from a
//! thread the test spawned (unnamed), where the test's guard is not visible,
//! they accept a guard of that kind held anywhere in the process: that
//! thread works for a test that holds one, or some test would be holding
//! none and be caught on its own thread.
//!
//! What bypasses the helpers (`TcpListener::bind`, `UnixStream::pair`,
//! `gaio::Builder::build`, `Watcher::new`, `sigaction`, `setrlimit`,
//! reading `/proc/self/...` directly) cannot be caught at run time: such a
//! test must take the right guard itself.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use gaio::{Completion, Mode, Watcher};

pub mod peer;

// ----- the test lock ---------------------------------------------------------------

/// The process-wide test lock (guards no data: only who may run).
static TEST_LOCK: RwLock<()> = RwLock::new(());
/// Whether some thread holds [`TEST_LOCK`] exclusively, and how many hold it
/// shared: what a helper on a spawned thread checks.
static EXCLUSIVE_HELD: AtomicBool = AtomicBool::new(false);
static SHARED_HOLDERS: AtomicUsize = AtomicUsize::new(0);

/// Most loopback pairs [`tcp_pairs`] opens for a test holding only
/// [`shared`]; more (hundreds of descriptors) needs [`exclusive`].
pub const SHARED_MAX_PAIRS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Shared,
    Exclusive,
}

enum Held {
    Exclusive(RwLockWriteGuard<'static, ()>),
    Shared(RwLockReadGuard<'static, ()>),
}

impl Held {
    fn kind(&self) -> Kind {
        match self {
            Held::Exclusive(_) => Kind::Exclusive,
            Held::Shared(_) => Kind::Shared,
        }
    }
}

/// What this thread holds of the lock, and how many of its guards are alive.
struct ThreadHold {
    held: Option<Held>,
    guards: usize,
}

thread_local! {
    static HOLD: RefCell<ThreadHold> = const { RefCell::new(ThreadHold { held: None, guards: 0 }) };
}

/// A hold on the process-wide test lock, from [`exclusive`] or [`shared`];
/// the lock is released when the thread's last guard is dropped. Not `Send`:
/// it belongs to the thread that took it.
#[must_use = "the test lock is released when the guard is dropped: bind it with `let _lock = ...`"]
pub struct TestLock {
    _thread_bound: PhantomData<*const ()>,
}

/// Holds the test lock exclusively: no other test of this process runs
/// until the guard is dropped. See the module docs for when.
pub fn exclusive() -> TestLock {
    take(Kind::Exclusive)
}

/// Holds the test lock shared: other shared tests may run alongside, no
/// exclusive one. See the module docs for when.
pub fn shared() -> TestLock {
    take(Kind::Shared)
}

fn take(kind: Kind) -> TestLock {
    let nested = HOLD.with(|h| {
        let mut h = h.borrow_mut();
        let Some(held) = &h.held else {
            return false;
        };
        if held.kind() == Kind::Shared && kind == Kind::Exclusive {
            drop(h);
            panic!(
                "util::exclusive() (or a util::FdCheck) inside util::shared(): a shared hold cannot \
                 be upgraded; a test that counts descriptors or uses process-wide state takes \
                 util::exclusive() (or creates its FdCheck) first thing instead of shared()"
            );
        }
        h.guards += 1;
        true
    });
    if !nested {
        if std::thread::current().name().is_none() {
            panic!(
                "util::{}() on a thread the test spawned: take the guard on the test's own thread \
                 (it covers the threads the test spawns); here it would wait for that very test",
                match kind {
                    Kind::Exclusive => "exclusive",
                    Kind::Shared => "shared",
                }
            );
        }
        // The lock guards no data: a test that panicked holding it left
        // nothing inconsistent behind, so its poison is ignored.
        let waiting = Waiting::register();
        let held = match kind {
            Kind::Exclusive => {
                let g = TEST_LOCK.write().unwrap_or_else(PoisonError::into_inner);
                EXCLUSIVE_HELD.store(true, Ordering::SeqCst);
                Held::Exclusive(g)
            }
            Kind::Shared => {
                let g = TEST_LOCK.read().unwrap_or_else(PoisonError::into_inner);
                SHARED_HOLDERS.fetch_add(1, Ordering::SeqCst);
                Held::Shared(g)
            }
        };
        drop(waiting);
        if kind == Kind::Exclusive {
            settle_harness();
        }
        HOLD.with(|h| {
            *h.borrow_mut() = ThreadHold {
                held: Some(held),
                guards: 1,
            }
        });
    }
    TestLock {
        _thread_bound: PhantomData,
    }
}

/// Thread ids of the test threads waiting in `take` for the lock: the
/// only threads besides its own and the harness's main thread that an
/// exclusive holder expects to see.
static WAITING: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// This thread's entry in [`WAITING`], while it exists.
struct Waiting(Option<i32>);

impl Waiting {
    fn register() -> Self {
        let tid = thread_id();
        if let Some(t) = tid {
            WAITING.lock().unwrap_or_else(PoisonError::into_inner).push(t);
        }
        Waiting(tid)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            WAITING
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|&w| w != t);
        }
    }
}

/// The calling thread's id where the OS lists threads (`/proc/self/task`).
fn thread_id() -> Option<i32> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        Some(rustix::thread::gettid().as_raw_nonzero().get())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// Called with the lock just taken exclusively: waits (at most a second)
/// until every other thread of the process is either a test thread
/// waiting for the lock or the harness's main thread, not running.
///
/// The tests that held the lock before have released it, but their
/// threads may still be exiting: they still count in `/proc/self/task`,
/// and glibc may open a descriptor while a thread exits (it reads
/// `/proc/sys/vm/overcommit_memory` once per process when trimming a
/// thread's heap). And the harness starts a test thread when a test ends.
/// Once this settles, neither happens until this test releases the lock:
/// no other test can end while it holds it. (A thread a test left behind
/// makes this wait the full second, and says so on stderr.)
fn settle_harness() {
    let Some(me) = thread_id() else {
        return;
    };
    let main = std::process::id() as i32;
    let end = Instant::now() + Duration::from_secs(1);
    loop {
        let waiting = WAITING.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        let busy: Vec<String> = tasks
            .flatten()
            .filter_map(|task| {
                let tid: i32 = task.file_name().to_str()?.parse().ok()?;
                if tid == me || waiting.contains(&tid) {
                    return None;
                }
                // Gone by now: not busy.
                let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
                let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
                if tid == main && state != 'R' {
                    return None;
                }
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                Some(format!("{tid} {} ({state})", comm.trim_end()))
            })
            .collect();
        if busy.is_empty() {
            return;
        }
        if Instant::now() > end {
            eprintln!("util::exclusive: other threads still busy after a second: {busy:?}");
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

impl Drop for TestLock {
    fn drop(&mut self) {
        // `try_with`: during thread teardown the hold (and its lock guard)
        // may already be gone.
        let _ = HOLD.try_with(|h| {
            let mut h = h.borrow_mut();
            h.guards -= 1;
            if h.guards > 0 {
                return;
            }
            let held = h.held.take();
            drop(h);
            match held {
                Some(Held::Exclusive(g)) => {
                    EXCLUSIVE_HELD.store(false, Ordering::SeqCst);
                    drop(g);
                }
                Some(Held::Shared(g)) => {
                    SHARED_HOLDERS.fetch_sub(1, Ordering::SeqCst);
                    drop(g);
                }
                None => {}
            }
        });
    }
}

/// Panics unless the calling test holds the lock as `need` requires (see
/// "Enforcement" in the module docs); `what` names the helper.
fn require(need: Kind, what: &str) {
    let here = HOLD.with(|h| h.borrow().held.as_ref().map(Held::kind));
    let ok = match here {
        Some(Kind::Exclusive) => true,
        Some(Kind::Shared) => need == Kind::Shared,
        // A thread the test spawned: the guard lives on the test's thread.
        None if std::thread::current().name().is_none() => {
            EXCLUSIVE_HELD.load(Ordering::SeqCst)
                || (need == Kind::Shared && SHARED_HOLDERS.load(Ordering::SeqCst) > 0)
        }
        None => false,
    };
    if ok {
        return;
    }
    match need {
        Kind::Shared => panic!(
            "{what}: the test holds no test lock; start it with `let _lock = util::shared();` \
             (a few descriptors, nothing measured process-wide) or `util::exclusive()` / \
             `util::FdCheck::new()` (see tests/util/mod.rs): under plain `cargo test` the tests \
             of a file run in parallel in one process"
        ),
        Kind::Exclusive => panic!(
            "{what} needs the test lock held exclusively: it measures or changes process-wide \
             state, or uses hundreds of descriptors; start the test with \
             `let _lock = util::exclusive();` or `let fds = util::FdCheck::new();` \
             (see tests/util/mod.rs)"
        ),
    }
}

// ----- watchers and sockets ---------------------------------------------------------

/// Both modes, for tests that must hold in each.
pub const MODES: [Mode; 2] = [Mode::Inline, Mode::Background];

/// A watcher in `mode` with default settings.
pub fn watcher<C: Send + 'static, B: gaio::IoBuf>(mode: Mode) -> Watcher<C, B> {
    require(Kind::Shared, "util::watcher");
    gaio::Builder::new().mode(mode).build().expect("create watcher")
}

/// A connected loopback TCP pair: (client, server side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    require(Kind::Shared, "util::tcp_pair");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}

/// `n` connected loopback TCP pairs through one listener. More than
/// [`SHARED_MAX_PAIRS`] need the test lock held exclusively.
pub fn tcp_pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
    if n > SHARED_MAX_PAIRS {
        require(Kind::Exclusive, &format!("util::tcp_pairs({n})"));
    } else {
        require(Kind::Shared, "util::tcp_pairs");
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    (0..n)
        .map(|_| {
            let client = TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            (client, server)
        })
        .collect()
}

/// Waits until `n` completions have arrived, panicking after `limit`.
pub fn wait_for<C, B: gaio::IoBuf>(
    w: &mut Watcher<C, B>,
    n: usize,
    limit: Duration,
) -> Vec<Completion<C, B>> {
    wait_for_stamped(w, n, limit)
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// [`wait_for`], each completion with the instant the wait that handed it
/// out returned: a timer handed out then fired at or before that instant.
pub fn wait_for_stamped<C, B: gaio::IoBuf>(
    w: &mut Watcher<C, B>,
    n: usize,
    limit: Duration,
) -> Vec<(Completion<C, B>, Instant)> {
    let end = Instant::now() + limit;
    let mut out = Vec::new();
    let mut batch = Vec::new();
    while out.len() < n {
        let now = Instant::now();
        assert!(
            now < end,
            "timed out after {limit:?}: got {} of {n} completions",
            out.len()
        );
        w.wait_io_timeout(&mut batch, end - now).expect("wait_io");
        let at = Instant::now();
        out.extend(batch.drain(..).map(|c| (c, at)));
    }
    out
}

/// Asserts that no completion arrives within `quiet`.
pub fn expect_quiet<C, B: gaio::IoBuf>(w: &mut Watcher<C, B>, quiet: Duration) {
    let mut out = Vec::new();
    let n = w.wait_io_timeout(&mut out, quiet).expect("wait_io");
    assert_eq!(
        n, 0,
        "expected no completion, got {} (first: {:?} {:?})",
        n, out[0].op, out[0].error
    );
}

/// Number of open descriptors of this process (`/proc/self/fd` on Linux,
/// `/dev/fd` elsewhere; the directory handle itself counts in both).
/// Process-wide: needs the test lock held exclusively.
pub fn open_fds() -> usize {
    require(Kind::Exclusive, "util::open_fds");
    let dir = fd_dir();
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .count()
}

/// Where this process's descriptors are listed.
fn fd_dir() -> &'static str {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    }
}

/// Each open descriptor (the entries [`open_fds`] counts, the directory
/// handle included) and what it refers to, where the OS says (Linux).
fn fd_table() -> BTreeMap<String, String> {
    let dir = fd_dir();
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .map(|e| {
            let e = e.unwrap_or_else(|e| panic!("read {dir}: {e}"));
            let what = std::fs::read_link(e.path()).map_or_else(|_| "?".into(), |t| t.display().to_string());
            (e.file_name().to_string_lossy().into_owned(), what)
        })
        .collect()
}

/// Records the open descriptor count; `check` asserts it is back there.
///
/// Holds the test lock exclusively from `new` until `check` returns (or
/// the `FdCheck` is dropped), so no other test's descriptors are counted:
/// create it first thing in the test.
pub struct FdCheck {
    before: usize,
    /// What each descriptor was at the start, to name the difference if
    /// the count is off.
    table: BTreeMap<String, String>,
    _lock: TestLock,
}

impl FdCheck {
    /// Takes [`exclusive`] (waiting for the tests running now), then
    /// records the descriptor count.
    ///
    /// The count is the least of a few samples taken over about 2 ms:
    /// threads outside any test body may hold a descriptor for a few
    /// microseconds while the test starts (seen: the thread of the test
    /// that just released the lock, exiting, where glibc reads
    /// `/proc/sys/vm/overcommit_memory` once per process while trimming the
    /// thread's heap). A sample that caught one would make the end count
    /// look like a descriptor closed behind the test's back.
    pub fn new() -> Self {
        let lock = exclusive();
        let mut table = fd_table();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_micros(500));
            let again = fd_table();
            if again.len() < table.len() {
                table = again;
            }
        }
        FdCheck {
            before: table.len(),
            table,
            _lock: lock,
        }
    }

    /// Asserts the descriptor count is back where it started. Threads
    /// (background watchers) may take a moment to finish, so this retries
    /// for up to a second. Releases the test lock (unless the test holds
    /// another guard).
    pub fn check(self) {
        let end = Instant::now() + Duration::from_secs(1);
        loop {
            let now = open_fds();
            if now == self.before {
                return;
            }
            if Instant::now() > end {
                let table = fd_table();
                let differ = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| {
                    a.iter()
                        .filter(|&(fd, what)| b.get(fd) != Some(what))
                        .map(|(fd, what)| format!("{fd} -> {what}"))
                        .collect::<Vec<_>>()
                };
                panic!(
                    "descriptor leak: {} open before, {} after (now open: {:?}; gone: {:?})",
                    self.before,
                    now,
                    differ(&table, &self.table),
                    differ(&self.table, &table)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Raises the soft RLIMIT_NOFILE towards `want` (bounded by the hard
/// limit; never lowered) and returns the soft limit now in force
/// ([`gaio_testkit::nofile::raise_soft_limit`]). Process-wide: needs the
/// test lock held exclusively.
pub fn raise_nofile(want: u64) -> u64 {
    require(Kind::Exclusive, "util::raise_nofile");
    gaio_testkit::nofile::raise_soft_limit(want).expect("raise RLIMIT_NOFILE")
}

/// Deterministic test bytes: a position-dependent pattern seeded per
/// connection, so misrouted or reordered bytes are caught
/// ([`gaio_testkit::pattern::xorshift_bytes`]).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    gaio_testkit::pattern::xorshift_bytes(seed, len)
}

/// Restores SIGPIPE to its default action (terminate the process), so a
/// write that raised it would kill the test instead of passing silently.
/// Process-wide (and left so for the rest of the process): needs the test
/// lock held exclusively.
pub fn sigpipe_default() {
    require(Kind::Exclusive, "util::sigpipe_default");
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installing SIG_DFL runs no handler code, so none of
    // `signal`'s handler-safety requirements apply; the previous
    // disposition (Rust's SIG_IGN) is not needed again.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) }.expect("set SIGPIPE to default");
}

/// Panics if the submission was refused.
pub fn ok<C, B>(r: Result<(), gaio::Rejected<C, B>>) {
    if let Err(r) = r {
        panic!("request refused at submission: {:?}", r.error);
    }
}

/// Waits for exactly one completion (at most `limit`).
pub fn one<C, B: gaio::IoBuf>(w: &mut Watcher<C, B>, limit: Duration) -> gaio::Completion<C, B> {
    let mut v = wait_for(w, 1, limit);
    assert_eq!(v.len(), 1, "expected one completion, got {}", v.len());
    v.pop().unwrap()
}

/// A fresh, empty directory under the system's temporary directory (for
/// Unix socket paths), removed with its contents when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A new directory whose name holds `tag`, this process and a counter.
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "gaio-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

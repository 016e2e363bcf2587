//! The fault catalogue: conditions a long-running server meets sooner or
//! later, each provoked on purpose on loopback and its outcome asserted.
//!
//! * the process is out of descriptors (`EMFILE` from `accept`);
//! * deadlines so far ahead that naive arithmetic overflows;
//! * a hundred thousand deadlines pending at once;
//! * a peer that never reads while 64 MiB of writes queue up;
//! * 64 threads submitting at the same instant to a sleeping watcher;
//! * a storm of signals interrupting the wait (`EINTR`);
//! * a reset while a write is blocked with more writes queued behind it.
//!
//! Descriptor counting, the fd limit, CPU time, RSS and the signal
//! disposition are process-wide: every test holds the test lock exclusively
//! (through its `FdCheck`), see `util`.

mod util;
use util::peer::{is_pipe_or_reset, reset_on_close, timeouts};

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gaio::{Buffer, Conn, Error, IoBuf, Op, Submit, Submitter, Watcher};

const LIMIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(150);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// User plus system CPU time of the whole process so far.
fn cpu_time() -> Duration {
    use nix::libc;
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `getrusage` writes a complete `rusage` into the pointer it is
    // given, which points to memory of that type owned by this frame.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage: {}", io::Error::last_os_error());
    // SAFETY: zero-initialised, and `getrusage` succeeded and filled it.
    let ru = unsafe { ru.assume_init() };
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Resident set size of this process, in bytes (`VmRSS`).
fn vm_rss() -> usize {
    gaio_testkit::memory::rss_bytes(None).expect("VmRSS of this process") as usize
}

/// Closes the watcher through a `Submitter` if it is not petted within
/// `limit`: a `wait_io` that would block forever (a lost wake-up) then
/// returns `WatcherClosed` completions, which the test reports, instead of
/// hanging the test.
struct Watchdog {
    pet: Option<mpsc::Sender<()>>,
    fired: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn new<C: Send + 'static, B: IoBuf + Send + 'static>(mut sub: Submitter<C, B>, limit: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&fired);
        let thread = thread::spawn(move || loop {
            match rx.recv_timeout(limit) {
                Ok(()) => continue,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    flag.store(true, Ordering::SeqCst);
                    sub.close();
                    return;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        });
        Watchdog {
            pet: Some(tx),
            fired,
            thread: Some(thread),
        }
    }

    fn pet(&self) {
        if let Some(tx) = &self.pet {
            let _ = tx.send(());
        }
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.pet.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ----- 1. EMFILE ------------------------------------------------------------------

/// Lowers the soft RLIMIT_NOFILE and fills the descriptor table so that
/// exactly `spare` more descriptors can be opened; restores the limit and
/// closes the fillers when dropped (also on panic).
struct FdLimit {
    old: rustix::process::Rlimit,
    fillers: Vec<File>,
}

impl FdLimit {
    fn leave_spare(spare: usize) -> Self {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let old = getrlimit(Resource::Nofile);
        let soft = (util::open_fds() + 64) as u64;
        assert!(
            old.current.map_or(true, |c| c >= soft),
            "soft limit {:?} already below {soft}",
            old.current
        );
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(soft),
                maximum: old.maximum,
            },
        )
        .expect("lower RLIMIT_NOFILE");
        let mut guard = FdLimit {
            old,
            fillers: Vec::new(),
        };
        loop {
            match File::open("/dev/null") {
                Ok(f) => guard.fillers.push(f),
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) => break,
                Err(e) => panic!("filling the descriptor table: {e}"),
            }
            assert!(guard.fillers.len() <= 1000, "RLIMIT_NOFILE is not enforced");
        }
        assert!(guard.fillers.len() >= spare);
        for _ in 0..spare {
            guard.fillers.pop();
        }
        guard
    }
}

impl Drop for FdLimit {
    fn drop(&mut self) {
        self.fillers.clear();
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, self.old);
    }
}

/// One echo exchange on every pair: the peer sends a message, the watcher
/// reads it whole (`read_full`) and writes it back, the peer checks it.
fn echo_round(w: &mut Watcher<usize>, pairs: &mut [(TcpStream, Conn)], seed: u64, what: &str) {
    let msgs: Vec<Vec<u8>> = (0..pairs.len())
        .map(|i| util::pattern(seed * 1000 + i as u64, 1000 + 37 * i))
        .collect();
    for (i, (client, conn)) in pairs.iter_mut().enumerate() {
        client.write_all(&msgs[i]).unwrap();
        w.read_full(*conn, i, vec![0; msgs[i].len()]).unwrap();
    }
    for c in util::wait_for(w, pairs.len(), LIMIT) {
        assert!(c.error.is_none(), "{what}: read {}: {:?}", c.context, c.error);
        assert_eq!((c.op, c.conn), (Op::ReadFull, pairs[c.context].1), "{what}");
        let buf = c.buffer.into_user().unwrap();
        assert!(buf == msgs[c.context], "{what}: read {} corrupted", c.context);
        w.write(pairs[c.context].1, c.context, buf).unwrap();
    }
    for c in util::wait_for(w, pairs.len(), LIMIT) {
        assert!(c.error.is_none(), "{what}: write {}: {:?}", c.context, c.error);
        assert_eq!((c.op, c.bytes), (Op::Write, msgs[c.context].len()), "{what}");
    }
    for (i, (client, _)) in pairs.iter_mut().enumerate() {
        let mut back = vec![0; msgs[i].len()];
        client.read_exact(&mut back).unwrap();
        assert!(back == msgs[i], "{what}: echo {i} corrupted");
    }
}

enum AcceptEvent {
    Watched(Conn, SocketAddr),
    Emfile,
    Failed(io::Error),
}

/// At the descriptor limit, `accept` fails with `EMFILE` while connections
/// wait in the backlog. The watcher keeps serving every connection it has
/// (echo, content-checked), a new watcher cannot be made and says why, and
/// nothing spins: 300 ms of idling costs well under 100 ms of CPU. Once
/// the limit is back, the waiting connections are accepted and served.
#[test]
fn emfile_on_accept_leaves_the_watcher_serving_without_spinning() {
    const EXISTING: usize = 4;
    const BACKLOG: usize = 6;
    const SPARE: usize = 2;
    let fds = util::FdCheck::new();
    let emfile = rustix::io::Errno::MFILE.raw_os_error();
    for mode in util::MODES {
        let what = format!("{mode:?}");
        let mut w: Watcher<usize> = util::watcher(mode);
        let mut pairs: Vec<(TcpStream, Conn)> = Vec::new();
        for (client, server) in util::tcp_pairs(EXISTING) {
            timeouts(&client);
            let conn = w.watch(server).unwrap();
            pairs.push((client, conn));
        }
        echo_round(&mut w, &mut pairs, 1, &what);

        // Connections queue in the backlog of a listener nobody accepts
        // from yet.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut backlog: Vec<Option<TcpStream>> = (0..BACKLOG)
            .map(|_| {
                let s = TcpStream::connect(addr).unwrap();
                timeouts(&s);
                Some(s)
            })
            .collect();
        let backlog_addrs: Vec<SocketAddr> = backlog
            .iter()
            .map(|s| s.as_ref().unwrap().local_addr().unwrap())
            .collect();

        // The accept loop hands each connection over through a Submitter;
        // at EMFILE it reports and waits to be told to go on.
        let (ev_tx, ev_rx) = mpsc::channel::<AcceptEvent>();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let mut sub = w.submitter();
        let acceptor = thread::spawn(move || {
            go_rx.recv_timeout(LIMIT).expect("go");
            let end = Instant::now() + 2 * LIMIT;
            let mut left = BACKLOG;
            while left > 0 && Instant::now() < end {
                match listener.accept() {
                    Ok((s, peer)) => {
                        let conn = sub.watch(s).expect("watch an accepted socket");
                        let _ = ev_tx.send(AcceptEvent::Watched(conn, peer));
                        left -= 1;
                    }
                    Err(e) if e.raw_os_error() == Some(emfile) => {
                        let _ = ev_tx.send(AcceptEvent::Emfile);
                        if go_rx.recv_timeout(LIMIT).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(ms(1)),
                    Err(e) => {
                        let _ = ev_tx.send(AcceptEvent::Failed(e));
                        return;
                    }
                }
            }
        });
        let take_accepted = |ev: AcceptEvent, backlog: &mut Vec<Option<TcpStream>>| match ev {
            AcceptEvent::Watched(conn, peer) => {
                let i = backlog_addrs
                    .iter()
                    .position(|a| *a == peer)
                    .expect("accepted a connection of the backlog");
                (backlog[i].take().expect("accepted once"), conn)
            }
            AcceptEvent::Emfile => panic!("{mode:?}: EMFILE with descriptors to spare"),
            AcceptEvent::Failed(e) => panic!("{mode:?}: accept failed: {e}"),
        };

        let limit = FdLimit::leave_spare(SPARE);
        go_tx.send(()).unwrap();
        for _ in 0..SPARE {
            let ev = ev_rx.recv_timeout(LIMIT).expect("accepted");
            pairs.push(take_accepted(ev, &mut backlog));
        }
        match ev_rx.recv_timeout(LIMIT).expect("accept result at the limit") {
            AcceptEvent::Emfile => {}
            AcceptEvent::Watched(..) => panic!("{mode:?}: accepted past the descriptor limit"),
            AcceptEvent::Failed(e) => panic!("{mode:?}: accept failed otherwise: {e}"),
        }

        // No descriptor left: a new watcher cannot be made, and says why.
        match gaio::Builder::new().mode(mode).build::<usize, Vec<u8>>() {
            Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(emfile), "{mode:?}: {e}"),
            Err(e) => panic!("{mode:?}: a watcher at EMFILE failed with {e:?}"),
            Ok(_) => panic!("{mode:?}: a watcher was made with no descriptor left"),
        }

        // Existing and just-accepted connections are all served.
        for round in 0..3 {
            echo_round(&mut w, &mut pairs, 10 + round, &format!("{what} at EMFILE"));
        }

        // Idle with a read pending everywhere: nothing completes, and the
        // process does not spin.
        for (i, (_, conn)) in pairs.iter().enumerate() {
            w.read_swap(*conn, 1000 + i).unwrap();
        }
        let cpu0 = cpu_time();
        util::expect_quiet(&mut w, ms(300));
        let cpu = cpu_time() - cpu0;
        eprintln!("{mode:?}: {cpu:?} of CPU in 300 ms of idling at EMFILE");
        assert!(
            cpu < ms(100),
            "{mode:?}: {cpu:?} of CPU in 300 ms of idling at EMFILE"
        );
        for (client, _) in pairs.iter_mut() {
            client.write_all(b"x").unwrap();
        }
        for c in util::wait_for(&mut w, pairs.len(), LIMIT) {
            assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
            assert_eq!(c.conn, pairs[c.context - 1000].1);
            assert!(matches!(&c.buffer, Buffer::Swap(b) if b == &b"x"[..]));
        }

        // The limit restored, the rest of the backlog is accepted and served.
        drop(limit);
        go_tx.send(()).unwrap();
        for _ in SPARE..BACKLOG {
            let ev = ev_rx
                .recv_timeout(LIMIT)
                .expect("accepted after the limit was restored");
            pairs.push(take_accepted(ev, &mut backlog));
        }
        acceptor.join().expect("accept thread");
        assert!(backlog.iter().all(Option::is_none));
        echo_round(&mut w, &mut pairs, 20, &format!("{what} after EMFILE"));
        util::expect_quiet(&mut w, ms(20));
        drop(w);
    }
    fds.check();
}

// ----- 2. far-future deadlines ----------------------------------------------------

/// The farthest instant after `from` that `Instant` can represent.
fn farthest_instant(from: Instant) -> Instant {
    if let Some(t) = from.checked_add(Duration::MAX) {
        return t;
    }
    // Invariant: `lo` seconds can be added, `hi` cannot.
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if from.checked_add(Duration::from_secs(mid)).is_some() {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (mut lo_n, mut hi_n) = (0u32, 1_000_000_000u32);
    while hi_n - lo_n > 1 {
        let mid = lo_n + (hi_n - lo_n) / 2;
        if from.checked_add(Duration::new(lo, mid)).is_some() {
            lo_n = mid;
        } else {
            hi_n = mid;
        }
    }
    from + Duration::new(lo, lo_n)
}

/// Deadlines a century ahead, as far ahead as `Instant` goes, and 2^64 ns
/// (585 years) plus 100 ms ahead: no overflow, no wrap-around, nothing
/// fires early. Writes with them complete; reads stay
/// pending (300 ms of quiet) and complete with the data once it arrives,
/// including while `wait_io_timeout(Duration::MAX)` sleeps.
#[test]
fn far_future_deadlines_neither_overflow_nor_fire_early() {
    let fds = util::FdCheck::new();
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    for mode in util::MODES {
        for name in [
            "a century ahead",
            "the farthest instant",
            "2^64 ns and 100 ms ahead",
        ] {
            let what = format!("{mode:?}, {name}");
            let (mut client, server) = util::tcp_pair();
            timeouts(&client);
            let mut w: Watcher<u32> = util::watcher(mode);
            let conn = w.watch(server).unwrap();
            let now = Instant::now();
            let far = match name {
                "a century ahead" => now + century,
                "the farthest instant" => farthest_instant(now),
                // Nanoseconds since the watcher was made, kept in 64 bits,
                // would wrap around to about 100 ms.
                _ => now + Duration::from_nanos(u64::MAX) + Duration::from_nanos(1) + ms(100),
            };

            w.write_timeout(conn, 0, b"out".to_vec(), far).unwrap();
            let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
            assert!(c.error.is_none(), "{what}: {:?}", c.error);
            assert_eq!((c.context, c.op, c.bytes), (0, Op::Write, 3));
            let mut out = [0; 3];
            client.read_exact(&mut out).unwrap();
            assert_eq!(&out, b"out");

            w.read_timeout(conn, 1, vec![0; 16], far).unwrap();
            w.read_swap_timeout(conn, 2, far).unwrap();
            w.read_full_timeout(conn, 3, vec![0; 8], far).unwrap();
            util::expect_quiet(&mut w, ms(300));

            // Data arrives while the waiter sleeps without a bound.
            let mut late = client.try_clone().unwrap();
            let sender = thread::spawn(move || {
                thread::sleep(ms(100));
                late.write_all(b"hello").unwrap();
            });
            let dog = Watchdog::new(w.submitter(), LIMIT);
            let mut got = Vec::new();
            w.wait_io_timeout(&mut got, Duration::MAX).expect("wait_io");
            assert!(!dog.fired(), "{what}: the data did not wake the waiter");
            drop(dog);
            sender.join().unwrap();
            assert_eq!(got.len(), 1, "{what}");
            assert!(got[0].error.is_none(), "{what}: {:?}", got[0].error);
            assert_eq!((got[0].context, got[0].op), (1, Op::Read));
            assert_eq!(got[0].data(), b"hello", "{what}");

            client.write_all(b"swap!").unwrap();
            let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
            assert!(c.error.is_none(), "{what}: {:?}", c.error);
            assert_eq!(c.context, 2);
            assert!(
                matches!(&c.buffer, Buffer::Swap(b) if b == &b"swap!"[..]),
                "{what}"
            );

            client.write_all(b"1234").unwrap();
            util::expect_quiet(&mut w, ms(50));
            client.write_all(b"5678").unwrap();
            let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
            assert!(c.error.is_none(), "{what}: {:?}", c.error);
            assert_eq!((c.context, c.op, c.bytes), (3, Op::ReadFull, 8));
            assert_eq!(c.data(), b"12345678");

            util::expect_quiet(&mut w, ms(50));
            drop(w);
        }
    }
    fds.check();
}

// ----- 3. a hundred thousand deadlines ---------------------------------------------

/// 100 idle connections with 1000 reads queued on each, every one with its
/// own deadline, spread over one second: all 100 000 complete with
/// `Deadline`, none before its deadline, in deadline order (which is
/// submission order on each connection), with their buffers untouched.
#[test]
fn a_hundred_thousand_queued_deadlines_fire_in_order_never_early() {
    const CONNS: usize = 100;
    const PER: usize = 1000;
    const TOTAL: usize = CONNS * PER;
    const STEP: Duration = Duration::from_micros(10);
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<usize> = util::watcher(mode);
        let mut clients = Vec::new();
        let mut conns = Vec::new();
        for (client, server) in util::tcp_pairs(CONNS) {
            clients.push(client);
            conns.push(w.watch(server).unwrap());
        }
        let t0 = Instant::now() + ms(500);
        let deadline_of = |k: usize| t0 + STEP * k as u32;
        let submit_start = Instant::now();
        for i in 0..PER {
            for (c, &conn) in conns.iter().enumerate() {
                let k = i * CONNS + c;
                w.read_timeout(conn, k, vec![(k % 251) as u8], deadline_of(k))
                    .unwrap();
            }
        }
        let submit_time = submit_start.elapsed();

        let end = Instant::now() + Duration::from_secs(10);
        let mut order = Vec::with_capacity(TOTAL);
        let mut batch = Vec::new();
        let mut latest = Duration::ZERO;
        while order.len() < TOTAL {
            let now = Instant::now();
            assert!(now < end, "{mode:?}: {} of {TOTAL} deadlines fired", order.len());
            w.wait_io_timeout(&mut batch, end - now).expect("wait_io");
            let seen = Instant::now();
            for c in batch.drain(..) {
                let k = c.context;
                assert!(k < TOTAL);
                assert!(
                    matches!(c.error, Some(Error::Deadline)),
                    "{mode:?}: read {k}: {:?}",
                    c.error
                );
                assert_eq!((c.op, c.conn, c.bytes), (Op::Read, conns[k % CONNS], 0));
                assert!(matches!(&c.buffer, Buffer::User(b) if *b == [(k % 251) as u8]));
                let deadline = deadline_of(k);
                assert!(
                    seen >= deadline,
                    "{mode:?}: read {k} timed out {:?} early",
                    deadline - seen
                );
                latest = latest.max(seen - deadline);
                order.push(k);
            }
        }
        // Deadlines strictly increase with k: deadline order is k order.
        let mut last_on = vec![None::<usize>; CONNS];
        for &k in &order {
            let c = k % CONNS;
            assert!(
                last_on[c].map_or(true, |l| l < k),
                "{mode:?}: connection {c}: read {k} after {:?}",
                last_on[c]
            );
            last_on[c] = Some(k);
        }
        let inversions = order.windows(2).filter(|p| p[0] > p[1]).count();
        assert_eq!(inversions, 0, "{mode:?}: deadlines fired out of deadline order");
        eprintln!(
            "{mode:?}: {TOTAL} deadlines submitted in {submit_time:?}, latest {latest:?} after its deadline"
        );
        util::expect_quiet(&mut w, QUIET);

        // The connections still read.
        clients[7].write_all(b"alive").unwrap();
        w.read(conns[7], 0, vec![0; 8]).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        assert!(c.error.is_none(), "{mode:?}: {:?}", c.error);
        assert_eq!(c.data(), b"alive");
        drop(w);
    }
    fds.check();
}

// ----- 4. a peer that never reads ------------------------------------------------

/// 64 writes of 1 MiB to a peer that never reads, all with one deadline
/// 500 ms ahead. Before the deadline only the writes the socket buffers
/// took complete (whole, in order); the rest stay queued without being
/// copied (RSS grows by the buffers and a few MiB, not twice that). At the
/// deadline the rest complete with `Deadline` in FIFO order: partial bytes
/// for the head, none for the others, every buffer handed back intact (on
/// io_uring, writes the kernel finished before the deadline ended its
/// request complete whole just before them).
/// The peer then finds exactly the bytes reported written.
#[test]
fn slow_reader_keeps_writes_queued_uncopied_until_their_deadline() {
    const N: usize = 64;
    const LEN: usize = 1 << 20;
    const SLACK: usize = 8 << 20;
    let fds = util::FdCheck::new();
    let base = util::pattern(4242, LEN);
    let expected = |i: usize| {
        let mut v = base.clone();
        v.rotate_left((i * 4099) % LEN);
        v
    };
    for mode in util::MODES {
        let (mut client, server) = util::tcp_pair();
        timeouts(&client);
        let mut w: Watcher<usize> = util::watcher(mode);
        let conn = w.watch(server).unwrap();

        let rss0 = vm_rss();
        let bufs: Vec<Vec<u8>> = (0..N).map(expected).collect();
        let deadline = Instant::now() + ms(500);
        for (i, b) in bufs.into_iter().enumerate() {
            w.write_timeout(conn, i, b, deadline).unwrap();
        }

        // Before the deadline: only what the socket buffers took.
        let mut early = Vec::new();
        let early_end = deadline - ms(100);
        loop {
            let now = Instant::now();
            if now >= early_end {
                break;
            }
            w.wait_io_timeout(&mut early, early_end - now).expect("wait_io");
        }
        let rss1 = vm_rss();
        assert!(
            rss1 <= rss0 + N * LEN + SLACK,
            "{mode:?}: RSS grew by {} MiB for {} MiB of queued writes",
            (rss1.saturating_sub(rss0)) >> 20,
            (N * LEN) >> 20
        );
        let k0 = early.len();
        assert!(k0 < N / 2, "{mode:?}: {k0} MiB taken by a peer that never reads");
        for (k, c) in early.iter().enumerate() {
            assert_eq!(c.context, k, "{mode:?}: writes completed out of order");
            assert!(c.error.is_none(), "{mode:?}: early write {k}: {:?}", c.error);
            assert_eq!((c.op, c.bytes), (Op::Write, LEN));
            assert!(matches!(&c.buffer, Buffer::User(b) if *b == expected(k)));
        }

        // At the deadline: the rest, in order.
        let mut late = Vec::new();
        let end = Instant::now() + Duration::from_secs(3);
        while late.len() < N - k0 {
            let now = Instant::now();
            assert!(now < end, "{mode:?}: {} of {} deadlines", late.len(), N - k0);
            let mut batch = Vec::new();
            w.wait_io_timeout(&mut batch, end - now).expect("wait_io");
            let seen = Instant::now();
            late.extend(batch.into_iter().map(|c| (c, seen)));
        }
        // On io_uring the kernel sends a gathered batch of writes as one
        // request and reports it when it ends: writes it finished before
        // the deadline cancelled it complete then, whole and without error.
        // On a readiness backend they completed as the socket took them.
        let mut written = k0 * LEN;
        let mut first_deadline = None;
        for (j, (c, seen)) in late.iter().enumerate() {
            let i = k0 + j;
            assert_eq!(c.context, i, "{mode:?}: deadlines fired out of FIFO order");
            assert!(*seen >= deadline, "{mode:?}: write {i} timed out early");
            if c.error.is_none() && first_deadline.is_none() {
                assert_eq!(w.backend(), gaio::Backend::Uring, "{mode:?}: write {i} done late");
                assert_eq!(c.bytes, LEN, "{mode:?}: write {i}");
                written += LEN;
                continue;
            }
            assert!(
                matches!(c.error, Some(Error::Deadline)),
                "{mode:?}: write {i}: {:?}",
                c.error
            );
            if first_deadline.is_none() {
                first_deadline = Some(i);
                assert!(c.bytes < LEN, "{mode:?}: head write {} of {LEN}", c.bytes);
                written += c.bytes;
            } else {
                assert_eq!(c.bytes, 0, "{mode:?}: queued write {i} moved bytes");
            }
            assert!(
                matches!(&c.buffer, Buffer::User(b) if *b == expected(i)),
                "{mode:?}: buffer {i} not handed back intact"
            );
        }

        // Exactly the reported bytes reached the peer.
        let mut received = vec![0; written];
        client.read_exact(&mut received).unwrap();
        for (i, piece) in received.chunks(LEN).enumerate() {
            assert!(
                piece == &expected(i)[..piece.len()],
                "{mode:?}: MiB {i} differs at the peer"
            );
        }
        client.set_nonblocking(true).unwrap();
        thread::sleep(ms(50));
        let mut extra = [0u8; 1];
        match client.read(&mut extra) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("{mode:?}: the peer got more than reported: {other:?}"),
        }
        util::expect_quiet(&mut w, QUIET);
        drop(late);
        drop(early);
        drop(w);
    }
    fds.check();
}

// ----- 5. 64 threads at the same instant ----------------------------------------

/// While the waiting thread sleeps in `wait_io` (no timeout), 64 threads
/// released by one barrier each submit a write through a `Submitter`. Every
/// round all 64 complete; a lost wake-up would leave `wait_io` asleep, so a
/// watchdog closes the watcher after 5 s and the test reports it. 50
/// rounds per mode, with varying delays before the barrier.
#[test]
fn sixty_four_simultaneous_submitters_never_lose_a_wakeup() {
    const THREADS: usize = 64;
    const ROUNDS: usize = 50;
    const CONNS: usize = 8;
    const MSG: usize = 16;
    fn message(round: usize, t: usize) -> Vec<u8> {
        let mut m = Vec::with_capacity(MSG);
        m.extend_from_slice(&(round as u16).to_le_bytes());
        m.extend_from_slice(&(t as u16).to_le_bytes());
        m.extend_from_slice(&util::pattern((round * THREADS + t) as u64, MSG - 4));
        m
    }
    let fds = util::FdCheck::new();
    for mode in util::MODES {
        let mut w: Watcher<usize> = util::watcher(mode);
        let mut clients = Vec::new();
        let mut conns = Vec::new();
        for (client, server) in util::tcp_pairs(CONNS) {
            timeouts(&client);
            clients.push(client);
            conns.push(w.watch(server).unwrap());
        }
        let start = Arc::new(Barrier::new(THREADS + 1));
        let go = Arc::new(Barrier::new(THREADS));
        let handles: Vec<JoinHandle<()>> = (0..THREADS)
            .map(|t| {
                let mut sub = w.submitter();
                let (start, go) = (Arc::clone(&start), Arc::clone(&go));
                let conn = conns[t % CONNS];
                thread::spawn(move || {
                    for round in 0..ROUNDS {
                        start.wait();
                        match round % 4 {
                            0 => {}
                            1 => thread::yield_now(),
                            2 => thread::sleep(Duration::from_micros(200)),
                            _ => thread::sleep(ms(2)),
                        }
                        go.wait();
                        sub.write(conn, round * THREADS + t, message(round, t))
                            .expect("submit from thread");
                    }
                })
            })
            .collect();

        let dog = Watchdog::new(w.submitter(), LIMIT);
        let mut slowest = Duration::ZERO;
        for round in 0..ROUNDS {
            start.wait();
            let t0 = Instant::now();
            let mut got = Vec::new();
            while got.len() < THREADS {
                let r = w.wait_io(&mut got);
                assert!(
                    !dog.fired(),
                    "{mode:?} round {round}: lost wake-up: wait_io slept {LIMIT:?} with {THREADS} \
                     submissions made, until the watchdog closed the watcher"
                );
                if let Err(e) = r {
                    panic!("{mode:?} round {round}: wait_io failed: {e}");
                }
            }
            slowest = slowest.max(t0.elapsed());
            dog.pet();
            assert_eq!(got.len(), THREADS, "{mode:?} round {round}");
            let mut seen = [false; THREADS];
            for c in &got {
                assert!(c.error.is_none(), "{mode:?} round {round}: {:?}", c.error);
                let (r, t) = (c.context / THREADS, c.context % THREADS);
                assert_eq!(
                    r, round,
                    "{mode:?}: a write of round {r} completed in round {round}"
                );
                assert!(!seen[t], "{mode:?} round {round}: thread {t} completed twice");
                seen[t] = true;
                assert_eq!((c.op, c.conn, c.bytes), (Op::Write, conns[t % CONNS], MSG));
                assert!(matches!(&c.buffer, Buffer::User(b) if *b == message(round, t)));
            }
        }
        for h in handles {
            h.join().expect("submitter thread");
        }
        drop(dog);
        eprintln!("{mode:?}: the slowest of {ROUNDS} rounds took {slowest:?}");

        // Each peer got its threads' messages, each thread's in round order.
        for (k, client) in clients.iter_mut().enumerate() {
            let per_conn = THREADS / CONNS;
            let mut stream = vec![0u8; per_conn * ROUNDS * MSG];
            client.read_exact(&mut stream).unwrap();
            let mut next_round = [0usize; THREADS];
            for m in stream.chunks(MSG) {
                let round = usize::from(u16::from_le_bytes([m[0], m[1]]));
                let t = usize::from(u16::from_le_bytes([m[2], m[3]]));
                assert!(
                    t < THREADS && t % CONNS == k,
                    "{mode:?}: thread {t}'s write on connection {k}"
                );
                assert_eq!(round, next_round[t], "{mode:?}: thread {t}'s writes out of order");
                assert!(m == message(round, t), "{mode:?}: message {round}/{t} corrupted");
                next_round[t] += 1;
            }
        }
        util::expect_quiet(&mut w, ms(20));
        drop(w);
    }
    fds.check();
}

// ----- 6. a signal storm ---------------------------------------------------------

/// Thread-directed signals (`tgkill`, thread ids from /proc) are Linux
/// APIs; the EINTR handling itself is shared by every poller.
#[cfg(target_os = "linux")]
mod signal_storm {
    use super::*;
    use gaio::Mode;
    use std::sync::atomic::AtomicUsize;

    static SIGNALS_HANDLED: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn count_signal(_: nix::libc::c_int) {
        SIGNALS_HANDLED.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends SIGUSR1 to thread `tid` of this process.
    fn signal_thread(tid: i32) -> bool {
        use nix::libc;
        // SAFETY: tgkill takes plain integers and touches no memory of ours;
        // SIGUSR1 has a handler installed, so it cannot terminate the process.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                libc::c_long::from(libc::getpid()),
                libc::c_long::from(tid),
                libc::c_long::from(libc::SIGUSR1),
            )
        };
        rc == 0
    }

    /// The thread id of the background watcher's I/O thread, by its name.
    fn watcher_thread_tid() -> i32 {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc/self/task").expect("read /proc/self/task") {
            let entry = entry.unwrap();
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == "gaio-watcher" {
                found.push(entry.file_name().to_string_lossy().parse::<i32>().unwrap());
            }
        }
        assert_eq!(
            found.len(),
            1,
            "expected one gaio-watcher thread, found {found:?}"
        );
        found[0]
    }

    /// For about a second, SIGUSR1 (a no-op handler installed without
    /// `SA_RESTART`) hits the thread sleeping in the poller — and in background
    /// mode also the thread blocked in `wait_io` — thousands of times, while
    /// eight clients run an echo workload. Every byte comes back intact, no
    /// request fails, `wait_io` never returns an error.
    #[test]
    fn signal_storm_during_the_wait_loses_nothing() {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        const CONNS: usize = 8;
        const STORM: Duration = Duration::from_secs(1);
        let action = SigAction::new(
            SigHandler::Handler(count_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // Before the handler changes: signal dispositions are process-wide.
        let fds = util::FdCheck::new();
        // SAFETY: the handler only increments an atomic counter, which is
        // async-signal-safe.
        unsafe { sigaction(Signal::SIGUSR1, &action) }.expect("install SIGUSR1 handler");
        for mode in util::MODES {
            let mut w: Watcher<usize, Vec<u8>> = util::watcher(mode);
            let mut conns = Vec::new();
            let mut clients = Vec::new();
            for (client, server) in util::tcp_pairs(CONNS) {
                timeouts(&client);
                conns.push(w.watch(server).unwrap());
                clients.push(client);
            }
            for (i, &conn) in conns.iter().enumerate() {
                w.read_swap(conn, i).unwrap();
            }

            let me = rustix::thread::gettid().as_raw_nonzero().get();
            let targets = match mode {
                Mode::Inline => vec![me],
                _ => vec![watcher_thread_tid(), me],
            };
            let storming = Arc::new(AtomicBool::new(true));
            let handled_before = SIGNALS_HANDLED.load(Ordering::Relaxed);
            let storm = {
                let storming = Arc::clone(&storming);
                thread::spawn(move || {
                    let end = Instant::now() + STORM;
                    let mut sent = 0usize;
                    while Instant::now() < end && sent < 2_000_000 {
                        for &tid in &targets {
                            if signal_thread(tid) {
                                sent += 1;
                            }
                        }
                        if sent % 64 == 0 {
                            thread::yield_now();
                        }
                    }
                    storming.store(false, Ordering::SeqCst);
                    sent
                })
            };

            // Clients: echo exchanges of varying size while the storm lasts,
            // then a half-close and a wait for the server's close.
            let workers: Vec<JoinHandle<(usize, usize)>> = clients
                .into_iter()
                .enumerate()
                .map(|(k, mut client)| {
                    let storming = Arc::clone(&storming);
                    thread::spawn(move || {
                        let (mut rounds, mut bytes) = (0usize, 0usize);
                        // At least one exchange, however late this thread runs.
                        while rounds == 0 || (storming.load(Ordering::SeqCst) && rounds < 100_000) {
                            let len = 1 + (rounds * 131 + k * 17) % 3000;
                            let msg = util::pattern((k * 1_000_000 + rounds) as u64, len);
                            client.write_all(&msg).expect("client write");
                            let mut back = vec![0; len];
                            client.read_exact(&mut back).expect("client read");
                            assert!(back == msg, "client {k}: echo {rounds} corrupted");
                            rounds += 1;
                            bytes += len;
                        }
                        client.shutdown(std::net::Shutdown::Write).unwrap();
                        let mut rest = Vec::new();
                        client.read_to_end(&mut rest).expect("client waits for close");
                        assert!(rest.is_empty(), "client {k}: {} unexpected bytes", rest.len());
                        (rounds, bytes)
                    })
                })
                .collect();

            let dog = Watchdog::new(w.submitter(), 4 * LIMIT);
            let mut open = CONNS;
            let mut echoed = 0usize;
            let mut batch = Vec::new();
            while open > 0 {
                if let Err(e) = w.wait_io(&mut batch) {
                    panic!("{mode:?}: wait_io returned {e} (watchdog fired: {})", dog.fired());
                }
                for c in batch.drain(..) {
                    match (c.op, c.error) {
                        (Op::Read, None) => {
                            let data = c.buffer.into_swap().expect("swap buffer");
                            assert_eq!(data.len(), c.bytes);
                            echoed += data.len();
                            w.write(c.conn, c.context, data.to_vec()).unwrap();
                        }
                        (Op::Read, Some(Error::Eof)) => {
                            w.free(c.conn).unwrap();
                            open -= 1;
                        }
                        (Op::Write, None) => {
                            assert!(c.bytes > 0);
                            w.read_swap(c.conn, c.context).unwrap();
                        }
                        (op, Some(e)) => panic!("{mode:?}: {op:?} on connection {} failed: {e}", c.context),
                        (op, None) => panic!("{mode:?}: unexpected {op:?}"),
                    }
                }
            }
            drop(dog);
            let sent = storm.join().expect("storm thread");
            let mut total = 0;
            for h in workers {
                let (rounds, bytes) = h.join().expect("client thread");
                assert!(rounds > 0, "{mode:?}: a client made no exchange");
                total += bytes;
            }
            assert_eq!(echoed, total, "{mode:?}: echoed bytes");
            let handled = SIGNALS_HANDLED.load(Ordering::Relaxed) - handled_before;
            eprintln!("{mode:?}: {sent} signals sent, {handled} handled, {total} bytes echoed");
            assert!(sent >= 1000, "{mode:?}: only {sent} signals sent");
            assert!(handled >= 100, "{mode:?}: only {handled} signals handled");
            util::expect_quiet(&mut w, ms(20));
            drop(w);
        }
        fds.check();
    }
}

// ----- 7. reset with writes queued behind a blocked one ---------------------------

/// `util::expect_quiet`, naming what arrived and when, relative to
/// `deadline`.
fn quiet_writes(w: &mut Watcher<usize>, quiet: Duration, deadline: Instant, what: &str) {
    let mut out = Vec::new();
    w.wait_io_timeout(&mut out, quiet).expect("wait_io");
    let now = Instant::now();
    let got: Vec<String> = out
        .iter()
        .map(|c| format!("write {} {:?} {} bytes", c.context, c.error, c.bytes))
        .collect();
    assert!(
        got.is_empty(),
        "{what}: expected no completion, got {got:?}, {:?} {} the deadline",
        if now > deadline {
            now - deadline
        } else {
            deadline - now
        },
        if now > deadline { "after" } else { "before" }
    );
}

/// A 32 MiB write blocks on a peer that does not read, four more writes
/// (two with deadlines) queue behind it; then the peer resets. All five
/// complete promptly with a broken pipe or reset, in submission order,
/// the head with the bytes it got out and the others with none, every
/// buffer handed back intact; the deadlines of the failed writes never
/// fire afterwards, and a later write fails at once.
#[test]
fn reset_fails_a_blocked_write_and_every_write_queued_behind_it_in_order() {
    const HEAD: usize = 32 << 20;
    const TAIL: [usize; 4] = [1, 4096, 65536, 300_000];
    let fds = util::FdCheck::new();
    let head_pattern = util::pattern(77, 1 << 20).repeat(HEAD >> 20);
    for mode in util::MODES {
        let (client, server) = util::tcp_pair();
        let mut w: Watcher<usize> = util::watcher(mode);
        let conn = w.watch(server).unwrap();
        let mut expected = vec![head_pattern.clone()];
        expected.extend(
            TAIL.iter()
                .enumerate()
                .map(|(i, &len)| util::pattern(500 + i as u64, len)),
        );
        // Far enough ahead that the reset comes first even on a loaded
        // machine.
        let deadline = Instant::now() + ms(1500);
        for (i, buf) in expected.iter().enumerate() {
            if i % 2 == 1 {
                w.write_timeout(conn, i, buf.clone(), deadline).unwrap();
            } else {
                w.write(conn, i, buf.clone()).unwrap();
            }
        }
        quiet_writes(&mut w, ms(300), deadline, &format!("{mode:?}, write blocked"));

        reset_on_close(&client);
        drop(client);
        let start = Instant::now();
        let got = util::wait_for(&mut w, expected.len(), Duration::from_secs(2));
        assert!(start.elapsed() < Duration::from_secs(2));
        let contexts: Vec<usize> = got.iter().map(|c| c.context).collect();
        assert_eq!(contexts, (0..expected.len()).collect::<Vec<_>>(), "{mode:?}");
        for c in &got {
            let i = c.context;
            match &c.error {
                Some(Error::Io(e)) => assert!(is_pipe_or_reset(e), "{mode:?}: write {i}: {e:?}"),
                other => panic!("{mode:?}: write {i}: expected an OS error, got {other:?}"),
            }
            assert_eq!(c.op, Op::Write);
            if i == 0 {
                assert!(c.bytes > 0 && c.bytes < HEAD, "{mode:?}: head wrote {}", c.bytes);
            } else {
                assert_eq!(c.bytes, 0, "{mode:?}: queued write {i} moved bytes");
            }
            assert!(
                matches!(&c.buffer, Buffer::User(b) if *b == expected[i]),
                "{mode:?}: buffer {i} not handed back intact"
            );
        }
        drop(got);

        // The failed writes' deadlines pass without a second completion.
        thread::sleep(deadline.saturating_duration_since(Instant::now()));
        quiet_writes(
            &mut w,
            ms(200),
            deadline,
            &format!("{mode:?}, after the deadline"),
        );

        w.write(conn, 9, b"late".to_vec()).unwrap();
        let c = util::wait_for(&mut w, 1, LIMIT).pop().unwrap();
        match &c.error {
            Some(Error::Io(e)) => assert!(is_pipe_or_reset(e), "{mode:?}: later write: {e:?}"),
            other => panic!("{mode:?}: later write: {other:?}"),
        }
        assert_eq!((c.context, c.bytes), (9, 0));
        assert!(matches!(&c.buffer, Buffer::User(b) if b == b"late"));
        drop(w);
    }
    fds.check();
}

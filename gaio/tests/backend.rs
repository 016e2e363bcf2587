//! Which poller this build of gaio runs on: the native one (io_uring or
//! epoll on Linux, chosen at run time; kqueue), or poll(2) when built with
//! `--cfg gaio_force_poll` (gaio's crate docs, "Backends and cfgs").
//! `cargo xtask test` runs the suite on each and says which one it expects
//! in `GAIO_EXPECT_POLLER` (the type) and `GAIO_EXPECT_BACKEND` (what a
//! default watcher runs on), so a pass that silently lost its backend
//! fails here.

mod util;

use std::any::type_name;
use std::marker::PhantomData;

use gaio::DefaultPoller;

// The poller the cfgs call for. The assignment below compiles only if
// `DefaultPoller` is this type, so `cargo check --tests` (and `cargo xtask
// cross`, for the kqueue targets) checks the choice too.
#[cfg(gaio_force_poll)]
type Expected = gaio::PollPoller;
#[cfg(all(not(gaio_force_poll), target_os = "linux"))]
type Expected = gaio::LinuxPoller;
#[cfg(all(not(gaio_force_poll), target_os = "android"))]
type Expected = gaio::EpollPoller;
#[cfg(all(not(gaio_force_poll), gaio_kqueue))]
type Expected = gaio::KqueuePoller;
#[cfg(not(any(gaio_force_poll, target_os = "linux", target_os = "android", gaio_kqueue)))]
type Expected = gaio::PollPoller;

const _: PhantomData<Expected> = PhantomData::<DefaultPoller>;

#[test]
fn default_poller_is_the_configured_backend() {
    // Counts the process's epoll descriptors below.
    let _lock = util::exclusive();
    let name = type_name::<DefaultPoller>();
    eprintln!("DefaultPoller = {name}");
    assert_eq!(name, type_name::<Expected>());
    if let Ok(want) = std::env::var("GAIO_EXPECT_POLLER") {
        let short = name.rsplit("::").next().unwrap_or(name);
        assert_eq!(short, want, "GAIO_EXPECT_POLLER: this build uses {name}");
    }

    let w: gaio::Watcher = gaio::Watcher::new().unwrap();
    let backend = w.backend();
    eprintln!("a default watcher runs on {backend}");
    drop(w);
    if let Ok(want) = std::env::var("GAIO_EXPECT_BACKEND") {
        assert_eq!(backend.to_string(), want, "GAIO_EXPECT_BACKEND");
    }

    // On Linux, the kernel shows which one a watcher really uses: a ring
    // is an `anon_inode:[io_uring]` descriptor, an epoll instance an
    // `anon_inode:[eventpoll]` one; poll(2) has neither.
    #[cfg(target_os = "linux")]
    {
        let count = |kind: &str| {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_str() == Some(kind))
                .count()
        };
        let before = (count("anon_inode:[io_uring]"), count("anon_inode:[eventpoll]"));
        let w: gaio::Watcher = gaio::Watcher::new().unwrap();
        let after = (count("anon_inode:[io_uring]"), count("anon_inode:[eventpoll]"));
        drop(w);
        let want = match backend {
            gaio::Backend::Uring => (1, 0),
            gaio::Backend::Epoll => (0, 1),
            _ => (0, 0),
        };
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            want,
            "rings and epoll instances a {backend} watcher opened"
        );
    }
}

/// Each backend asked for by name is the one the watcher runs on, or is
/// refused with a reason; never silently another.
#[test]
#[cfg(all(not(gaio_force_poll), target_os = "linux"))]
fn a_backend_asked_for_is_given_or_refused_with_why() {
    use gaio::Backend;
    let epoll: gaio::Watcher = gaio::Builder::new().backend(Backend::Epoll).build().unwrap();
    assert_eq!(epoll.backend(), Backend::Epoll);
    match gaio::Builder::new()
        .backend(Backend::Uring)
        .build::<(), Vec<u8>>()
    {
        Ok(w) => {
            assert_eq!(w.backend(), Backend::Uring);
            assert!(gaio_uring::probe().is_ok());
        }
        Err(gaio::Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
            let why = gaio_uring::probe().expect_err("refused although the probe found a ring");
            assert!(e.to_string().contains(&why.to_string()), "{e}");
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
    let kqueue = gaio::Builder::new()
        .backend(Backend::Kqueue)
        .build::<(), Vec<u8>>();
    match kqueue {
        Err(gaio::Error::Io(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
            assert_eq!(
                e.to_string(),
                "backend kqueue is not available on Linux: ask for auto, uring or epoll"
            );
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// An inline watcher on io_uring waits only on the thread that ran its
/// first I/O (the kernel lets only that thread enter its ring): moved to
/// another thread, `wait_io` refuses with `WrongThread`, having done
/// nothing, and back on its thread it finds everything. On epoll any
/// thread may wait.
#[test]
#[cfg(all(not(gaio_force_poll), target_os = "linux"))]
fn an_inline_ring_waits_only_on_its_thread_and_loses_nothing_when_moved() {
    use gaio::{Backend, Error, Op, Submit};
    use std::io::Write;
    use std::time::Duration;

    let fds = util::FdCheck::new();
    // Waits (bounded) for the next completion.
    fn next(w: &mut gaio::Watcher<u32, Vec<u8>>) -> gaio::Completion<u32, Vec<u8>> {
        let mut batch = Vec::new();
        for _ in 0..50 {
            w.wait_io_timeout(&mut batch, Duration::from_millis(100)).unwrap();
            if let Some(c) = batch.pop() {
                assert!(batch.is_empty(), "one completion expected");
                return c;
            }
        }
        panic!("nothing completed in 5 s");
    }
    for backend in [Backend::Uring, Backend::Epoll] {
        let Ok(mut w) = gaio::Builder::new().backend(backend).build::<u32, Vec<u8>>() else {
            assert_eq!(backend, Backend::Uring, "epoll is always there");
            assert!(
                gaio_uring::probe().is_err(),
                "the ring was refused although the probe found one"
            );
            continue;
        };
        let (mut client, server) = util::tcp_pair();
        let conn = w.watch(server).unwrap();
        w.read(conn, 1, vec![0; 64]).unwrap();
        client.write_all(b"first").unwrap();
        let c = next(&mut w);
        assert_eq!((c.context, c.data()), (1, &b"first"[..]), "{backend}");
        // A read in flight when the watcher moves, and bytes for it.
        w.read(conn, 2, vec![0; 64]).unwrap();
        client.write_all(b"second").unwrap();
        let mut w = std::thread::spawn(move || {
            let mut batch = Vec::new();
            let got = w.wait_io_timeout(&mut batch, Duration::from_millis(200));
            match (backend, got) {
                (Backend::Uring, Err(Error::WrongThread)) => {
                    assert!(batch.is_empty());
                    // Refused again, not failed for good.
                    let again = w.wait_io_timeout(&mut batch, Duration::from_millis(10));
                    assert!(matches!(again, Err(Error::WrongThread)), "{again:?}");
                }
                (Backend::Epoll, Ok(_)) => {
                    let c = batch.pop().unwrap_or_else(|| next(&mut w));
                    assert_eq!((c.op, c.context, c.data()), (Op::Read, 2, &b"second"[..]));
                }
                (backend, got) => panic!("{backend}: {got:?}"),
            }
            w
        })
        .join()
        .unwrap();
        if backend == Backend::Uring {
            // Back on the thread that ran the first I/O: the read of
            // "second" waited there all along.
            let c = next(&mut w);
            assert_eq!((c.op, c.context, c.data()), (Op::Read, 2, &b"second"[..]));
        }
        w.read(conn, 3, vec![0; 64]).unwrap();
        client.write_all(b"third").unwrap();
        let c = next(&mut w);
        assert_eq!(
            (c.op, c.context, c.data()),
            (Op::Read, 3, &b"third"[..]),
            "{backend}"
        );
        w.free(conn).unwrap();
        drop((w, client));
    }
    fds.check();
}

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
    assert!(
        matches!(&kqueue, Err(gaio::Error::Io(e)) if e.kind() == std::io::ErrorKind::Unsupported),
        "{kqueue:?}"
    );
}

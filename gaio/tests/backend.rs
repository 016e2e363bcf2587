//! Which poller this build of gaio runs on: the native one (epoll, kqueue),
//! or poll(2) when built with `--cfg gaio_force_poll` (gaio's crate docs,
//! "Backends and cfgs"). `cargo xtask test` runs the suite both ways and
//! sets `GAIO_EXPECT_POLLER=PollPoller` for the forced pass, so a pass
//! that silently lost the cfg fails here.

mod util;

use std::any::type_name;
use std::marker::PhantomData;

use gaio::DefaultPoller;

// The poller the cfgs call for. The assignment below compiles only if
// `DefaultPoller` is this type, so `cargo check --tests` (and `cargo xtask
// cross`, for the kqueue targets) checks the choice too.
#[cfg(gaio_force_poll)]
type Expected = gaio::PollPoller;
#[cfg(all(not(gaio_force_poll), any(target_os = "linux", target_os = "android")))]
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

    // On Linux, the kernel shows which one a watcher really uses: an epoll
    // instance is an `anon_inode:[eventpoll]` descriptor; poll(2) has none.
    #[cfg(target_os = "linux")]
    {
        let epolls = || {
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_str() == Some("anon_inode:[eventpoll]"))
                .count()
        };
        let before = epolls();
        let w: gaio::Watcher = gaio::Watcher::new().unwrap();
        let added = epolls() - before;
        drop(w);
        let want = usize::from(type_name::<DefaultPoller>() == type_name::<gaio::EpollPoller>());
        assert_eq!(added, want, "epoll descriptors a {name} watcher opened");
    }
}

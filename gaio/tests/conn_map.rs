//! `ConnMap` with a real watcher: state found from completions' handles,
//! and a handle whose descriptor number the system gave to a new
//! connection finds nothing (nor the new connection's state).

mod util;

use std::time::Duration;

use gaio::{ConnMap, Mode, Op, Submit, Watcher};

const LIMIT: Duration = Duration::from_secs(8);

#[test]
fn a_freed_handle_finds_nothing_when_its_descriptor_number_is_reused() {
    let _lock = util::exclusive(); // the test relies on the lowest free descriptor number being reused
    let mut w: Watcher<u32, Vec<u8>> = util::watcher(Mode::Inline);
    let listener = gaio::listen("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = w.watch_listener(listener).unwrap();
    let mut state: ConnMap<String> = ConnMap::new();

    // Clients connect before the accept, so the accepted socket takes the
    // lowest free descriptor number.
    let accept_one = |w: &mut Watcher<u32, Vec<u8>>, name: &str| {
        w.accept(listener, 0).unwrap();
        let c = util::wait_for(w, 1, LIMIT).pop().unwrap();
        assert_eq!(c.op, Op::Accept);
        assert!(c.error.is_none(), "{:?}", c.error);
        (c.conn, name.to_string())
    };
    let _c1 = std::net::TcpStream::connect(addr).unwrap();
    let _c2 = std::net::TcpStream::connect(addr).unwrap();
    let (first, name) = accept_one(&mut w, "first");
    assert!(state.insert(first, name).is_none());
    assert_eq!(state.get(first).map(String::as_str), Some("first"));

    // Freed without `remove`: the slot still holds the old state.
    w.free(first).unwrap();
    let (second, name) = accept_one(&mut w, "second");
    assert_eq!(
        second.fd(),
        first.fd(),
        "the system did not reuse the descriptor number"
    );
    assert_ne!(second, first);
    assert!(
        state.get(second).is_none(),
        "the new connection sees the old one's state"
    );
    assert!(
        state.insert(second, name).is_none(),
        "a stale entry reported as replaced"
    );
    assert_eq!(state.get(second).map(String::as_str), Some("second"));
    assert!(state.get(first).is_none(), "the stale handle finds the new state");
    assert!(
        state.remove(first).is_none(),
        "the stale handle removed the new state"
    );
    assert_eq!(state.len(), 1);
    let all: Vec<_> = state.iter().map(|(c, s)| (c, s.clone())).collect();
    assert_eq!(all, [(second, "second".to_string())]);
    w.free(second).unwrap();
}

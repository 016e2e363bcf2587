//! Spreading one listener's connections over a group of watchers: the
//! engine that accepts keeps a connection or hands it, registered with the
//! chosen watcher's poller, to that watcher's engine, which takes it in
//! and completes an accept there with a copy of the multishot accept's
//! context. Each watcher's user code thus sees `Op::Accept` completions
//! whichever engine made the `accept(2)` call.
//!
//! The choice is round-robin, or the watcher holding the fewest
//! connections: each engine publishes its count (`Shared::conns`, a
//! plain store as connections come and go) and the connections sent to it
//! and not yet taken in (`Shared::adopting`), so a burst accepted before
//! the others have run does not all go to the one that looked idlest.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::events::bare_completion;
use super::Engine;
use crate::shared::{Command, Role, Shared};
use crate::sys::FdInfo;
use crate::{Conn, Listener, Op, PeerAddr, Poller};

/// The watchers one listener's connections are spread over.
pub(crate) struct Group<P, C, B> {
    members: Box<[Arc<Shared<P, C, B>>]>,
    least_loaded: bool,
    /// The next watcher in turn (round-robin), or where the search for the
    /// least loaded starts (ties go round-robin).
    next: AtomicUsize,
}

impl<P: Poller, C, B> Group<P, C, B> {
    /// A group of `members`, choosing round-robin or the least loaded.
    pub(crate) fn new(members: Vec<Arc<Shared<P, C, B>>>, least_loaded: bool) -> Self {
        assert!(!members.is_empty(), "a group has at least one watcher");
        Group {
            members: members.into_boxed_slice(),
            least_loaded,
            next: AtomicUsize::new(0),
        }
    }

    /// The member that gets the next connection.
    ///
    /// A closed watcher is no candidate: it refuses every connection
    /// handed to it (the listening one then keeps it), and it holds
    /// nothing, so its load reads 0.
    pub(super) fn pick(&self) -> usize {
        let n = self.members.len();
        let open = |i: &usize| !self.members[*i].is_closed();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        if !self.least_loaded {
            if open(&start) {
                return start;
            }
            // The next turns, until an open watcher's: the open ones keep
            // taking turns evenly.
            return (1..n)
                .map(|_| self.next.fetch_add(1, Ordering::Relaxed) % n)
                .find(open)
                .unwrap_or(start);
        }
        (0..n)
            .map(|i| (start + i) % n)
            .filter(open)
            .min_by_key(|&i| self.members[i].load())
            .unwrap_or(start)
    }
}

/// This watcher's place in a group: which member it is, and the listener
/// whose multishot accept spreads.
pub(super) struct Seat<P, C, B> {
    group: Arc<Group<P, C, B>>,
    me: usize,
    listener: Conn,
}

impl<P: Poller, C, B: crate::IoBuf> Engine<P, C, B> {
    /// Spreads the connections `listener`'s multishot accept takes over
    /// `group`, of which this watcher is member `me`.
    pub(crate) fn spread_accepts(&mut self, listener: Listener, group: Arc<Group<P, C, B>>, me: usize) {
        self.spread = Some(Seat {
            group,
            me,
            listener: listener.conn(),
        });
    }

    /// Hands a connection just accepted on `listener` to the watcher the
    /// group picks. Returns it if this watcher keeps it: no group, not the
    /// spreading listener, a one-shot accept, this watcher picked, or the
    /// one picked refused it (closed).
    pub(super) fn hand_to_peer(
        &mut self,
        listener: Conn,
        fd: OwnedFd,
        info: FdInfo,
        peer: &mut Option<PeerAddr>,
    ) -> Option<OwnedFd> {
        let Some(seat) = self.spread.as_ref().filter(|s| s.listener == listener) else {
            return Some(fd);
        };
        let head = self.conns.get(listener.fd)?.reads.head;
        let head = self.nodes.get(head);
        let clone = self.clone_context.filter(|_| head.multishot)?;
        let target = seat.group.pick();
        if target == seat.me {
            return Some(fd);
        }
        let to = &seat.group.members[target];
        let Ok(conn) = to.enroll(fd.as_fd()) else {
            return Some(fd);
        };
        let context = clone(&head.context);
        to.adopting.fetch_add(1, Ordering::Relaxed);
        let adopt = Command::Adopt {
            conn,
            fd,
            info,
            context,
            peer: peer.take(),
        };
        match to.push(adopt) {
            Ok(()) => None,
            Err(Command::Adopt { fd, peer: back, .. }) => {
                // Closed meanwhile: keep the connection here.
                to.adopting.fetch_sub(1, Ordering::Relaxed);
                let _ = to.poller.deregister(fd.as_fd());
                *peer = back;
                Some(fd)
            }
            Err(_) => unreachable!("push hands back the command it was given"),
        }
    }

    /// Takes in a connection another watcher of the group accepted, and
    /// completes its accept here.
    pub(super) fn adopt(
        &mut self,
        conn: Conn,
        fd: OwnedFd,
        info: FdInfo,
        context: C,
        peer: Option<PeerAddr>,
    ) {
        self.take_in(conn, fd, info, Role::Connection);
        self.shared.adopting.fetch_sub(1, Ordering::Relaxed);
        self.ready
            .push(bare_completion(Op::Accept, conn, context, None, peer));
    }
}

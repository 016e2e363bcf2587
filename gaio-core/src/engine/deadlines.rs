//! Deadlines firing: a request whose deadline passed completes with
//! `Error::Deadline` and its progress, wherever it stands in its list.

use bytes::Bytes;

use super::Dir;
use super::Engine;
use crate::{Conn, Error, IoBuf, Poller};

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    pub(super) fn fire_timers(&mut self) {
        if self.timers.earliest().is_none() {
            return;
        }
        let now = self.now_ns();
        while let Some(entry) = self.timers.pop_due(now) {
            let Some(node) = self.nodes.find_timer(entry.node, entry.timer) else {
                self.timers.stale_dropped();
                continue;
            };
            let dir = Dir::of(node.op);
            // A pending node is in a list of the connection now at its
            // descriptor: freeing a connection takes all its nodes out.
            let Some(state) = self.conns.get_mut(entry.fd as usize).and_then(Option::as_mut) else {
                continue;
            };
            let conn = Conn {
                fd: entry.fd,
                gen: state.gen,
                owner: self.shared.id,
            };
            let was_head = state.list(dir).head == entry.node;
            // The timer is the reason this request ends: do not count it
            // as stale.
            self.nodes.get_mut(entry.node).timer = 0;
            self.finish_in(conn, dir, Some(entry.node), Some(Error::Deadline), Bytes::new());
            if was_head {
                // The next request in line may be able to run now.
                self.drive(conn, dir);
            }
        }
    }
}

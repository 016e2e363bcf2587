//! Making completions: the one place a finished request, pending or never
//! stored, becomes a [`Completion`].

use bytes::Bytes;

use super::slab::{List, Node};
use super::{Dir, Engine};
use crate::request::{Request, Target};
use crate::{Buffer, Completion, Conn, Error, Poller};

impl<P: Poller, C, B> Engine<P, C, B> {
    /// Completes the head request of a connection's list.
    pub(super) fn finish_head(&mut self, conn: Conn, dir: Dir, error: Option<Error>, swap: Bytes) {
        self.finish_in(conn, dir, None, error, swap);
    }

    /// Completes request `idx` of a connection's list, wherever it stands
    /// (`None`: the head).
    pub(super) fn finish_in(
        &mut self,
        conn: Conn,
        dir: Dir,
        idx: Option<u32>,
        error: Option<Error>,
        swap: Bytes,
    ) {
        let Some(state) = self.conns.get_mut(conn.fd as usize).and_then(Option::as_mut) else {
            return;
        };
        if state.gen != conn.gen {
            return;
        }
        let list = state.list(dir);
        if list.is_empty() {
            return;
        }
        let idx = idx.unwrap_or(list.head);
        let node = self.nodes.remove(list, idx);
        self.complete(conn, node, error, swap);
    }

    /// Takes node `idx` out of `list` (a list of `conn`, no longer in the
    /// table) and makes its completion ready.
    pub(super) fn finish(
        &mut self,
        conn: Conn,
        list: &mut List,
        idx: u32,
        error: Option<Error>,
        swap: Bytes,
    ) {
        let node = self.nodes.remove(list, idx);
        self.complete(conn, node, error, swap);
    }

    /// Makes the completion of `conn`'s node, taken out of the slab, ready.
    fn complete(&mut self, conn: Conn, node: Node<C, B>, error: Option<Error>, swap: Bytes) {
        if node.timer != 0 {
            let nodes = &self.nodes;
            self.timers
                .note_stale(|e| nodes.find_timer(e.node, e.timer).is_some());
        }
        self.ready.push(completion(conn, node, error, swap));
    }
}

/// The completion of a request that ran: its progress, its buffer (or
/// the swap slice read), and how it ended.
pub(super) fn completion<C, B>(
    conn: Conn,
    node: Node<C, B>,
    error: Option<Error>,
    swap: Bytes,
) -> Completion<C, B> {
    Completion {
        op: node.op,
        conn,
        context: node.context,
        bytes: node.done,
        buffer: match node.buf {
            Some(b) => Buffer::User(b),
            None => Buffer::Swap(swap),
        },
        error,
    }
}

/// The completion of a request that never reached a connection's list.
pub(super) fn completion_of<C, B>(req: Request<C, B>, error: Error) -> Completion<C, B> {
    Completion {
        op: req.op,
        conn: req.conn,
        context: req.context,
        bytes: 0,
        buffer: match req.target {
            Target::User(b, _) => Buffer::User(b),
            Target::Swap => Buffer::Swap(Bytes::new()),
        },
        error: Some(error),
    }
}

//! Requests on no connection: a notification completes in the next batch,
//! a sleep at its deadline (or when cancelled). Sleeps share the deadline
//! heap with the requests' deadlines, under the descriptor number
//! [`SLEEP_FD`], which no connection has. A sleep's heap entry carries a
//! sequence number the engine gives it when it takes the sleep in, so equal
//! deadlines fire in submission order (a [`Timer`] identity is made when
//! the request is built, which may be in another order). Contexts wait in
//! a map keyed by that number, beside a map from timer identity to it, so
//! a cancel finds its sleep in two lookups and a stale heap entry is
//! recognised by its absence.

use bytes::Bytes;
use std::collections::HashMap;

use super::complete::{completion, Extra};
use super::slab::{Node, Slab};
use super::timers::Entry;
use super::{to_ns, Engine};
use crate::request::{Request, Target};
use crate::{Conn, Error, Op, Poller, Timer};

/// The descriptor number a sleep's heap entry carries: no connection's.
pub(super) const SLEEP_FD: u32 = u32::MAX;

/// Whether a heap entry still has a request or a sleep behind it.
pub(super) fn entry_is_live<C, B, V>(nodes: &Slab<C, B>, sleeps: &HashMap<u64, V>, e: &Entry) -> bool {
    if e.fd == SLEEP_FD {
        sleeps.contains_key(&e.timer)
    } else {
        nodes.find_timer(e.node, e.timer).is_some()
    }
}

impl<P: Poller, C, B> Engine<P, C, B> {
    /// Takes a notification or a sleep in.
    pub(super) fn apply_connless(&mut self, req: Request<C, B>) {
        match (req.op, req.target, req.deadline) {
            (Op::Sleep, Target::Timer(Timer(id)), Some(deadline)) => {
                // Even a deadline already past goes through the heap, so
                // sleeps complete in deadline order whatever their
                // submission order.
                let seq = self.timers.next_identity();
                self.sleeps.insert(seq, (id, req.context));
                self.sleep_ids.insert(id, seq);
                self.timers.insert(Entry {
                    at_ns: to_ns(deadline.saturating_duration_since(self.epoch)),
                    timer: seq,
                    node: 0,
                    fd: SLEEP_FD,
                });
            }
            (op, ..) => {
                debug_assert_eq!(op, Op::Notify);
                self.ready
                    .push(bare_completion(op, Conn::NONE, req.context, None, None));
            }
        }
    }

    /// Cancels a sleep that is still pending.
    pub(crate) fn cancel_timer(&mut self, timer: Timer) {
        let Some(seq) = self.sleep_ids.remove(&timer.0) else {
            return;
        };
        if let Some((_, context)) = self.sleeps.remove(&seq) {
            self.ready.push(bare_completion(
                Op::Sleep,
                Conn::NONE,
                context,
                Some(Error::Cancelled),
                None,
            ));
            let (nodes, sleeps) = (&self.nodes, &self.sleeps);
            self.timers.note_stale(|e| entry_is_live(nodes, sleeps, e));
        }
    }

    /// Completes the sleep of a heap entry that came due (nothing if it
    /// was cancelled: the entry is stale).
    pub(super) fn fire_sleep(&mut self, entry: Entry) {
        match self.sleeps.remove(&entry.timer) {
            Some((id, context)) => {
                self.sleep_ids.remove(&id);
                self.ready
                    .push(bare_completion(Op::Sleep, Conn::NONE, context, None, None));
            }
            None => self.timers.stale_dropped(),
        }
    }

    /// Completes every pending sleep with `error`, in deadline order (the
    /// watcher is closing).
    pub(super) fn end_sleeps(&mut self, error: impl Fn() -> Error) {
        if self.sleeps.is_empty() {
            return;
        }
        while let Some(entry) = self.timers.pop_due(u64::MAX) {
            if entry.fd != SLEEP_FD {
                continue;
            }
            if let Some((_, context)) = self.sleeps.remove(&entry.timer) {
                self.ready.push(bare_completion(
                    Op::Sleep,
                    Conn::NONE,
                    context,
                    Some(error()),
                    None,
                ));
            }
        }
        self.sleeps = HashMap::new();
        self.sleep_ids = HashMap::new();
    }
}

/// A completion that moved no bytes and holds no buffer: a notification,
/// a sleep, an adopted connection's accept.
pub(super) fn bare_completion<C, B>(
    op: Op,
    conn: Conn,
    context: C,
    error: Option<Error>,
    peer: Option<crate::PeerAddr>,
) -> crate::Completion<C, B> {
    let extra = Extra {
        peer,
        ..Extra::default()
    };
    completion(conn, Node::new(op, context, None, 0), error, Bytes::new(), extra)
}

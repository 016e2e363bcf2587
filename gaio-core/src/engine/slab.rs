//! Storage for pending requests: one slab shared by all connections, with
//! an intrusive doubly-linked FIFO list per connection and direction.
//!
//! A connection with nothing pending costs two empty lists (16 bytes) and no
//! allocation; a pending request costs one slab slot, re-used after it
//! completes, so a steady loop allocates nothing.

use super::chunked::Chunked;
use crate::Op;

/// "No node" in list links.
pub(super) const NIL: u32 = u32::MAX;

/// A pending request. Its connection is the one whose list holds it (a
/// timer entry records the descriptor), so the node does not repeat it:
/// a pending swap read stays at 64 bytes.
pub(super) struct Node<C, B> {
    pub(super) op: Op,
    pub(super) context: C,
    /// The request's own buffer; `None` for a read into swap memory.
    pub(super) buf: Option<B>,
    /// Bytes moved so far.
    pub(super) done: usize,
    /// Identity of this request's deadline in the timer heap; 0: none.
    pub(super) timer: u64,
    prev: u32,
    next: u32,
}

impl<C, B> Node<C, B> {
    pub(super) fn new(op: Op, context: C, buf: Option<B>, timer: u64) -> Self {
        Node {
            op,
            context,
            buf,
            done: 0,
            timer,
            prev: NIL,
            next: NIL,
        }
    }

    /// The node after this one in its list.
    pub(super) fn next(&self) -> u32 {
        self.next
    }
}

/// The slab's storage unit, for size checks.
#[cfg(test)]
pub(super) type SlotFor<C, B> = Slot<C, B>;

pub(super) enum Slot<C, B> {
    Used(Node<C, B>),
    Free { next_free: u32 },
}

/// A FIFO list of nodes: one per connection and direction.
#[derive(Debug, Clone, Copy)]
pub(super) struct List {
    pub(super) head: u32,
    tail: u32,
}

impl List {
    pub(super) const EMPTY: List = List { head: NIL, tail: NIL };

    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }
}

/// The slab of pending requests.
pub(super) struct Slab<C, B> {
    slots: Chunked<Slot<C, B>>,
    free_head: u32,
    len: usize,
}

impl<C, B> Slab<C, B> {
    pub(super) fn new() -> Self {
        Slab {
            slots: Chunked::new(),
            free_head: NIL,
            len: 0,
        }
    }

    /// Number of pending requests.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Stores `node` at the tail of `list`; returns its index.
    pub(super) fn push_back(&mut self, list: &mut List, mut node: Node<C, B>) -> u32 {
        node.prev = list.tail;
        node.next = NIL;
        let idx = if self.free_head != NIL {
            let idx = self.free_head;
            match self.slots[idx as usize] {
                Slot::Free { next_free } => self.free_head = next_free,
                Slot::Used(_) => unreachable!("free list points at a used slot"),
            }
            self.slots[idx as usize] = Slot::Used(node);
            idx
        } else {
            let idx = u32::try_from(self.slots.len()).expect("more than 4 billion pending requests");
            assert!(idx != NIL, "more than 4 billion pending requests");
            self.slots.push(Slot::Used(node));
            idx
        };
        if list.tail == NIL {
            list.head = idx;
        } else {
            self.get_mut(list.tail).next = idx;
        }
        list.tail = idx;
        self.len += 1;
        idx
    }

    /// Unlinks node `idx` from `list` and takes it out of the slab.
    pub(super) fn remove(&mut self, list: &mut List, idx: u32) -> Node<C, B> {
        let (prev, next) = {
            let n = self.get(idx);
            (n.prev, n.next)
        };
        if prev == NIL {
            list.head = next;
        } else {
            self.get_mut(prev).next = next;
        }
        if next == NIL {
            list.tail = prev;
        } else {
            self.get_mut(next).prev = prev;
        }
        let slot = std::mem::replace(
            &mut self.slots[idx as usize],
            Slot::Free {
                next_free: self.free_head,
            },
        );
        self.free_head = idx;
        self.len -= 1;
        match slot {
            Slot::Used(node) => node,
            Slot::Free { .. } => unreachable!("removed a free slot"),
        }
    }

    /// The node at `idx`, which must be in use.
    pub(super) fn get(&self, idx: u32) -> &Node<C, B> {
        match &self.slots[idx as usize] {
            Slot::Used(n) => n,
            Slot::Free { .. } => unreachable!("slot {idx} is free"),
        }
    }

    /// The node at `idx`, which must be in use.
    pub(super) fn get_mut(&mut self, idx: u32) -> &mut Node<C, B> {
        match &mut self.slots[idx as usize] {
            Slot::Used(n) => n,
            Slot::Free { .. } => unreachable!("slot {idx} is free"),
        }
    }

    /// The node at `idx` if it is in use and carries timer identity `timer`.
    pub(super) fn find_timer(&self, idx: u32, timer: u64) -> Option<&Node<C, B>> {
        match self.slots.get(idx as usize) {
            Some(Slot::Used(n)) if n.timer == timer => Some(n),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ctx: u32) -> Node<u32, Vec<u8>> {
        Node::new(Op::Read, ctx, None, 0)
    }

    fn collect(slab: &Slab<u32, Vec<u8>>, list: &List) -> Vec<u32> {
        let mut out = Vec::new();
        let mut i = list.head;
        while i != NIL {
            out.push(slab.get(i).context);
            i = slab.get(i).next();
        }
        out
    }

    #[test]
    fn lists_keep_fifo_order_and_unlink_from_anywhere() {
        let mut slab = Slab::new();
        let (mut a, mut b) = (List::EMPTY, List::EMPTY);
        let ids: Vec<u32> = (0..5).map(|i| slab.push_back(&mut a, node(i))).collect();
        slab.push_back(&mut b, node(100));
        assert_eq!(collect(&slab, &a), vec![0, 1, 2, 3, 4]);
        assert_eq!(slab.remove(&mut a, ids[2]).context, 2);
        assert_eq!(slab.remove(&mut a, ids[0]).context, 0);
        assert_eq!(slab.remove(&mut a, ids[4]).context, 4);
        assert_eq!(collect(&slab, &a), vec![1, 3]);
        // Freed slots are reused, and lists stay separate.
        slab.push_back(&mut a, node(5));
        assert_eq!(collect(&slab, &a), vec![1, 3, 5]);
        assert_eq!(collect(&slab, &b), vec![100]);
        assert_eq!(slab.len(), 4);
        assert!(slab.slots.len() <= 6);
    }

    #[test]
    fn timer_identity_must_match() {
        let mut slab: Slab<u32, Vec<u8>> = Slab::new();
        let mut l = List::EMPTY;
        let i = slab.push_back(&mut l, Node::new(Op::Write, 7, None, 42));
        assert!(slab.find_timer(i, 42).is_some());
        assert!(slab.find_timer(i, 41).is_none());
        slab.remove(&mut l, i);
        assert!(slab.find_timer(i, 42).is_none());
        assert!(l.is_empty());
    }
}

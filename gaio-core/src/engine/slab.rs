//! Storage for pending requests: one slab shared by all connections, with
//! an intrusive doubly-linked FIFO list per connection and direction.
//!
//! A connection with nothing pending costs two empty lists (16 bytes) and no
//! allocation; a pending request costs one slab slot, re-used after it
//! completes, so a steady loop allocates nothing.
//!
//! The slots live in chunks of 1024 that never move. A burst of pending
//! requests grows the slab; [`Slab::trim`] gives back every chunk after the
//! highest slot still in use (the engine calls it once it has been idle
//! after a burst). A slot's index is its node's identity (lists and timer
//! entries hold it), so nodes never move: a chunk stays while any slot in
//! it or in a later chunk is in use, and one long-pending request in a high
//! slot keeps every chunk up to its own. Trimming also relinks the free
//! slots lowest first, so new requests fill the slab from the bottom and
//! the next trim finds the top empty.

use super::chunked::Chunked;
use crate::Op;

/// "No node" in list links.
pub(super) const NIL: u32 = u32::MAX;

/// A pending request. Its connection is the one whose list holds it (a
/// timer entry records the descriptor), so the node does not repeat it:
/// a pending swap read stays at 64 bytes.
pub(super) struct Node<C, B> {
    pub(super) op: Op,
    /// A multishot accept: each connection completes a copy of it, and it
    /// stays at the head of its list (in the padding after `op`).
    pub(super) multishot: bool,
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
            multishot: false,
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
    #[cfg_attr(not(any(test, feature = "tracing")), allow(dead_code))] // read by a diagnostic
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Slots allocated, used or free: a multiple of the chunk size (1024),
    /// at least `len()`.
    pub(super) fn capacity(&self) -> usize {
        self.slots.capacity()
    }

    /// Gives back the chunks after the highest slot in use (all of them if
    /// none is) and relinks the remaining free slots in ascending order,
    /// so the lowest are reused first.
    ///
    /// Used nodes keep their indices, contents and list links; `len()` is
    /// unchanged. Any index past the highest used slot, one of a trimmed
    /// chunk included, is free afterwards: `find_timer` returns `None`
    /// for it. Costs one pass over the slots: meant for an idle engine.
    pub(super) fn trim(&mut self) {
        self.slots.trim_trailing(|s| matches!(s, Slot::Free { .. }));
        self.free_head = NIL;
        for idx in (0..self.slots.len()).rev() {
            if let Slot::Free { next_free } = &mut self.slots[idx] {
                *next_free = self.free_head;
                // Below the table's length, which fits in u32 (`push_back`).
                self.free_head = idx as u32;
            }
        }
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

    #[test]
    fn trim_gives_back_chunks_after_the_highest_used_slot() {
        use super::super::chunked::CHUNK;
        let chunk = CHUNK as u32;
        // Under Miri: three chunks, the last one partly filled, and `high`
        // in the second. Even, so in `lists[0]`.
        let (total, high) = if cfg!(miri) {
            (2 * chunk + 5, chunk + 8)
        } else {
            (10_000, 2 * chunk + 8)
        };
        let kept = (high / chunk + 1) as usize * CHUNK;
        let mut slab: Slab<u32, Vec<u8>> = Slab::new();
        let mut lists = [List::EMPTY; 2];
        for i in 0..total {
            // Timer identity i + 1: never 0.
            let idx = slab.push_back(
                &mut lists[i as usize % 2],
                Node::new(Op::Read, i, None, u64::from(i) + 1),
            );
            assert_eq!(idx, i);
        }
        assert!(slab.capacity() >= total as usize);
        // Keep 3, 4, 10 and `high`; complete the rest.
        let live = [3, 4, 10, high];
        for i in (0..total).filter(|i| !live.contains(i)) {
            assert_eq!(slab.remove(&mut lists[i as usize % 2], i).context, i);
        }
        assert_eq!(slab.capacity(), (total as usize).div_ceil(CHUNK) * CHUNK);
        slab.trim();
        // Down to the chunk of `high`.
        assert_eq!((slab.len(), slab.capacity()), (4, kept));
        // Live nodes keep their indices, contents and FIFO order.
        assert_eq!(collect(&slab, &lists[0]), vec![4, 10, high]);
        assert_eq!(collect(&slab, &lists[1]), vec![3]);
        assert_eq!(
            slab.find_timer(high, u64::from(high) + 1).map(|n| n.context),
            Some(high)
        );
        // Slots past the highest used one are gone, in its chunk or after.
        assert!(slab.find_timer(high + 1, u64::from(high) + 2).is_none());
        assert!(slab.find_timer(total - 1, u64::from(total)).is_none());
        assert!(slab.find_timer(u32::MAX - 1, 1).is_none());
        // Free slots are reused lowest first, then the slab grows from the
        // top again without a new chunk.
        let mut fresh = List::EMPTY;
        let reused: Vec<u32> = (0..high - 3)
            .map(|i| slab.push_back(&mut fresh, node(1_000_000 + i)))
            .collect();
        let expected: Vec<u32> = (0..high).filter(|i| !live.contains(i)).collect();
        assert_eq!(reused, expected);
        assert_eq!(slab.push_back(&mut fresh, node(7)), high + 1);
        assert_eq!(slab.capacity(), kept);
        assert_eq!(collect(&slab, &lists[0]), vec![4, 10, high]);
        assert_eq!(slab.remove(&mut lists[0], 10).context, 10);
        assert_eq!(collect(&slab, &lists[0]), vec![4, high]);
        // Emptied completely, the slab trims to no chunk at all.
        for i in [4, high] {
            slab.remove(&mut lists[0], i);
        }
        slab.remove(&mut lists[1], 3);
        while !fresh.is_empty() {
            let head = fresh.head;
            slab.remove(&mut fresh, head);
        }
        assert_eq!(slab.len(), 0);
        slab.trim();
        assert_eq!((slab.len(), slab.capacity()), (0, 0));
        assert!(slab.find_timer(0, 1).is_none());
        assert_eq!(slab.push_back(&mut fresh, node(9)), 0);
        assert_eq!(collect(&slab, &fresh), vec![9]);
    }

    #[test]
    fn trim_of_a_full_slab_keeps_everything() {
        let mut slab: Slab<u32, Vec<u8>> = Slab::new();
        let mut l = List::EMPTY;
        let ids: Vec<u32> = (0..5).map(|i| slab.push_back(&mut l, node(i))).collect();
        slab.trim();
        assert_eq!((slab.len(), collect(&slab, &l)), (5, vec![0, 1, 2, 3, 4]));
        // No free slot: the next push appends.
        assert_eq!(slab.push_back(&mut l, node(5)), 5);
        // Trimming relinks free slots lowest first, whatever order they
        // were freed in.
        for i in [ids[0], ids[3], ids[1]] {
            slab.remove(&mut l, i);
        }
        slab.trim();
        let again: Vec<u32> = (0..4).map(|i| slab.push_back(&mut l, node(10 + i))).collect();
        assert_eq!(again, vec![0, 1, 3, 6]);
        assert_eq!(collect(&slab, &l), vec![2, 4, 5, 10, 11, 12, 13]);
    }
}

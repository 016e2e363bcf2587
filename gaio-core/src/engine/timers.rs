//! Deadlines of pending requests: a min-heap keyed by deadline.
//!
//! Entries are not removed when their request completes early; they are
//! recognised as stale when they surface (the request's timer identity no
//! longer matches). To keep memory bounded when most requests complete
//! before their deadline, the heap is rebuilt without stale entries once
//! they outnumber the live ones.
//!
//! Neither that rebuild nor popping shrinks the heap's allocation, so a
//! burst of requests with deadlines leaves it at its peak size.
//! [`Timers::trim`] drops every stale entry and shrinks the allocation to
//! the live entries, but no lower than [`TRIM_KEEP`]; the engine calls it
//! once it has been idle after a burst. What stays is one entry per
//! pending request with a deadline, and room for a few more so that a
//! quiet engine does not allocate for its next deadlines.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Entries the heap keeps room for after [`Timers::trim`].
pub(super) const TRIM_KEEP: usize = 64;

/// One deadline: when, which timer identity, which slab slot, and the
/// descriptor of the connection whose list holds that slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Entry {
    pub(super) at_ns: u64,
    pub(super) timer: u64,
    pub(super) node: u32,
    pub(super) fd: u32,
}

/// The deadline heap.
pub(super) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    stale: usize,
    next_timer: u64,
}

impl Timers {
    pub(super) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            stale: 0,
            next_timer: 1,
        }
    }

    /// A fresh timer identity (never 0).
    pub(super) fn next_identity(&mut self) -> u64 {
        let t = self.next_timer;
        self.next_timer += 1;
        t
    }

    pub(super) fn insert(&mut self, entry: Entry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest deadline, live or stale.
    pub(super) fn earliest(&self) -> Option<u64> {
        self.heap.peek().map(|e| e.0.at_ns)
    }

    /// Takes the earliest entry if it is due at `now_ns`.
    pub(super) fn pop_due(&mut self, now_ns: u64) -> Option<Entry> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.at_ns <= now_ns => {
                let e = *e;
                self.heap.pop();
                Some(e)
            }
            _ => None,
        }
    }

    /// Notes that a request with a deadline completed otherwise; rebuilds
    /// the heap with `is_live` once stale entries dominate.
    pub(super) fn note_stale(&mut self, is_live: impl Fn(&Entry) -> bool) {
        self.stale += 1;
        if self.stale > 1024 && self.stale * 2 > self.heap.len() {
            self.heap.retain(|e| is_live(&e.0));
            self.stale = 0;
        }
    }

    /// A stale entry surfaced and was dropped.
    pub(super) fn stale_dropped(&mut self) {
        self.stale = self.stale.saturating_sub(1);
    }

    /// Drops every stale entry (those for which `is_live` is false, as
    /// in `note_stale`), forgets the count of stale entries, and shrinks
    /// the allocation to the live entries but no lower than [`TRIM_KEEP`].
    ///
    /// Costs a rebuild of the heap and a reallocation: meant for an idle
    /// engine. Live entries keep their deadline order.
    pub(super) fn trim(&mut self, is_live: impl Fn(&Entry) -> bool) {
        self.heap.retain(|e| is_live(&e.0));
        self.stale = 0;
        self.heap.shrink_to(TRIM_KEEP);
    }

    /// Entries the heap has room for, live or stale.
    pub(super) fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(super) fn clear(&mut self) {
        self.heap.clear();
        self.stale = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut t = Timers::new();
        for (i, at) in [30u64, 10, 20, 10].into_iter().enumerate() {
            let timer = t.next_identity();
            t.insert(Entry {
                at_ns: at,
                timer,
                node: i as u32,
                fd: 3,
            });
        }
        assert_eq!(t.earliest(), Some(10));
        assert!(t.pop_due(9).is_none());
        let a = t.pop_due(25).unwrap();
        let b = t.pop_due(25).unwrap();
        // Equal deadlines come out in submission order.
        assert_eq!((a.at_ns, a.node, b.at_ns, b.node), (10, 1, 10, 3));
        assert_eq!(t.pop_due(25).unwrap().node, 2);
        assert!(t.pop_due(25).is_none());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn stale_entries_are_compacted() {
        let mut t = Timers::new();
        for i in 0..4000u32 {
            let timer = t.next_identity();
            t.insert(Entry {
                at_ns: u64::from(i),
                timer,
                node: i,
                fd: 3,
            });
        }
        // Every odd node stays live; even ones completed early.
        for _ in 0..2100 {
            t.note_stale(|e| e.node % 2 == 1);
        }
        assert!(t.len() <= 2000 + 1100, "heap not compacted: {}", t.len());
        let mut last = 0;
        while let Some(e) = t.pop_due(u64::MAX) {
            assert!(e.at_ns >= last);
            last = e.at_ns;
        }
    }

    #[test]
    fn trim_keeps_only_live_entries_and_gives_back_memory() {
        let total: u32 = if cfg!(miri) { 1000 } else { 10_000 };
        let mut t = Timers::new();
        for i in 0..total {
            let timer = t.next_identity();
            // A permutation of 0..total (7919 is prime to both sizes).
            let at_ns = u64::from(i) * 7919 % u64::from(total);
            t.insert(Entry {
                at_ns,
                timer,
                node: i,
                fd: 3,
            });
        }
        let live = |e: &Entry| e.node % 100 == 0;
        for _ in 0..10 {
            t.note_stale(live);
        }
        let before = t.capacity();
        assert!(before >= total as usize);
        t.trim(live);
        assert_eq!((t.len(), t.stale), (total as usize / 100, 0));
        assert!(
            t.capacity() >= TRIM_KEEP && t.capacity() < before / 10,
            "capacity {}",
            t.capacity()
        );
        let mut expected: Vec<(u64, u32)> = (0..total)
            .filter(|i| i % 100 == 0)
            .map(|i| (u64::from(i) * 7919 % u64::from(total), i))
            .collect();
        expected.sort_unstable();
        let mut popped = Vec::new();
        while let Some(e) = t.pop_due(u64::MAX) {
            popped.push((e.at_ns, e.node));
        }
        assert_eq!(popped, expected);
        // An empty heap keeps room for a few deadlines.
        t.trim(live);
        assert_eq!((t.len(), t.capacity()), (0, TRIM_KEEP));
        // A small heap is not grown by a trim.
        let mut small = Timers::new();
        small.insert(Entry {
            at_ns: 1,
            timer: 1,
            node: 0,
            fd: 3,
        });
        small.trim(|_| true);
        assert_eq!(small.len(), 1);
        assert!(small.capacity() < TRIM_KEEP);
    }
}

//! Deadlines of pending requests: a min-heap keyed by deadline.
//!
//! Entries are not removed when their request completes early; they are
//! recognised as stale when they surface (the request's timer identity no
//! longer matches). To keep memory bounded when most requests complete
//! before their deadline, the heap is rebuilt without stale entries once
//! they outnumber the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
}

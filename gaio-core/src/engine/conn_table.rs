//! The connection table: each connection's state, found by its descriptor
//! number.
//!
//! Descriptor numbers are the process's, and a process may run a watcher
//! per core, each holding every N-th descriptor. A table with an entry per
//! descriptor number would then span every descriptor in every watcher: N
//! times the memory. So the states are kept dense, one slot per connection
//! this watcher holds, and the descriptor number leads to its slot through
//! an index of 4 bytes per descriptor number. A connection leaving moves
//! the last slot into its place (its descriptor, which the state holds,
//! says which index entry to update).
//!
//! The slots live in a [`Chunked`] array (growing never copies them), the
//! index in a plain vector; the engine gives back what lies past the last
//! entry in use of both once idle.

use std::os::fd::AsRawFd;

use super::chunked::{Chunked, CHUNK};
use super::conn_state::ConnState;

/// No slot: the index entry of a descriptor number this watcher does not
/// hold.
const NO_SLOT: u32 = u32::MAX;

pub(super) struct ConnTable {
    /// Slot of each descriptor number, or [`NO_SLOT`]: a flat vector, one
    /// bounds check per look-up (4 bytes per descriptor number: what a
    /// reallocation leaves behind is small), its length a whole number of
    /// chunks.
    index: Vec<u32>,
    /// The states, dense: slots `0..slots.len()` are all in use.
    slots: Chunked<ConnState>,
}

impl ConnTable {
    pub(super) const fn new() -> Self {
        ConnTable {
            index: Vec::new(),
            slots: Chunked::new(),
        }
    }

    /// Connections held.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// True if it holds no connection.
    pub(super) fn is_empty(&self) -> bool {
        self.slots.len() == 0
    }

    /// Entries the index and the slots have room for together (used or
    /// not).
    pub(super) fn capacity(&self) -> usize {
        self.index.capacity() + self.slots.capacity()
    }

    fn slot(&self, fd: u32) -> Option<usize> {
        match self.index.get(fd as usize) {
            Some(&slot) if slot != NO_SLOT => Some(slot as usize),
            _ => None,
        }
    }

    /// The state of the connection at descriptor `fd`.
    #[inline]
    pub(super) fn get(&self, fd: u32) -> Option<&ConnState> {
        let slot = self.slot(fd)?;
        Some(&self.slots[slot])
    }

    /// The state of the connection at descriptor `fd`.
    #[inline]
    pub(super) fn get_mut(&mut self, fd: u32) -> Option<&mut ConnState> {
        let slot = self.slot(fd)?;
        Some(&mut self.slots[slot])
    }

    /// Puts `state` at descriptor `fd`; returns the state that was there.
    pub(super) fn insert(&mut self, fd: u32, state: ConnState) -> Option<ConnState> {
        if let Some(slot) = self.slot(fd) {
            return Some(std::mem::replace(&mut self.slots[slot], state));
        }
        if self.index.len() <= fd as usize {
            // In whole chunks: descriptor numbers wander a little as
            // connections come and go, and a steady server must not
            // allocate each time one goes past the highest so far.
            self.index
                .resize((fd as usize + 1).next_multiple_of(CHUNK), NO_SLOT);
        }
        self.index[fd as usize] = u32::try_from(self.slots.len()).expect("fewer than 2^32 connections");
        self.slots.push(state);
        None
    }

    /// Takes the state at descriptor `fd` out of the table.
    pub(super) fn remove(&mut self, fd: u32) -> Option<ConnState> {
        let slot = self.slot(fd)?;
        self.index[fd as usize] = NO_SLOT;
        let last = self.slots.len() - 1;
        let state = self.slots.swap_remove(slot);
        if slot != last {
            let moved = self.slots[slot].fd.as_raw_fd() as usize;
            self.index[moved] = slot as u32;
        }
        Some(state)
    }

    /// The descriptor of some connection held (the last slot's), to take
    /// them out one by one.
    pub(super) fn any_fd(&self) -> Option<u32> {
        let last = self.slots.len().checked_sub(1)?;
        Some(self.slots[last].fd.as_raw_fd() as u32)
    }

    /// Each connection's descriptor and state, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &ConnState)> {
        (0..self.slots.len()).map(move |i| {
            let state = &self.slots[i];
            (state.fd.as_raw_fd() as u32, state)
        })
    }

    /// Gives back the memory past the last entry in use: index entries
    /// past the highest descriptor held, slots past the last connection.
    pub(super) fn trim(&mut self) {
        let end = self
            .index
            .iter()
            .rposition(|&slot| slot != NO_SLOT)
            .map_or(0, |i| i + 1);
        self.index.truncate(end.next_multiple_of(CHUNK));
        self.index.shrink_to_fit();
        self.slots.shrink_to_len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::slab::List;

    fn state(fd: std::os::fd::OwnedFd, gen: u32) -> ConnState {
        ConnState {
            fd,
            gen,
            reads: List::EMPTY,
            writes: List::EMPTY,
            queued: 0,
            flags: 0,
        }
    }

    fn pipe_fds(n: usize) -> Vec<std::os::fd::OwnedFd> {
        (0..n)
            .flat_map(|_| {
                let (r, w) = rustix::pipe::pipe().expect("pipe");
                [r, w]
            })
            .collect()
    }

    #[test]
    fn finds_each_state_by_descriptor_through_inserts_and_removals() {
        let fds = pipe_fds(50);
        let numbers: Vec<u32> = fds.iter().map(|f| f.as_raw_fd() as u32).collect();
        let mut t = ConnTable::new();
        for (i, fd) in fds.into_iter().enumerate() {
            assert!(t.insert(numbers[i], state(fd, i as u32)).is_none());
        }
        assert_eq!(t.len(), 100);
        // Remove every third: the others stay findable, slots stay dense.
        let mut removed = Vec::new();
        for (i, &n) in numbers.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            let s = t.remove(n).expect("held");
            assert_eq!(s.gen, i as u32);
            removed.push(s);
        }
        for (i, &n) in numbers.iter().enumerate() {
            match t.get(n) {
                Some(s) => assert!(i % 3 != 0 && s.gen == i as u32, "fd {n}: gen {}", s.gen),
                None => assert_eq!(i % 3, 0, "fd {n} lost"),
            }
        }
        assert_eq!(t.len(), 100 - removed.len());
        assert_eq!(t.iter().count(), t.len());
        assert!(t.iter().all(|(fd, s)| t.get(fd).map(|x| x.gen) == Some(s.gen)));
        assert!(t.remove(numbers[0]).is_none(), "removed twice");
        // Taking them all out one by one empties it.
        while let Some(fd) = t.any_fd() {
            t.remove(fd).expect("held");
        }
        assert_eq!(t.len(), 0);
        t.trim();
        assert_eq!(t.capacity(), 0);
    }

    #[test]
    fn inserting_at_a_held_descriptor_hands_back_the_old_state() {
        let mut fds = pipe_fds(1);
        let other = fds.pop().unwrap();
        let first = fds.pop().unwrap();
        let number = first.as_raw_fd() as u32;
        let mut t = ConnTable::new();
        assert!(t.insert(number, state(first, 1)).is_none());
        // A second state at the same number (a descriptor handed over
        // again while the table holds it): the old one comes back.
        let old = t.insert(number, state(other, 2)).expect("the old one");
        assert_eq!(old.gen, 1);
        assert_eq!(t.get(number).map(|s| s.gen), Some(2));
        assert_eq!(t.len(), 1);
    }
}

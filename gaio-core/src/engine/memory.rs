//! Memory policy: work vectors keep what steady traffic needs, and what a
//! burst grew (work vectors, swap slabs, the request slab, the connection
//! table, the timer heap) is given back once the engine has been idle for
//! [`IDLE_TRIM`](super::IDLE_TRIM).

use std::time::Instant;

use super::{Engine, IDLE_TRIM};
use crate::{IoBuf, Poller};

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    /// Tracks how long the engine has had nothing to do while holding
    /// burst memory, and gives the memory back after [`IDLE_TRIM`].
    pub(super) fn note_idleness(&mut self, idle: bool, now: Instant) {
        if !idle {
            self.idle_since = None;
            return;
        }
        let since = *self.idle_since.get_or_insert(now);
        if now.duration_since(since) >= IDLE_TRIM {
            self.give_back_burst_memory();
            self.idle_since = None;
        }
    }

    /// The engine went idle: shrink the work vectors a burst grew and drop
    /// the retired swap slabs. The next burst grows them again: a few
    /// allocations per idle period.
    pub(super) fn give_back_burst_memory(&mut self) {
        crate::diag::trace_event!(
            commands = self.commands.capacity(),
            ready = self.ready.capacity(),
            "idle: giving back burst memory"
        );
        if self.commands.is_empty() {
            self.commands.shrink_to(IDLE_KEEP_CAPACITY);
        }
        if self.ready.is_empty() {
            self.ready.shrink_to(KEEP_CAPACITY);
        }
        self.shared.queue.shrink_to(IDLE_KEEP_CAPACITY);
        self.io.swap.drop_retired();
        // The tables give back what lies past their last entry in use; see
        // `Chunked` for what must stay (a connection on a high descriptor
        // number keeps the table up to its chunk).
        self.conns.trim();
        self.nodes.trim();
        self.sleeps.shrink_to(0);
        self.sleep_ids.shrink_to(0);
        let (nodes, sleeps) = (&self.nodes, &self.sleeps);
        self.timers
            .trim(|e| super::events::entry_is_live(nodes, sleeps, e));
        self.tables_mark = self.tables_slots();
        self.burst_memory = false;
    }

    /// Slots the request slab, the connection table and the timer heap
    /// hold (used or not).
    pub(super) fn tables_slots(&self) -> usize {
        self.nodes.capacity()
            + self.conns.capacity()
            + self.timers.capacity()
            + self.sleeps.capacity()
            + self.sleep_ids.capacity()
    }
}

/// Moves every entry of `from` to the end of `to`. When `to` is empty the
/// two vectors trade places instead of copying entries (a batch of a
/// thousand completions is tens of kilobytes); `from` is then trimmed.
pub(crate) fn hand_over<T>(from: &mut Vec<T>, to: &mut Vec<T>) {
    let used = from.len();
    if to.is_empty() {
        std::mem::swap(from, to);
    } else {
        to.append(from);
    }
    trim(from, used);
}

/// Entries the command vectors keep room for once the engine has been idle
/// for [`IDLE_TRIM`]: a thousand connections handed over at once grow them
/// to thousands of entries of about 70 bytes, and an idle server should
/// not keep that.
pub(super) const IDLE_KEEP_CAPACITY: usize = 64;

/// Entries an emptied work vector always keeps room for while busy.
pub(super) const KEEP_CAPACITY: usize = 1024;

/// Above this many entries an emptied work vector is always shrunk, so a
/// burst (ten thousand connections handed over at once) does not pin its
/// peak memory for ever. Growing back costs a few allocations per this
/// many requests.
pub(super) const BURST_CAPACITY: usize = 8 * KEEP_CAPACITY;

/// Gives back the memory of a work vector that was just emptied after
/// holding `used` entries, when it is far larger than that: past
/// [`BURST_CAPACITY`], or more than four times `used`. Steady traffic that
/// needs between [`KEEP_CAPACITY`] and [`BURST_CAPACITY`] entries per turn
/// (a thousand busy connections) keeps its vector and allocates nothing.
pub(crate) fn trim<T>(v: &mut Vec<T>, used: usize) {
    let cap = v.capacity();
    if v.is_empty() && cap > KEEP_CAPACITY && (cap > BURST_CAPACITY || used <= cap / 4) {
        v.shrink_to(KEEP_CAPACITY);
    }
}

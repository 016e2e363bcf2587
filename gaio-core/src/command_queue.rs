//! The queue that carries commands from submitting threads to the engine.
//!
//! A double buffer: submitters append to a `Vec` under a mutex; the engine
//! swaps the whole `Vec` out in one lock and works through it without the
//! lock. Both vectors keep their capacity, so a steady stream of requests
//! allocates nothing (a segmented lock-free queue allocates a block every
//! few dozen pushes), order is exactly submission order, and the engine
//! takes the lock once per batch, not once per command. An atomic flag lets
//! the engine check for work without taking the lock at all.
//!
//! The queue also owns the watcher's "closed" state, under the same lock as
//! the commands: closing and pushing are each one step, so a push either
//! lands before the close (and the engine's last [`take_into`] after the
//! close sees it) or is refused and handed back. A separate "closed" flag
//! checked before the push would leave a window in which a command is
//! accepted after the engine's last look at the queue, and then lost.
//!
//! [`take_into`]: CommandQueue::take_into

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

struct Inner<T> {
    items: Vec<T>,
    /// Set once by [`CommandQueue::close`]; pushes are refused from then on.
    closed: bool,
}

pub(crate) struct CommandQueue<T> {
    inner: Mutex<Inner<T>>,
    /// True while `items` may be non-empty. Written under the lock; read
    /// without it.
    pending: AtomicBool,
    /// A copy of `Inner::closed` readable without the lock. Written under
    /// the lock, so once it reads true every later push is refused.
    closed: AtomicBool,
}

impl<T> CommandQueue<T> {
    pub(crate) fn new() -> Self {
        CommandQueue {
            inner: Mutex::new(Inner {
                items: Vec::new(),
                closed: false,
            }),
            pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // Pushing, closing and swapping cannot leave the state
        // inconsistent (no user code runs under the lock), so a panic
        // elsewhere while the lock was held does not matter.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a command, or hands it back if the queue is closed. SeqCst
    /// on the flag pairs with the engine's sleeping flag (see
    /// `Shared::push`).
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(item);
        }
        inner.items.push(item);
        self.pending.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Refuses every later push. Returns false if the queue was already
    /// closed. Commands pushed before stay for the engine to take.
    pub(crate) fn close(&self) -> bool {
        let mut inner = self.lock();
        let first = !inner.closed;
        inner.closed = true;
        self.closed.store(true, Ordering::SeqCst);
        first
    }

    /// True once [`close`](Self::close) has been called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// True if commands may be waiting.
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Moves every waiting command, in order, to the end of `into` (which
    /// the caller keeps and reuses, so its capacity stays).
    pub(crate) fn take_into(&self, into: &mut Vec<T>) {
        if !self.is_pending() {
            return;
        }
        let mut inner = self.lock();
        if into.is_empty() {
            std::mem::swap(&mut inner.items, into);
        } else {
            into.append(&mut inner.items);
        }
        self.pending.store(false, Ordering::SeqCst);
    }

    /// Room the queue's vector has.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.lock().items.capacity()
    }

    /// Gives back the memory of an empty queue beyond `keep` entries.
    pub(crate) fn shrink_to(&self, keep: usize) {
        let mut inner = self.lock();
        if inner.items.is_empty() {
            inner.items.shrink_to(keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CommandQueue;

    #[test]
    fn keeps_order_across_batches_and_reuses_capacity() {
        let q = CommandQueue::new();
        let mut batch = Vec::with_capacity(8);
        assert!(!q.is_pending());
        for i in 0..5 {
            q.push(i).unwrap();
        }
        q.take_into(&mut batch);
        assert_eq!(batch, vec![0, 1, 2, 3, 4]);
        assert!(!q.is_pending());
        batch.clear();
        q.push(5).unwrap();
        q.push(6).unwrap();
        q.take_into(&mut batch);
        assert_eq!(batch, vec![5, 6]);
        // The vectors trade places but neither is freed.
        assert!(batch.capacity() >= 2);
    }

    #[test]
    fn many_threads_lose_nothing_and_keep_each_threads_order() {
        // Miri interprets every step: keep the interleavings, fewer pushes.
        let per_thread: u32 = if cfg!(miri) { 40 } else { 1000 };
        let q = std::sync::Arc::new(CommandQueue::new());
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || (0..per_thread).for_each(|i| q.push((t, i)).unwrap()))
            })
            .collect();
        let mut seen = Vec::new();
        let mut batch = Vec::new();
        while threads.iter().any(|t| !t.is_finished()) || q.is_pending() {
            q.take_into(&mut batch);
            seen.append(&mut batch);
        }
        for t in threads {
            t.join().unwrap();
        }
        q.take_into(&mut batch);
        seen.append(&mut batch);
        assert_eq!(seen.len(), 8 * per_thread as usize);
        for t in 0..8 {
            let mine: Vec<u32> = seen.iter().filter(|(s, _)| *s == t).map(|&(_, i)| i).collect();
            assert_eq!(
                mine,
                (0..per_thread).collect::<Vec<_>>(),
                "thread {t} out of order"
            );
        }
    }

    #[test]
    fn a_closed_queue_refuses_pushes_and_keeps_what_came_before() {
        let q = CommandQueue::new();
        q.push(1).unwrap();
        assert!(q.close());
        assert!(!q.close(), "closing twice reports the second as not first");
        assert!(q.is_closed());
        assert_eq!(q.push(2), Err(2), "a push after close comes back");
        let mut batch = Vec::new();
        q.take_into(&mut batch);
        assert_eq!(batch, vec![1]);
    }

    #[test]
    fn every_push_racing_close_is_either_taken_after_it_or_refused() {
        // Miri interprets every step: keep the race, fewer rounds.
        let rounds = if cfg!(miri) { 20 } else { 2000 };
        for _ in 0..rounds {
            let q = std::sync::Arc::new(CommandQueue::new());
            let pusher = {
                let q = q.clone();
                std::thread::spawn(move || (0..50u32).filter(|&i| q.push(i).is_ok()).count())
            };
            q.close();
            // The engine's last look, after the close.
            let mut taken = Vec::new();
            q.take_into(&mut taken);
            let accepted = pusher.join().unwrap();
            let mut late = Vec::new();
            q.take_into(&mut late);
            assert!(late.is_empty(), "pushes accepted after the close: {late:?}");
            assert_eq!(taken.len(), accepted);
        }
    }
}

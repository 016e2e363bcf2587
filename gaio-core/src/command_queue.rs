//! The queue that carries commands from submitting threads to the engine.
//!
//! A double buffer: submitters append to a `Vec` under a mutex; the engine
//! swaps the whole `Vec` out in one lock and works through it without the
//! lock. Both vectors keep their capacity, so a steady stream of requests
//! allocates nothing (a segmented lock-free queue allocates a block every
//! few dozen pushes), order is exactly submission order, and the engine
//! takes the lock once per batch, not once per command. An atomic flag lets
//! the engine check for work without taking the lock at all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

pub(crate) struct CommandQueue<T> {
    items: Mutex<Vec<T>>,
    /// True while `items` may be non-empty. Written under the lock; read
    /// without it.
    pending: AtomicBool,
}

impl<T> CommandQueue<T> {
    pub(crate) fn new() -> Self {
        CommandQueue {
            items: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // Pushing and swapping cannot leave the vector inconsistent, so a
        // panic elsewhere while the lock was held does not matter.
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a command. SeqCst on the flag pairs with the engine's
    /// sleeping flag (see `Shared::push`).
    pub(crate) fn push(&self, item: T) {
        let mut items = self.lock();
        items.push(item);
        self.pending.store(true, Ordering::SeqCst);
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
        let mut items = self.lock();
        if into.is_empty() {
            std::mem::swap(&mut *items, into);
        } else {
            into.append(&mut items);
        }
        self.pending.store(false, Ordering::SeqCst);
    }

    /// Room the queue's vector has.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.lock().capacity()
    }

    /// Gives back the memory of an empty queue beyond `keep` entries.
    pub(crate) fn shrink_to(&self, keep: usize) {
        let mut items = self.lock();
        if items.is_empty() {
            items.shrink_to(keep);
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
            q.push(i);
        }
        q.take_into(&mut batch);
        assert_eq!(batch, vec![0, 1, 2, 3, 4]);
        assert!(!q.is_pending());
        batch.clear();
        q.push(5);
        q.push(6);
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
                std::thread::spawn(move || (0..per_thread).for_each(|i| q.push((t, i))))
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
}

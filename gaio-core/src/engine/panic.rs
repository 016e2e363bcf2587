//! What the engine does after a panic went through it.
//!
//! User code runs inside the engine: [`IoBuf`](crate::IoBuf) methods during
//! I/O and, rarely, `Drop` of contexts and buffers. A panic there leaves the
//! engine between two steps. Its tables stay consistent (user code is only
//! called at points where nothing is half-linked), but the operation that
//! panicked is lost, so the watcher does not go on: it closes.
//!
//! * Background mode: the engine thread catches the panic, closes the
//!   watcher here, and posts the message; `wait_io` hands out the pending
//!   requests (completed with `WatcherClosed`) and then fails with
//!   `Error::Panicked` on every call.
//! * Inline mode: the panic unwinds into the caller, on the caller's
//!   thread, as any panic in its own code would. The watcher is left
//!   *poisoned* (like a `Mutex`): the next call notices that the previous
//!   one never returned, closes the watcher here, and fails the same way.

use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::Engine;
use crate::{Error, Poller};

/// What `Error::Panicked` says in inline mode, where the payload went to
/// the caller.
const UNWOUND: &str = "an earlier call into this watcher panicked and unwound into the caller";

impl<P: Poller, C, B> Engine<P, C, B> {
    /// Runs `call` from the owning thread (inline mode). If an earlier call
    /// never returned (a panic unwound out of it), the watcher closes
    /// first: `call` then finds it closed, and `wait` ends with
    /// [`Error::Panicked`] instead of `WatcherClosed`.
    #[inline]
    pub(crate) fn guarded<R>(&mut self, call: impl FnOnce(&mut Self) -> R) -> R {
        if self.in_call && !self.panicked {
            crate::diag::error_event!("{UNWOUND}; closing the watcher");
            self.panicked = true;
            self.close_after_panic();
        }
        self.in_call = true;
        let result = call(self);
        self.in_call = false;
        result
    }

    /// True if a panic unwound out of a call (inline mode).
    pub(crate) fn is_poisoned(&self) -> bool {
        self.in_call || self.panicked
    }

    /// The error a finished engine reports once it has handed everything
    /// out.
    pub(crate) fn closed_error(&self) -> Error {
        if self.panicked {
            Error::Panicked {
                message: UNWOUND.into(),
            }
        } else {
            Error::WatcherClosed
        }
    }

    /// Closes the watcher after a panic: the normal shutdown (pending
    /// requests complete with `WatcherClosed`, every descriptor is
    /// closed), or, should that panic too, the bare minimum that runs no
    /// engine logic: every descriptor closed, requests left to be dropped
    /// with the engine.
    pub(crate) fn close_after_panic(&mut self) {
        self.shared.close();
        if catch_unwind(AssertUnwindSafe(|| self.shutdown())).is_err() {
            crate::diag::error_event!("shutdown after a panic panicked too; closing descriptors only");
            self.close_descriptors();
        }
    }

    /// Closes every descriptor the engine owns or has queued, touching
    /// nothing else: no list, no timer, no user value is looked at.
    pub(crate) fn close_descriptors(&mut self) {
        self.shared.close();
        let mut commands = Vec::new();
        self.shared.queue.take_into(&mut commands);
        for cmd in commands {
            self.discard(cmd);
        }
        while let Some(fd) = self.conns.any_fd() {
            if let Some(state) = self.conns.remove(fd) {
                // A completion poller's I/O in flight ends, its results
                // dropped, before the buffers go with the engine.
                self.shared
                    .poller
                    .cancel(state.fd.as_fd(), crate::Interest::BOTH, false);
                let _ = self.shared.poller.deregister(state.fd.as_fd());
            }
        }
        self.lingering.clear();
        self.listeners = 0;
        self.finished = true;
    }
}

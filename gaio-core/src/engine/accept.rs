//! Accepting: a listener's pending accepts, head first, each taking one
//! connection from the kernel's queue, configured, registered and in the
//! table before its completion is made. One readiness edge drains as many
//! queued connections as there are accepts waiting; a multishot accept
//! takes every queued connection, completing a copy of itself for each,
//! and stays at the head until it fails or its listener is freed.
//!
//! Out of descriptors (EMFILE, ENFILE, and ENOBUFS/ENOMEM for the socket's
//! memory), the listener is not read again at once: the queued connection
//! would stay, the listener stay readable, and the engine spin. The pending
//! accepts wait and the listener is retried every [`FD_RETRY`]; a deadline
//! passing meanwhile reports the shortage (see `deadlines`).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::io::Errno;

use super::complete::completion;
use super::conn_state::{DETACHING, NODELAY, OUT_OF_FDS, PLAIN_TCP, READABLE, SYSTEM_OUT_OF_FDS};
use super::slab::Node;
use super::{Dir, Engine};
use crate::shared::Role;
use crate::sys::{FdInfo, FdKind};
use crate::{Conn, Error, IoBuf, Op, Poller};

/// How often a listener out of descriptors is tried again.
pub(super) const FD_RETRY: Duration = Duration::from_millis(20);

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    /// Runs `listener`'s accepts while connections are queued.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))] // an error only a diagnostic reads
    pub(super) fn drive_accepts(&mut self, listener: Conn) {
        loop {
            let Some(state) = self.conns.get_mut(listener.fd).filter(|s| s.gen == listener.gen) else {
                return;
            };
            if state.reads.is_empty() {
                // A detach waiting for the accepts goes once they are done.
                if state.has(DETACHING) {
                    self.try_detach(listener);
                }
                return;
            }
            if !state.has(READABLE) {
                return;
            }
            let nodelay = state.has(NODELAY);
            let plain_tcp = state.has(PLAIN_TCP);
            let accepted = self.shared.poller.accept(state.fd.as_fd());
            let (fd, peer) = match accepted {
                Ok(accepted) => {
                    state.set(OUT_OF_FDS | SYSTEM_OUT_OF_FDS, false);
                    accepted
                }
                Err(e) => match Errno::from_io_error(&e) {
                    Some(Errno::AGAIN) => {
                        // Nothing queued: whatever shortage there was is
                        // not what holds the accepts up now.
                        state.set(OUT_OF_FDS | SYSTEM_OUT_OF_FDS, false);
                        let mut io = self.io.with(&self.shared.poller);
                        io.not_ready(state, listener, Dir::Read);
                        return;
                    }
                    // The connection went away before it was accepted, or
                    // a network error that accept(2) says to treat like
                    // EAGAIN and retry: take the next one.
                    Some(
                        Errno::CONNABORTED
                        | Errno::PROTO
                        | Errno::PERM
                        | Errno::NETDOWN
                        | Errno::HOSTUNREACH
                        | Errno::NETUNREACH
                        | Errno::OPNOTSUPP,
                    ) => continue,
                    Some(errno @ (Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)) => {
                        state.set(OUT_OF_FDS, matches!(errno, Errno::MFILE | Errno::NFILE));
                        state.set(SYSTEM_OUT_OF_FDS, errno != Errno::MFILE);
                        crate::diag::warn_event!(fd = listener.fd, error = %e, "accept: out of descriptors or memory; retrying");
                        if matches!(errno, Errno::MFILE | Errno::NFILE) {
                            // Sockets lingering after their last response
                            // give their descriptors to new clients.
                            self.end_lingering();
                        }
                        self.retry_accepts_later(listener);
                        return;
                    }
                    _ => {
                        self.finish_head(listener, Dir::Read, Some(Error::Io(e)), Bytes::new());
                        continue;
                    }
                },
            };
            if let Err(e) = crate::net::configure_stream(fd.as_fd(), nodelay, nodelay) {
                // The connection is unusable (reset meanwhile, say): the
                // next one may be fine.
                crate::diag::debug_event!(error = %e, "accept: configuring the new connection failed");
                continue;
            }
            let info = FdInfo {
                kind: FdKind::StreamSocket,
                plain_tcp,
                // Read for listeners only.
                tcp: false,
            };
            let mut peer = peer;
            let Some(fd) = self.hand_to_peer(listener, fd, info, &mut peer) else {
                // Another watcher of the group completes this accept.
                continue;
            };
            let error = match self.shared.enroll(fd.as_fd()) {
                Ok(conn) => {
                    self.insert_conn(conn, fd, info, Role::Connection);
                    self.io.extra_mut().accepted = Some(conn);
                    self.io.extra_mut().peer = peer;
                    None
                }
                Err(e) => Some(e),
            };
            if error.is_none() && self.complete_copy(listener) {
                continue;
            }
            self.finish_head(listener, Dir::Read, error, Bytes::new());
        }
    }

    /// If `listener`'s head accept is multishot, completes a copy of it
    /// (its context cloned, with the [`Extra`](super::Extra) just set) and
    /// leaves it pending.
    fn complete_copy(&mut self, listener: Conn) -> bool {
        let Some(head) = self.conn_mut(listener).map(|s| s.reads.head) else {
            return false;
        };
        let head = self.nodes.get(head);
        let Some(clone) = self.clone_context.filter(|_| head.multishot) else {
            return false;
        };
        let copy = Node::new(Op::Accept, clone(&head.context), None, 0);
        let extra = self.io.take_extra();
        self.ready
            .push(completion(listener, copy, None, Bytes::new(), extra));
        true
    }

    /// Tries `listener` again after [`FD_RETRY`].
    fn retry_accepts_later(&mut self, listener: Conn) {
        if !self.fd_retry.contains(&listener) {
            self.fd_retry.push(listener);
        }
        self.fd_retry_at.get_or_insert_with(|| Instant::now() + FD_RETRY);
    }

    /// Retries the listeners that ran out of descriptors, once their wait
    /// is over.
    pub(super) fn retry_out_of_fds(&mut self, now: Instant) {
        match self.fd_retry_at {
            Some(at) if at <= now => {}
            _ => return,
        }
        self.fd_retry_at = None;
        for listener in std::mem::take(&mut self.fd_retry) {
            self.drive_accepts(listener);
        }
    }
}

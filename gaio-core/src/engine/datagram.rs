//! Datagram attempts: one datagram per read and per write, never a
//! partial one. A datagram longer than the buffer keeps its first bytes
//! and says so (`Error::Truncated`); an empty datagram is a datagram, not
//! end of stream.

use std::io::IoSlice;
use std::os::fd::AsFd;

use bytes::Bytes;

use super::attempt::{Attempt, Io};
use super::conn_state::{ConnState, READABLE, WRITABLE};
use super::drive::unwritten;
use super::slab::Node;
use super::Dir;
use crate::{Conn, Datagram, Error, FdKind, IoBuf, IoOutcome, PeerAddr, Poller};

impl<P: Poller, B: IoBuf> Io<'_, P, B> {
    /// One datagram into swap memory.
    fn swap_datagram(&mut self, fd: std::os::fd::BorrowedFd<'_>) -> (IoOutcome, Datagram, Bytes) {
        self.state.swap.recv_from(self.poller, fd)
    }

    /// Receives one datagram for `node` (into its buffer, or into swap
    /// memory), with its sender.
    pub(super) fn recv<C>(
        &mut self,
        conn_state: &mut ConnState,
        conn: Conn,
        node: &mut Node<C, B>,
    ) -> Attempt {
        if !conn_state.has(READABLE) {
            return Attempt::Wait;
        }
        let fd = conn_state.fd.as_fd();
        let (outcome, datagram, swap) = match &mut node.buf {
            None => self.swap_datagram(fd),
            // As for a stream read (`Poller::read_in_flight`).
            Some(_) if self.poller.read_in_flight(fd) => {
                (IoOutcome::WouldBlock, Datagram::default(), Bytes::new())
            }
            Some(buf) => {
                let region = self.region(buf, 0);
                if region.is_empty() {
                    return Attempt::Done(Some(Error::EmptyBuffer), Bytes::new());
                }
                let (outcome, datagram) = self.poller.recv_from(fd, region);
                (outcome, datagram, Bytes::new())
            }
        };
        match outcome {
            IoOutcome::Done(n) => {
                node.done = n;
                // A datagram socket is IP or Unix, and IP always names the
                // sender: no address is a Unix sender bound to no name,
                // reported as such (as an accepted unnamed Unix peer is).
                let from = datagram
                    .from
                    .unwrap_or_else(|| PeerAddr::Unix(crate::UnixAddr::unnamed()));
                self.state.extra_mut().peer = Some(from);
                Attempt::Done(datagram.truncated.then_some(Error::Truncated), swap)
            }
            // A datagram socket stays readable until a receive would block:
            // each receive takes one datagram, whatever its size.
            other => self.stopped(conn_state, conn, Dir::Read, other),
        }
    }

    /// Sends `node`'s bytes as one datagram: to `dest`, or on a connected
    /// socket.
    pub(super) fn send<C>(
        &mut self,
        conn_state: &mut ConnState,
        conn: Conn,
        node: &mut Node<C, B>,
        dest: Option<&PeerAddr>,
    ) -> Attempt {
        if !conn_state.has(WRITABLE) {
            return Attempt::Wait;
        }
        let fd = conn_state.fd.as_fd();
        let bytes = unwritten(node);
        let outcome = match dest {
            Some(addr) => self.poller.send_to(fd, bytes, addr),
            None => self
                .poller
                .write(fd, FdKind::DatagramSocket, &[IoSlice::new(bytes)]),
        };
        match outcome {
            IoOutcome::Done(n) => {
                node.done += n;
                self.state.extra_mut().peer = dest.cloned();
                Attempt::Done(None, Bytes::new())
            }
            other => self.stopped(conn_state, conn, Dir::Write, other),
        }
    }
}

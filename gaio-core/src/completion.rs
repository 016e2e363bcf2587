//! Completions: what `wait_io` hands back for each finished request.

use crate::{Buffer, Conn, Error, IoBuf};

/// The kind of operation a completion reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A read of at least one byte (own buffer or swap memory).
    Read,
    /// A read that fills its whole buffer or fails.
    ReadFull,
    /// A write of all the buffer's bytes.
    Write,
}

impl Op {
    /// True for reads of either kind.
    pub fn is_read(self) -> bool {
        !matches!(self, Op::Write)
    }
}

/// One finished request.
#[derive(Debug)]
pub struct Completion<C, B> {
    /// What the request was.
    pub op: Op,
    /// The connection it ran on.
    pub conn: Conn,
    /// The context it carried, unchanged.
    pub context: C,
    /// Bytes moved: read into the buffer from its start, or written from
    /// the buffer's start. Set on errors too (partial progress).
    pub bytes: usize,
    /// The buffer, handed back.
    pub buffer: Buffer<B>,
    /// `None` on success, otherwise why the request ended.
    pub error: Option<Error>,
}

impl<C, B: IoBuf> Completion<C, B> {
    /// The bytes moved: for a read, the bytes read; for a write, the bytes
    /// written. Valid on error completions too (partial progress).
    pub fn data(&self) -> &[u8] {
        let all = self.buffer.as_bytes();
        &all[..self.bytes.min(all.len())]
    }

    /// `Ok(bytes)` on success, the error otherwise (consuming the error).
    pub fn result(&mut self) -> Result<usize, Error> {
        match self.error.take() {
            None => Ok(self.bytes),
            Some(e) => Err(e),
        }
    }
}

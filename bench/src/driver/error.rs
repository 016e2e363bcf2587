//! The driver's error type.

use std::fmt;
use std::io;

/// Why a measurement failed.
#[derive(Debug)]
pub enum BenchError {
    /// An echo differed from what was sent: the whole run is aborted.
    Mismatch(String),
    /// Anything else (I/O, timeout, a server that died): the measurement is
    /// recorded as failed and the run goes on.
    Other(String),
}

impl BenchError {
    /// An [`BenchError::Other`] with this message.
    pub fn other(msg: impl Into<String>) -> Self {
        BenchError::Other(msg.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Mismatch(m) => write!(f, "echo mismatch: {m}"),
            BenchError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<io::Error> for BenchError {
    fn from(e: io::Error) -> Self {
        BenchError::Other(e.to_string())
    }
}

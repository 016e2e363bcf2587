//! io_uring for gaio, on Linux.
//!
//! gaio's completion engine will run on an io_uring ring where one can be
//! used, and on epoll where not: the choice is made at run time, because
//! the same binary meets kernels without io_uring, containers whose
//! seccomp profile blocks it (Docker's default does), hosts that switch it
//! off (`kernel.io_uring_disabled`) and kernels that lack an opcode the
//! engine needs.
//!
//! This crate so far holds that choice's first half: [`probe`] tries the
//! ring once and says what it offers ([`Support`]) or, precisely, why it
//! cannot be used ([`Unavailable`]), so a fallback can say why it was
//! taken.
//!
//! ```
//! match gaio_uring::probe() {
//!     Ok(support) => println!("io_uring: {support}"),
//!     Err(why) => println!("epoll, because {why}"),
//! }
//! ```
#![cfg(target_os = "linux")]
#![deny(missing_debug_implementations)]

mod buf_ring;
mod ops;
mod poller;
mod probe;
mod ring;

pub use poller::UringPoller;
pub use probe::{probe, Support, Unavailable, REQUIRED_OPCODES};

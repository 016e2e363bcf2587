//! io_uring for gaio, on Linux.
//!
//! gaio's engine runs on an io_uring ring where one can be used, and on
//! epoll where not: the choice is made at run time, because the same
//! binary meets kernels without io_uring, containers whose seccomp profile
//! blocks it (Docker's default does), hosts that switch it off
//! (`kernel.io_uring_disabled`) and kernels that lack an opcode the engine
//! needs.
//!
//! This crate holds both halves of that: [`probe()`] tries the ring once
//! and says what it offers ([`Support`]) or, precisely, why it cannot be
//! used ([`Unavailable`]), so a fallback can say why it was taken; and
//! [`UringPoller`] is the engine's poller on a ring (the kernel does the
//! I/O; reads without a buffer take the kernel's provided buffers).
//! `gaio::LinuxPoller` chooses between it and epoll.
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

//! Whether an io_uring ring can be used here, what it offers, and if not,
//! why not.
//!
//! The probe does what the engine will do, on a small ring it then drops:
//! `io_uring_setup` with the engine's flags (falling back flag by flag on
//! kernels that lack them), the opcode probe (`IORING_REGISTER_PROBE`), and
//! the registration of a provided-buffer ring (`IORING_REGISTER_PBUF_RING`,
//! which the engine's swap reads need). The answer is computed once per
//! process and kept.

use std::fmt;
use std::io;
use std::sync::OnceLock;

use io_uring::{opcode, IoUring, Probe};
use rustix::io::Errno;

/// The opcodes the engine needs, by name: every request gaio has, on
/// sockets and pipes (`Read`/`Write` for pipes and other streams,
/// `Recv`/`Send` and their `Msg` forms for sockets and datagrams),
/// `Accept`, `Connect`, `Shutdown`, and `AsyncCancel`, `Timeout` and
/// `Close` for deadlines, `free` and `close`.
pub const REQUIRED_OPCODES: [(&str, u8); 14] = [
    ("Read", opcode::Read::CODE),
    ("Write", opcode::Write::CODE),
    ("Writev", opcode::Writev::CODE),
    ("Recv", opcode::Recv::CODE),
    ("Send", opcode::Send::CODE),
    ("RecvMsg", opcode::RecvMsg::CODE),
    ("SendMsg", opcode::SendMsg::CODE),
    ("Accept", opcode::Accept::CODE),
    ("Connect", opcode::Connect::CODE),
    ("Shutdown", opcode::Shutdown::CODE),
    ("AsyncCancel", opcode::AsyncCancel::CODE),
    ("Timeout", opcode::Timeout::CODE),
    ("Close", opcode::Close::CODE),
    ("PollAdd", opcode::PollAdd::CODE),
];

/// What an io_uring ring offers on this machine: the setup flags the
/// kernel took (each optional, the engine does without) and the kernel's
/// release.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Support {
    /// `IORING_SETUP_SINGLE_ISSUER` (Linux 6.0): only the thread that
    /// turns the ring submits to it, and the kernel skips the locking.
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` (Linux 6.1): the kernel finishes
    /// completions only when the ring's thread enters it, instead of
    /// interrupting that thread.
    pub defer_taskrun: bool,
    /// `IORING_SETUP_COOP_TASKRUN` (Linux 5.19): completions do not
    /// interrupt the thread with an inter-processor interrupt; used where
    /// `defer_taskrun` is not.
    pub coop_taskrun: bool,
    /// `uname -r`.
    pub kernel: String,
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Linux {}, every opcode gaio needs, provided-buffer rings",
            self.kernel
        )?;
        if self.defer_taskrun {
            f.write_str(", deferred task running")?;
        } else if self.coop_taskrun {
            f.write_str(", cooperative task running")?;
        }
        if self.single_issuer {
            f.write_str(", single issuer")?;
        }
        Ok(())
    }
}

/// Why an io_uring ring cannot be used here. Each says what to change, in
/// its `Display`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Unavailable {
    /// `io_uring_setup` does not exist: a kernel before 5.1 or built
    /// without `CONFIG_IO_URING`, or a seccomp filter that answers
    /// `ENOSYS` for it.
    NoSyscall,
    /// The administrator switched io_uring off: `kernel.io_uring_disabled`
    /// is 2 (for every process) or 1 (for processes outside
    /// `kernel.io_uring_group`). The value read.
    Disabled(u8),
    /// `io_uring_setup` answered `EPERM` with the sysctl allowing it: a
    /// seccomp filter (Docker's and Podman's default profiles block
    /// io_uring) or a security module.
    NotPermitted,
    /// `io_uring_setup` answered `ENOMEM`: on kernels before 5.12 the
    /// ring's memory counts against `RLIMIT_MEMLOCK`. The limit, in
    /// bytes, when it could be read.
    MemoryLimit(Option<u64>),
    /// The kernel lacks an opcode the engine needs (named).
    MissingOpcode(&'static str),
    /// Provided-buffer rings (Linux 5.19) cannot be registered: the
    /// registration's error.
    NoBufferRing(io::Error),
    /// Anything else `io_uring_setup` or the opcode probe answered.
    Failed(io::Error),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoSyscall => f.write_str(
                "the kernel has no io_uring_setup (before Linux 5.1, built without CONFIG_IO_URING, \
                 or a seccomp filter answering ENOSYS)",
            ),
            Unavailable::Disabled(2) => f.write_str("io_uring is switched off: kernel.io_uring_disabled = 2"),
            Unavailable::Disabled(value) => write!(
                f,
                "io_uring is switched off for this process: kernel.io_uring_disabled = {value} \
                 and the process is not in kernel.io_uring_group"
            ),
            Unavailable::NotPermitted => f.write_str(
                "io_uring_setup is not permitted: a seccomp profile (Docker's default blocks \
                 io_uring) or a security module",
            ),
            Unavailable::MemoryLimit(Some(limit)) => write!(
                f,
                "the ring does not fit in the locked-memory limit (RLIMIT_MEMLOCK = {limit} bytes; \
                 kernels before 5.12 count rings against it)"
            ),
            Unavailable::MemoryLimit(None) => f.write_str(
                "the ring does not fit in the locked-memory limit (RLIMIT_MEMLOCK; kernels before \
                 5.12 count rings against it)",
            ),
            Unavailable::MissingOpcode(name) => write!(f, "the kernel has no io_uring {name} opcode"),
            Unavailable::NoBufferRing(e) => {
                write!(
                    f,
                    "provided-buffer rings cannot be registered (Linux 5.19 has them): {e}"
                )
            }
            Unavailable::Failed(e) => write!(f, "io_uring_setup failed: {e}"),
        }
    }
}

impl std::error::Error for Unavailable {}

/// Whether io_uring can be used here: what the ring offers, or why not.
/// Tried once per process; later calls return the same answer.
///
/// # Errors
///
/// [`Unavailable`], saying why.
///
/// # Examples
///
/// ```
/// match gaio_uring::probe() {
///     Ok(support) => assert!(!support.kernel.is_empty()),
///     Err(why) => println!("no io_uring here: {why}"),
/// }
/// ```
pub fn probe() -> Result<&'static Support, &'static Unavailable> {
    static ANSWER: OnceLock<Result<Support, Unavailable>> = OnceLock::new();
    ANSWER
        .get_or_init(|| {
            // On a thread of its own, as every ring here is made (see
            // `Ring::new`): the caller's thread is never enrolled by it.
            let answer = std::thread::scope(|scope| {
                std::thread::Builder::new()
                    .name("gaio-uring-probe".into())
                    .spawn_scoped(scope, try_ring)
                    .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            })
            .unwrap_or_else(|_| try_ring());
            #[cfg(feature = "tracing")]
            match &answer {
                Ok(support) => tracing::debug!(%support, "io_uring can be used"),
                Err(why) => tracing::info!(%why, "io_uring cannot be used"),
            }
            answer
        })
        .as_ref()
}

/// The setup flags tried, best first: each kernel takes the first it
/// knows. `(single_issuer, defer_taskrun, coop_taskrun)`.
const SETUPS: [(bool, bool, bool); 3] = [(true, true, false), (false, false, true), (false, false, false)];

/// The probe itself, uncached.
fn try_ring() -> Result<Support, Unavailable> {
    let (ring, (single_issuer, defer_taskrun, coop_taskrun)) = setup()?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| classify_setup_error(e, read_disabled_sysctl(), read_memlock_limit()))?;
    if let Some((name, _)) = REQUIRED_OPCODES
        .iter()
        .find(|(_, code)| !probe.is_supported(*code))
    {
        return Err(Unavailable::MissingOpcode(name));
    }
    if !try_sync_cancel(&ring) {
        return Err(Unavailable::MissingOpcode(SYNC_CANCEL));
    }
    try_buffer_ring(&ring).map_err(Unavailable::NoBufferRing)?;
    Ok(Support {
        single_issuer,
        defer_taskrun,
        coop_taskrun,
        kernel: rustix::system::uname().release().to_string_lossy().into_owned(),
    })
}

/// The name [`Unavailable::MissingOpcode`] gives a kernel without
/// synchronous cancellation (Linux 6.0), which the engine needs to take
/// memory back from a request it cancels.
const SYNC_CANCEL: &str = "IORING_REGISTER_SYNC_CANCEL";

/// True if the kernel cancels synchronously: a cancel of a request that
/// does not exist answers `ENOENT` (a kernel without it, `EINVAL`).
fn try_sync_cancel(ring: &IoUring) -> bool {
    let nothing = io_uring::types::CancelBuilder::user_data(0x5eed_0000_0000_0000);
    let answer = ring
        .submitter()
        .register_sync_cancel(Some(io_uring::types::Timespec::new()), nothing);
    matches!(answer, Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT))
}

/// A small ring with the best setup flags the kernel takes.
fn setup() -> Result<(IoUring, (bool, bool, bool)), Unavailable> {
    let mut last = None;
    for flags in SETUPS {
        let (single_issuer, defer_taskrun, coop_taskrun) = flags;
        let mut builder = IoUring::builder();
        if single_issuer {
            builder.setup_single_issuer();
        }
        if defer_taskrun {
            // As `Ring::new` makes it: with the task-run flag.
            builder.setup_defer_taskrun().setup_taskrun_flag();
        }
        if coop_taskrun {
            builder.setup_coop_taskrun();
        }
        match builder.build(8) {
            Ok(ring) => return Ok((ring, flags)),
            // A flag this kernel does not know: try the next set.
            Err(e) if e.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => last = Some(e),
            Err(e) => {
                return Err(classify_setup_error(
                    e,
                    read_disabled_sysctl(),
                    read_memlock_limit(),
                ))
            }
        }
    }
    Err(Unavailable::Failed(
        last.unwrap_or_else(|| io::Error::other("no setup tried")),
    ))
}

/// Names the failure of `io_uring_setup` (or the probe), given the
/// `kernel.io_uring_disabled` sysctl (`None` where the kernel has none)
/// and the `RLIMIT_MEMLOCK` soft limit.
fn classify_setup_error(e: io::Error, disabled: Option<u8>, memlock: Option<u64>) -> Unavailable {
    match e.raw_os_error().map(Errno::from_raw_os_error) {
        Some(Errno::NOSYS) => Unavailable::NoSyscall,
        Some(Errno::PERM) => match disabled {
            Some(value @ 1..) => Unavailable::Disabled(value),
            _ => Unavailable::NotPermitted,
        },
        Some(Errno::NOMEM) => Unavailable::MemoryLimit(memlock),
        _ => Unavailable::Failed(e),
    }
}

/// `kernel.io_uring_disabled` (Linux 6.6), if the kernel has it.
fn read_disabled_sysctl() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `RLIMIT_MEMLOCK` soft limit in bytes (`None` if unlimited).
fn read_memlock_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Memlock).current
}

/// Registers a one-entry provided-buffer ring and unregisters it.
fn try_buffer_ring(ring: &IoUring) -> io::Result<()> {
    const PAGE: usize = 4096;
    // The ring's memory: one page, page-aligned as the kernel requires,
    // zeroed (an empty ring: tail 0).
    let layout = std::alloc::Layout::from_size_align(PAGE, PAGE).map_err(io::Error::other)?;
    // SAFETY: the layout has a non-zero size.
    let memory = unsafe { std::alloc::alloc_zeroed(layout) };
    if memory.is_null() {
        return Err(io::Error::from(io::ErrorKind::OutOfMemory));
    }
    // SAFETY: `memory` is a zeroed, page-aligned page, which holds one
    // 16-byte `io_uring_buf` entry; it stays allocated until after the
    // ring is unregistered below (or the registration failed), so the
    // kernel never sees it freed while registered.
    let registered = unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(memory as u64, 1, 0, 0)
    };
    let unregistered = match registered {
        Ok(()) => ring.submitter().unregister_buf_ring(0),
        Err(_) => Ok(()),
    };
    // SAFETY: allocated above with this layout, no longer registered.
    unsafe { std::alloc::dealloc(memory, layout) };
    registered.and(unregistered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.raw_os_error())
    }

    #[test]
    fn eperm_is_the_sysctl_when_it_disables_io_uring_else_a_filter() {
        assert!(matches!(
            classify_setup_error(errno(Errno::PERM), Some(2), None),
            Unavailable::Disabled(2)
        ));
        assert!(matches!(
            classify_setup_error(errno(Errno::PERM), Some(1), None),
            Unavailable::Disabled(1)
        ));
        assert!(matches!(
            classify_setup_error(errno(Errno::PERM), Some(0), None),
            Unavailable::NotPermitted
        ));
        assert!(matches!(
            classify_setup_error(errno(Errno::PERM), None, None),
            Unavailable::NotPermitted
        ));
    }

    #[test]
    fn other_errors_are_named() {
        assert!(matches!(
            classify_setup_error(errno(Errno::NOSYS), Some(0), None),
            Unavailable::NoSyscall
        ));
        assert!(matches!(
            classify_setup_error(errno(Errno::NOMEM), Some(0), Some(65536)),
            Unavailable::MemoryLimit(Some(65536))
        ));
        match classify_setup_error(errno(Errno::FAULT), Some(0), None) {
            Unavailable::Failed(e) => assert_eq!(e.raw_os_error(), Some(Errno::FAULT.raw_os_error())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_reason_says_what_it_is() {
        let says = |u: Unavailable| u.to_string();
        assert_eq!(
            says(Unavailable::Disabled(2)),
            "io_uring is switched off: kernel.io_uring_disabled = 2"
        );
        assert!(says(Unavailable::Disabled(1)).contains("kernel.io_uring_group"));
        assert!(says(Unavailable::NotPermitted).contains("seccomp"));
        assert!(says(Unavailable::NoSyscall).contains("ENOSYS"));
        assert!(says(Unavailable::MemoryLimit(Some(65536))).contains("RLIMIT_MEMLOCK = 65536 bytes"));
        assert_eq!(
            says(Unavailable::MissingOpcode("Shutdown")),
            "the kernel has no io_uring Shutdown opcode"
        );
    }
}

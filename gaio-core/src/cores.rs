//! Thread per core: [`Cores`] starts one watcher per core, each on a
//! thread of its own pinned to its core and running the user's per-thread
//! code, spreads one listening address over them, and stops them all.
//!
//! Shared nothing: each thread owns its [`Watcher`] (inline mode, so I/O
//! and the user's code run on the core's one thread with no hand-off);
//! the threads talk only through [`Submitter`]s: a
//! [`notify`](crate::Submit::notify) to another core's watcher, a
//! connection detached on one and watched on another.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::engine::Group;
use crate::{
    affinity, net, AcceptOptions, Builder, Error, IoBuf, Listener, Mode, Poller, Submit, Submitter, Watcher,
};

/// Most threads a [`CoresBuilder`] starts.
pub const MAX_CORES: usize = 4096;

/// How the connections to one listening address spread over the
/// watchers of [`Cores`] ([`CoresBuilder::listen`]).
///
/// Each strategy hands every connection to one watcher, where it
/// completes a multishot accept ([`Op::Accept`](crate::Op::Accept)); the
/// per-thread code is the same for all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Spread {
    /// A listener per watcher, all bound to the address with
    /// `SO_REUSEPORT` (`SO_REUSEPORT_LB` on FreeBSD): the kernel puts each
    /// connection in one listener's queue by a hash of its addresses and
    /// ports. No thread hands anything to another, but the spread is only
    /// as even as the hash: the counts drift apart under churn, since the
    /// kernel does not know which connections have closed. Linux and
    /// FreeBSD; elsewhere [`CoresBuilder::start`] refuses it.
    ReusePort,
    /// One listener, on the first watcher; its connections go to each
    /// watcher in turn.
    RoundRobin,
    /// One listener, on the first watcher; each connection goes to the
    /// watcher holding the fewest connections at that moment (counting
    /// those sent and not yet taken in; ties in turn). Even under churn,
    /// since closed connections no longer count (the default).
    #[default]
    LeastLoaded,
}

/// What each thread of [`Cores`] is given: its watcher and its place
/// among the others.
///
/// The struct may gain fields: take it apart with `..`.
#[derive(Debug)]
#[non_exhaustive]
pub struct Core<P: Poller, C, B> {
    /// This core's watcher, in inline mode: the thread's own, for it to
    /// submit to and wait on. It is closed by [`Cores::stop`] (its
    /// [`next_batch`](Watcher::next_batch) loop then ends) and dropped,
    /// closing every socket it still holds, when the thread's function
    /// returns.
    pub watcher: Watcher<P, C, B>,
    /// Which core this is: 0 to [`Cores::len`] - 1, the index of its
    /// watcher in [`peers`](Core::peers).
    pub index: usize,
    /// The CPU the thread is pinned to, if it is.
    pub cpu: Option<usize>,
    /// The listener to submit a multishot accept on, if this watcher has
    /// one: every watcher with [`Spread::ReusePort`], only the first one
    /// (core 0) otherwise (its accepts then complete on every watcher).
    /// `None` when the cores listen on nothing.
    pub listener: Option<Listener>,
    /// A submitter of every core's watcher, this one's included, by
    /// index: to [`notify`](crate::Submit::notify) another core or hand it
    /// a connection.
    pub peers: Arc<[Submitter<P, C, B>]>,
}

/// Configures and starts [`Cores`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct CoresBuilder<P> {
    threads: Option<usize>,
    pin: bool,
    batch: bool,
    watcher: Builder<P>,
    listen: Option<(Vec<SocketAddr>, Spread, AcceptOptions)>,
    listen_error: Option<io::Error>,
}

impl<P> std::fmt::Debug for CoresBuilder<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoresBuilder")
            .field("threads", &self.threads)
            .field("pin", &self.pin)
            .field("batch_scheduling", &self.batch)
            .field("watcher", &self.watcher)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

impl<P: Poller> Default for CoresBuilder<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Poller> CoresBuilder<P> {
    /// The defaults: a thread per CPU this process may use, each pinned
    /// to its CPU and under the batch scheduling policy (where the
    /// platform has them: Linux), watchers with [`Builder`]'s defaults,
    /// listening on nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{CoresBuilder, Poller};
    ///
    /// fn builder<P: Poller>() -> CoresBuilder<P> {
    ///     CoresBuilder::new().threads(2).listen("127.0.0.1:0", Default::default())
    /// }
    /// ```
    pub fn new() -> Self {
        CoresBuilder {
            threads: None,
            pin: affinity::CAN_PIN,
            batch: affinity::CAN_BATCH,
            watcher: Builder::new(),
            listen: None,
            listen_error: None,
        }
    }

    /// How many threads (and watchers) to start: 1 to [`MAX_CORES`].
    /// Default: one per CPU this process may use (its affinity mask).
    /// More threads than CPUs share them, thread `i` pinned to the
    /// `i % cpus`-th.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn f<P: gaio_core::Poller>() {
    /// let builder = gaio_core::CoresBuilder::<P>::new().threads(4);
    /// # }
    /// ```
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads);
        self
    }

    /// Whether to pin each thread to its CPU (default: yes where the
    /// platform can, Linux). Pinning keeps a watcher's memory in its
    /// core's caches; leave it off when other busy processes share the
    /// machine's cores and the scheduler should move threads away from
    /// them.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn f<P: gaio_core::Poller>() {
    /// let builder = gaio_core::CoresBuilder::<P>::new().pin(false);
    /// # }
    /// ```
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Whether each thread runs under Linux's batch scheduling policy
    /// (`SCHED_BATCH`; default: yes where the platform has it, Linux and
    /// Android; elsewhere the setting does nothing).
    ///
    /// A batch thread woken by I/O does not preempt what is running on its
    /// CPU: it runs once that thread blocks or its time slice ends, and
    /// then serves everything that arrived meanwhile in one turn. Its
    /// share of the CPU is the same. On a core of its own this changes
    /// nothing; where something else shares the core (a load generator,
    /// another busy process, more threads than CPUs) it saves the context
    /// switches of waking for each message. Measured with the load
    /// generator sharing both cores of a 2-core machine (`cargo xtask
    /// bench --scenarios scaling`, BENCHMARKS.md): server CPU per round
    /// trip at 2 threads went from 1.21× that at 1 thread to 1.07×, round
    /// trips per second rose by a third, and context switches per round
    /// trip fell from 0.39 to 0.004. Turn it off for a server whose
    /// latency matters more than its throughput on a shared core.
    ///
    /// A thread the caller started under another policy (real-time, idle)
    /// keeps it: the core threads inherit the policy of the thread calling
    /// [`start`](CoresBuilder::start), and only the normal policy is
    /// changed. Where the system refuses the change (a seccomp filter),
    /// the thread keeps its policy and runs (a `tracing` warning with the
    /// `tracing` feature).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn f<P: gaio_core::Poller>() {
    /// let builder = gaio_core::CoresBuilder::<P>::new().batch_scheduling(false);
    /// # }
    /// ```
    #[doc(alias = "SCHED_BATCH")]
    pub fn batch_scheduling(mut self, batch: bool) -> Self {
        self.batch = batch;
        self
    }

    /// The settings of every watcher (swap size, events per wait, write
    /// queue cap). Its [`mode`](Builder::mode) is not used: a core's
    /// watcher runs inline on the core's thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Builder, CoresBuilder, Poller};
    ///
    /// fn builder<P: Poller>() -> CoresBuilder<P> {
    ///     CoresBuilder::new().watcher(Builder::new().max_queued_write_bytes(1 << 20))
    /// }
    /// ```
    pub fn watcher(mut self, builder: Builder<P>) -> Self {
        self.watcher = builder;
        self
    }

    /// Listens on `addr` (TCP) with the system's deepest accept queue,
    /// spreading its connections over the watchers as `spread` says; each
    /// accepted connection gets the default [`AcceptOptions`]
    /// (`TCP_NODELAY` on). The address is resolved now; the listener(s)
    /// are bound by [`start`](CoresBuilder::start), whose error a failed
    /// resolution becomes. Port 0 binds a free port, the same one for
    /// every listener: [`Cores::local_addr`] says which.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{CoresBuilder, Poller, Spread};
    ///
    /// fn builder<P: Poller>() -> CoresBuilder<P> {
    ///     CoresBuilder::new().listen("0.0.0.0:8080", Spread::RoundRobin)
    /// }
    /// ```
    pub fn listen(self, addr: impl ToSocketAddrs, spread: Spread) -> Self {
        self.listen_with(addr, spread, AcceptOptions::default())
    }

    /// [`listen`](CoresBuilder::listen), with `options` for each accepted
    /// connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{AcceptOptions, CoresBuilder, Poller, Spread};
    ///
    /// fn builder<P: Poller>() -> CoresBuilder<P> {
    ///     let options = AcceptOptions::new().keepalive(true);
    ///     CoresBuilder::new().listen_with("0.0.0.0:8080", Spread::LeastLoaded, options)
    /// }
    /// ```
    pub fn listen_with(mut self, addr: impl ToSocketAddrs, spread: Spread, options: AcceptOptions) -> Self {
        match addr.to_socket_addrs() {
            Ok(addrs) => self.listen = Some((addrs.collect(), spread, options)),
            Err(e) => self.listen_error = Some(e),
        }
        self
    }

    /// Builds the watchers, binds the listener(s), and starts a thread per
    /// watcher, each pinned to its CPU, running `run` with its [`Core`].
    /// Returns once every thread has started (and pinned itself).
    ///
    /// `run` is what each thread does with its watcher: typically a
    /// multishot accept on [`Core::listener`] and a
    /// [`next_batch`](Watcher::next_batch) loop. When it returns, its
    /// watcher is dropped (every socket it holds closed); a panic in it is
    /// caught and reported by [`Cores::stop`] and [`Cores::join`].
    ///
    /// # Errors
    ///
    /// Nothing is left running on error: the watchers built are closed,
    /// the threads started are joined.
    ///
    /// * [`Error::InvalidSetting`]: `threads` out of 1 to [`MAX_CORES`], or
    ///   a watcher setting out of its range.
    /// * [`Error::InvalidCpu`]: a thread could not be pinned to its CPU.
    /// * [`Error::Io`]: the address did not resolve or bind
    ///   ([`AddrInUse`](io::ErrorKind::AddrInUse), ...),
    ///   [`Spread::ReusePort`] on a platform without it, or
    ///   [`pin(true)`](CoresBuilder::pin) where threads cannot be pinned
    ///   (both [`Unsupported`](io::ErrorKind::Unsupported)), or a poller or
    ///   a thread could not be created.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::{Core, CoresBuilder, Error, Op, Poller, Spread, Submit};
    ///
    /// fn echo<P: Poller>() -> Result<(), Error> {
    ///     let cores = CoresBuilder::<P>::new()
    ///         .listen("0.0.0.0:7000", Spread::LeastLoaded)
    ///         .start(|core: Core<P, (), Vec<u8>>| -> Result<(), Error> {
    ///             let mut w = core.watcher;
    ///             if let Some(listener) = core.listener {
    ///                 w.accept_multishot(listener, ())?;
    ///             }
    ///             let mut batch = Vec::new();
    ///             while w.next_batch(&mut batch)? {
    ///                 for c in batch.drain(..) {
    ///                     match (c.op, &c.error) {
    ///                         (_, Some(_)) => w.free(c.conn)?,
    ///                         (Op::Accept, None) => w.read_swap(c.conn, ())?,
    ///                         (Op::Read, None) => w.write(c.conn, (), c.data().to_vec())?,
    ///                         (_, None) => w.read_swap(c.conn, ())?,
    ///                     }
    ///                 }
    ///             }
    ///             Ok(())
    ///         })?;
    ///     println!("listening on {}", cores.local_addr().unwrap());
    ///     // ... until it is time to stop:
    ///     for result in cores.stop()? {
    ///         result?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn start<C, B, R, F>(self, run: F) -> Result<Cores<P, C, B, R>, Error>
    where
        C: Send + 'static,
        B: IoBuf + Send + 'static,
        R: Send + 'static,
        F: Fn(Core<P, C, B>) -> R + Send + Sync + 'static,
    {
        if let Some(e) = self.listen_error {
            return Err(Error::Io(e));
        }
        let cpus = affinity::usable_cpus();
        let threads = self.threads.unwrap_or(cpus.len().max(1));
        if !(1..=MAX_CORES).contains(&threads) {
            return Err(Error::InvalidSetting(Box::new(crate::InvalidSetting {
                name: "threads",
                value: threads,
                min: 1,
                max: MAX_CORES,
            })));
        }
        let builder = self.watcher.mode(Mode::Inline);
        let mut watchers = (0..threads)
            .map(|_| builder.clone().build::<C, B>())
            .collect::<Result<Vec<_>, _>>()?;
        let (listeners, local_addr) = match &self.listen {
            Some((addrs, spread, options)) => listen(&mut watchers, addrs, *spread, *options)?,
            None => (vec![None; threads], None),
        };
        let peers: Arc<[Submitter<P, C, B>]> = watchers.iter().map(Watcher::submitter).collect();
        let run = Arc::new(run);
        let (started_tx, started_rx) = mpsc::channel::<Result<(), Error>>();
        let mut handles = Vec::with_capacity(threads);
        for (index, (watcher, listener)) in watchers.into_iter().zip(listeners).enumerate() {
            let cpu = (self.pin && !cpus.is_empty()).then(|| cpus[index % cpus.len()]);
            let core = Core {
                watcher,
                index,
                cpu,
                listener,
                peers: Arc::clone(&peers),
            };
            let run = Arc::clone(&run);
            let started = started_tx.clone();
            let batch = self.batch;
            let spawned = std::thread::Builder::new()
                .name(format!("gaio-core-{index}"))
                .spawn(move || run_core(core, batch, &*run, &started));
            match spawned {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    stop_all(&peers, handles);
                    return Err(Error::Io(e));
                }
            }
        }
        drop(started_tx);
        // Every thread says whether it pinned itself before running `run`.
        let mut failure = None;
        for _ in 0..threads {
            match started_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => break,
            }
        }
        if let Some(e) = failure {
            stop_all(&peers, handles);
            return Err(e);
        }
        Ok(Cores {
            peers,
            handles,
            local_addr,
        })
    }
}

/// Binds the listener(s) for `spread` and hands them to the watchers:
/// returns each watcher's listener and the address bound.
#[allow(clippy::type_complexity)]
fn listen<P: Poller, C: Send + 'static, B: IoBuf>(
    watchers: &mut [Watcher<P, C, B>],
    addrs: &[SocketAddr],
    spread: Spread,
    options: AcceptOptions,
) -> Result<(Vec<Option<Listener>>, Option<SocketAddr>), Error> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for &addr in addrs {
        match bind(watchers.len(), addr, spread) {
            Ok(sockets) => {
                let local = sockets[0].local_addr().map_err(Error::Io)?;
                let mut listeners = vec![None; watchers.len()];
                for (i, socket) in sockets.into_iter().enumerate() {
                    listeners[i] = Some(watchers[i].watch_listener_with(socket, options)?);
                }
                if spread != Spread::ReusePort {
                    let members = watchers.iter().map(|w| Arc::clone(w.shared())).collect();
                    let group = Arc::new(Group::new(members, spread == Spread::LeastLoaded));
                    let listener = listeners[0].expect("the first watcher listens");
                    watchers[0].spread_accepts(listener, group, 0);
                }
                return Ok((listeners, Some(local)));
            }
            Err(e) => last = e,
        }
    }
    Err(Error::Io(last))
}

/// The listening sockets for `spread` on `addr`: one per watcher sharing
/// the port with the kernel spreading (`ReusePort`), else one.
fn bind(watchers: usize, addr: SocketAddr, spread: Spread) -> io::Result<Vec<std::net::TcpListener>> {
    if spread != Spread::ReusePort {
        return Ok(vec![net::listen_shared(addr, false)?]);
    }
    let first = net::listen_shared(addr, true)?;
    // Port 0 picked a port: the others bind to that one.
    let bound = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..watchers {
        sockets.push(net::listen_shared(bound, true)?);
    }
    Ok(sockets)
}

/// A core's thread: pin, take the batch policy if asked, say so, run the
/// user's code (catching a panic).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))] // the refused policy's error is read only by a diagnostic
fn run_core<P: Poller, C, B: IoBuf, R>(
    core: Core<P, C, B>,
    batch: bool,
    run: &(dyn Fn(Core<P, C, B>) -> R + Send + Sync),
    started: &mpsc::Sender<Result<(), Error>>,
) -> Result<R, String> {
    if let Some(cpu) = core.cpu {
        if let Err(e) = affinity::pin(None, cpu) {
            let _ = started.send(Err(e));
            return Err(format!("could not pin to cpu {cpu}"));
        }
    }
    if batch {
        if let Err(e) = affinity::prefer_batch() {
            crate::diag::warn_event!(core = core.index, error = %e, "the batch scheduling policy was refused; the thread keeps its own");
        }
    }
    let _ = started.send(Ok(()));
    catch_unwind(AssertUnwindSafe(|| run(core)))
        .map_err(|payload| crate::background::panic_message(&*payload))
}

/// Closes every watcher.
fn close_all<P: Poller, C, B: IoBuf>(peers: &[Submitter<P, C, B>]) {
    for mut peer in peers.iter() {
        peer.close();
    }
}

/// Closes every watcher and joins every thread, ignoring how they ended.
fn stop_all<P: Poller, C, B: IoBuf, R>(
    peers: &[Submitter<P, C, B>],
    handles: Vec<JoinHandle<Result<R, String>>>,
) {
    close_all(peers);
    for handle in handles {
        let _ = handle.join();
    }
}

/// Watchers, one per core, each turned by a thread of its own pinned to
/// its core and running the user's per-thread code; started by
/// [`CoresBuilder::start`].
///
/// Shared nothing: each thread owns its [`Watcher`] (inline mode, so I/O
/// and the user's code run on the core's one thread with no hand-off);
/// the threads talk only through [`Submitter`]s ([`Core::peers`],
/// [`Cores::submitters`]): a [`notify`](crate::Submit::notify) to another
/// core's watcher, a connection detached on one and watched on another.
///
/// Dropping it stops it as [`stop`](Cores::stop) does, and drops the
/// results.
pub struct Cores<P: Poller, C, B: IoBuf, R> {
    peers: Arc<[Submitter<P, C, B>]>,
    handles: Vec<JoinHandle<Result<R, String>>>,
    local_addr: Option<SocketAddr>,
}

impl<P: Poller, C, B: IoBuf, R> std::fmt::Debug for Cores<P, C, B, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cores")
            .field("cores", &self.peers.len())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl<P: Poller, C, B: IoBuf, R> Cores<P, C, B, R> {
    /// How many cores (threads, watchers) run.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f<P: gaio_core::Poller>(cores: gaio_core::Cores<P, (), Vec<u8>, ()>) {
    /// println!("serving on {} cores", cores.len());
    /// # }
    /// ```
    #[allow(clippy::len_without_is_empty)] // never empty
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// The address listened on ([`CoresBuilder::listen`]), with the port
    /// bound when port 0 was asked for; `None` if the cores listen on
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f<P: gaio_core::Poller>(cores: gaio_core::Cores<P, (), Vec<u8>, ()>) {
    /// let addr = cores.local_addr().expect("listening");
    /// let client = std::net::TcpStream::connect(addr);
    /// # }
    /// ```
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// A submitter of every core's watcher, by index (the same as each
    /// [`Core::peers`]): to [`notify`](crate::Submit::notify) a core from
    /// outside, say.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::Submit;
    /// # fn f<P: gaio_core::Poller>(cores: gaio_core::Cores<P, &'static str, Vec<u8>, ()>) {
    /// for mut core in cores.submitters().iter() {
    ///     let _ = core.notify("reload");
    /// }
    /// # }
    /// ```
    pub fn submitters(&self) -> &Arc<[Submitter<P, C, B>]> {
        &self.peers
    }

    /// Closes every watcher, waits for every thread to end, and returns
    /// what each thread's function returned, by core.
    ///
    /// Each watcher closes as [`close`](crate::Submit::close) does: its
    /// `next_batch` loop ends (after handing out the requests that were
    /// pending, with [`Error::WatcherClosed`]), then the thread's function
    /// returns and its watcher is dropped.
    ///
    /// # Errors
    ///
    /// [`Error::Panicked`] if a thread's function panicked, naming the
    /// core and carrying the panic's message (the other threads were
    /// stopped and joined all the same).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f<P: gaio_core::Poller>(cores: gaio_core::Cores<P, (), Vec<u8>, std::io::Result<()>>) -> Result<(), Box<dyn std::error::Error>> {
    /// for (core, result) in cores.stop()?.into_iter().enumerate() {
    ///     if let Err(e) = result {
    ///         eprintln!("core {core} failed: {e}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stop(mut self) -> Result<Vec<R>, Error> {
        close_all(&self.peers);
        self.join_all()
    }

    /// Asks every watcher to close gracefully within `timeout` (see
    /// [`close_gracefully`](crate::Submit::close_gracefully): listeners
    /// close at once, connections are half-closed once their writes are
    /// out), then waits for every thread to end, as [`stop`](Cores::stop)
    /// does.
    ///
    /// # Errors
    ///
    /// As [`stop`](Cores::stop).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # fn f<P: gaio_core::Poller>(cores: gaio_core::Cores<P, (), Vec<u8>, ()>) -> Result<(), gaio_core::Error> {
    /// cores.stop_gracefully(Duration::from_secs(5))?;
    /// # Ok(()) }
    /// ```
    pub fn stop_gracefully(mut self, timeout: Duration) -> Result<Vec<R>, Error> {
        for mut peer in self.peers.iter() {
            peer.close_gracefully(timeout);
        }
        self.join_all()
    }

    /// Waits for every thread's function to return on its own (each
    /// watcher closed from inside, say, on a notification), and returns
    /// what each returned, by core.
    ///
    /// # Errors
    ///
    /// As [`stop`](Cores::stop).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use gaio_core::Submit;
    /// # fn f<P: gaio_core::Poller>(cores: gaio_core::Cores<P, (), Vec<u8>, ()>) -> Result<(), gaio_core::Error> {
    /// // Some thread closes the watchers when it is time:
    /// let peers = cores.submitters().clone();
    /// std::thread::spawn(move || peers.iter().for_each(|mut p| p.close()));
    /// cores.join()?;
    /// # Ok(()) }
    /// ```
    pub fn join(mut self) -> Result<Vec<R>, Error> {
        self.join_all()
    }

    fn join_all(&mut self) -> Result<Vec<R>, Error> {
        let mut results = Vec::with_capacity(self.handles.len());
        let mut panicked = None;
        for (index, handle) in self.handles.drain(..).enumerate() {
            let outcome = handle
                .join()
                .unwrap_or_else(|payload| Err(crate::background::panic_message(&*payload)));
            match outcome {
                Ok(r) => results.push(r),
                Err(message) => {
                    panicked.get_or_insert(Error::Panicked {
                        message: format!("core {index}: {message}").into_boxed_str(),
                    });
                }
            }
        }
        match panicked {
            Some(e) => Err(e),
            None => Ok(results),
        }
    }
}

impl<P: Poller, C, B: IoBuf, R> Drop for Cores<P, C, B, R> {
    fn drop(&mut self) {
        if !self.handles.is_empty() {
            close_all(&self.peers);
            let _ = self.join_all();
        }
    }
}

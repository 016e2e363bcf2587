//! The Redis-protocol server of `gaio/examples/resp_server.rs`, on tokio:
//! the same protocol code, a current-thread runtime, one task per
//! connection, the store shared between them.
//!
//! `cargo run --release -p gaio-twins --example tokio_resp_server -- --addr 127.0.0.1:6379`
//! prints the bound address on its first line. Ctrl-C or SIGTERM stops it:
//! it stops accepting, lets each reply being written finish, closes every
//! connection, and exits within five seconds.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use gaio_protocols::{prepare_read, resp, Next};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::LocalSet;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How long a shutdown waits for the replies being written.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Serves one client: reads commands, writes the replies, until the
/// client closes, quits, or `stop` is cancelled.
async fn serve_client(
    mut stream: TcpStream,
    store: Rc<RefCell<resp::Store>>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let (mut input, mut out, mut progress) = (Vec::new(), Vec::new(), resp::Progress::default());
    loop {
        // `respond` makes a bounded amount of replies at a time: read only
        // once no whole command is left.
        let (used, next) = resp::respond(&input, &mut out, &mut store.borrow_mut(), &mut progress);
        input.drain(..used);
        stream.write_all(&out).await?;
        out.clear();
        if next == Next::Close {
            return Ok(());
        }
        if used == 0 {
            prepare_read(&mut input);
            tokio::select! {
                read = stream.read_buf(&mut input) => if read? == 0 { return Ok(()) },
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }
}

/// Accepts and serves clients until `stop` is cancelled, then waits for
/// them to finish, for at most `DRAIN_TIME`. Runs in a [`LocalSet`]: the
/// tasks share the store without a lock.
pub async fn serve(listener: TcpListener, stop: CancellationToken) {
    let store = Rc::new(RefCell::new(resp::Store::new()));
    let clients = TaskTracker::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    clients.spawn_local(serve_client(stream, store.clone(), stop.clone()));
                }
                Err(e) => {
                    // Out of descriptors, say: wait instead of spinning.
                    eprintln!("tokio_resp_server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = stop.cancelled() => break,
        }
    }
    clients.close();
    let _ = tokio::time::timeout(DRAIN_TIME, clients.wait()).await;
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = gaio_protocols::addr_arg(std::env::args().skip(1), "tokio_resp_server")?;
    let listener = TcpListener::bind(addr).await?;
    println!("{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        on_signal.cancel();
    });
    LocalSet::new().run_until(serve(listener, stop)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `check` against `serve` on a runtime of its own, then stops
    /// the server and checks that it returns.
    fn against_server(check: fn(std::net::SocketAddr)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = std::thread::spawn({
            let stop = stop.clone();
            move || rt.block_on(LocalSet::new().run_until(serve(listener, stop)))
        });
        check(addr);
        stop.cancel();
        server.join().unwrap();
    }

    gaio_protocols::resp_checks!(against_server);
}

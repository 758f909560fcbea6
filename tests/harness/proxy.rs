//! A TCP fault proxy that runs inside the test process: it listens on a loopback port and
//! forwards every connection to one target, and a test switches what happens to the bytes at
//! run time.
//!
//! ```text
//!   node i ──dial──▶ FaultProxy (127.0.0.1:<free>) ──dial──▶ node j's cluster port
//!                        │
//!                        ├─ Pass       forward both directions
//!                        ├─ Blackhole  stop reading both sides; accept new connections but do
//!                        │             not dial the target (a silent partition: no FIN, no RST)
//!                        └─ Reset      RST every open connection; RST new ones on accept
//! ```
//!
//! Blackhole stops *reading* instead of reading and discarding: bytes sent during the partition
//! wait in the kernel buffers and are delivered in order after [`FaultProxy::set_mode`] goes back
//! to `Pass`, as TCP retransmission would deliver them after a real partition heals. Discarding
//! would cut a hole in the middle of a byte stream, which no real network does. Connections
//! accepted during a blackhole dial the target when the partition heals.
//!
//! Each proxy owns a small tokio runtime; dropping the proxy drops the runtime, which closes
//! every socket it holds.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProxyMode {
    /// Forward both directions.
    Pass,
    /// Silently stop forwarding in both directions; connections stay open.
    Blackhole,
    /// Reset (RST) every open connection and every new one.
    Reset,
}

/// The state every connection task watches: the mode, and a counter that a reset bumps so that
/// connections opened before it are reset even if the mode is back to `Pass` by the time a task
/// looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Control {
    mode: ProxyMode,
    reset_epoch: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    upstream_connected: AtomicU64,
    bytes_forwarded: AtomicU64,
}

/// How long a connection task waits for the target to accept before resetting the client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Forwarding buffer per direction.
const BUF_BYTES: usize = 64 * 1024;

/// One proxy: a listener on `127.0.0.1:<free port>` forwarding to `target`.
#[derive(Debug)]
pub(crate) struct FaultProxy {
    listen: SocketAddr,
    target: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
    // Declared last: dropped after the rest, and dropping it stops every task and closes every
    // socket.
    runtime: tokio::runtime::Runtime,
}

impl FaultProxy {
    /// Starts a proxy in `Pass` mode on a free loopback port.
    pub(crate) fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let listen = listener.local_addr()?;
        let (control, _) = watch::channel(Control {
            mode: ProxyMode::Pass,
            reset_epoch: 0,
        });
        let counters = Arc::new(Counters::default());
        runtime.spawn(accept_loop(
            listener,
            target,
            control.clone(),
            counters.clone(),
        ));
        Ok(FaultProxy {
            listen,
            target,
            control,
            counters,
            runtime,
        })
    }

    /// The address to dial instead of the target.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.listen
    }

    pub(crate) fn target(&self) -> SocketAddr {
        self.target
    }

    pub(crate) fn mode(&self) -> ProxyMode {
        self.control.borrow().mode
    }

    /// Switches the mode. Switching to `Reset` resets every open connection at once.
    pub(crate) fn set_mode(&self, mode: ProxyMode) {
        self.control.send_modify(|c| {
            if mode == ProxyMode::Reset {
                c.reset_epoch += 1;
            }
            c.mode = mode;
        });
    }

    /// Resets every connection open now and leaves the mode as it is (new connections are
    /// served normally in `Pass`).
    pub(crate) fn reset_open_connections(&self) {
        self.control.send_modify(|c| c.reset_epoch += 1);
    }

    /// Connections accepted so far.
    pub(crate) fn connections_accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Connections for which the target was dialled successfully.
    pub(crate) fn upstream_connections(&self) -> u64 {
        self.counters.upstream_connected.load(Ordering::Relaxed)
    }

    /// Bytes forwarded so far, both directions.
    pub(crate) fn bytes_forwarded(&self) -> u64 {
        self.counters.bytes_forwarded.load(Ordering::Relaxed)
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
) {
    loop {
        let (client, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("fault proxy to {target}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = client.set_nodelay(true);
        tokio::spawn(connection(
            client,
            target,
            control.subscribe(),
            counters.clone(),
        ));
    }
}

/// Closes with RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Whether a connection opened at `epoch` must be reset now.
fn must_reset(c: &Control, epoch: u64) -> bool {
    c.mode == ProxyMode::Reset || c.reset_epoch != epoch
}

async fn connection(
    client: TcpStream,
    target: SocketAddr,
    mut control: watch::Receiver<Control>,
    counters: Arc<Counters>,
) {
    let epoch = control.borrow_and_update().reset_epoch;
    // Dial the target only once the link passes traffic.
    loop {
        let c = *control.borrow_and_update();
        if must_reset(&c, epoch) {
            return reset(client);
        }
        if c.mode == ProxyMode::Pass {
            break;
        }
        if control.changed().await.is_err() {
            return;
        }
    }
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        // The target is down (killed node): the client sees what it would see without the
        // proxy, a refused connection.
        _ => return reset(client),
    };
    counters.upstream_connected.fetch_add(1, Ordering::Relaxed);
    let _ = upstream.set_nodelay(true);
    let mut client = client;
    let mut upstream = upstream;
    let reset_now = {
        let (cr, cw) = client.split();
        let (ur, uw) = upstream.split();
        let to_target = pump(cr, uw, control.clone(), &counters);
        let to_client = pump(ur, cw, control.clone(), &counters);
        // An error on either side (a reset, a dead peer) tears down both: the other side gets
        // an RST too, as it would from the peer itself.
        let forwarding = async { tokio::try_join!(to_target, to_client).is_err() };
        let resets = async {
            loop {
                if must_reset(&control.borrow_and_update(), epoch) {
                    return;
                }
                if control.changed().await.is_err() {
                    // The proxy is gone; the runtime is shutting down.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            failed = forwarding => failed,
            () = resets => true,
        }
    };
    if reset_now {
        reset(client);
        reset(upstream);
    }
}

/// Copies `from` to `to` while the mode is `Pass`. Returns `Ok` at EOF, after passing the EOF
/// on (half close), and `Err` when either side fails.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    mut control: watch::Receiver<Control>,
    counters: &Counters,
) -> Result<(), ()> {
    let mut buf = vec![0u8; BUF_BYTES];
    loop {
        // Blackhole and Reset: do not read (the connection task resets on Reset).
        wait_for_pass(&mut control).await?;
        // `read` is cancel-safe: a mode change while waiting loses no bytes. `biased`: once the
        // mode has changed, a read that is ready at the same time must not win.
        let n = tokio::select! {
            biased;
            r = control.changed() => {
                r.map_err(|_| ())?;
                continue;
            }
            r = from.read(&mut buf) => r.map_err(|_| ())?,
        };
        // Bytes that arrived just as a blackhole began wait for it to end, so nothing is
        // forwarded once `set_mode` has returned.
        wait_for_pass(&mut control).await?;
        if n == 0 {
            return to.shutdown().await.map_err(|_| ());
        }
        to.write_all(&buf[..n]).await.map_err(|_| ())?;
        counters
            .bytes_forwarded
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Waits until the mode is `Pass`; `Err` when the proxy is gone.
async fn wait_for_pass(control: &mut watch::Receiver<Control>) -> Result<(), ()> {
    while control.borrow_and_update().mode != ProxyMode::Pass {
        control.changed().await.map_err(|_| ())?;
    }
    Ok(())
}

//! A TCP proxy between two settle services that injects network faults into the bytes it
//! forwards, seeded: per forwarded chunk it may delay it, reset the connection (both sides
//! closed at once, in-flight RPCs fail), or blackhole it (stop forwarding, then close, as a
//! dead peer or a partition looks). Faults can be switched off for the quiet phase.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::rng::Rng;

/// How often each fault happens, per forwarded chunk.
#[derive(Debug, Clone, Copy)]
pub struct NetworkFaults {
    pub delay: f64,
    pub max_delay: Duration,
    pub reset: f64,
    pub blackhole: f64,
    pub blackhole_for: Duration,
}

impl Default for NetworkFaults {
    fn default() -> Self {
        NetworkFaults {
            delay: 0.05,
            max_delay: Duration::from_millis(150),
            reset: 0.004,
            blackhole: 0.001,
            blackhole_for: Duration::from_secs(3),
        }
    }
}

/// What a proxy injected.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    pub connections: AtomicU64,
    pub delays: AtomicU64,
    pub resets: AtomicU64,
    pub blackholes: AtomicU64,
}

impl ProxyCounts {
    pub fn faults(&self) -> u64 {
        self.delays.load(Ordering::Relaxed)
            + self.resets.load(Ordering::Relaxed)
            + self.blackholes.load(Ordering::Relaxed)
    }
}

struct Shared {
    name: &'static str,
    upstream: SocketAddr,
    seed: u64,
    faults: NetworkFaults,
    enabled: AtomicBool,
    counts: ProxyCounts,
}

/// A running proxy; it stops when `shutdown` is cancelled.
#[derive(Clone)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(
        name: &'static str,
        upstream: SocketAddr,
        seed: u64,
        faults: NetworkFaults,
        shutdown: CancellationToken,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name,
            upstream,
            seed,
            faults,
            enabled: AtomicBool::new(true),
            counts: ProxyCounts::default(),
        });
        let accepting = shared.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((inbound, _)) = accepted else { continue };
                let n = accepting.counts.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(forward(accepting.clone(), inbound, n, shutdown.clone()));
            }
        });
        Ok(FaultProxy { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Turns fault injection on or off (forwarding goes on).
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.enabled.store(enabled, Ordering::Relaxed);
    }

    pub fn counts(&self) -> &ProxyCounts {
        &self.shared.counts
    }
}

async fn forward(shared: Arc<Shared>, inbound: TcpStream, n: u64, shutdown: CancellationToken) {
    let Ok(outbound) = TcpStream::connect(shared.upstream).await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // Cancelling this closes both directions: a reset.
    let connection = shutdown.child_token();
    let up = pump(shared.clone(), in_read, out_write, Rng::fork(shared.seed, n * 2), connection.clone());
    let down =
        pump(shared.clone(), out_read, in_write, Rng::fork(shared.seed, n * 2 + 1), connection.clone());
    tokio::join!(up, down);
}

async fn pump(
    shared: Arc<Shared>,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut rng: Rng,
    connection: CancellationToken,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            () = connection.cancelled() => break,
            read = from.read(&mut buffer) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.enabled.load(Ordering::Relaxed) {
            let f = &shared.faults;
            let draw = rng.unit();
            if draw < f.reset {
                shared.counts.resets.fetch_add(1, Ordering::Relaxed);
                connection.cancel();
                break;
            } else if draw < f.reset + f.blackhole {
                shared.counts.blackholes.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    () = connection.cancelled() => {}
                    () = tokio::time::sleep(f.blackhole_for) => {}
                }
                connection.cancel();
                break;
            } else if draw < f.reset + f.blackhole + f.delay {
                shared.counts.delays.fetch_add(1, Ordering::Relaxed);
                let millis = u64::try_from(f.max_delay.as_millis()).unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(rng.between(1, millis))).await;
            }
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    // Either side ending ends the connection, as a TCP proxy without half-close support does.
    connection.cancel();
    let _ = to.shutdown().await;
}

//! The HTTP server of the device and of `pipe rendezvous`: axum's router behind an accept loop
//! that bounds what a stranger can hold. Half-sent headers and silent sockets used to stay open
//! forever, and 1,100 idle connections exhausted the device's 1,024 file descriptors (new
//! viewers got nothing, the grants thread could not open its lock file). Now:
//! - connections are capped in total and per source address, below the descriptor limit, so
//!   the device's own files always have room; a connection over a cap is closed at once;
//! - a request's headers must arrive within `header_timeout`, which also closes a keep-alive
//!   connection that sends nothing (hyper starts that timer as soon as it waits for a head);
//! - a WebSocket keeps its connection's slot for its whole life (`ConnectionSlot`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::signalling::limits::source_key;
use crate::signalling::server::KeepWhileOpen;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_per_source: usize,
    pub header_timeout: Duration,
}

impl Limits {
    /// A camera: a few viewers, each a page, its assets and a WebSocket; well under systemd's
    /// default of 1,024 descriptors (the units set `LimitNOFILE` higher still).
    pub const DEVICE: Limits = Limits {
        max_connections: 256,
        max_per_source: 32,
        header_timeout: Duration::from_secs(10),
    };
    /// A rendezvous holds one idle WebSocket per device; devices behind one carrier-grade NAT
    /// share an address, hence the wide per-source cap.
    pub const RENDEZVOUS: Limits = Limits {
        max_connections: 16_384,
        max_per_source: 1_024,
        header_timeout: Duration::from_secs(10),
    };
}

// systemd's default soft limit is 1,024 descriptors: the device's own files, GStreamer's and
// the viewers' sockets must fit beside every connection the cap lets in.
const _: () = assert!(Limits::DEVICE.max_connections * 2 < 1024);
const _: () = assert!(Limits::DEVICE.max_per_source < Limits::DEVICE.max_connections);

/// Why a connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    Source,
}

/// Who holds connections, as pure data.
#[derive(Debug, Default)]
pub struct Connections {
    total: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl Connections {
    pub fn admit(&mut self, source: IpAddr, limits: &Limits) -> Result<(), Refusal> {
        let key = source_key(source);
        if self.total >= limits.max_connections {
            return Err(Refusal::Total);
        }
        let held = self.per_source.get(&key).copied().unwrap_or(0);
        if held >= limits.max_per_source {
            return Err(Refusal::Source);
        }
        self.total += 1;
        self.per_source.insert(key, held + 1);
        Ok(())
    }

    pub fn release(&mut self, source: IpAddr) {
        let key = source_key(source);
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_source.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&key);
            }
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

/// A connection's place under the caps, given back when the last holder drops it. A request
/// carries it (an extension, `signalling::server::KeepWhileOpen`), so a WebSocket handler can
/// keep it after the upgrade.
#[derive(Clone)]
pub struct ConnectionSlot(Arc<SlotGuard>);

struct SlotGuard {
    connections: Arc<Mutex<Connections>>,
    source: IpAddr,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(self.source);
    }
}

/// Serves `app` on `listener` until `shutdown` turns true; then stops accepting and asks each
/// connection to finish (at most `drain` for them all).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
) {
    let connections = Arc::new(Mutex::new(Connections::default()));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
            // Reap finished connection tasks as they end, so the set stays small.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or a transient error: do not spin.
                warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admitted = connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(peer.ip(), &limits);
        if let Err(refusal) = admitted {
            debug!(%peer, ?refusal, "connection over the cap; closed");
            drop(stream);
            continue;
        }
        let slot = ConnectionSlot(Arc::new(SlotGuard {
            connections: connections.clone(),
            source: peer.ip(),
        }));
        tasks.spawn(connection(
            stream,
            peer,
            app.clone(),
            slot,
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    slot: ConnectionSlot,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = app
        .layer(axum::Extension(ConnectInfo(peer)))
        .layer(axum::Extension(KeepWhileOpen(slot.0.clone())));
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                debug!(%peer, %error, "connection ended");
            }
        }
        _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn caps_per_source_and_in_total() {
        let limits = Limits {
            max_connections: 5,
            max_per_source: 2,
            header_timeout: Duration::from_secs(1),
        };
        let mut c = Connections::default();
        assert_eq!(c.admit(ip("192.0.2.1"), &limits), Ok(()));
        assert_eq!(c.admit(ip("192.0.2.1"), &limits), Ok(()));
        assert_eq!(c.admit(ip("192.0.2.1"), &limits), Err(Refusal::Source));
        assert_eq!(c.admit(ip("192.0.2.2"), &limits), Ok(()));
        assert_eq!(c.admit(ip("192.0.2.3"), &limits), Ok(()));
        assert_eq!(c.admit(ip("192.0.2.4"), &limits), Ok(()));
        assert_eq!(c.admit(ip("192.0.2.5"), &limits), Err(Refusal::Total));
        c.release(ip("192.0.2.1"));
        assert_eq!(c.admit(ip("192.0.2.1"), &limits), Ok(()));
        assert_eq!(c.total(), 5);
        for a in [
            "192.0.2.1",
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.4",
        ] {
            c.release(ip(a));
        }
        assert_eq!(c.total(), 0);
        assert!(c.per_source.is_empty());
    }
}

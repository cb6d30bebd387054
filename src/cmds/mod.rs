//! One module per subcommand; `main.rs` picks one. Each `run` owns its runtime's work from
//! start to an orderly shutdown.

pub mod device;
pub mod doctor;
pub mod grants;
pub mod rendezvous;

use std::net::SocketAddr;

use anyhow::Context;
use tokio::sync::watch;

/// Binds the web server's port with an error a person can act on.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| match addr.port() {
        0 => format!("cannot listen on {addr}"),
        port => format!("cannot listen on {addr}: is port {port} in use by another program? Choose another with --port"),
    })
}

/// A watch that turns true on the first SIGINT/SIGTERM; a second one exits at once.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down (signal again to exit at once)");
        let _ = tx.send(true);
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    rx
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Resolves when `shutdown` turns true.
pub async fn until(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

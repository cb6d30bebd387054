//! One stream's exchange with the upstream, in its own task: an HTTP request (hyper's
//! one-connection client: no pool, no redirects, no environment proxies, no decompression,
//! nothing it does not say) or a WebSocket (tokio-tungstenite over our own TCP connection).
//!
//! It talks to the bridge only through channels: the browser's bytes come through an
//! `Inbox`, the answer goes out as `Out` events. Before it hands on a flow-controlled piece it
//! takes that many permits from `credit` (a mirror of the stream's send window, refilled by
//! the browser's `Credit` frames), so with no credit it stops reading the upstream.

mod http;
mod websocket;

pub use self::http::http;
pub use self::websocket::{fragments, websocket};

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use super::frame::{MAX_DATA, ResetCode, ResponseHead, StreamId, WsClose, WsMessage};
use super::inbox::Inbox;
use super::upstream::{self, Upstream};

/// What an exchange hands the bridge for its stream.
#[derive(Debug)]
pub enum Out {
    Head(ResponseHead),
    /// At most `MAX_DATA` bytes, credit already taken.
    Data(Bytes),
    End,
    /// One fragment, credit already taken.
    Ws(WsMessage),
    WsClose(WsClose),
    Reset(ResetCode, String),
}

/// An exchange's ends of its channels.
pub struct Exchange {
    pub id: StreamId,
    pub upstream: Arc<Upstream>,
    pub out: mpsc::Sender<(StreamId, Out)>,
    pub credit: Arc<Semaphore>,
    pub inbox: Arc<Inbox>,
}

/// Aborts a spawned task when dropped (the hyper connection of an aborted exchange).
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Exchange {
    pub(super) async fn send(&self, out: Out) -> bool {
        self.out.send((self.id, out)).await.is_ok()
    }

    pub(super) async fn reset(&self, code: ResetCode, message: impl Into<String>) {
        self.send(Out::Reset(code, message.into())).await;
    }

    /// Takes credit for a piece of `n` flow-controlled bytes (waits for the browser).
    pub(super) async fn credit(&self, n: usize) -> bool {
        let n = u32::try_from(n).expect("pieces are at most a frame");
        match self.credit.acquire_many(n).await {
            Ok(permits) => {
                permits.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// A whole response the device makes itself (error pages).
    pub(super) async fn page(&self, status: u16, title: &str, detail: &str) {
        let (headers, body) = upstream::error_page(status, title, detail);
        let head = ResponseHead::new(status, headers).expect("valid status and headers");
        self.respond(head, Bytes::from(body)).await;
    }

    pub(super) async fn respond(&self, head: ResponseHead, body: Bytes) {
        if !self.send(Out::Head(head)).await {
            return;
        }
        for piece in body.chunks(MAX_DATA) {
            if !self.credit(piece.len()).await || !self.send(Out::Data(body.slice_ref(piece))).await
            {
                return;
            }
        }
        self.send(Out::End).await;
    }
}

pub(super) fn fields(map: &::http::HeaderMap) -> Vec<(&str, &[u8])> {
    map.iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect()
}

pub(super) async fn connect(up: &Upstream) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect((up.host.as_str(), up.port)).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

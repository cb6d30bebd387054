//! One stream's exchange with the upstream, in its own task: an HTTP request (hyper's
//! one-connection client: no pool, no redirects, no environment proxies, no decompression,
//! nothing it does not say) or a WebSocket (tokio-tungstenite over our own TCP connection).
//!
//! It talks to the bridge only through channels: the browser's bytes come through an
//! `Inbox`, the answer goes out as `Out` events. Before it hands on a flow-controlled piece it
//! takes that many permits from `credit` (a mirror of the stream's send window, refilled by
//! the browser's `Credit` frames), so with no credit it stops reading the upstream; then as
//! many from the session's `budget` (`bridge::RESPONSE_BUDGET`), which it holds, inside the
//! `Out` event, until the bridge hands the frame to the sending thread. Credit first: a stream
//! without credit (a reader that stopped) never holds budget, and budget is only ever held by
//! frames on their way to the sending thread, which drains whatever any reader does, so
//! waiting for it cannot deadlock.

mod http;
mod websocket;

pub use self::http::http;
pub use self::websocket::{fragments, websocket};

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::frame::{MAX_DATA, ResetCode, ResponseHead, StreamId, WsClose, WsMessage};
use super::inbox::Inbox;
use super::upstream::{self, Upstream};

/// A flow-controlled piece's share of the session's response budget, one permit per byte of
/// its cost; released when dropped (once the bridge has handed the frame to the sending thread,
/// or dropped it for a stream reset meanwhile).
pub type Budget = OwnedSemaphorePermit;

/// What an exchange hands the bridge for its stream.
#[derive(Debug)]
pub enum Out {
    Head(ResponseHead),
    /// At most `MAX_DATA` bytes, credit and budget already taken.
    Data(Bytes, Budget),
    End,
    /// One fragment, credit and budget already taken.
    Ws(WsMessage, Budget),
    WsClose(WsClose),
    Reset(ResetCode, String),
}

/// An exchange's ends of its channels.
pub struct Exchange {
    pub id: StreamId,
    pub upstream: Arc<Upstream>,
    pub out: mpsc::Sender<(StreamId, Out)>,
    pub credit: Arc<Semaphore>,
    /// The session's response budget, shared by all its exchanges.
    pub budget: Arc<Semaphore>,
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

    /// Takes credit for a piece of `n` flow-controlled bytes (waits for the browser), then
    /// its share of the session's budget (waits for the sending thread); `None` once either
    /// is closed.
    pub(super) async fn credit(&self, n: usize) -> Option<Budget> {
        take(&self.credit, &self.budget, n).await
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
            let Some(budget) = self.credit(piece.len()).await else {
                return;
            };
            if !self.send(Out::Data(body.slice_ref(piece), budget)).await {
                return;
            }
        }
        self.send(Out::End).await;
    }
}

/// Stream credit first (forgotten: the browser's `Credit` frames refill it), then budget
/// (held). The order is what keeps a stalled reader from holding budget.
async fn take(credit: &Semaphore, budget: &Arc<Semaphore>, n: usize) -> Option<Budget> {
    let n = u32::try_from(n).expect("pieces are at most a frame");
    credit.acquire_many(n).await.ok()?.forget();
    budget.clone().acquire_many_owned(n).await.ok()
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// `take` if it completes at once: `None` if it would wait.
    async fn now(credit: &Semaphore, budget: &Arc<Semaphore>, n: usize) -> Option<Option<Budget>> {
        take(credit, budget, n).now_or_never()
    }

    #[tokio::test]
    async fn the_budget_bounds_pieces_in_hand_and_a_stalled_reader_holds_none() {
        let frames = 4;
        let budget = Arc::new(Semaphore::new(frames * MAX_DATA));
        let fast = Semaphore::new(1 << 20);
        // A reader that stopped: its credit is gone, and it waits for more.
        let stalled = Arc::new(Semaphore::new(0));
        let waiting = {
            let (stalled, budget) = (stalled.clone(), budget.clone());
            tokio::spawn(async move { take(&stalled, &budget, MAX_DATA).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(
            budget.available_permits(),
            frames * MAX_DATA,
            "it holds none"
        );

        // Another stream may take the whole budget, and no more.
        let mut held = Vec::new();
        for _ in 0..frames {
            held.push(
                now(&fast, &budget, MAX_DATA)
                    .await
                    .flatten()
                    .expect("in budget"),
            );
        }
        assert!(now(&fast, &budget, 1).await.is_none(), "over budget: waits");
        // A frame handed to the sending thread frees its bytes for the next.
        drop(held.pop());
        held.push(
            now(&fast, &budget, MAX_DATA)
                .await
                .flatten()
                .expect("freed"),
        );
        assert_eq!(budget.available_permits(), 0);

        // Credit for the stalled stream: it now waits for budget like anyone else, and gets
        // it when frames drain.
        stalled.add_permits(MAX_DATA);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        held.clear();
        let got = waiting.await.unwrap().expect("budget freed");
        assert_eq!(got.num_permits(), MAX_DATA);
        assert_eq!(stalled.available_permits(), 0, "its credit was spent");
    }

    #[tokio::test]
    async fn a_closed_budget_or_credit_ends_the_wait() {
        let budget = Arc::new(Semaphore::new(10));
        let credit = Semaphore::new(10);
        credit.close();
        assert!(take(&credit, &budget, 1).await.is_none());
        let credit = Semaphore::new(10);
        budget.close();
        assert!(take(&credit, &budget, 1).await.is_none());
    }
}

//! The rendezvous server's WebSocket transport: one task per socket, feeding the pure
//! [`Router`] and carrying out what it says. The router lock is never held across `.await`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use axum::routing::get;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::limits::ConnectLimiter;
use super::protocol::{self, ClientMessage, DecodeError, DeviceId, ErrorCode, MAX_FRAME_BYTES};
use super::router::{ConnId, Output, Router};

/// The server pings every socket this often...
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// ...and closes one it has heard nothing from for this long (docs/protocol.md).
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// A socket that has not sent `register` or `connect` by then is closed: an idle socket holds a
/// connection slot, and every honest endpoint sends one of them at once.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// A peer that does not take a frame within this time is not reading; it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages queued for one socket. Signalling is a few messages per session; a socket that
/// lets this many pile up is not reading, and is closed rather than buffered without bound.
const OUTBOX_CAPACITY: usize = 256;

#[derive(Debug)]
enum Outbound {
    Text(String),
    Close,
}

/// The shared state of a rendezvous server: the router and each socket's outbox.
pub struct Rendezvous {
    inner: Mutex<Inner>,
}

struct Inner {
    router: Router,
    outboxes: HashMap<ConnId, mpsc::Sender<Outbound>>,
    /// Each socket's peer address, when the server was told it (`connect` rate limit).
    sources: HashMap<ConnId, IpAddr>,
    limiter: ConnectLimiter,
    next_conn: ConnId,
}

impl Rendezvous {
    pub fn new(server_name: &str) -> Arc<Self> {
        let prefix: String = {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..12)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect()
        };
        Arc::new(Self {
            inner: Mutex::new(Inner {
                router: Router::new(server_name, prefix),
                outboxes: HashMap::new(),
                sources: HashMap::new(),
                limiter: ConnectLimiter::default(),
                next_conn: 1,
            }),
        })
    }

    /// Serves `device_id` alone (a device's embedded rendezvous; `Router::only_device`).
    pub fn only_device(&self, device_id: DeviceId) {
        self.lock().router.only_device(device_id);
    }

    /// Registrations must be signed for this `host[:port]` (`Router::require_authority`).
    pub fn require_authority(&self, authority: String) {
        self.lock().router.require_authority(authority);
    }

    /// Routes `/signal` to this rendezvous.
    pub fn routes<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> axum::Router<S> {
        axum::Router::new()
            .route("/signal", get(upgrade))
            .with_state(self.clone())
    }

    pub fn session_count(&self) -> usize {
        self.lock().router.session_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while routing would be a bug in the pure router; keep serving the others.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn open(
        &self,
        source: Option<IpAddr>,
        authority: Option<String>,
    ) -> (ConnId, mpsc::Receiver<Outbound>) {
        // The registration nonce: 128 bits from the OS-seeded thread RNG.
        let nonce = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>());
        let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
        let mut inner = self.lock();
        let conn = inner.next_conn;
        inner.next_conn += 1;
        inner.outboxes.insert(conn, tx);
        if let Some(source) = source {
            inner.sources.insert(conn, source);
        }
        let out = inner.router.connected(conn, nonce, authority, source);
        Self::deliver(&mut inner, out);
        (conn, rx)
    }

    /// Handles one text frame; true if it was a `register` or `connect` (the socket said who
    /// it is, `HELLO_DEADLINE`).
    fn frame(&self, conn: ConnId, text: &str) -> bool {
        let mut inner = self.lock();
        let decoded = protocol::decode_client(text);
        let hello = matches!(
            decoded,
            Ok(ClientMessage::Register { .. } | ClientMessage::Connect { .. })
        );
        let out = match decoded {
            Ok(ClientMessage::Connect { .. }) if !Self::may_connect(&mut inner, conn) => {
                debug!(conn, "connect refused: rate limit");
                vec![Output::Send(
                    conn,
                    protocol::ServerMessage::error(
                        ErrorCode::RateLimited,
                        "too many connects from this address; try again in a few seconds",
                    ),
                )]
            }
            Ok(message) => inner.router.handle(conn, message),
            Err(error) => {
                debug!(conn, %error, "rejected signalling message");
                inner.router.rejected(conn, &error)
            }
        };
        Self::deliver(&mut inner, out);
        hello
    }

    /// The `connect` rate limit of this socket's source (none known: not limited).
    fn may_connect(inner: &mut Inner, conn: ConnId) -> bool {
        match inner.sources.get(&conn).copied() {
            Some(source) => inner.limiter.allow(source, std::time::Instant::now()),
            None => true,
        }
    }

    fn reject(&self, conn: ConnId, error: &DecodeError) {
        let mut inner = self.lock();
        let out = inner.router.rejected(conn, error);
        Self::deliver(&mut inner, out);
    }

    fn close(&self, conn: ConnId) {
        let mut inner = self.lock();
        inner.outboxes.remove(&conn);
        inner.sources.remove(&conn);
        let out = inner.router.disconnected(conn);
        Self::deliver(&mut inner, out);
    }

    /// Queues the router's output without waiting: a full outbox means a stuck socket, which
    /// is closed instead of holding up everyone else.
    fn deliver(inner: &mut Inner, out: Vec<Output>) {
        let mut stuck = Vec::new();
        for item in out {
            let (conn, outbound) = match item {
                Output::Send(conn, message) => (conn, Outbound::Text(protocol::encode(&message))),
                Output::Close(conn) => (conn, Outbound::Close),
            };
            if let Some(tx) = inner.outboxes.get(&conn)
                && tx.try_send(outbound).is_err()
            {
                stuck.push(conn);
            }
        }
        for conn in stuck {
            warn!(conn, "signalling socket is not reading; closing it");
            inner.outboxes.remove(&conn);
            let out = inner.router.disconnected(conn);
            Self::deliver(inner, out);
        }
    }
}

/// Whatever the HTTP server in front wants kept for as long as a WebSocket lives, opaque here:
/// `web::serve` puts the connection's place under its caps in a request's extensions, so the
/// cap counts a socket until it closes.
#[derive(Clone)]
pub struct KeepWhileOpen(pub std::sync::Arc<dyn std::any::Any + Send + Sync>);

/// The peer address is there when the server runs with connect info (the device and
/// `pipe rendezvous` both do); a router tested without it is simply not rate-limited.
async fn upgrade(
    ws: WebSocketUpgrade,
    State(rendezvous): State<Arc<Rendezvous>>,
    extensions: axum::http::Extensions,
    headers: axum::http::HeaderMap,
) -> Response {
    let source = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip());
    // The connection's place under the server's caps (web::serve), kept while the socket is.
    let slot = extensions.get::<KeepWhileOpen>().cloned();
    // What the peer says it dialled; a device signs its registration for it.
    let authority = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= 255)
        .map(str::to_ascii_lowercase);
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            serve(sink, stream, rendezvous, source, authority).await;
            drop(slot);
        })
}

/// Serves one signalling socket until it closes. Generic over the transport (axum's WebSocket
/// split in two, or channels in tests).
async fn serve<W, R>(
    mut sink: W,
    mut stream: R,
    rendezvous: Arc<Rendezvous>,
    source: Option<IpAddr>,
    authority: Option<String>,
) where
    W: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let (conn, mut outbox) = rendezvous.open(source, authority);
    debug!(conn, "signalling socket open");
    let mut ping = tokio::time::interval(PING_INTERVAL);
    let mut last_heard = Instant::now();
    let hello_by = Instant::now() + HELLO_DEADLINE;
    let mut said_hello = false;
    let close_reason: Option<(u16, &str)> = loop {
        tokio::select! {
            frame = stream.next() => {
                last_heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => said_hello |= rendezvous.frame(conn, text.as_str()),
                    Some(Ok(Message::Binary(_))) => {
                        rendezvous.reject(conn, &DecodeError::Malformed("binary frames are not accepted".into()));
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => {} // ping/pong: only proof of life
                    Some(Err(error)) => {
                        debug!(conn, %error, "signalling socket read failed");
                        break too_big(error).then_some((close_code::SIZE, "message over the 1 MiB limit"));
                    }
                }
            }
            item = outbox.recv() => match item {
                Some(Outbound::Text(text)) => {
                    if !send(&mut sink, Message::Text(text.into())).await { break None; }
                }
                Some(Outbound::Close) | None => break Some((close_code::POLICY, "replaced")),
            },
            _ = tokio::time::sleep_until(hello_by), if !said_hello => {
                info!(conn, "closing a signalling socket that neither registered nor connected");
                break Some((close_code::POLICY, "no register or connect within 10 s"));
            }
            _ = tokio::time::sleep_until(last_heard + SILENCE_LIMIT) => {
                info!(conn, "closing silent signalling socket");
                break Some((close_code::AWAY, "silent for 30 s"));
            }
            _ = ping.tick() => {
                if !send(&mut sink, Message::Ping(Default::default())).await { break None; }
            }
        }
    };
    rendezvous.close(conn);
    if let Some((code, reason)) = close_reason {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // Best effort with a deadline: the peer may already be gone.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
    debug!(conn, "signalling socket closed");
}

/// Sends one frame with a deadline; false if the socket is gone or not reading.
async fn send<W: Sink<Message> + Unpin>(sink: &mut W, message: Message) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, sink.send(message)).await,
        Ok(Ok(()))
    )
}

/// Did the socket fail because a message was over the size limit? Decided by the error's type
/// (axum wraps tungstenite's), not by its text.
fn too_big(error: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::error::CapacityError;
    matches!(
        error.into_inner().downcast_ref::<Error>(),
        Some(Error::Capacity(CapacityError::MessageTooLong { .. }))
    )
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;
    use serde_json::{Value, json};

    use super::*;

    /// A socket made of two channels: what the test sends, and what the server sent.
    struct Socket {
        to_server: mpsc::Sender<Result<Message, axum::Error>>,
        from_server: mpsc::Receiver<Message>,
        task: tokio::task::JoinHandle<()>,
    }

    fn open(rendezvous: &Arc<Rendezvous>) -> Socket {
        let (to_server, stream) = mpsc::channel(16);
        let (sink, from_server) = mpsc::channel(16);
        let task = tokio::spawn(serve(sink, stream, rendezvous.clone(), None, None));
        Socket {
            to_server,
            from_server,
            task,
        }
    }

    impl Socket {
        async fn send(&mut self, message: Value) {
            let text = Message::Text(message.to_string().into());
            self.to_server.send(Ok(text)).await.unwrap();
        }

        /// The next text message, skipping pings.
        async fn recv(&mut self) -> Value {
            loop {
                let message = tokio::time::timeout(Duration::from_secs(5), self.from_server.next())
                    .await
                    .expect("a message within 5 s")
                    .expect("the socket is open");
                if let Message::Text(text) = message {
                    return serde_json::from_str(text.as_str()).unwrap();
                }
            }
        }
    }

    /// The transport is generic, so the server's socket handling runs here over channels: the
    /// welcome, refusals of binary frames and of connects to a device nobody registered, and
    /// the end of the socket.
    #[tokio::test]
    async fn a_socket_over_channels_is_welcomed_refused_and_closed() {
        let rendezvous = Rendezvous::new("test");
        let mut socket = open(&rendezvous);
        let welcome = socket.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        assert_eq!(welcome["server"], "test");

        socket
            .to_server
            .send(Ok(Message::Binary(vec![1, 2, 3].into())))
            .await
            .unwrap();
        let refused = socket.recv().await;
        assert_eq!(refused["type"], "error", "{refused}");

        let id = crate::identity::Fingerprint::of_der(b"nobody").device_id();
        socket
            .send(json!({"type": "connect", "device_id": id.to_string()}))
            .await;
        let offline = socket.recv().await;
        assert_eq!(
            (offline["type"].as_str(), offline["code"].as_str()),
            (Some("error"), Some("device-offline")),
            "{offline}"
        );

        // The peer closes: the server ends the socket and forgets the connection.
        socket.to_server.close_channel();
        tokio::time::timeout(Duration::from_secs(5), socket.task)
            .await
            .expect("the server ends with the socket")
            .unwrap();
    }

    /// A message over the limit closes the socket with 1009, decided by the error's type.
    #[tokio::test]
    async fn an_oversized_message_closes_with_1009() {
        use tokio_tungstenite::tungstenite::Error;
        use tokio_tungstenite::tungstenite::error::CapacityError;
        let rendezvous = Rendezvous::new("test");
        let mut socket = open(&rendezvous);
        socket.recv().await;
        let too_long = Error::Capacity(CapacityError::MessageTooLong {
            size: 2 << 20,
            max_size: MAX_FRAME_BYTES,
        });
        socket
            .to_server
            .send(Err(axum::Error::new(too_long)))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(5), socket.from_server.next())
                .await
                .expect("a close within 5 s")
                .expect("a close frame before the end");
            if let Message::Close(frame) = message {
                assert_eq!(frame.map(|f| f.code), Some(close_code::SIZE));
                break;
            }
        }
    }
}

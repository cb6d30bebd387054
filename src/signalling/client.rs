//! The device's outbound connection to a rendezvous server: one owning task that connects,
//! registers, forwards messages both ways and reconnects with backoff. The device never
//! listens for viewers itself, which is what lets it live behind NAT.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::proof::{self, RegisterProof};
use super::protocol::{self, ClientMessage, MAX_FRAME_BYTES, ServerMessage, SessionId, SignalData};
use crate::identity::DeviceIdentity;

/// How long a connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which the device gives up on a connection and dials again (the server pings
/// every 10 s).
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// A rendezvous that does not take a message within this time is treated as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Application-level keepalive, also keeping NAT mappings and proxies warm.
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// What the device hears from the rendezvous.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Registered: viewers can reach the device now.
    Online,
    /// The connection dropped; every session it carried is over.
    Offline,
    /// A viewer asks for a session; with its address as the rendezvous saw it, if known.
    SessionRequest(SessionId, Option<String>),
    Signal(SessionId, SignalData),
    End(SessionId, String),
}

/// Handle to the client task.
pub struct Client {
    pub events: mpsc::Receiver<Event>,
    pub outgoing: mpsc::Sender<ClientMessage>,
}

/// Starts the client task; it runs until `shutdown` turns true. Each registration proves,
/// with `identity`'s key, that this is the device (`proof`).
pub fn spawn(
    url: url::Url,
    identity: Arc<DeviceIdentity>,
    shutdown: watch::Receiver<bool>,
) -> Client {
    // Events are a handful per viewer session and the device loop drains them at once;
    // 256 absorbs a burst of trickled candidates from several viewers.
    let (event_tx, events) = mpsc::channel(256);
    // Same reasoning for what sessions send out.
    let (outgoing, outgoing_rx) = mpsc::channel(256);
    let registration = Registration { url, identity };
    tokio::spawn(run(registration, event_tx, outgoing_rx, shutdown));
    Client { events, outgoing }
}

/// Why the link to the rendezvous dropped (logged; the client reconnects with backoff).
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connection timed out")]
    ConnectTimeout,
    #[error("no welcome from the rendezvous")]
    NoWelcome,
    #[error("closed before its welcome")]
    ClosedBeforeWelcome,
    #[error(transparent)]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("cannot sign the registration: {0}")]
    Sign(#[from] crate::identity::IdentityError),
    #[error("the device certificate is not PEM")]
    Certificate,
    #[error("closed by the server: {0}")]
    ClosedByServer(String),
    #[error("connection closed")]
    Closed,
    #[error("rendezvous went silent")]
    Silent,
    #[error("the rendezvous is not reading")]
    NotReading,
    #[error("replaced by another registration: {0}")]
    Replaced(String),
    /// A refused registration leaves the device unreachable: loud, and retried with backoff
    /// (a rendezvous that restarts with another --public-url, say).
    #[error("the rendezvous refused the registration: {0}")]
    Refused(String),
}

/// Where and as whom the device registers.
struct Registration {
    url: url::Url,
    identity: Arc<DeviceIdentity>,
}

impl Registration {
    /// `register` for the connection that was sent `nonce`: signed for the authority this
    /// client dialled, with the time in milliseconds as the counter.
    fn register(&self, nonce: &str) -> Result<ClientMessage, LinkError> {
        let authority = authority(&self.url);
        let counter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let id = &self.identity;
        let message = proof::signed_message(&authority, nonce, &id.device_id, counter);
        let signature = id.sign(&message)?;
        let certificate = id.cert_der().ok_or(LinkError::Certificate)?;
        Ok(ClientMessage::Register {
            device_id: id.device_id.clone(),
            proof: Some(RegisterProof {
                certificate: data_encoding::BASE64.encode(&certificate),
                counter,
                signature: data_encoding::BASE64.encode(&signature),
            }),
        })
    }
}

/// `host[:port]` of a rendezvous URL as its Host header carries it: lower case, default port
/// left out (the url crate drops it when parsing).
pub fn authority(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

async fn run(
    registration: Registration,
    events: mpsc::Sender<Event>,
    mut outgoing: mpsc::Receiver<ClientMessage>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    loop {
        if *shutdown.borrow() {
            return;
        }
        match connect_once(
            &registration,
            &events,
            &mut outgoing,
            &mut shutdown,
            &mut backoff,
        )
        .await
        {
            Ok(()) => return,
            Err(error) => {
                let _ = events.send(Event::Offline).await;
                let delay = backoff.next_delay(rand::random_range(0.5..=1.0));
                warn!(rendezvous = %registration.url, %error, "no link to the rendezvous; retrying in {:.1} s", delay.as_secs_f32());
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
                // Whatever sessions queued while offline is stale now.
                while outgoing.try_recv().is_ok() {}
            }
        }
    }
}

/// One connection's lifetime. `Ok` means shutdown was asked for; `Err` says why it dropped.
async fn connect_once(
    registration: &Registration,
    events: &mpsc::Sender<Event>,
    outgoing: &mut mpsc::Receiver<ClientMessage>,
    shutdown: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> Result<(), LinkError> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let connect = tokio_tungstenite::connect_async_with_config(
        registration.url.as_str(),
        Some(config),
        false,
    );
    let (socket, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| LinkError::ConnectTimeout)??;
    let (mut sink, mut stream) = socket.split();
    // The server speaks first: its `welcome` carries the nonce the registration signs.
    let nonce = tokio::time::timeout(CONNECT_TIMEOUT, welcome_nonce(&mut stream))
        .await
        .map_err(|_| LinkError::NoWelcome)??;
    let register = registration.register(&nonce)?;
    send(&mut sink, protocol::encode(&register)).await?;

    let mut ping = tokio::time::interval(PING_INTERVAL);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_heard = tokio::time::Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(event) = interpret(text.as_str(), backoff)?
                            && events.send(event).await.is_err() { return Ok(()); }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Err(LinkError::ClosedByServer(frame.map(|f| f.reason.to_string()).unwrap_or_default()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(LinkError::Closed),
                }
            }
            message = outgoing.recv() => {
                let Some(message) = message else { return Ok(()) };
                send(&mut sink, protocol::encode(&message)).await?;
            }
            _ = tokio::time::sleep_until(last_heard + SILENCE_LIMIT) => {
                return Err(LinkError::Silent);
            }
            _ = ping.tick() => {
                send(&mut sink, protocol::encode(&ClientMessage::Ping)).await?;
            }
            _ = shutdown.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(None))).await;
                return Ok(());
            }
        }
    }
}

/// Reads up to the server's `welcome` and returns its nonce.
async fn welcome_nonce<S>(stream: &mut S) -> Result<String, LinkError>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => {
                if let Ok(ServerMessage::Welcome { nonce, .. }) =
                    serde_json::from_str(text.as_str())
                {
                    return Ok(nonce);
                }
            }
            Some(Ok(Message::Close(_))) | None => return Err(LinkError::ClosedBeforeWelcome),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Turns a server message into an event for the device, or an error that drops the link.
fn interpret(text: &str, backoff: &mut Backoff) -> Result<Option<Event>, LinkError> {
    let message: ServerMessage = match serde_json::from_str(text) {
        Ok(message) => message,
        Err(error) => {
            warn!(%error, "ignoring a message from the rendezvous that does not parse");
            return Ok(None);
        }
    };
    Ok(match message {
        ServerMessage::Registered { device_id } => {
            info!(%device_id, "registered with the rendezvous");
            backoff.reset();
            Some(Event::Online)
        }
        ServerMessage::SessionRequest { session_id, source } => {
            Some(Event::SessionRequest(session_id, source))
        }
        ServerMessage::Signal { session_id, data } => Some(Event::Signal(session_id, data)),
        ServerMessage::End { session_id, reason } => Some(Event::End(session_id, reason)),
        ServerMessage::Error {
            code: protocol::ErrorCode::Replaced,
            message,
            ..
        } => {
            return Err(LinkError::Replaced(message));
        }
        ServerMessage::Error {
            code: protocol::ErrorCode::NotAllowed,
            message,
            session_id: None,
        } => {
            return Err(LinkError::Refused(message));
        }
        ServerMessage::Error {
            code,
            message,
            session_id,
        } => {
            debug!(?code, %message, ?session_id, "rendezvous reported an error");
            session_id.map(|id| Event::End(id, format!("rendezvous error: {message}")))
        }
        ServerMessage::Welcome { .. } | ServerMessage::Pong | ServerMessage::Session { .. } => None,
    })
}

async fn send<S>(sink: &mut S, text: String) -> Result<(), LinkError>
where
    S: futures::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::text(text))).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(LinkError::NotReading),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    /// `device.rendezvous = "wss://..."` works: the client's connect call (the one
    /// `connect_once` makes) opens a TLS handshake, with a crypto provider and roots built in.
    #[tokio::test]
    async fn a_wss_rendezvous_gets_a_tls_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connect = tokio::spawn(tokio_tungstenite::connect_async_with_config(
            format!("wss://127.0.0.1:{port}/signal"),
            None,
            false,
        ));
        let accepted = tokio::time::timeout(std::time::Duration::from_secs(10), listener.accept());
        let Ok(accepted) = accepted.await else {
            panic!("no TCP connection: {:?}", connect.await);
        };
        let (mut socket, _) = accepted.unwrap();
        let mut record = [0_u8; 6];
        socket.read_exact(&mut record).await.expect("a ClientHello");
        // A TLS handshake record (0x16) carrying a ClientHello (0x01).
        assert_eq!((record[0], record[5]), (0x16, 0x01), "{record:?}");
        drop(socket);
        let result = connect.await.expect("the connect task does not panic");
        assert!(result.is_err(), "no WebSocket without a TLS server");
    }
}

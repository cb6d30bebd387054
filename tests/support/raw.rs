//! A raw signalling connection for the attack tests: it says what no well-behaved endpoint
//! would (bad_input.rs, lockout.rs).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long any one answer from the rendezvous may take.
pub const ANSWER: Duration = Duration::from_secs(5);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw signalling connection, for saying what no well-behaved endpoint would.
pub struct Raw {
    pub ws: Socket,
}

impl Raw {
    /// Connects and checks the greeting.
    pub async fn open(url: &str) -> Raw {
        Self::open_from(url, std::net::Ipv4Addr::LOCALHOST).await
    }

    /// Connects from `source`, an address of this host's (127.0.0.0/8 in scripts/netns), as
    /// another machine would: the rendezvous and the device tell sources apart.
    pub async fn open_from(url: &str, source: std::net::Ipv4Addr) -> Raw {
        let parsed = url::Url::parse(url).expect("a ws:// URL");
        let target = std::net::SocketAddr::new(
            parsed.host_str().unwrap().parse().expect("an IP host"),
            parsed.port().expect("a port"),
        );
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind((source, 0).into())
            .expect("bind the source address");
        let stream = tokio::time::timeout(ANSWER, socket.connect(target))
            .await
            .expect("connects within 5 s")
            .expect("connects");
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
        let (ws, _) = tokio::time::timeout(ANSWER, tokio_tungstenite::client_async(url, stream))
            .await
            .expect("the rendezvous accepts within 5 s")
            .expect("the rendezvous accepts");
        let mut raw = Raw { ws };
        let welcome = raw.expect("welcome").await;
        assert_eq!(welcome["max_message_bytes"], 64 * 1024, "{welcome}");
        raw
    }

    pub async fn send(&mut self, message: Message) {
        tokio::time::timeout(ANSWER, self.ws.send(message))
            .await
            .expect("sending takes under 5 s")
            .expect("the socket is open");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send(Message::text(value.to_string())).await;
    }

    /// The next JSON message, skipping WebSocket control frames; `Err` says why none came.
    pub async fn next(&mut self, within: Duration) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| format!("nothing within {within:?}"))?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| format!("the server sent non-JSON {text:?}: {e}"));
                }
                Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
                Some(Ok(Message::Binary(_))) => return Err("the server sent binary".into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("socket error: {e}")),
                None => return Err("socket ended".into()),
            }
        }
    }

    /// The next message that is not a `signal` (a viewer hears offers and candidates
    /// between the answers it waits for); it must be of type `kind`.
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = self
                .next(ANSWER)
                .await
                .unwrap_or_else(|e| panic!("waiting for {kind}: {e}"));
            if message["type"] == "signal" && kind != "signal" {
                continue;
            }
            assert_eq!(message["type"], kind, "expected {kind}, got {message}");
            return message;
        }
    }

    /// Expects `error` with `code`, as the answer to what was just sent.
    pub async fn expect_error(&mut self, code: &str, what: &str) -> Value {
        let message = self.expect("error").await;
        assert_eq!(message["code"], code, "{what}: {message}");
        assert!(
            message["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: an error says what went wrong: {message}"
        );
        message
    }

    pub async fn ping_pong(&mut self) {
        self.send_json(json!({"type": "ping"})).await;
        self.expect("pong").await;
    }

    /// `connect`s to `device`; returns the session id once the device's offer arrived.
    pub async fn connect_until_offer(&mut self, device: &str) -> String {
        self.send_json(json!({"type": "connect", "device_id": device}))
            .await;
        let session = self.expect("session").await;
        let id = session["session_id"]
            .as_str()
            .expect("a session id")
            .to_owned();
        loop {
            let message = self.expect("signal").await;
            assert_eq!(message["session_id"], id.as_str(), "{message}");
            if message["data"]["sdp"]["type"] == "offer" {
                return id;
            }
        }
    }
}

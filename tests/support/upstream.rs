//! A stand-in camera web UI for proxy tests: a real HTTP server on loopback that says what it
//! received, hashes bodies, streams bytes, echoes WebSocket messages and counts requests.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use futures::StreamExt;
use sha2::{Digest, Sha256};

pub struct Upstream {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start() -> Upstream {
        let requests = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/echo", any(echo))
            .route("/echo/{*rest}", any(echo))
            .route("/hash", post(hash))
            .route("/bytes/{n}", get(bytes))
            .route("/cookie", get(cookie))
            .route("/slow/{ms}", get(slow))
            .route("/ws", get(ws))
            .with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream {
            port,
            requests,
            task,
        }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The request as the upstream saw it: method, target, headers in order.
async fn echo(State(n): State<Arc<AtomicUsize>>, request: Request) -> Response {
    n.fetch_add(1, Ordering::SeqCst);
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let json = serde_json::json!({
        "method": request.method().as_str(),
        "target": request.uri().to_string(),
        "headers": headers,
    });
    // A hop-by-hop header in the response, which the device must not pass on.
    let mut response = axum::Json(json).into_response();
    response
        .headers_mut()
        .insert("keep-alive", HeaderValue::from_static("timeout=5"));
    response
}

/// Length and SHA-256 of the request body, read as a stream.
async fn hash(State(n): State<Arc<AtomicUsize>>, request: Request) -> String {
    n.fetch_add(1, Ordering::SeqCst);
    let mut body = request.into_body().into_data_stream();
    let (mut len, mut sha) = (0usize, Sha256::new());
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len();
        sha.update(&chunk);
    }
    format!("{len} {}", hex(&sha.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The byte at offset `i` of every `/bytes/N` body.
pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// `n` bytes of `pattern`, streamed in 64 KiB chunks with a content-length.
async fn bytes(State(counter): State<Arc<AtomicUsize>>, Path(n): Path<u64>) -> Response {
    counter.fetch_add(1, Ordering::SeqCst);
    const CHUNK: u64 = 64 * 1024;
    let stream = futures::stream::unfold(0u64, move |at| async move {
        if at >= n {
            return None;
        }
        let len = CHUNK.min(n - at);
        let chunk: Vec<u8> = (at..at + len).map(pattern).collect();
        Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), at + len))
    });
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_LENGTH, n.into());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    (StatusCode::OK, headers, Body::from_stream(stream)).into_response()
}

/// Answers after `ms` milliseconds.
async fn slow(State(n): State<Arc<AtomicUsize>>, Path(ms): Path<u64>) -> &'static str {
    n.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    "late"
}

async fn cookie(State(n): State<Arc<AtomicUsize>>) -> Response {
    n.fetch_add(1, Ordering::SeqCst);
    let mut response = "cookies".into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, HeaderValue::from_static("a=1; Path=/"));
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_static("b=2; HttpOnly"),
    );
    response
}

/// Echoes text and binary messages; a close is answered with the same code and reason.
async fn ws(State(n): State<Arc<AtomicUsize>>, upgrade: WebSocketUpgrade) -> Response {
    n.fetch_add(1, Ordering::SeqCst);
    upgrade.protocols(["echo.v1"]).on_upgrade(echo_socket)
}

async fn echo_socket(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(t) => Message::Text(t),
            Message::Binary(b) => Message::Binary(b),
            // The socket has queued its answer (the same code and reason); reading on
            // sends it and then ends.
            Message::Close(_) => continue,
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}

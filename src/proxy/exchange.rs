//! One stream's exchange with the upstream, in its own task: an HTTP request (hyper's
//! one-connection client: no pool, no redirects, no environment proxies, no decompression,
//! nothing it does not say) or a WebSocket (tokio-tungstenite over our own TCP connection).
//!
//! It talks to the bridge only through channels: the browser's bytes come through an
//! `Inbox`, the answer goes out as `Out` events. Before it hands on a flow-controlled piece it
//! takes that many permits from `credit` (a mirror of the stream's send window, refilled by
//! the browser's `Credit` frames), so with no credit it stops reading the upstream.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Either, Empty, StreamBody};
use hyper::body::Frame as BodyFrame;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message, protocol::CloseFrame};

use super::frame::{
    MAX_DATA, MAX_WS_FRAGMENT, MAX_WS_MESSAGE, RequestHead, ResetCode, ResponseHead, StreamId,
    WsClose, WsKind, WsMessage,
};
use super::inbox::{Inbox, Item, Reader};
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

/// How often the response deadline is looked at again while the request body still flows.
const STEP: Duration = Duration::from_millis(250);

/// An exchange's ends of its channels.
pub struct Exchange {
    pub id: StreamId,
    pub upstream: Arc<Upstream>,
    pub out: mpsc::Sender<(StreamId, Out)>,
    pub credit: Arc<Semaphore>,
    pub inbox: Arc<Inbox>,
}

/// Aborts a spawned task when dropped (the hyper connection of an aborted exchange).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why the request body stopped, as the body stream saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFailure {
    TooLarge,
    LengthMismatch,
    Idle,
}

#[derive(Debug)]
struct BodyError(BodyFailure);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body: {:?}", self.0)
    }
}

impl std::error::Error for BodyError {}

/// The request body's progress: the response timeout runs from its end.
#[derive(Default)]
struct Progress {
    failure: Option<BodyFailure>,
    done: bool,
    last: Option<Instant>,
}

impl Exchange {
    async fn send(&self, out: Out) -> bool {
        self.out.send((self.id, out)).await.is_ok()
    }

    async fn reset(&self, code: ResetCode, message: impl Into<String>) {
        self.send(Out::Reset(code, message.into())).await;
    }

    /// Takes credit for a piece of `n` flow-controlled bytes (waits for the browser).
    async fn credit(&self, n: usize) -> bool {
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
    async fn page(&self, status: u16, title: &str, detail: &str) {
        let (headers, body) = upstream::error_page(status, title, detail);
        let head = ResponseHead::new(status, headers).expect("valid status and headers");
        self.respond(head, Bytes::from(body)).await;
    }

    async fn respond(&self, head: ResponseHead, body: Bytes) {
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

/// Serves an HTTP request stream to its end.
pub async fn http(x: Exchange, head: RequestHead) {
    let up = x.upstream.clone();
    let reader = Reader(x.inbox.clone());
    let out = match upstream::request_headers(&head, &up) {
        Ok(out) => out,
        Err(e) => return x.reset(ResetCode::Protocol, e.to_string()).await,
    };
    if out.content_length.is_some_and(|n| n > up.max_request_bytes) {
        drop(reader);
        let detail = format!("The request body is over {} bytes.", up.max_request_bytes);
        return x.page(413, "Request body too large", &detail).await;
    }
    // No body unless the browser sends one: `End` follows a bodiless head at once.
    let first = match tokio::time::timeout(up.idle_timeout, x.inbox.next()).await {
        Ok(item) => item,
        Err(_) => return x.reset(ResetCode::Timeout, "no request body").await,
    };
    let progress = Arc::new(Mutex::new(Progress::default()));
    let body = match first {
        Item::End(_) => {
            if out.content_length.is_some_and(|n| n > 0) {
                return x
                    .reset(ResetCode::Protocol, "body shorter than content-length")
                    .await;
            }
            progress.lock().unwrap_or_else(|p| p.into_inner()).done = true;
            Either::Left(Empty::<Bytes>::new().map_err(|never| match never {}))
        }
        Item::Data(first) => Either::Right(request_body(
            reader,
            first,
            out.content_length,
            &up,
            progress.clone(),
        )),
        Item::Ws(_) => unreachable!("flow::Streams refuses WebSocket frames on HTTP streams"),
    };
    let mut request = http::Request::builder()
        .method(head.method())
        .uri(upstream::request_target(head.path()));
    for (name, value) in &out.headers {
        request = request.header(name.as_str(), upstream::value_bytes(value));
    }
    let request = match request.body(body) {
        Ok(r) => r,
        Err(e) => return x.reset(ResetCode::Protocol, format!("request: {e}")).await,
    };

    let deadline = Instant::now() + up.response_timeout;
    let tcp = match tokio::time::timeout_at(deadline, connect(&up)).await {
        Err(_) => return x.page(504, "Camera UI timeout", &timeout_detail(&up)).await,
        Ok(Err(e)) => {
            return x
                .page(502, "Camera UI unreachable", &unreachable(&up, &e))
                .await;
        }
        Ok(Ok(tcp)) => tcp,
    };
    let io = hyper_util::rt::TokioIo::new(tcp);
    let (mut sender, connection) = match hyper::client::conn::http1::handshake(io).await {
        Ok(parts) => parts,
        Err(e) => {
            return x
                .page(502, "Camera UI unreachable", &unreachable(&up, &e))
                .await;
        }
    };
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender.send_request(request);
    tokio::pin!(response);
    let mut deadline = deadline;
    let response = loop {
        tokio::select! {
            r = &mut response => break r,
            _ = tokio::time::sleep_until(deadline) => {
                // The timeout counts from the request body's last byte.
                let (done, last) = {
                    let p = progress.lock().unwrap_or_else(|p| p.into_inner());
                    (p.done, p.last)
                };
                match (done, last) {
                    (false, Some(last)) => {
                        deadline = (last + up.response_timeout).max(Instant::now() + STEP);
                    }
                    (false, None) => deadline = Instant::now() + STEP,
                    (true, _) => {
                        return x.page(504, "Camera UI timeout", &timeout_detail(&up)).await;
                    }
                }
            }
        }
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            let failure = progress.lock().unwrap_or_else(|p| p.into_inner()).failure;
            return match failure {
                Some(BodyFailure::TooLarge) => {
                    let detail =
                        format!("The request body is over {} bytes.", up.max_request_bytes);
                    x.page(413, "Request body too large", &detail).await
                }
                Some(BodyFailure::LengthMismatch) => {
                    x.reset(
                        ResetCode::Protocol,
                        "body length differs from content-length",
                    )
                    .await
                }
                Some(BodyFailure::Idle) => {
                    x.reset(ResetCode::Timeout, "request body stalled").await
                }
                None => {
                    x.page(
                        502,
                        "Camera UI failed",
                        &format!("The camera's web UI at {} failed: {e}.", up.origin),
                    )
                    .await
                }
            };
        }
    };
    let (parts, mut body) = response.into_parts();
    let fields = fields(&parts.headers);
    let head = upstream::response_headers(&fields, false)
        .and_then(|h| ResponseHead::new(parts.status.as_u16(), h));
    let head = match head {
        Ok(h) if parts.status.as_u16() != 101 => h,
        Ok(_) => {
            return x
                .page(
                    502,
                    "Camera UI failed",
                    "The camera's web UI switched protocols unasked.",
                )
                .await;
        }
        Err(e) => {
            return x
                .page(
                    502,
                    "Camera UI failed",
                    &format!("Its response cannot be carried: {e}."),
                )
                .await;
        }
    };
    if !x.send(Out::Head(head)).await {
        return;
    }
    let mut total = 0u64;
    loop {
        let frame = match tokio::time::timeout(up.idle_timeout, body.frame()).await {
            Err(_) => return x.reset(ResetCode::Timeout, "response body stalled").await,
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return x
                    .reset(ResetCode::Upstream, format!("response body: {e}"))
                    .await;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        }; // trailers are dropped
        total += data.len() as u64;
        if total > up.max_response_bytes {
            let message = format!(
                "response over ui.max_response_bytes ({})",
                up.max_response_bytes
            );
            return x.reset(ResetCode::Upstream, message).await;
        }
        let mut rest = data;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(MAX_DATA));
            if !x.credit(piece.len()).await || !x.send(Out::Data(piece)).await {
                return;
            }
        }
    }
    x.send(Out::End).await;
}

/// The browser's body as a hyper body: checked against the limit and `content-length`, with an
/// idle timeout between pieces. Each piece counts as consumed when hyper takes it.
fn request_body(
    reader: Reader,
    first: Bytes,
    declared: Option<u64>,
    up: &Upstream,
    progress: Arc<Mutex<Progress>>,
) -> StreamBody<impl futures::Stream<Item = Result<BodyFrame<Bytes>, BodyError>> + use<>> {
    let (limit, idle) = (up.max_request_bytes, up.idle_timeout);
    struct St {
        reader: Reader,
        first: Option<Bytes>,
        total: u64,
        finished: bool,
    }
    let state = St {
        reader,
        first: Some(first),
        total: 0,
        finished: false,
    };
    let stream = futures::stream::unfold(state, move |mut st| {
        let progress = progress.clone();
        async move {
            if st.finished {
                return None;
            }
            let fail = |st: St, f: BodyFailure| {
                progress.lock().unwrap_or_else(|p| p.into_inner()).failure = Some(f);
                Some((
                    Err(BodyError(f)),
                    St {
                        finished: true,
                        ..st
                    },
                ))
            };
            let item = match st.first.take() {
                Some(b) => Item::Data(b),
                None => match tokio::time::timeout(idle, st.reader.0.next()).await {
                    Ok(item) => item,
                    Err(_) => return fail(st, BodyFailure::Idle),
                },
            };
            match item {
                Item::Data(b) => {
                    st.total += b.len() as u64;
                    if st.total > limit {
                        return fail(st, BodyFailure::TooLarge);
                    }
                    if declared.is_some_and(|n| st.total > n) {
                        return fail(st, BodyFailure::LengthMismatch);
                    }
                    progress.lock().unwrap_or_else(|p| p.into_inner()).last = Some(Instant::now());
                    Some((Ok(BodyFrame::data(b)), st))
                }
                _ => {
                    if declared.is_some_and(|n| st.total != n) {
                        return fail(st, BodyFailure::LengthMismatch);
                    }
                    progress.lock().unwrap_or_else(|p| p.into_inner()).done = true;
                    None
                }
            }
        }
    });
    StreamBody::new(stream)
}

fn fields(map: &http::HeaderMap) -> Vec<(&str, &[u8])> {
    map.iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect()
}

async fn connect(up: &Upstream) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect((up.host.as_str(), up.port)).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

fn unreachable(up: &Upstream, e: &dyn std::fmt::Display) -> String {
    format!(
        "The camera's web UI at {} cannot be reached ({e}).",
        up.origin
    )
}

fn timeout_detail(up: &Upstream) -> String {
    format!(
        "The camera's web UI at {} did not answer within {} s.",
        up.origin,
        up.response_timeout.as_secs()
    )
}

/// Bridges a WebSocket stream to the upstream's WebSocket until both ends closed.
pub async fn websocket(x: Exchange, head: RequestHead) {
    let up = x.upstream.clone();
    let out = match upstream::request_headers(&head, &up) {
        Ok(out) => out,
        Err(e) => return x.reset(ResetCode::Protocol, e.to_string()).await,
    };
    let mut request = http::Request::builder()
        .method("GET")
        .uri(format!(
            "ws://{}{}",
            up.authority,
            upstream::request_target(head.path())
        ))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tungstenite::handshake::client::generate_key(),
        );
    for (name, value) in &out.headers {
        request = request.header(name.as_str(), upstream::value_bytes(value));
    }
    let Ok(request) = request.body(()) else {
        return x.reset(ResetCode::Protocol, "request head").await;
    };
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE));
    let handshake = async {
        let tcp = connect(&up).await.map_err(tungstenite::Error::Io)?;
        tokio_tungstenite::client_async_with_config(request, tcp, Some(config)).await
    };
    let (socket, response) = match tokio::time::timeout(up.response_timeout, handshake).await {
        Err(_) => {
            return x
                .reset(ResetCode::Timeout, "upstream WebSocket handshake timed out")
                .await;
        }
        Ok(Err(tungstenite::Error::Http(response))) => return refused_upgrade(&x, *response).await,
        Ok(Err(e)) => {
            return x
                .reset(ResetCode::Upstream, format!("upstream WebSocket: {e}"))
                .await;
        }
        Ok(Ok(parts)) => parts,
    };
    let fields = fields(response.headers());
    let Ok(head) =
        upstream::response_headers(&fields, true).and_then(|h| ResponseHead::new(101, h))
    else {
        return x
            .reset(ResetCode::Upstream, "upstream handshake headers")
            .await;
    };
    if !x.send(Out::Head(head)).await {
        return;
    }
    let (sink, stream) = socket.split();
    let (too_big_tx, too_big_rx) = oneshot::channel();
    let down = upstream_to_browser(&x, stream, too_big_tx);
    let upward = browser_to_upstream(&x, sink, too_big_rx);
    tokio::pin!(down, upward);
    let (mut down_done, mut up_done) = (false, false);
    // Once the browser's close went upstream, the upstream has this long to answer it.
    let answer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(answer);
    while !(down_done && up_done) {
        tokio::select! {
            ok = &mut down, if !down_done => {
                down_done = true;
                if !ok {
                    return x.reset(ResetCode::Upstream, "the upstream WebSocket dropped without a close").await;
                }
            }
            _ = &mut upward, if !up_done => {
                up_done = true;
                answer.as_mut().reset(Instant::now() + up.response_timeout);
            }
            _ = &mut answer, if up_done => {
                return x.reset(ResetCode::Timeout, "the upstream did not answer the close").await;
            }
        }
    }
}

async fn refused_upgrade(x: &Exchange, response: http::Response<Option<Vec<u8>>>) {
    let status = response.status().as_u16();
    let fields = fields(response.headers());
    let head =
        upstream::response_headers(&fields, false).and_then(|h| ResponseHead::new(status, h));
    match head {
        Ok(head) if status != 101 => {
            let body = Bytes::from(response.into_body().unwrap_or_default());
            x.respond(head, body).await
        }
        _ => {
            x.reset(
                ResetCode::Upstream,
                format!("upstream refused the upgrade with {status}"),
            )
            .await
        }
    }
}

/// Relays the upstream's messages and close; false if it dropped without a close.
async fn upstream_to_browser<S>(x: &Exchange, mut stream: S, too_big: oneshot::Sender<()>) -> bool
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        let (kind, payload) = match stream.next().await {
            Some(Ok(Message::Text(t))) => (WsKind::Text, Bytes::from(t)),
            Some(Ok(Message::Binary(b))) => (WsKind::Binary, b),
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = match frame {
                    Some(CloseFrame { code, reason }) => (u16::from(code), reason.to_string()),
                    None => (1005, String::new()),
                };
                let close = WsClose::new(code, reason).or_else(|_| WsClose::new(1005, ""));
                if let Ok(close) = close {
                    x.send(Out::WsClose(close)).await;
                }
                return true;
            }
            Some(Ok(_)) => continue, // ping, pong: answered by tungstenite
            Some(Err(tungstenite::Error::Capacity(_))) => {
                let close = WsClose::new(1009, "message too big").expect("valid close");
                x.send(Out::WsClose(close)).await;
                let _ = too_big.send(());
                return true;
            }
            Some(Err(_)) | None => return false,
        };
        for fragment in fragments(kind, payload) {
            let cost = 1 + fragment.payload().len();
            if !x.credit(cost).await || !x.send(Out::Ws(fragment)).await {
                return true;
            }
        }
    }
}

/// One message as fragments of at most `MAX_WS_FRAGMENT` bytes, text cut at characters.
pub fn fragments(kind: WsKind, mut rest: Bytes) -> Vec<WsMessage> {
    let mut out = Vec::new();
    loop {
        let mut n = rest.len().min(MAX_WS_FRAGMENT);
        while kind == WsKind::Text && n < rest.len() && rest[n] & 0xc0 == 0x80 {
            n -= 1;
        }
        let chunk = rest.split_to(n);
        let more = !rest.is_empty();
        out.push(WsMessage::new(kind, more, chunk.to_vec()).expect("cut at a character boundary"));
        if !more {
            return out;
        }
    }
}

/// Reassembles the browser's fragments and sends whole messages upstream, then its close.
async fn browser_to_upstream<S>(x: &Exchange, mut sink: S, mut too_big: oneshot::Receiver<()>)
where
    S: futures::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let _reader = Reader(x.inbox.clone());
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let item = tokio::select! {
            item = x.inbox.next() => item,
            Ok(()) = &mut too_big => {
                let frame = CloseFrame { code: 1009.into(), reason: "message too big".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
        };
        match item {
            Item::Ws(m) => {
                partial.extend_from_slice(m.payload());
                if partial.len() > MAX_WS_MESSAGE {
                    let frame = CloseFrame {
                        code: 1009.into(),
                        reason: "message too big".into(),
                    };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    let close = WsClose::new(1009, "message too big").expect("valid close");
                    x.send(Out::WsClose(close)).await;
                    return;
                }
                if m.more() {
                    continue;
                }
                let bytes = Bytes::from(std::mem::take(&mut partial));
                let message = match m.kind() {
                    WsKind::Binary => Message::Binary(bytes),
                    WsKind::Text => match String::from_utf8(bytes.to_vec()) {
                        Ok(s) => Message::text(s),
                        Err(_) => return, // each fragment was UTF-8, so the whole is
                    },
                };
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            Item::End(close) => {
                let frame = close.filter(|c| c.code() != 1005).map(|c| CloseFrame {
                    code: c.code().into(),
                    reason: c.reason().to_string().into(),
                });
                let _ = sink.send(Message::Close(frame)).await;
                return;
            }
            Item::Data(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cut_into_fragments_at_character_boundaries() {
        assert_eq!(
            fragments(WsKind::Text, Bytes::new()).len(),
            1,
            "empty: one fragment"
        );
        let text = "é".repeat(MAX_WS_FRAGMENT); // two bytes each
        let parts = fragments(WsKind::Text, Bytes::from(text.clone()));
        assert!(
            parts
                .iter()
                .all(|p| std::str::from_utf8(p.payload()).is_ok())
        );
        assert!(parts[..parts.len() - 1].iter().all(|p| p.more()));
        assert!(!parts.last().unwrap().more());
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.payload().to_vec()).collect();
        assert_eq!(joined, text.as_bytes());
        let binary = fragments(WsKind::Binary, Bytes::from(vec![7u8; MAX_WS_FRAGMENT + 1]));
        assert_eq!(
            binary.iter().map(|p| p.payload().len()).collect::<Vec<_>>(),
            [MAX_WS_FRAGMENT, 1]
        );
    }
}

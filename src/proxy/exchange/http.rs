//! An HTTP exchange: the browser's request streamed to the upstream, its response streamed
//! back under credit, and the answers the device makes itself (502, 504, 413).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Empty, StreamBody};
use hyper::body::Frame as BodyFrame;
use tokio::time::Instant;

use super::{AbortOnDrop, Exchange, Out, connect, fields};
use crate::proxy::frame::{MAX_DATA, RequestHead, ResetCode, ResponseHead};
use crate::proxy::inbox::{Item, Reader};
use crate::proxy::upstream::{self, Upstream};

/// hyper's read buffer per upstream connection (its default grows to ~400 KB). A body chunk
/// hyper hands out shares that buffer's allocation, so a chunk waiting for credit or budget
/// (and each of its frames on the way to the bridge) can keep a whole buffer alive: with 24
/// streams at once the device grew by ~34 MB with the default. Two frames' worth still reads
/// far faster than a datachannel carries, and a response head must fit (ours are <= 16 KiB).
const READ_BUFFER: usize = 2 * MAX_DATA;

/// How often the response deadline is looked at again while the request body still flows.
const STEP: Duration = Duration::from_millis(250);

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
    let (mut sender, connection) = match hyper::client::conn::http1::Builder::new()
        .max_buf_size(READ_BUFFER)
        .handshake(io)
        .await
    {
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
            let Some(budget) = x.credit(piece.len()).await else {
                return;
            };
            if !x.send(Out::Data(piece, budget)).await {
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

//! A WebSocket exchange: the device's own handshake with the upstream, then messages both
//! ways (reassembled toward the upstream, fragmented under credit toward the browser) and
//! the close codes relayed.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message, protocol::CloseFrame};

use super::{Exchange, Out, connect, fields};
use crate::proxy::frame::{
    MAX_WS_FRAGMENT, MAX_WS_MESSAGE, RequestHead, ResetCode, ResponseHead, WsClose, WsKind,
    WsMessage,
};
use crate::proxy::inbox::{Item, Reader};
use crate::proxy::upstream;

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
            let Some(budget) = x.credit(cost).await else {
                return true;
            };
            if !x.send(Out::Ws(fragment, budget)).await {
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

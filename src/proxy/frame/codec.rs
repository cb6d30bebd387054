//! Frames to bytes and back: the 5-byte header (type, big-endian stream id) and each type's
//! payload, checked on the way in (`decode`) exactly as strictly as on the way out.

use super::*;

fn header(ty: u8, stream: StreamId, payload_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload_len);
    out.push(ty);
    out.extend_from_slice(&stream.get().to_be_bytes());
    out
}

/// The bytes of one datachannel message.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let json = |ty, bytes: Vec<u8>| {
        let mut out = header(ty, frame.stream, bytes.len());
        out.extend_from_slice(&bytes);
        out
    };
    let out = match &frame.body {
        Body::RequestHead(h) => json(ty::REQUEST_HEAD, h.json()),
        Body::ResponseHead(h) => json(ty::RESPONSE_HEAD, h.json()),
        Body::Reset(r) => json(
            ty::RESET,
            serde_json::to_vec(r).expect("a code and a string serialize"),
        ),
        Body::Data(d) => json(ty::DATA, d.0.clone()),
        Body::End => header(ty::END, frame.stream, 0),
        Body::Credit(n) => json(ty::CREDIT, n.get().to_be_bytes().to_vec()),
        Body::WsMessage(m) => {
            let mut out = header(ty::WS_MESSAGE, frame.stream, 1 + m.payload.len());
            out.push(m.kind as u8 | if m.more { WS_MORE } else { 0 });
            out.extend_from_slice(&m.payload);
            out
        }
        Body::WsClose(c) => {
            let mut out = header(ty::WS_CLOSE, frame.stream, 2 + c.reason.len());
            out.extend_from_slice(&c.code.to_be_bytes());
            out.extend_from_slice(c.reason.as_bytes());
            out
        }
    };
    debug_assert!(out.len() <= MAX_FRAME, "validated bodies fit a frame");
    out
}

/// The stream a message names, if its header is readable: lets a receiver reset the stream of
/// a frame that does not decode.
pub fn peek_stream(msg: &[u8]) -> Option<StreamId> {
    let id = msg.get(1..HEADER_LEN)?;
    StreamId::new(u32::from_be_bytes(id.try_into().expect("four bytes")))
}

/// Parses one datachannel message. Checks run in this order: size, header, type, stream id,
/// payload.
pub fn decode(msg: &[u8]) -> Result<Frame, FrameError> {
    if msg.len() > MAX_FRAME {
        return Err(FrameError::Oversized(msg.len()));
    }
    if msg.len() < HEADER_LEN {
        return Err(FrameError::Truncated {
            kind: "any",
            len: msg.len(),
            need: HEADER_LEN,
        });
    }
    let (ty, p) = (msg[0], &msg[HEADER_LEN..]);
    if !(ty::REQUEST_HEAD..=ty::WS_CLOSE).contains(&ty) {
        return Err(FrameError::UnknownType(ty));
    }
    let stream = peek_stream(msg).ok_or(FrameError::ReservedStream)?;
    let body = match ty {
        ty::REQUEST_HEAD => {
            let h: RequestHeadIn = json_payload("request-head", p)?;
            Body::RequestHead(RequestHead::new(
                h.method,
                h.path,
                Headers::new(h.headers)?,
                h.websocket,
            )?)
        }
        ty::RESPONSE_HEAD => {
            let h: ResponseHeadIn = json_payload("response-head", p)?;
            Body::ResponseHead(ResponseHead::new(h.status, Headers::new(h.headers)?)?)
        }
        ty::RESET => {
            let r: Reset = json_payload("reset", p)?;
            if r.message.len() > MAX_RESET_MESSAGE {
                return Err(FrameError::ResetMessageTooLong(r.message.len()));
            }
            Body::Reset(r)
        }
        ty::DATA => Body::Data(Data::new(p.to_vec())?),
        ty::END => {
            exact("end", p, 0)?;
            Body::End
        }
        ty::CREDIT => {
            exact("credit", p, 4)?;
            let n = u32::from_be_bytes(p.try_into().expect("length checked"));
            Body::Credit(NonZeroU32::new(n).ok_or(FrameError::ZeroCredit)?)
        }
        ty::WS_MESSAGE => {
            let (&k, payload) = p.split_first().ok_or(FrameError::Truncated {
                kind: "ws-message",
                len: msg.len(),
                need: HEADER_LEN + 1,
            })?;
            let kind = match k & !WS_MORE {
                1 => WsKind::Text,
                2 => WsKind::Binary,
                _ => return Err(FrameError::BadWsKind(k)),
            };
            Body::WsMessage(WsMessage::new(kind, k & WS_MORE != 0, payload.to_vec())?)
        }
        _ => {
            let Some((code, reason)) = p.split_first_chunk::<2>() else {
                return Err(FrameError::Truncated {
                    kind: "ws-close",
                    len: msg.len(),
                    need: HEADER_LEN + 2,
                });
            };
            if reason.len() > MAX_CLOSE_REASON {
                return Err(FrameError::CloseReasonTooLong(reason.len()));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| FrameError::BadUtf8("ws-close reason"))?;
            Body::WsClose(WsClose::new(u16::from_be_bytes(*code), reason)?)
        }
    };
    Ok(Frame { stream, body })
}

fn exact(kind: &'static str, p: &[u8], len: usize) -> Result<(), FrameError> {
    match p.len() {
        n if n < len => Err(FrameError::Truncated {
            kind,
            len: HEADER_LEN + n,
            need: HEADER_LEN + len,
        }),
        n if n > len => Err(FrameError::TrailingBytes {
            kind,
            extra: n - len,
        }),
        _ => Ok(()),
    }
}

fn json_payload<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    p: &[u8],
) -> Result<T, FrameError> {
    check_json_len(kind, p.len())?;
    serde_json::from_slice(p).map_err(|e| {
        let mut detail = e.to_string();
        if detail.len() > MAX_DETAIL {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        FrameError::BadJson { kind, detail }
    })
}

/// `bytes` as encoded `Data` frames of at most MAX_FRAME bytes; nothing for no bytes.
pub fn data_frames(stream: StreamId, bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    bytes.chunks(MAX_DATA).map(move |chunk| {
        let mut out = header(ty::DATA, stream, chunk.len());
        out.extend_from_slice(chunk);
        out
    })
}

/// A whole WebSocket message for `ws_frames`.
#[derive(Debug, Clone, Copy)]
pub enum WsPayload<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

/// One WebSocket message as encoded `WsMessage` fragments of at most MAX_FRAME bytes, text cut
/// only at character boundaries; an empty message is one empty fragment.
pub fn ws_frames(stream: StreamId, message: WsPayload<'_>) -> impl Iterator<Item = Vec<u8>> + '_ {
    let (kind, mut rest) = match message {
        WsPayload::Text(s) => (WsKind::Text, s.as_bytes()),
        WsPayload::Binary(b) => (WsKind::Binary, b),
    };
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut n = rest.len().min(MAX_WS_FRAGMENT);
        // A UTF-8 continuation byte (10xxxxxx) cannot start the next fragment.
        while kind == WsKind::Text && n < rest.len() && rest[n] & 0xc0 == 0x80 {
            n -= 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        done = rest.is_empty();
        let mut out = header(ty::WS_MESSAGE, stream, 1 + chunk.len());
        out.push(kind as u8 | if done { 0 } else { WS_MORE });
        out.extend_from_slice(chunk);
        Some(out)
    })
}

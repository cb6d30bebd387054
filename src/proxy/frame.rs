//! The proxy's wire format (`docs/proxy.md`): one frame per datachannel message, a 5-byte
//! header (type, stream id) and a typed payload. Everything a frame holds is validated when it
//! is built, so `encode` cannot fail and `decode` accepts exactly what `encode` can produce.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use super::CHANNELS;

/// Largest frame, header included: webrtcbin does not deliver datachannel messages above 64 KiB.
pub const MAX_FRAME: usize = 64 * 1024;
/// Type byte and stream id.
pub const HEADER_LEN: usize = 5;
/// Largest `Data` payload.
pub const MAX_DATA: usize = MAX_FRAME - HEADER_LEN;
/// Largest `WsMessage` fragment (the payload after the kind byte).
pub const MAX_WS_FRAGMENT: usize = MAX_DATA - 1;
/// Largest JSON payload (`RequestHead`, `ResponseHead`, `Reset`).
pub const MAX_HEAD_JSON: usize = 16 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 100;
/// Longest method token.
pub const MAX_METHOD: usize = 32;
/// Longest `WsClose` reason in bytes (a WebSocket close frame's limit).
pub const MAX_CLOSE_REASON: usize = 123;
/// Longest `Reset` message in bytes; longer ones are cut when built.
pub const MAX_RESET_MESSAGE: usize = 256;
/// Largest reassembled WebSocket message the device accepts or forwards, each way. The codec
/// cannot see whole messages; the bridge enforces it (close 1009).
pub const MAX_WS_MESSAGE: usize = 1024 * 1024;

/// Longest error detail echoed from a peer's bad JSON.
const MAX_DETAIL: usize = 120;

mod ty {
    pub const REQUEST_HEAD: u8 = 0x01;
    pub const RESPONSE_HEAD: u8 = 0x02;
    pub const DATA: u8 = 0x03;
    pub const END: u8 = 0x04;
    pub const CREDIT: u8 = 0x05;
    pub const RESET: u8 = 0x06;
    pub const WS_MESSAGE: u8 = 0x07;
    pub const WS_CLOSE: u8 = 0x08;
}

/// Why bytes are not a frame, or why a value cannot go into one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    Oversized(usize),
    #[error("{kind} frame truncated: {len} bytes, at least {need} needed")]
    Truncated {
        kind: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("stream id 0 is reserved")]
    ReservedStream,
    #[error("{kind} frame has {extra} bytes after its payload")]
    TrailingBytes { kind: &'static str, extra: usize },
    #[error("empty data frame")]
    EmptyData,
    #[error("credit of 0 bytes")]
    ZeroCredit,
    #[error("{kind} JSON of {len} bytes is over the {MAX_HEAD_JSON}-byte limit")]
    HeadTooLarge { kind: &'static str, len: usize },
    #[error("bad JSON in {kind} frame: {detail}")]
    BadJson { kind: &'static str, detail: String },
    #[error("invalid UTF-8 in {0}")]
    BadUtf8(&'static str),
    #[error("{0} header fields, more than {MAX_HEADERS}")]
    TooManyHeaders(usize),
    #[error("header field {0}: name is not a lowercase HTTP token")]
    BadHeaderName(usize),
    #[error("header field {0}: value has a control character or a character above U+00FF")]
    BadHeaderValue(usize),
    #[error("method is not an HTTP token of at most {MAX_METHOD} bytes, or is CONNECT")]
    BadMethod,
    #[error("path is not origin-form (visible ASCII starting with one '/', no '#' or '\\')")]
    BadPath,
    #[error("a WebSocket request must use GET")]
    WebSocketNotGet,
    #[error("status {0} is not 101 or 200..=599")]
    BadStatus(u16),
    #[error("unknown WebSocket message kind byte 0x{0:02x}")]
    BadWsKind(u8),
    #[error("WebSocket close code {0} is outside 1000..=4999")]
    BadCloseCode(u16),
    #[error("WebSocket close reason of {0} bytes, more than {MAX_CLOSE_REASON}")]
    CloseReasonTooLong(usize),
    #[error("reset message of {0} bytes, more than {MAX_RESET_MESSAGE}")]
    ResetMessageTooLong(usize),
}

/// A stream id: never 0. The browser numbers its streams 1, 2, 3, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(NonZeroU32);

impl StreamId {
    pub fn new(id: u32) -> Option<Self> {
        NonZeroU32::new(id).map(Self)
    }

    pub fn get(self) -> u32 {
        self.0.get()
    }

    /// The channel (0..CHANNELS) that carries this stream's frames both ways.
    pub fn channel(self) -> usize {
        (self.get() % CHANNELS as u32) as usize
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One datachannel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub stream: StreamId,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    RequestHead(RequestHead),
    ResponseHead(ResponseHead),
    Data(Data),
    /// No more `Data` from this sender on this stream.
    End,
    /// The receiver lets the sender send this many more flow-controlled bytes.
    Credit(NonZeroU32),
    Reset(Reset),
    WsMessage(WsMessage),
    WsClose(WsClose),
}

impl Body {
    pub fn name(&self) -> &'static str {
        match self {
            Body::RequestHead(_) => "request-head",
            Body::ResponseHead(_) => "response-head",
            Body::Data(_) => "data",
            Body::End => "end",
            Body::Credit(_) => "credit",
            Body::Reset(_) => "reset",
            Body::WsMessage(_) => "ws-message",
            Body::WsClose(_) => "ws-close",
        }
    }

    /// Bytes this frame takes from the sender's window: its length minus the header for `Data`
    /// and `WsMessage`, nothing for the others.
    pub fn flow_cost(&self) -> u32 {
        let n = match self {
            Body::Data(d) => d.0.len(),
            Body::WsMessage(m) => 1 + m.payload.len(),
            _ => 0,
        };
        u32::try_from(n).expect("payloads are at most MAX_DATA bytes")
    }
}

/// Header fields in order, as `[name, value]` pairs; names repeat (`set-cookie`).
/// Names are lowercase HTTP tokens. Values are octet strings carried as one char per octet
/// (U+0000..=U+00FF, like the Fetch API's ByteString) without controls other than HTAB.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new(fields: Vec<(String, String)>) -> Result<Self, FrameError> {
        if fields.len() > MAX_HEADERS {
            return Err(FrameError::TooManyHeaders(fields.len()));
        }
        for (i, (name, value)) in fields.iter().enumerate() {
            if name.is_empty() || !name.bytes().all(|b| is_tchar(b) && !b.is_ascii_uppercase()) {
                return Err(FrameError::BadHeaderName(i));
            }
            let octet = |c: char| {
                c == '\t' || (' '..='~').contains(&c) || ('\u{80}'..='\u{ff}').contains(&c)
            };
            if !value.chars().all(octet) {
                return Err(FrameError::BadHeaderValue(i));
            }
        }
        Ok(Self(fields))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The first value of `name` (lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Opens a stream: what the browser asks the upstream for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    method: String,
    path: String,
    headers: Headers,
    websocket: bool,
}

impl RequestHead {
    pub fn new(
        method: impl Into<String>,
        path: impl Into<String>,
        headers: Headers,
        websocket: bool,
    ) -> Result<Self, FrameError> {
        let (method, path) = (method.into(), path.into());
        let token =
            !method.is_empty() && method.len() <= MAX_METHOD && method.bytes().all(is_tchar);
        if !token || method.eq_ignore_ascii_case("CONNECT") {
            return Err(FrameError::BadMethod);
        }
        if !is_origin_form(&path) {
            return Err(FrameError::BadPath);
        }
        if websocket && method != "GET" {
            return Err(FrameError::WebSocketNotGet);
        }
        let head = Self {
            method,
            path,
            headers,
            websocket,
        };
        check_json_len("request-head", head.json().len())?;
        Ok(head)
    }

    pub fn method(&self) -> &str {
        &self.method
    }
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn headers(&self) -> &Headers {
        &self.headers
    }
    pub fn websocket(&self) -> bool {
        self.websocket
    }

    fn json(&self) -> Vec<u8> {
        let wire = RequestHeadOut {
            method: &self.method,
            path: &self.path,
            headers: &self.headers.0,
            websocket: self.websocket,
        };
        serde_json::to_vec(&wire).expect("a struct of strings and bools always serializes")
    }
}

/// `/` then visible ASCII; `//` (a network-path reference to URL parsers) and `\` (read as
/// `/` by WHATWG parsers) are refused so no upstream client can mistake the path for a host.
fn is_origin_form(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && path
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'#' && b != b'\\')
}

#[derive(Serialize)]
struct RequestHeadOut<'a> {
    method: &'a str,
    path: &'a str,
    headers: &'a [(String, String)],
    websocket: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestHeadIn {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    websocket: bool,
}

/// The upstream's answer. 101 only answers a WebSocket request and means the bridge is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    status: u16,
    headers: Headers,
}

impl ResponseHead {
    pub fn new(status: u16, headers: Headers) -> Result<Self, FrameError> {
        if status != 101 && !(200..=599).contains(&status) {
            return Err(FrameError::BadStatus(status));
        }
        let head = Self { status, headers };
        check_json_len("response-head", head.json().len())?;
        Ok(head)
    }

    pub fn status(&self) -> u16 {
        self.status
    }
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    fn json(&self) -> Vec<u8> {
        let wire = ResponseHeadOut {
            status: self.status,
            headers: &self.headers.0,
        };
        serde_json::to_vec(&wire).expect("a struct of strings and numbers always serializes")
    }
}

#[derive(Serialize)]
struct ResponseHeadOut<'a> {
    status: u16,
    headers: &'a [(String, String)],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseHeadIn {
    status: u16,
    headers: Vec<(String, String)>,
}

fn check_json_len(kind: &'static str, len: usize) -> Result<(), FrameError> {
    if len > MAX_HEAD_JSON {
        return Err(FrameError::HeadTooLarge { kind, len });
    }
    Ok(())
}

/// 1..=MAX_DATA body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data(Vec<u8>);

impl Data {
    pub fn new(bytes: Vec<u8>) -> Result<Self, FrameError> {
        if bytes.is_empty() {
            return Err(FrameError::EmptyData);
        }
        if bytes.len() > MAX_DATA {
            return Err(FrameError::Oversized(HEADER_LEN + bytes.len()));
        }
        Ok(Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

/// Why a stream was abandoned. Unknown codes are a decoding error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResetCode {
    /// The sender no longer wants the stream (fetch aborted, page gone).
    Cancel,
    /// The peer broke the framing or stream rules.
    Protocol,
    /// The peer sent more than its credit, or granted credit it could not owe.
    FlowControl,
    /// A frame arrived for a stream that is already closed.
    Closed,
    /// Not processed at all (stream limit, policy): the opener may retry later.
    Refused,
    /// The upstream could not be reached or failed mid-response.
    Upstream,
    /// The upstream did not answer in time.
    Timeout,
    /// Anything else on the sender's side.
    Internal,
}

/// Abandons a stream in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    code: ResetCode,
    message: String,
}

impl Reset {
    /// The message is cut to MAX_RESET_MESSAGE bytes at a character boundary.
    pub fn new(code: ResetCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_RESET_MESSAGE {
            let mut cut = MAX_RESET_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Self { code, message }
    }

    pub fn code(&self) -> ResetCode {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsKind {
    Text = 1,
    Binary = 2,
}

/// Set in the kind byte when more fragments of the same message follow.
const WS_MORE: u8 = 0x80;

/// One fragment of a WebSocket message; `more` says another fragment follows. A text
/// fragment is valid UTF-8 on its own (messages are split at character boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsMessage {
    kind: WsKind,
    more: bool,
    payload: Vec<u8>,
}

impl WsMessage {
    pub fn new(kind: WsKind, more: bool, payload: Vec<u8>) -> Result<Self, FrameError> {
        if payload.len() > MAX_WS_FRAGMENT {
            return Err(FrameError::Oversized(HEADER_LEN + 1 + payload.len()));
        }
        if kind == WsKind::Text && std::str::from_utf8(&payload).is_err() {
            return Err(FrameError::BadUtf8("ws-message text"));
        }
        Ok(Self {
            kind,
            more,
            payload,
        })
    }

    pub fn kind(&self) -> WsKind {
        self.kind
    }
    pub fn more(&self) -> bool {
        self.more
    }
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }
}

/// A WebSocket close: the sender sends no more messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsClose {
    code: u16,
    reason: String,
}

impl WsClose {
    pub fn new(code: u16, reason: impl Into<String>) -> Result<Self, FrameError> {
        let reason = reason.into();
        if !(1000..=4999).contains(&code) {
            return Err(FrameError::BadCloseCode(code));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(FrameError::CloseReasonTooLong(reason.len()));
        }
        Ok(Self { code, reason })
    }

    pub fn code(&self) -> u16 {
        self.code
    }
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sid(n: u32) -> StreamId {
        StreamId::new(n).expect("test ids are nonzero")
    }

    fn headers(fields: &[(&str, &str)]) -> Result<Headers, FrameError> {
        Headers::new(
            fields
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn frame(body: Body) -> Frame {
        Frame {
            stream: sid(7),
            body,
        }
    }

    fn raw(ty: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![ty];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn assert_round_trip(f: Frame) {
        let bytes = encode(&f);
        assert!(bytes.len() <= MAX_FRAME);
        assert_eq!(decode(&bytes), Ok(f));
    }

    #[test]
    fn every_frame_type_round_trips() {
        let h = headers(&[
            ("accept", "*/*"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=\u{e9}\t2"),
        ])
        .unwrap();
        let bodies = [
            Body::RequestHead(
                RequestHead::new("POST", "/cgi-bin/x?a=1&b=%20", h.clone(), false).unwrap(),
            ),
            Body::RequestHead(RequestHead::new("GET", "/ws", Headers::default(), true).unwrap()),
            Body::ResponseHead(ResponseHead::new(200, h).unwrap()),
            Body::ResponseHead(ResponseHead::new(101, Headers::default()).unwrap()),
            Body::Data(Data::new(vec![0, 1, 2, 255]).unwrap()),
            Body::End,
            Body::Credit(NonZeroU32::new(128 * 1024).unwrap()),
            Body::Reset(Reset::new(ResetCode::FlowControl, "window exceeded")),
            Body::WsMessage(WsMessage::new(WsKind::Text, false, "h\u{e9}llo".into()).unwrap()),
            Body::WsMessage(WsMessage::new(WsKind::Binary, true, vec![0xff; 10]).unwrap()),
            Body::WsMessage(WsMessage::new(WsKind::Text, false, vec![]).unwrap()),
            Body::WsClose(WsClose::new(1000, "bye").unwrap()),
            Body::WsClose(WsClose::new(4999, "").unwrap()),
        ];
        for body in bodies {
            assert_round_trip(frame(body));
        }
        for code in [
            ResetCode::Cancel,
            ResetCode::Protocol,
            ResetCode::FlowControl,
            ResetCode::Closed,
            ResetCode::Refused,
            ResetCode::Upstream,
            ResetCode::Timeout,
            ResetCode::Internal,
        ] {
            assert_round_trip(frame(Body::Reset(Reset::new(code, ""))));
        }
    }

    /// Pins the byte layout `docs/proxy.md` gives.
    #[test]
    fn layout_is_as_documented() {
        let s = sid(0x0102_0304);
        let credit = Frame {
            stream: s,
            body: Body::Credit(NonZeroU32::new(0x0004_0000).unwrap()),
        };
        assert_eq!(encode(&credit), [0x05, 1, 2, 3, 4, 0x00, 0x04, 0x00, 0x00]);
        assert_eq!(
            encode(&Frame {
                stream: s,
                body: Body::End
            }),
            [0x04, 1, 2, 3, 4]
        );
        let close = Body::WsClose(WsClose::new(1001, "ok").unwrap());
        assert_eq!(
            encode(&Frame {
                stream: s,
                body: close
            }),
            [0x08, 1, 2, 3, 4, 0x03, 0xe9, b'o', b'k']
        );
        let more = Body::WsMessage(WsMessage::new(WsKind::Binary, true, vec![9]).unwrap());
        assert_eq!(
            encode(&Frame {
                stream: s,
                body: more
            }),
            [0x07, 1, 2, 3, 4, 0x82, 9]
        );

        let head =
            RequestHead::new("GET", "/", headers(&[("accept", "*/*")]).unwrap(), false).unwrap();
        let bytes = encode(&frame(Body::RequestHead(head)));
        assert_eq!(bytes[0], 0x01);
        let json = r#"{"method":"GET","path":"/","headers":[["accept","*/*"]],"websocket":false}"#;
        assert_eq!(&bytes[HEADER_LEN..], json.as_bytes());
        let head = ResponseHead::new(204, Headers::default()).unwrap();
        assert_eq!(
            &encode(&frame(Body::ResponseHead(head)))[HEADER_LEN..],
            br#"{"status":204,"headers":[]}"#
        );
        let reset = Reset::new(ResetCode::FlowControl, "x");
        assert_eq!(
            &encode(&frame(Body::Reset(reset)))[HEADER_LEN..],
            br#"{"code":"flow-control","message":"x"}"#
        );
    }

    #[test]
    fn json_fields_may_come_in_any_order_with_whitespace() {
        let json =
            br#" { "websocket" : true , "headers" : [ ] , "path" : "/s" , "method" : "GET" } "#;
        let f = decode(&raw(0x01, 9, json)).unwrap();
        let Body::RequestHead(h) = f.body else {
            panic!("{f:?}")
        };
        assert_eq!(
            (h.method(), h.path(), h.websocket(), h.headers().len()),
            ("GET", "/s", true, 0)
        );
    }

    #[test]
    fn size_boundaries() {
        let full = raw(0x03, 1, &vec![7; MAX_DATA]);
        assert_eq!(full.len(), MAX_FRAME);
        assert!(decode(&full).is_ok());
        let over = raw(0x03, 1, &vec![7; MAX_DATA + 1]);
        assert_eq!(decode(&over), Err(FrameError::Oversized(MAX_FRAME + 1)));
        assert!(Data::new(vec![0; MAX_DATA]).is_ok());
        assert_eq!(
            Data::new(vec![0; MAX_DATA + 1]),
            Err(FrameError::Oversized(MAX_FRAME + 1))
        );

        let ws = raw(0x07, 1, &[&[2u8][..], &vec![0; MAX_WS_FRAGMENT]].concat());
        assert_eq!(ws.len(), MAX_FRAME);
        assert!(decode(&ws).is_ok());
        assert!(WsMessage::new(WsKind::Binary, false, vec![0; MAX_WS_FRAGMENT]).is_ok());
        assert_eq!(
            WsMessage::new(WsKind::Binary, false, vec![0; MAX_WS_FRAGMENT + 1]),
            Err(FrameError::Oversized(MAX_FRAME + 1))
        );
        // Any type is refused over the limit before anything else is looked at.
        assert_eq!(
            decode(&vec![0xee; MAX_FRAME + 1]),
            Err(FrameError::Oversized(MAX_FRAME + 1))
        );
    }

    #[test]
    fn head_json_limit() {
        // A request head whose JSON is exactly MAX_HEAD_JSON bytes, then one more.
        let base = RequestHead::new("GET", "/", headers(&[("x", "")]).unwrap(), false)
            .unwrap()
            .json()
            .len();
        let fill = "v".repeat(MAX_HEAD_JSON - base);
        let at = RequestHead::new("GET", "/", headers(&[("x", &fill)]).unwrap(), false).unwrap();
        assert_eq!(at.json().len(), MAX_HEAD_JSON);
        assert_round_trip(frame(Body::RequestHead(at)));
        let over = format!("{fill}v");
        let err = RequestHead::new("GET", "/", headers(&[("x", &over)]).unwrap(), false);
        assert_eq!(
            err,
            Err(FrameError::HeadTooLarge {
                kind: "request-head",
                len: MAX_HEAD_JSON + 1
            })
        );

        let long = format!(
            r#"{{"status":200,"headers":[["x","{}"]]}}"#,
            "v".repeat(MAX_HEAD_JSON)
        );
        let len = long.len();
        assert_eq!(
            decode(&raw(0x02, 1, long.as_bytes())),
            Err(FrameError::HeadTooLarge {
                kind: "response-head",
                len
            })
        );
        let reset = format!(
            r#"{{"code":"cancel","message":"{}"}}"#,
            " ".repeat(MAX_HEAD_JSON)
        );
        assert!(matches!(
            decode(&raw(0x06, 1, reset.as_bytes())),
            Err(FrameError::HeadTooLarge { kind: "reset", .. })
        ));
    }

    #[test]
    fn header_count_limit() {
        let fields = |n| {
            (0..n)
                .map(|i| (format!("x-{i}"), "1".to_string()))
                .collect::<Vec<_>>()
        };
        assert!(Headers::new(fields(MAX_HEADERS)).is_ok());
        assert_eq!(
            Headers::new(fields(MAX_HEADERS + 1)),
            Err(FrameError::TooManyHeaders(MAX_HEADERS + 1))
        );
        let json =
            serde_json::json!({"status": 200, "headers": fields(MAX_HEADERS + 1)}).to_string();
        assert_eq!(
            decode(&raw(0x02, 1, json.as_bytes())),
            Err(FrameError::TooManyHeaders(MAX_HEADERS + 1))
        );
    }

    #[test]
    fn header_names_and_values_are_checked() {
        for bad in ["", "Accept", "x y", "x:y", "x\r", "caf\u{e9}", "a\"b"] {
            assert_eq!(
                headers(&[("ok", "1"), (bad, "1")]),
                Err(FrameError::BadHeaderName(1)),
                "{bad:?}"
            );
        }
        for bad in ["a\rb", "a\nb", "\0", "\u{7f}", "\u{100}", "\u{1f600}"] {
            assert_eq!(
                headers(&[("ok", "1"), ("x", bad)]),
                Err(FrameError::BadHeaderValue(1))
            );
        }
        assert!(
            headers(&[
                ("x-a_b.c~!", "\t visible ~ and \u{a0}\u{ff}"),
                ("empty", "")
            ])
            .is_ok()
        );
        let json = br#"{"status":200,"headers":[["content-type","text/html\r\nx: y"]]}"#;
        assert_eq!(
            decode(&raw(0x02, 1, json)),
            Err(FrameError::BadHeaderValue(0))
        );
    }

    #[test]
    fn methods_and_paths_are_checked() {
        let req = |m: &str, p: &str| RequestHead::new(m, p, Headers::default(), false);
        for bad in [
            "",
            "G ET",
            "GET\r",
            "CONNECT",
            "connect",
            &"X".repeat(MAX_METHOD + 1),
        ] {
            assert_eq!(req(bad, "/"), Err(FrameError::BadMethod), "{bad:?}");
        }
        assert!(req(&"X".repeat(MAX_METHOD), "/").is_ok());
        for bad in [
            "",
            "*",
            "x",
            "http://cam/",
            "//evil.example/",
            "/a b",
            "/a#b",
            "/\\evil",
            "/caf\u{e9}",
            "/\t",
        ] {
            assert_eq!(req("GET", bad), Err(FrameError::BadPath), "{bad:?}");
        }
        assert!(req("GET", "/a//b/../c?q=%2F&x=/y").is_ok());
        let ws = RequestHead::new("POST", "/ws", Headers::default(), true);
        assert_eq!(ws, Err(FrameError::WebSocketNotGet));
        let json = br#"{"method":"GET","path":"http://evil/","headers":[],"websocket":false}"#;
        assert_eq!(decode(&raw(0x01, 1, json)), Err(FrameError::BadPath));
    }

    #[test]
    fn statuses_are_checked() {
        for bad in [0, 100, 102, 199, 600, 999] {
            assert_eq!(
                ResponseHead::new(bad, Headers::default()),
                Err(FrameError::BadStatus(bad))
            );
        }
        for good in [101, 200, 304, 599] {
            assert!(ResponseHead::new(good, Headers::default()).is_ok());
        }
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            decode(&[]),
            Err(FrameError::Truncated {
                kind: "any",
                len: 0,
                need: 5
            })
        );
        assert_eq!(
            decode(&[0x04, 0, 0, 1]),
            Err(FrameError::Truncated {
                kind: "any",
                len: 4,
                need: 5
            })
        );
        for ty in [0x00, 0x09, 0x7f, 0xff] {
            assert_eq!(decode(&raw(ty, 1, b"")), Err(FrameError::UnknownType(ty)));
        }
        assert_eq!(decode(&raw(0x04, 0, b"")), Err(FrameError::ReservedStream));
        assert_eq!(peek_stream(&raw(0x03, 42, b"zz")), Some(sid(42)));
        assert_eq!(peek_stream(&raw(0x03, 0, b"zz")), None);
        assert_eq!(peek_stream(&[3, 0, 0]), None);
    }

    #[test]
    fn payload_errors() {
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (
                raw(0x04, 1, b"x"),
                FrameError::TrailingBytes {
                    kind: "end",
                    extra: 1,
                },
            ),
            (
                raw(0x05, 1, &[0, 0, 1]),
                FrameError::Truncated {
                    kind: "credit",
                    len: 8,
                    need: 9,
                },
            ),
            (
                raw(0x05, 1, &[0, 0, 0, 1, 0]),
                FrameError::TrailingBytes {
                    kind: "credit",
                    extra: 1,
                },
            ),
            (raw(0x05, 1, &[0, 0, 0, 0]), FrameError::ZeroCredit),
            (raw(0x03, 1, b""), FrameError::EmptyData),
            (
                raw(0x07, 1, b""),
                FrameError::Truncated {
                    kind: "ws-message",
                    len: 5,
                    need: 6,
                },
            ),
            (raw(0x07, 1, &[0x00]), FrameError::BadWsKind(0x00)),
            (raw(0x07, 1, &[0x03]), FrameError::BadWsKind(0x03)),
            (raw(0x07, 1, &[0x41, b'a']), FrameError::BadWsKind(0x41)),
            (
                raw(0x07, 1, &[0x01, 0xc3]),
                FrameError::BadUtf8("ws-message text"),
            ),
            (
                raw(0x08, 1, &[0x03]),
                FrameError::Truncated {
                    kind: "ws-close",
                    len: 6,
                    need: 7,
                },
            ),
            (raw(0x08, 1, &[0x03, 0xe7]), FrameError::BadCloseCode(999)),
            (raw(0x08, 1, &[0x13, 0x88]), FrameError::BadCloseCode(5000)),
            (
                raw(0x08, 1, &[0x03, 0xe8, 0xff]),
                FrameError::BadUtf8("ws-close reason"),
            ),
            (
                raw(0x08, 1, &[&[0x03, 0xe8][..], &[b'r'; 124]].concat()),
                FrameError::CloseReasonTooLong(124),
            ),
        ];
        for (bytes, err) in cases {
            assert_eq!(decode(&bytes), Err(err), "{bytes:x?}");
        }
        // Binary fragments need not be UTF-8; a reason of exactly 123 bytes is fine.
        assert!(decode(&raw(0x07, 1, &[0x02, 0xc3])).is_ok());
        assert!(decode(&raw(0x08, 1, &[&[0x03, 0xe8][..], &[b'r'; 123]].concat())).is_ok());
        assert_eq!(
            WsClose::new(1000, "r".repeat(124)),
            Err(FrameError::CloseReasonTooLong(124))
        );
    }

    #[test]
    fn json_errors() {
        let bad = |ty: u8, json: &str| match decode(&raw(ty, 1, json.as_bytes())) {
            Err(FrameError::BadJson { detail, .. }) => {
                assert!(detail.len() <= MAX_DETAIL, "{detail}")
            }
            other => panic!("{json}: {other:?}"),
        };
        bad(0x01, "");
        bad(0x01, "not json");
        bad(0x01, r#"{"method":"GET","path":"/","headers":[]}"#);
        bad(
            0x01,
            r#"{"method":"GET","path":"/","headers":[],"websocket":false,"extra":1}"#,
        );
        bad(
            0x01,
            r#"{"method":"GET","path":"/","headers":[["a","b","c"]],"websocket":false}"#,
        );
        bad(
            0x01,
            r#"{"method":"GET","path":"/","headers":{"a":"b"},"websocket":false}"#,
        );
        bad(
            0x01,
            r#"{"method":"GET","method":"PUT","path":"/","headers":[],"websocket":false}"#,
        );
        bad(0x02, r#"{"status":"200","headers":[]}"#);
        bad(0x02, r#"{"status":70000,"headers":[]}"#);
        bad(
            0x02,
            "{\"status\":200,\"headers\":[[\"a\",\"\u{0}\"]]} trailing",
        );
        bad(0x06, r#"{"code":"nope","message":""}"#);
        bad(0x06, r#"{"code":"cancel"}"#);
        bad(0x02, &format!("{{\"{}\":1}}", "k".repeat(5000)));
        // JSON strings must be UTF-8.
        let mut bytes = raw(0x02, 1, br#"{"status":200,"headers":[["a","#);
        bytes.extend_from_slice(b"\"\xff\"]]}");
        assert!(matches!(decode(&bytes), Err(FrameError::BadJson { .. })));
    }

    #[test]
    fn reset_messages_are_cut_at_a_character_boundary() {
        let r = Reset::new(ResetCode::Internal, "\u{e9}".repeat(200));
        assert_eq!(r.message().len(), MAX_RESET_MESSAGE);
        let r = Reset::new(ResetCode::Internal, format!("x{}", "\u{e9}".repeat(200)));
        assert_eq!(r.message().len(), MAX_RESET_MESSAGE - 1);
        let long = format!(
            r#"{{"code":"cancel","message":"{}"}}"#,
            "m".repeat(MAX_RESET_MESSAGE + 1)
        );
        assert_eq!(
            decode(&raw(0x06, 1, long.as_bytes())),
            Err(FrameError::ResetMessageTooLong(MAX_RESET_MESSAGE + 1))
        );
    }

    #[test]
    fn data_frames_split_at_the_frame_limit() {
        assert_eq!(data_frames(sid(3), b"").count(), 0);
        for len in [1, MAX_DATA - 1, MAX_DATA, MAX_DATA + 1, 3 * MAX_DATA + 17] {
            let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frames: Vec<_> = data_frames(sid(3), &body).collect();
            assert_eq!(frames.len(), len.div_ceil(MAX_DATA));
            let mut joined = Vec::new();
            for bytes in frames {
                assert!(bytes.len() <= MAX_FRAME);
                let Frame {
                    stream,
                    body: Body::Data(d),
                } = decode(&bytes).unwrap()
                else {
                    panic!()
                };
                assert_eq!(stream, sid(3));
                joined.extend(d.into_vec());
            }
            assert_eq!(joined, body);
        }
    }

    #[test]
    fn ws_frames_fragment_text_at_character_boundaries() {
        let empty: Vec<_> = ws_frames(sid(2), WsPayload::Text("")).collect();
        assert_eq!(empty, vec![vec![0x07, 0, 0, 0, 2, 0x01]]);
        // 1 + 4-byte chars put boundaries off the fragment size.
        let text = format!("a{}", "\u{1f600}".repeat(MAX_WS_FRAGMENT / 2));
        let mut joined = Vec::new();
        let frames: Vec<_> = ws_frames(sid(2), WsPayload::Text(&text)).collect();
        assert_eq!(frames.len(), 3);
        for (i, bytes) in frames.iter().enumerate() {
            assert!(bytes.len() <= MAX_FRAME);
            let Body::WsMessage(m) = decode(bytes).unwrap().body else {
                panic!()
            };
            assert_eq!((m.kind(), m.more()), (WsKind::Text, i < 2));
            joined.extend_from_slice(m.payload());
        }
        assert_eq!(joined, text.as_bytes());
        let bin = vec![1u8; 2 * MAX_WS_FRAGMENT];
        let sizes: Vec<_> = ws_frames(sid(2), WsPayload::Binary(&bin))
            .map(|f| f.len())
            .collect();
        assert_eq!(sizes, [MAX_FRAME, MAX_FRAME]);
    }

    #[test]
    fn flow_cost_counts_payload_after_the_header() {
        assert_eq!(Body::Data(Data::new(vec![0; 10]).unwrap()).flow_cost(), 10);
        assert_eq!(
            Body::WsMessage(WsMessage::new(WsKind::Text, false, vec![]).unwrap()).flow_cost(),
            1
        );
        assert_eq!(Body::End.flow_cost(), 0);
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-z0-9!#$%&'*+.^_`|~-]{1,12}"
    }

    fn arb_headers() -> impl Strategy<Value = Headers> {
        prop::collection::vec((token(), "[\t -~\u{80}-\u{ff}]{0,24}"), 0..8)
            .prop_map(|f| Headers::new(f).expect("strategy makes valid fields"))
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        let code = prop::sample::select(vec![
            ResetCode::Cancel,
            ResetCode::Protocol,
            ResetCode::FlowControl,
            ResetCode::Closed,
            ResetCode::Refused,
            ResetCode::Upstream,
            ResetCode::Timeout,
            ResetCode::Internal,
        ]);
        let path = "/[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,40}"
            .prop_filter("not //", |p| !p.starts_with("//"));
        let method = "[A-Z]{1,10}".prop_filter("not CONNECT", |m| m != "CONNECT");
        prop_oneof![
            (method, path, arb_headers(), any::<bool>()).prop_map(|(m, p, h, ws)| {
                let m = if ws { "GET".to_string() } else { m };
                Body::RequestHead(RequestHead::new(m, p, h, ws).expect("valid"))
            }),
            (prop_oneof![Just(101u16), 200u16..=599], arb_headers())
                .prop_map(|(s, h)| Body::ResponseHead(ResponseHead::new(s, h).expect("valid"))),
            prop::collection::vec(any::<u8>(), 1..300)
                .prop_map(|b| Body::Data(Data::new(b).expect("valid"))),
            Just(Body::End),
            (1u32..).prop_map(|n| Body::Credit(NonZeroU32::new(n).expect("nonzero"))),
            (code, ".{0,80}").prop_map(|(c, m)| Body::Reset(Reset::new(c, m))),
            (any::<String>(), any::<bool>()).prop_map(|(s, more)| {
                Body::WsMessage(WsMessage::new(WsKind::Text, more, s.into_bytes()).expect("valid"))
            }),
            (prop::collection::vec(any::<u8>(), 0..300), any::<bool>()).prop_map(|(b, more)| {
                Body::WsMessage(WsMessage::new(WsKind::Binary, more, b).expect("valid"))
            }),
            (1000u16..=4999, ".{0,30}")
                .prop_map(|(c, r)| Body::WsClose(WsClose::new(c, r).expect("valid"))),
        ]
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (1u32.., arb_body()).prop_map(|(id, body)| Frame {
            stream: sid(id),
            body,
        })
    }

    /// When `decode` accepts bytes, the frame it gives encodes to bytes that decode to it again.
    fn check_decoded(bytes: &[u8]) {
        if let Ok(f) = decode(bytes) {
            assert_eq!(decode(&encode(&f)), Ok(f));
        }
    }

    proptest! {
        #[test]
        fn round_trip(f in arb_frame()) {
            let bytes = encode(&f);
            prop_assert!(bytes.len() <= MAX_FRAME);
            prop_assert_eq!(decode(&bytes), Ok(f));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            check_decoded(&bytes);
        }

        #[test]
        fn arbitrary_payloads_never_panic(
            ty in 0u8..=9,
            id in any::<u32>(),
            payload in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            check_decoded(&raw(ty, id, &payload));
        }

        #[test]
        fn mutated_frames_never_panic(
            f in arb_frame(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = encode(&f);
            for (at, b) in flips {
                let i = at.index(bytes.len());
                bytes[i] = b;
            }
            let keep = cut.index(bytes.len() + 1);
            check_decoded(&bytes);
            check_decoded(&bytes[..keep]);
        }
    }
}

//! The proxy's wire format (`docs/proxy.md`): one frame per datachannel message, a 5-byte
//! header (type, stream id) and a typed payload. Everything a frame holds is validated when it
//! is built, so `encode` cannot fail and `decode` accepts exactly what `encode` can produce.

use std::num::NonZeroU32;

use serde::{Deserialize, Serialize};

use super::CHANNELS;

mod codec;
pub use codec::{WsPayload, data_frames, decode, encode, peek_stream, ws_frames};

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

#[cfg(test)]
mod tests;

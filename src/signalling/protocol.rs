//! Wire types of the signalling protocol (`docs/protocol.md`), shared by the rendezvous
//! server, the device's client and the tests. Pure data: no sockets, no GStreamer.

use super::proof::RegisterProof;
use serde::{Deserialize, Serialize};

/// Largest message the rendezvous accepts and forwards; larger ones get `too-large`.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest WebSocket message the transport reads at all; larger ones close the socket (1009).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Longest `reason` forwarded with `end`.
pub const MAX_REASON_CHARS: usize = 200;

/// Device ids belong to identity (they derive from the certificate); the wire carries them.
pub use crate::identity::{BadDeviceId, DeviceId};

/// A session id, chosen by the rendezvous server; opaque to everyone else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an endpoint sends to the rendezvous server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ClientMessage {
    Register {
        device_id: DeviceId,
        /// Proves possession of the device's key (`proof`); a register without one is
        /// refused with `not-allowed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proof: Option<RegisterProof>,
    },
    Connect {
        device_id: DeviceId,
    },
    Signal {
        session_id: SessionId,
        data: SignalData,
    },
    End {
        session_id: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Ping,
}

/// What the rendezvous server sends to an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ServerMessage {
    Welcome {
        server: String,
        max_message_bytes: usize,
        /// Fresh for each connection: a device signs it to register (`proof`).
        nonce: String,
    },
    Registered {
        device_id: DeviceId,
    },
    Session {
        session_id: SessionId,
        device_id: DeviceId,
    },
    SessionRequest {
        session_id: SessionId,
        /// The viewer's address as the rendezvous saw it (IPv4, or the /64 of IPv6), when it
        /// knows it: the device shares its slots out per source (`admission`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
    },
    Signal {
        session_id: SessionId,
        data: SignalData,
    },
    End {
        session_id: SessionId,
        reason: String,
    },
    Pong,
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
    },
}

impl ServerMessage {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            session_id: None,
        }
    }

    pub fn session_error(
        code: ErrorCode,
        session_id: SessionId,
        message: impl Into<String>,
    ) -> Self {
        Self::Error {
            code,
            message: message.into(),
            session_id: Some(session_id),
        }
    }
}

/// The payload of `signal`: exactly one SDP or one ICE candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SignalData {
    Sdp(Sdp),
    Ice(IceCandidate),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sdp {
    #[serde(rename = "type")]
    pub kind: SdpKind,
    pub sdp: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceCandidate {
    pub candidate: String,
    pub sdp_m_line_index: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    BadMessage,
    UnknownType,
    TooLarge,
    DeviceOffline,
    UnknownSession,
    NotInSession,
    TooManySessions,
    Replaced,
    BadDeviceId,
    NotAllowed,
    /// Too many `connect`s from this address: try again in a few seconds.
    RateLimited,
}

/// Why a text frame could not be turned into a [`ClientMessage`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {0} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    BadDeviceId(String),
    #[error("malformed message: {0}")]
    Malformed(String),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::BadDeviceId(_) => ErrorCode::BadDeviceId,
            Self::Malformed(_) => ErrorCode::BadMessage,
        }
    }
}

const CLIENT_TYPES: &[&str] = &["register", "connect", "signal", "end", "ping"];

/// Decodes one text frame, telling apart the errors a sender should hear about.
pub fn decode_client(text: &str) -> Result<ClientMessage, DecodeError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(text.len()));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(DecodeError::Malformed("no string field \"type\"".into()));
    };
    if !CLIENT_TYPES.contains(&kind) {
        return Err(DecodeError::UnknownType(kind.chars().take(64).collect()));
    }
    serde_json::from_value(value).map_err(|e| {
        let text = e.to_string();
        if text.contains("device id") {
            DecodeError::BadDeviceId(text)
        } else {
            DecodeError::Malformed(text)
        }
    })
}

pub fn encode<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("protocol types always serialise")
}

/// A reason the other side sent, fit for one log line: control characters (newlines, ANSI
/// escapes: forged log lines) become `?`, and it is cut at `MAX_REASON_CHARS`.
pub fn printable_reason(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if reason.chars().nth(MAX_REASON_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_is_16_base32_chars() {
        assert!(DeviceId::parse("k5qhgq4u2mzqq3ab").is_ok());
        assert!(DeviceId::parse("K5QHGQ4U2MZQQ3AB").is_err());
        assert!(DeviceId::parse("k5qhgq4u2mzqq3a").is_err());
        assert!(DeviceId::parse("k5qhgq4u2mzqq3a1").is_err());
    }

    #[test]
    fn decodes_every_client_message() {
        let cases = [
            r#"{"type":"register","device_id":"aaaaaaaaaaaaaaaa"}"#,
            r#"{"type":"connect","device_id":"aaaaaaaaaaaaaaaa"}"#,
            r#"{"type":"signal","session_id":"s1","data":{"sdp":{"type":"offer","sdp":"v=0"}}}"#,
            r#"{"type":"signal","session_id":"s1","data":{"ice":{"candidate":"candidate:1","sdp_m_line_index":0}}}"#,
            r#"{"type":"end","session_id":"s1"}"#,
            r#"{"type":"ping","extra":"ignored"}"#,
        ];
        for case in cases {
            let msg = decode_client(case).unwrap_or_else(|e| panic!("{case}: {e}"));
            let again = decode_client(&encode(&msg)).unwrap();
            assert_eq!(msg, again);
        }
    }

    #[test]
    fn tells_bad_input_apart() {
        assert_eq!(
            decode_client("garbage").unwrap_err().code(),
            ErrorCode::BadMessage
        );
        assert_eq!(
            decode_client(r#"{"type":"connect","device_id":"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadMessage
        );
        assert_eq!(
            decode_client("[1,2]").unwrap_err().code(),
            ErrorCode::BadMessage
        );
        assert_eq!(
            decode_client(r#"{"type":"teleport"}"#).unwrap_err().code(),
            ErrorCode::UnknownType
        );
        assert_eq!(
            decode_client(r#"{"type":"connect","device_id":"x"}"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadDeviceId
        );
        assert_eq!(
            decode_client(r#"{"type":"signal","session_id":"s","data":{"sdp":{"type":"offer","sdp":"v"},"ice":{"candidate":"c","sdp_m_line_index":0}}}"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadMessage
        );
        let big = format!(
            r#"{{"type":"ping","pad":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(decode_client(&big).unwrap_err().code(), ErrorCode::TooLarge);
    }

    #[test]
    fn server_messages_use_the_documented_names() {
        let msg = ServerMessage::SessionRequest {
            session_id: SessionId("s1".into()),
            source: None,
        };
        assert_eq!(
            encode(&msg),
            r#"{"type":"session-request","session_id":"s1"}"#
        );
        let err = ServerMessage::error(ErrorCode::DeviceOffline, "no such device");
        assert_eq!(
            encode(&err),
            r#"{"type":"error","code":"device-offline","message":"no such device"}"#
        );
    }

    #[test]
    fn a_reason_from_outside_is_one_bounded_log_line() {
        assert_eq!(printable_reason("bye"), "bye");
        assert_eq!(
            printable_reason("ok\n2026-01-01 INFO forged\x1b[31m"),
            "ok?2026-01-01 INFO forged?[31m"
        );
        let long = "x".repeat(5000);
        assert_eq!(
            printable_reason(&long).chars().count(),
            MAX_REASON_CHARS + 1
        );
    }
}

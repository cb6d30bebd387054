//! The control channel: the JSON messages a viewer and the device exchange over the `control`
//! datachannel, on top of an encrypted, certificate-checked connection. Pure types and codec;
//! the session does the IO. See docs/security.md for the exchange.

use serde::{Deserialize, Serialize};

use super::model::{Access, Grant, Scope};

/// Largest control message read; anything larger is refused unread.
pub const MAX_CONTROL_BYTES: usize = 16 * 1024;

/// What a viewer asks. Unknown sessions (pre-auth) may only `claim` or `redeem`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Request {
    /// Become the owner with the claim secret from the device's claim link.
    Claim { secret: String },
    /// Borrow with an invite token from a lend link.
    Redeem { token: String },
    /// (Owner) mint an invite for `secs` seconds of `scope`.
    Lend { scope: Scope, secs: u64 },
    /// (Owner) list the grants.
    Grants,
    /// (Owner) revoke a grant.
    Revoke { id: String },
    /// Offer a new browser certificate for this session's grant (renewal before expiry).
    Renew { fingerprint: String },
    /// "Still here", every few seconds, never answered: lets a session whose signalling
    /// socket closed go on while the viewer is alive, and end soon after it is not.
    Alive,
}

impl Request {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Claim { .. } => "claim",
            Self::Redeem { .. } => "redeem",
            Self::Lend { .. } => "lend",
            Self::Grants => "grants",
            Self::Revoke { .. } => "revoke",
            Self::Renew { .. } => "renew",
            Self::Alive => "alive",
        }
    }

    /// Claim and redeem are what an unknown certificate may try; nothing else.
    pub fn allowed_before_access(&self) -> bool {
        matches!(self, Self::Claim { .. } | Self::Redeem { .. })
    }
}

/// How the device sees this viewer, sent when the channel opens and after every change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessInfo {
    pub role: Option<&'static str>,
    pub scope: Option<Scope>,
    pub expires_at: Option<u64>,
}

impl From<Option<Access>> for AccessInfo {
    fn from(access: Option<Access>) -> Self {
        Self {
            role: access.map(|a| match a.role {
                super::Role::Owner => "owner",
                super::Role::Borrower => "borrower",
            }),
            scope: access.map(|a| a.scope),
            expires_at: access.and_then(|a| a.expires_at),
        }
    }
}

/// One grant as the owner's list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GrantView {
    pub id: String,
    pub role: super::Role,
    pub scope: Scope,
    /// The first 4 bytes of the browser's certificate fingerprint.
    pub fingerprint: String,
    pub granted_at: u64,
    pub expires_at: Option<u64>,
    pub last_seen: Option<u64>,
    pub connected: bool,
}

impl GrantView {
    pub fn new(grant: &Grant, connected: bool) -> Self {
        Self {
            id: grant.id.clone(),
            role: grant.role,
            scope: grant.scope,
            fingerprint: grant.fingerprint.short(),
            granted_at: grant.granted_at,
            expires_at: grant.expires_at,
            last_seen: grant.last_seen,
            connected,
        }
    }
}

/// What the device says.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Reply {
    /// Sent first, and again whenever this viewer's access changes.
    Access {
        device_id: String,
        /// Whether the device has an owner at all (an unclaimed device shows how to claim).
        claimed: bool,
        #[serde(flatten)]
        access: AccessInfo,
        /// Seconds this session may stay without access before it is closed.
        #[serde(skip_serializing_if = "Option::is_none")]
        closes_in: Option<u64>,
    },
    Lent {
        link: String,
        qr_svg: String,
        scope: Scope,
        secs: u64,
        /// Without a public URL a lend link works on the device's LAN only.
        #[serde(skip_serializing_if = "Option::is_none")]
        warning: Option<String>,
    },
    Grants {
        grants: Vec<GrantView>,
    },
    Done {
        request: &'static str,
    },
    /// Whether the camera delivers pictures: after every `access` that lets media flow, and
    /// whenever the camera is lost or comes back.
    Camera {
        live: bool,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<&'static str>,
        message: String,
    },
}

/// Decodes a viewer's message, with an error reply for anything unusable.
pub fn decode(text: &str) -> Result<Request, Reply> {
    if text.len() > MAX_CONTROL_BYTES {
        return Err(Reply::Error {
            request: None,
            message: format!("message over {MAX_CONTROL_BYTES} bytes"),
        });
    }
    serde_json::from_str(text).map_err(|e| Reply::Error {
        request: None,
        message: format!("bad request: {e}"),
    })
}

pub fn encode(reply: &Reply) -> String {
    serde_json::to_string(reply).expect("replies serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_and_bad_ones_get_an_error() {
        assert_eq!(
            decode(r#"{"type":"claim","secret":"abc"}"#).unwrap(),
            Request::Claim {
                secret: "abc".into()
            }
        );
        assert_eq!(
            decode(r#"{"type":"lend","scope":"view+ui","secs":900}"#).unwrap(),
            Request::Lend {
                scope: Scope::ViewUi,
                secs: 900
            }
        );
        assert!(
            !decode(r#"{"type":"grants"}"#)
                .unwrap()
                .allowed_before_access()
        );
        assert!(
            decode(r#"{"type":"redeem","token":"t"}"#)
                .unwrap()
                .allowed_before_access()
        );
        assert!(matches!(decode("nope"), Err(Reply::Error { .. })));
        assert!(matches!(
            decode(r#"{"type":"format-disk"}"#),
            Err(Reply::Error { .. })
        ));
        assert!(matches!(
            decode(&"x".repeat(MAX_CONTROL_BYTES + 1)),
            Err(Reply::Error { .. })
        ));
    }

    #[test]
    fn replies_have_the_documented_shape() {
        let reply = Reply::Access {
            device_id: "aaaaaaaaaaaaaaaa".into(),
            claimed: false,
            access: AccessInfo::from(None),
            closes_in: Some(10),
        };
        assert_eq!(
            encode(&reply),
            r#"{"type":"access","device_id":"aaaaaaaaaaaaaaaa","claimed":false,"role":null,"scope":null,"expires_at":null,"closes_in":10}"#
        );
    }
}

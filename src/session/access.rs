//! The access decisions of one session, as pure data: what the peer's certificate may do,
//! when an unknown one is closed, and how many unknown sessions a source may open.

use std::time::{Duration, Instant};

use crate::grants::{Access, Scope};
use crate::identity::Fingerprint;

/// How long a certificate with no grant may keep its control channel to claim or redeem.
pub const PRE_AUTH_WINDOW: Duration = Duration::from_secs(10);

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The DTLS handshake has not shown the peer's certificate yet.
    Unchecked,
    /// A certificate with no grant: control channel only, closed at `until`.
    PreAuth {
        fingerprint: Fingerprint,
        until: Instant,
    },
    /// A certificate with a live grant.
    Granted {
        fingerprint: Fingerprint,
        access: Access,
    },
}

impl State {
    /// The peer's certificate decides: `access` is what the grants say about it.
    pub fn checked(fingerprint: Fingerprint, access: Option<Access>, now: Instant) -> Self {
        match access {
            Some(access) => Self::Granted {
                fingerprint,
                access,
            },
            None => Self::PreAuth {
                fingerprint,
                until: now + PRE_AUTH_WINDOW,
            },
        }
    }

    pub fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Self::Unchecked => None,
            Self::PreAuth { fingerprint, .. } | Self::Granted { fingerprint, .. } => {
                Some(*fingerprint)
            }
        }
    }

    pub fn access(&self) -> Option<Access> {
        match self {
            Self::Granted { access, .. } => Some(*access),
            _ => None,
        }
    }

    /// May media flow? Only to a granted peer.
    pub fn media_allowed(&self) -> bool {
        matches!(self, Self::Granted { .. })
    }

    /// May the viewer keep a datachannel it opened? Only a grant with the UI scope.
    pub fn channel_allowed(&self) -> bool {
        self.access().is_some_and(|a| a.scope.allows(Scope::ViewUi))
    }

    /// The grants changed: the new answer for this session's certificate. A granted session
    /// that lost its grant must end (`None`).
    pub fn regrant(self, access: Option<Access>) -> Option<Self> {
        match (self, access) {
            (Self::Granted { fingerprint, .. }, Some(access)) => Some(Self::Granted {
                fingerprint,
                access,
            }),
            (Self::Granted { .. }, None) => None,
            (Self::PreAuth { fingerprint, .. }, Some(access)) => Some(Self::Granted {
                fingerprint,
                access,
            }),
            (other, _) => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Role;

    fn fp() -> Fingerprint {
        Fingerprint::of_der(b"peer")
    }

    const VIEW: Access = Access {
        role: Role::Borrower,
        scope: Scope::View,
        expires_at: Some(10),
    };
    const OWNER: Access = Access {
        role: Role::Owner,
        scope: Scope::ViewUi,
        expires_at: None,
    };

    #[test]
    fn unknown_certificates_get_a_short_pre_auth_window_and_no_media() {
        let now = Instant::now();
        let s = State::checked(fp(), None, now);
        assert_eq!(
            s,
            State::PreAuth {
                fingerprint: fp(),
                until: now + PRE_AUTH_WINDOW
            }
        );
        assert!(!s.media_allowed() && !s.channel_allowed());
        assert!(!State::Unchecked.media_allowed());
    }

    #[test]
    fn scopes_decide_viewer_channels() {
        let now = Instant::now();
        assert!(State::checked(fp(), Some(VIEW), now).media_allowed());
        assert!(!State::checked(fp(), Some(VIEW), now).channel_allowed());
        assert!(State::checked(fp(), Some(OWNER), now).channel_allowed());
    }

    #[test]
    fn losing_a_grant_ends_the_session_and_gaining_one_opens_it() {
        let now = Instant::now();
        let granted = State::checked(fp(), Some(VIEW), now);
        assert_eq!(granted.regrant(None), None);
        assert_eq!(granted.regrant(Some(OWNER)).unwrap().access(), Some(OWNER));
        let pre = State::checked(fp(), None, now);
        assert!(
            pre.regrant(Some(VIEW)).unwrap().media_allowed(),
            "claim or redeem opens it"
        );
        assert_eq!(pre.regrant(None), Some(pre), "still waiting");
    }
}

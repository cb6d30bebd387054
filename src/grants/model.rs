//! Who may connect, as pure data and rules: claim, lend, borrow, revoke, expire, renew. No
//! clock (every call takes `now`, Unix seconds), no randomness (secrets come in), no IO.

use serde::{Deserialize, Serialize};

use super::secret::{Secret, SecretHash};
use crate::identity::Fingerprint;

/// Unix time in seconds.
pub type Time = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Live video (and audio).
    #[serde(rename = "view")]
    View,
    /// Video and the camera's own web UI.
    #[serde(rename = "view+ui")]
    ViewUi,
}

impl Scope {
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::ViewUi || needed == Scope::View
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "view" => Some(Self::View),
            "view+ui" => Some(Self::ViewUi),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Borrower,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub fingerprint: Fingerprint,
    pub role: Role,
    pub scope: Scope,
    pub granted_at: Time,
    /// `None` for the owner.
    pub expires_at: Option<Time>,
    pub last_seen: Option<Time>,
}

impl Grant {
    pub fn is_live(&self, now: Time) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invite {
    pub id: String,
    pub token_hash: SecretHash,
    pub scope: Scope,
    /// How long the borrower may watch, counted from redemption.
    pub lend_secs: u64,
    /// After this the invite can no longer be redeemed.
    pub redeem_by: Time,
    pub created_by: String,
}

/// What the owner asks for when lending.
#[derive(Debug, Clone)]
pub struct LendRequest {
    pub invite_id: String,
    pub scope: Scope,
    /// How long the borrower may watch once they redeem the invite.
    pub secs: u64,
}

/// Bounds the owner's choices (configurable so tests can use seconds).
#[derive(Debug, Clone, Copy)]
pub struct LendPolicy {
    pub min_secs: u64,
    pub max_secs: u64,
    /// How long an unredeemed invite stays valid.
    pub invite_ttl_secs: u64,
}

impl Default for LendPolicy {
    fn default() -> Self {
        Self {
            min_secs: 15 * 60,
            max_secs: 7 * 24 * 3600,
            invite_ttl_secs: 24 * 3600,
        }
    }
}

/// Everything persisted about access, in one value (written atomically as a whole).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Present while the device is unclaimed.
    pub claim: Option<SecretHash>,
    pub grants: Vec<Grant>,
    pub invites: Vec<Invite>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("this device already has an owner")]
    AlreadyClaimed,
    #[error("the claim secret is wrong or already used")]
    BadClaimSecret,
    #[error("only the owner can do that")]
    NotOwner,
    #[error("the lending time must be between {min} and {max} seconds")]
    BadDuration { min: u64, max: u64 },
    #[error("the invite is unknown, used or expired")]
    BadInvite,
    #[error("this browser already has access")]
    AlreadyGranted,
    #[error("no grant {0}")]
    UnknownGrant(String),
    #[error(
        "this is the camera's last owner: revoking it would leave the camera with no owner and no way to claim it"
    )]
    LastOwner,
}

/// What a connecting certificate may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub role: Role,
    pub scope: Scope,
    pub expires_at: Option<Time>,
}

impl Grants {
    /// A new, unclaimed device whose claim secret hashes to `claim`.
    pub fn unclaimed(claim: SecretHash) -> Self {
        Self {
            claim: Some(claim),
            ..Self::default()
        }
    }

    pub fn is_claimed(&self) -> bool {
        self.grants.iter().any(|g| g.role == Role::Owner)
    }

    /// The live grant of `fingerprint`, if any.
    pub fn grant_of(&self, fingerprint: &Fingerprint, now: Time) -> Option<&Grant> {
        self.grants
            .iter()
            .find(|g| g.fingerprint == *fingerprint && g.is_live(now))
    }

    pub fn check(&self, fingerprint: &Fingerprint, now: Time) -> Option<Access> {
        self.grant_of(fingerprint, now).map(|g| Access {
            role: g.role,
            scope: g.scope,
            expires_at: g.expires_at,
        })
    }

    /// The first browser to present the claim secret becomes the owner; the secret is spent.
    pub fn claim(
        &mut self,
        secret: &Secret,
        fingerprint: Fingerprint,
        id: String,
        now: Time,
    ) -> Result<&Grant, GrantError> {
        let Some(hash) = self.claim else {
            return Err(GrantError::AlreadyClaimed);
        };
        if !hash.matches(secret) {
            return Err(GrantError::BadClaimSecret);
        }
        self.claim = None;
        // A browser that borrowed before now owns: one grant per certificate.
        self.grants.retain(|g| g.fingerprint != fingerprint);
        self.grants.push(Grant {
            id,
            fingerprint,
            role: Role::Owner,
            scope: Scope::ViewUi,
            granted_at: now,
            expires_at: None,
            last_seen: Some(now),
        });
        Ok(self.grants.last().expect("just pushed"))
    }

    /// The owner mints a single-use invite; only the hash of `token` is kept.
    pub fn lend(
        &mut self,
        by: &Fingerprint,
        token: &Secret,
        request: LendRequest,
        policy: LendPolicy,
        now: Time,
    ) -> Result<&Invite, GrantError> {
        let owner = self.owner(by, now)?.id.clone();
        if !(policy.min_secs..=policy.max_secs).contains(&request.secs) {
            return Err(GrantError::BadDuration {
                min: policy.min_secs,
                max: policy.max_secs,
            });
        }
        self.invites.push(Invite {
            id: request.invite_id,
            token_hash: token.hash(),
            scope: request.scope,
            lend_secs: request.secs,
            redeem_by: now + policy.invite_ttl_secs,
            created_by: owner,
        });
        Ok(self.invites.last().expect("just pushed"))
    }

    /// A borrower presents an invite: their certificate gets a grant for the lent time, and
    /// the invite is spent.
    pub fn redeem(
        &mut self,
        token: &Secret,
        fingerprint: Fingerprint,
        id: String,
        now: Time,
    ) -> Result<&Grant, GrantError> {
        // Check every invite (no early exit), so timing does not tell how many exist.
        let index = self
            .invites
            .iter()
            .enumerate()
            .fold(None, |found, (i, inv)| {
                if inv.token_hash.matches(token) {
                    Some(i)
                } else {
                    found
                }
            });
        let Some(index) = index else {
            return Err(GrantError::BadInvite);
        };
        if self.invites[index].redeem_by <= now {
            self.invites.remove(index);
            return Err(GrantError::BadInvite);
        }
        if self.grant_of(&fingerprint, now).is_some() {
            return Err(GrantError::AlreadyGranted);
        }
        let invite = self.invites.remove(index);
        self.grants.retain(|g| g.fingerprint != fingerprint);
        self.grants.push(Grant {
            id,
            fingerprint,
            role: Role::Borrower,
            scope: invite.scope,
            granted_at: now,
            expires_at: Some(now + invite.lend_secs),
            last_seen: Some(now),
        });
        Ok(self.grants.last().expect("just pushed"))
    }

    /// Removes a grant (the owner from a browser, or anyone with shell access via the CLI).
    pub fn revoke(&mut self, id: &str) -> Result<Grant, GrantError> {
        let index = self
            .grants
            .iter()
            .position(|g| g.id == id)
            .ok_or_else(|| GrantError::UnknownGrant(id.into()))?;
        Ok(self.grants.remove(index))
    }

    /// Whether grant `id` is the only owner grant.
    pub fn is_last_owner(&self, id: &str) -> bool {
        let owners: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|g| g.role == Role::Owner)
            .collect();
        owners.len() == 1 && owners[0].id == id
    }

    /// Back to unclaimed with a new claim secret: every grant and invite is dropped.
    pub fn reset_owner(&mut self, claim: SecretHash) -> Vec<Grant> {
        self.claim = Some(claim);
        self.invites.clear();
        std::mem::take(&mut self.grants)
    }

    /// Moves `old`'s grant to a renewed certificate, `new` (browsers cap certificates at a
    /// year; the viewer renews before expiry). Called once `new` has proven its key
    /// (`renewal::Renewals`).
    pub fn renew(
        &mut self,
        old: &Fingerprint,
        new: Fingerprint,
        now: Time,
    ) -> Result<&Grant, GrantError> {
        if self.grant_of(&new, now).is_some() {
            return Err(GrantError::AlreadyGranted);
        }
        let grant = self
            .grants
            .iter_mut()
            .find(|g| g.fingerprint == *old && g.is_live(now))
            .ok_or_else(|| GrantError::UnknownGrant(old.short()))?;
        grant.fingerprint = new;
        Ok(grant)
    }

    pub fn touch(&mut self, fingerprint: &Fingerprint, now: Time) {
        if let Some(g) = self
            .grants
            .iter_mut()
            .find(|g| g.fingerprint == *fingerprint)
        {
            g.last_seen = Some(now);
        }
    }

    /// Drops expired grants and invites, returning the grants that lapsed.
    pub fn expire(&mut self, now: Time) -> Vec<Grant> {
        self.invites.retain(|i| i.redeem_by > now);
        let (live, lapsed) = std::mem::take(&mut self.grants)
            .into_iter()
            .partition(|g| g.is_live(now));
        self.grants = live;
        lapsed
    }

    /// When the next grant lapses, so the device can cut its sessions on time.
    pub fn next_expiry(&self) -> Option<Time> {
        self.grants.iter().filter_map(|g| g.expires_at).min()
    }

    fn owner(&self, fingerprint: &Fingerprint, now: Time) -> Result<&Grant, GrantError> {
        self.grant_of(fingerprint, now)
            .filter(|g| g.role == Role::Owner)
            .ok_or(GrantError::NotOwner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of_der(&[n])
    }

    fn req(scope: Scope, secs: u64) -> LendRequest {
        LendRequest {
            invite_id: format!("inv-{secs}"),
            scope,
            secs,
        }
    }

    const POLICY: LendPolicy = LendPolicy {
        min_secs: 10,
        max_secs: 100,
        invite_ttl_secs: 50,
    };

    /// A device claimed by fp(1) at t=1000.
    fn claimed() -> Grants {
        let secret = Secret::from_random([1; 16]);
        let mut g = Grants::unclaimed(secret.hash());
        g.claim(&secret, fp(1), "owner".into(), 1000).unwrap();
        g
    }

    fn lend(g: &mut Grants, token: &Secret, scope: Scope, secs: u64, now: Time) {
        g.lend(&fp(1), token, req(scope, secs), POLICY, now)
            .unwrap();
    }

    #[test]
    fn the_first_claim_wins_and_spends_the_secret() {
        let secret = Secret::from_random([1; 16]);
        let mut g = Grants::unclaimed(secret.hash());
        assert!(!g.is_claimed());
        assert_eq!(
            g.claim(&Secret::presented("nope"), fp(9), "x".into(), 1)
                .unwrap_err(),
            GrantError::BadClaimSecret
        );
        g.claim(&secret, fp(1), "owner".into(), 1).unwrap();
        assert!(g.is_claimed());
        assert_eq!(
            g.check(&fp(1), 5),
            Some(Access {
                role: Role::Owner,
                scope: Scope::ViewUi,
                expires_at: None
            })
        );
        assert_eq!(
            g.claim(&secret, fp(2), "again".into(), 2).unwrap_err(),
            GrantError::AlreadyClaimed
        );
        assert_eq!(g.check(&fp(2), 5), None);
    }

    #[test]
    fn a_borrower_watches_until_the_lent_time_is_over() {
        let mut g = claimed();
        let token = Secret::from_random([2; 16]);
        lend(&mut g, &token, Scope::View, 60, 1000);
        g.redeem(&token, fp(2), "b".into(), 1010).unwrap();
        let access = g.check(&fp(2), 1010).unwrap();
        assert_eq!(
            (access.role, access.scope, access.expires_at),
            (Role::Borrower, Scope::View, Some(1070))
        );
        assert!(g.check(&fp(2), 1069).is_some(), "one second before expiry");
        assert!(
            g.check(&fp(2), 1070).is_none(),
            "expired exactly at expires_at"
        );
        assert_eq!(g.next_expiry(), Some(1070));
        let lapsed = g.expire(1070);
        assert_eq!(lapsed.len(), 1);
        assert_eq!(g.grants.len(), 1, "the owner stays");
    }

    #[test]
    fn an_invite_is_single_use_and_expires() {
        let mut g = claimed();
        let token = Secret::from_random([2; 16]);
        lend(&mut g, &token, Scope::View, 60, 1000);
        g.redeem(&token, fp(2), "b".into(), 1001).unwrap();
        assert_eq!(
            g.redeem(&token, fp(3), "c".into(), 1002).unwrap_err(),
            GrantError::BadInvite,
            "replayed"
        );
        let late = Secret::from_random([3; 16]);
        lend(&mut g, &late, Scope::View, 60, 1000);
        assert_eq!(
            g.redeem(&late, fp(4), "d".into(), 1050).unwrap_err(),
            GrantError::BadInvite,
            "redeem_by passed"
        );
        assert!(
            g.invites.is_empty(),
            "an expired invite is dropped when tried"
        );
    }

    #[test]
    fn only_a_live_owner_lends_within_the_bounds() {
        let mut g = claimed();
        let token = Secret::generate();
        assert_eq!(
            g.lend(&fp(2), &token, req(Scope::View, 60), POLICY, 1000)
                .unwrap_err(),
            GrantError::NotOwner
        );
        assert_eq!(
            g.lend(&fp(1), &token, req(Scope::View, 5), POLICY, 1000)
                .unwrap_err(),
            GrantError::BadDuration { min: 10, max: 100 }
        );
        assert!(
            g.lend(&fp(1), &token, req(Scope::View, 101), POLICY, 1000)
                .is_err()
        );
        // Borrowers cannot lend onward.
        lend(&mut g, &token, Scope::ViewUi, 60, 1000);
        g.redeem(&token, fp(2), "b".into(), 1000).unwrap();
        let onward = Secret::generate();
        assert_eq!(
            g.lend(&fp(2), &onward, req(Scope::View, 60), POLICY, 1001)
                .unwrap_err(),
            GrantError::NotOwner
        );
    }

    #[test]
    fn scopes_nest() {
        assert!(Scope::ViewUi.allows(Scope::View) && Scope::ViewUi.allows(Scope::ViewUi));
        assert!(Scope::View.allows(Scope::View) && !Scope::View.allows(Scope::ViewUi));
        assert_eq!(Scope::parse("view+ui"), Some(Scope::ViewUi));
        assert_eq!(
            serde_json::to_string(&Scope::ViewUi).unwrap(),
            "\"view+ui\""
        );
    }

    #[test]
    fn revoked_grants_are_gone() {
        let mut g = claimed();
        let token = Secret::generate();
        lend(&mut g, &token, Scope::View, 60, 1000);
        let id = g
            .redeem(&token, fp(2), "b".into(), 1000)
            .unwrap()
            .id
            .clone();
        assert_eq!(g.revoke(&id).unwrap().fingerprint, fp(2));
        assert!(g.check(&fp(2), 1001).is_none());
        assert_eq!(g.revoke(&id).unwrap_err(), GrantError::UnknownGrant(id));
    }

    #[test]
    fn reset_owner_returns_to_unclaimed() {
        let mut g = claimed();
        let fresh = Secret::generate();
        assert_eq!(g.reset_owner(fresh.hash()).len(), 1);
        assert!(!g.is_claimed() && g.check(&fp(1), 1001).is_none());
        g.claim(&fresh, fp(5), "new".into(), 1002).unwrap();
    }

    #[test]
    fn renewal_moves_a_live_grant_to_the_new_certificate() {
        let mut g = claimed();
        g.renew(&fp(1), fp(7), 1001).unwrap();
        assert!(g.check(&fp(1), 1002).is_none());
        assert_eq!(g.check(&fp(7), 1002).unwrap().role, Role::Owner);
        assert!(
            g.renew(&fp(1), fp(8), 1003).is_err(),
            "the old certificate no longer has a grant"
        );
    }

    #[test]
    fn round_trips_through_json() {
        let mut g = claimed();
        let token = Secret::generate();
        lend(&mut g, &token, Scope::View, 60, 1000);
        let text = serde_json::to_string(&g).unwrap();
        assert!(!text.contains(token.expose()), "only hashes are stored");
        let back: Grants = serde_json::from_str(&text).unwrap();
        assert_eq!(back.grants, g.grants);
        assert!(back.invites[0].token_hash.matches(&token));
    }
}

//! One-time secrets (claim secrets, lend invites): random, shown once, stored only as hashes,
//! compared in constant time, and never printed by `Debug` or `Display`.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in a secret: 128 bits, the floor the design asks for.
const SECRET_BYTES: usize = 16;

/// A secret as it travels in a link. Only [`Secret::expose`] reveals it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// A new secret from `bytes` of randomness (the caller owns the random source).
    pub fn from_random(bytes: [u8; SECRET_BYTES]) -> Self {
        Self(
            data_encoding::BASE32_NOPAD
                .encode(&bytes)
                .to_ascii_lowercase(),
        )
    }

    pub fn generate() -> Self {
        Self::from_random(rand::random())
    }

    /// A secret presented by a peer. Anything is accepted; it simply will not match.
    pub fn presented(text: &str) -> Self {
        Self(text.chars().take(128).collect())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> SecretHash {
        SecretHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What is stored: the SHA-256 of a secret. Knowing it does not let anyone claim or borrow.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Constant-time: how many leading bytes match must not leak through timing.
    pub fn matches(&self, secret: &Secret) -> bool {
        self.0.ct_eq(&secret.hash().0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl From<SecretHash> for String {
    fn from(h: SecretHash) -> String {
        data_encoding::HEXLOWER.encode(&h.0)
    }
}

/// A stored secret hash that is not one (a hand-edited or damaged `grants.json`).
#[derive(Debug, thiserror::Error)]
pub enum SecretHashError {
    #[error("a secret hash is lowercase hex: {0}")]
    NotHex(#[from] data_encoding::DecodeError),
    #[error("a secret hash is 32 bytes, not {0}")]
    Length(usize),
}

impl TryFrom<String> for SecretHash {
    type Error = SecretHashError;
    fn try_from(text: String) -> Result<Self, SecretHashError> {
        let bytes = data_encoding::HEXLOWER.decode(text.as_bytes())?;
        let len = bytes.len();
        Ok(Self(
            bytes.try_into().map_err(|_| SecretHashError::Length(len))?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_secret_matches_its_hash() {
        let secret = Secret::from_random([7; SECRET_BYTES]);
        assert_eq!(secret.expose().len(), 26);
        let hash = secret.hash();
        assert!(hash.matches(&Secret::presented(secret.expose())));
        assert!(!hash.matches(&Secret::presented("guess")));
        assert!(!hash.matches(&Secret::generate()));
    }

    #[test]
    fn never_prints_itself() {
        let secret = Secret::generate();
        let shown = format!("{secret:?} {secret} {:?}", secret.hash());
        assert!(!shown.contains(secret.expose()), "{shown}");
    }

    #[test]
    fn hashes_round_trip_as_hex() {
        let hash = Secret::generate().hash();
        let text: String = hash.into();
        let back = SecretHash::try_from(text).unwrap();
        assert_eq!(back.0, hash.0);
    }
}

//! The device id: what links, the rendezvous and the UI origin name a device by.

use serde::{Deserialize, Serialize};

/// A device id: lowercase base32 of the first 10 bytes of the certificate's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub const LEN: usize = 16;

    pub fn parse(s: &str) -> Result<Self, BadDeviceId> {
        let ok = s.len() == Self::LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadDeviceId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a device id is 16 characters of lowercase base32 (a-z, 2-7)")]
pub struct BadDeviceId;

impl TryFrom<String> for DeviceId {
    type Error = BadDeviceId;
    fn try_from(s: String) -> Result<Self, BadDeviceId> {
        Self::parse(&s)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

//! The device's identity: a self-signed ECDSA P-256 certificate kept in the state directory,
//! its SHA-256 fingerprint, and the device id derived from it. Nothing here is issued by
//! anyone: trust is pinned at the edge (see docs/security.md).

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::persist;

mod device_id;
pub use device_id::{BadDeviceId, DeviceId};

pub const CERT_FILE: &str = "device-cert.pem";
pub const KEY_FILE: &str = "device-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a PEM certificate")]
    BadPem { path: PathBuf },
    #[error(
        "{path} exists but {missing} does not; restore it or remove both to make a new identity"
    )]
    HalfPresent { path: PathBuf, missing: PathBuf },
    #[error("cannot generate the device certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot sign with the device key: {0}")]
    Sign(rcgen::Error),
}

/// A private key in PEM. Never printed: `Debug` and `Display` redact it.
#[derive(Clone)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

impl fmt::Display for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted private key>")
    }
}

/// A SHA-256 certificate fingerprint, as raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The raw digest, from an SDP parser that has already decoded the hex.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// Parses the SDP form (`AB:CD:...`, either case), as browsers and webrtcbin print it.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: Vec<u8> = text
            .trim()
            .split(':')
            .map(|h| {
                if h.len() == 2 {
                    u8::from_str_radix(h, 16).ok()
                } else {
                    None
                }
            })
            .collect::<Option<_>>()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The first 4 bytes, for people comparing two screens (`AB:CD:EF:01`).
    pub fn short(&self) -> String {
        self.to_sdp()[..11].to_string()
    }

    /// The SDP form: `AB:CD:...` (RFC 8122).
    pub fn to_sdp(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The device id: lowercase base32 of the first 10 bytes (80 bits).
    pub fn device_id(&self) -> DeviceId {
        let text = data_encoding::BASE32_NOPAD
            .encode(&self.0[..10])
            .to_ascii_lowercase();
        DeviceId::parse(&text).expect("10 bytes encode to 16 base32 characters")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_sdp())
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_sdp())
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom("not a SHA-256 fingerprint (AB:CD:... 32 bytes)")
        })
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_sdp())
    }
}

#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub cert_pem: String,
    pub key_pem: PrivateKeyPem,
    pub fingerprint: Fingerprint,
    pub device_id: DeviceId,
}

impl DeviceIdentity {
    /// Signs `message` with the device's key (ECDSA P-256, SHA-256; the signature in ASN.1
    /// DER): the proof that this device holds the key behind its certificate.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IdentityError> {
        use rcgen::SigningKey as _;
        let key = rcgen::KeyPair::from_pem(self.key_pem.expose()).map_err(IdentityError::Sign)?;
        key.sign(message).map_err(IdentityError::Sign)
    }

    /// The certificate's DER bytes.
    pub fn cert_der(&self) -> Option<Vec<u8>> {
        pem_der(&self.cert_pem)
    }

    /// Loads the identity from `state_dir`, creating it on first start.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, IdentityError> {
        let cert_path = state_dir.join(CERT_FILE);
        let key_path = state_dir.join(KEY_FILE);
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Self::load(&cert_path, &key_path),
            (false, false) => Self::create(state_dir, &cert_path, &key_path),
            (true, false) => Err(IdentityError::HalfPresent {
                path: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(IdentityError::HalfPresent {
                path: key_path,
                missing: cert_path,
            }),
        }
    }

    fn load(cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let cert_pem = read(cert_path)?;
        let key_pem = PrivateKeyPem(read(key_path)?);
        let der = pem_der(&cert_pem).ok_or_else(|| IdentityError::BadPem {
            path: cert_path.to_owned(),
        })?;
        let fingerprint = Fingerprint::of_der(&der);
        Ok(Self {
            cert_pem,
            key_pem,
            device_id: fingerprint.device_id(),
            fingerprint,
        })
    }

    fn create(state_dir: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let (cert_pem, key_pem, fingerprint) = generate_certificate("pipe device")?;
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| IdentityError::Write { path, source }
        };
        persist::ensure_dir(state_dir).map_err(write_err(state_dir))?;
        // The key first: a crash between the two writes leaves a state `load_or_create` names.
        persist::write_atomic(key_path, key_pem.expose().as_bytes(), 0o600)
            .map_err(write_err(key_path))?;
        persist::write_atomic(cert_path, cert_pem.as_bytes(), 0o644)
            .map_err(write_err(cert_path))?;
        Ok(Self {
            cert_pem,
            key_pem,
            device_id: fingerprint.device_id(),
            fingerprint,
        })
    }
}

/// A new self-signed ECDSA P-256 certificate: its PEM, its key's PEM and its fingerprint.
pub fn generate_certificate(
    common_name: &str,
) -> Result<(String, PrivateKeyPem, Fingerprint), IdentityError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec![common_name.replace(' ', "-")])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    // Fingerprints are pinned, so expiry protects nothing; browsers only need a valid date.
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2125, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok((
        cert.pem(),
        PrivateKeyPem(key.serialize_pem()),
        Fingerprint::of_der(cert.der()),
    ))
}

/// The DER bytes of the first PEM block in `pem`.
pub fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    data_encoding::BASE64
        .decode(body.trim().as_bytes())
        .ok()
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn is_created_once_and_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = DeviceIdentity::load_or_create(dir.path()).unwrap();
        let again = DeviceIdentity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.device_id, again.device_id);
        assert_eq!(first.fingerprint, again.fingerprint);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(first.fingerprint.to_sdp().len(), 32 * 3 - 1);
    }

    #[test]
    fn fingerprints_round_trip_through_text() {
        let fp = Fingerprint::of_der(b"certificate");
        assert_eq!(Fingerprint::parse(&fp.to_sdp()), Some(fp));
        assert_eq!(Fingerprint::parse(&fp.to_sdp().to_lowercase()), Some(fp));
        assert_eq!(Fingerprint::parse("AB:CD"), None);
        assert_eq!(fp.short().len(), 11);
    }

    #[test]
    fn never_prints_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let id = DeviceIdentity::load_or_create(dir.path()).unwrap();
        let shown = format!("{id:?} {}", id.key_pem);
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }

    #[test]
    fn a_missing_half_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        DeviceIdentity::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
        let err = DeviceIdentity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::HalfPresent { .. }), "{err}");
    }
}

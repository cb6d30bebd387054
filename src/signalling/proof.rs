//! Registration proves possession of the device's key: the rendezvous sends a nonce in
//! `welcome`, the device signs purpose + rendezvous authority + nonce + device id + counter
//! with its identity key and sends its certificate; the rendezvous checks the signature
//! against the certificate's key and that the device id derives from the certificate's
//! fingerprint. Nobody can register a device id without the device's private key (a squatter
//! registered 52 times in 20 s before this), and a proof made for one rendezvous (authority)
//! and connection (nonce) is worthless anywhere else. The counter orders a device's own
//! registrations (the multi-node rendezvous uses it for takeovers).

use serde::{Deserialize, Serialize};

use crate::identity::Fingerprint;

use super::protocol::DeviceId;

/// What the signature covers, besides the values: a signature for anything else (a DTLS
/// handshake, a future message type) is never a registration.
const PURPOSE: &str = "pipe-register-v1";
/// A P-256 certificate is about 400 bytes; anything much larger is not ours.
const MAX_CERTIFICATE_BYTES: usize = 4096;
/// An ASN.1 ECDSA P-256 signature is at most 72 bytes.
const MAX_SIGNATURE_BYTES: usize = 128;

/// The proof in a `register` message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterProof {
    /// The device certificate, DER in standard base64.
    pub certificate: String,
    /// Increases with every registration of this device (its clock in milliseconds).
    pub counter: u64,
    /// ECDSA P-256 / SHA-256 over `signed_message(...)`, ASN.1 DER in standard base64.
    pub signature: String,
}

impl std::fmt::Debug for RegisterProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterProof")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

/// The bytes the device signs. `authority` is the rendezvous's `host[:port]` as the device
/// dialled it (default ports left out, as URLs print them).
pub fn signed_message(authority: &str, nonce: &str, device_id: &DeviceId, counter: u64) -> Vec<u8> {
    format!("{PURPOSE}\n{authority}\n{nonce}\n{device_id}\n{counter}").into_bytes()
}

/// Why a registration proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("register needs a proof of the device key (pipe is older than this rendezvous?)")]
    Missing,
    #[error("the certificate is not base64 DER of a usable size")]
    BadCertificate,
    #[error("the device id is not the one the certificate's fingerprint gives")]
    WrongDeviceId,
    #[error("the certificate's key is not an ECDSA P-256 key")]
    UnsupportedKey,
    #[error("the signature does not verify for this rendezvous and connection")]
    BadSignature,
}

/// Checks `proof` for `device_id` on a connection that was sent `nonce`, at a rendezvous
/// reached as `authority`.
pub fn verify(
    proof: &RegisterProof,
    authority: &str,
    nonce: &str,
    device_id: &DeviceId,
) -> Result<(), ProofError> {
    if proof.certificate.len() > MAX_CERTIFICATE_BYTES * 4 / 3 + 4
        || proof.signature.len() > MAX_SIGNATURE_BYTES * 4 / 3 + 4
    {
        return Err(ProofError::BadCertificate);
    }
    let der = data_encoding::BASE64
        .decode(proof.certificate.as_bytes())
        .map_err(|_| ProofError::BadCertificate)?;
    if der.is_empty() || der.len() > MAX_CERTIFICATE_BYTES {
        return Err(ProofError::BadCertificate);
    }
    if Fingerprint::of_der(&der).device_id() != *device_id {
        return Err(ProofError::WrongDeviceId);
    }
    let (_, certificate) =
        x509_parser::parse_x509_certificate(&der).map_err(|_| ProofError::BadCertificate)?;
    let spki = certificate.public_key();
    let p256 = spki.algorithm.algorithm == x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        && spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .is_some_and(|curve| curve == x509_parser::oid_registry::OID_EC_P256);
    if !p256 {
        return Err(ProofError::UnsupportedKey);
    }
    let signature = data_encoding::BASE64
        .decode(proof.signature.as_bytes())
        .map_err(|_| ProofError::BadSignature)?;
    let message = signed_message(authority, nonce, device_id, proof.counter);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        spki.subject_public_key.data.as_ref(),
    )
    .verify(&message, &signature)
    .map_err(|_| ProofError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::DeviceIdentity;

    fn identity() -> (tempfile::TempDir, DeviceIdentity) {
        let dir = tempfile::tempdir().unwrap();
        let id = DeviceIdentity::load_or_create(dir.path()).unwrap();
        (dir, id)
    }

    fn prove(id: &DeviceIdentity, authority: &str, nonce: &str, counter: u64) -> RegisterProof {
        let message = signed_message(authority, nonce, &id.device_id, counter);
        RegisterProof {
            certificate: data_encoding::BASE64.encode(&id.cert_der().unwrap()),
            counter,
            signature: data_encoding::BASE64.encode(&id.sign(&message).unwrap()),
        }
    }

    #[test]
    fn a_device_proves_its_id_and_nothing_else_passes() {
        let (_d, device) = identity();
        let (_s, squatter) = identity();
        let proof = prove(&device, "relay.example", "n1", 7);
        assert_eq!(
            verify(&proof, "relay.example", "n1", &device.device_id),
            Ok(())
        );
        // Another connection, another rendezvous, another counter, another id.
        assert_eq!(
            verify(&proof, "relay.example", "n2", &device.device_id),
            Err(ProofError::BadSignature)
        );
        assert_eq!(
            verify(&proof, "evil.example", "n1", &device.device_id),
            Err(ProofError::BadSignature)
        );
        let mut later = proof.clone();
        later.counter = 8;
        assert_eq!(
            verify(&later, "relay.example", "n1", &device.device_id),
            Err(ProofError::BadSignature)
        );
        assert_eq!(
            verify(&proof, "relay.example", "n1", &squatter.device_id),
            Err(ProofError::WrongDeviceId)
        );
        // The squatter's own key and certificate cannot claim the device's id...
        let theirs = prove(&squatter, "relay.example", "n1", 7);
        assert_eq!(
            verify(&theirs, "relay.example", "n1", &device.device_id),
            Err(ProofError::WrongDeviceId)
        );
        // ...nor can the device's certificate with the squatter's signature.
        let mixed = RegisterProof {
            signature: theirs.signature.clone(),
            ..proof.clone()
        };
        assert_eq!(
            verify(&mixed, "relay.example", "n1", &device.device_id),
            Err(ProofError::BadSignature)
        );
    }

    #[test]
    fn hostile_proofs_are_refused_without_panics() {
        let (_d, device) = identity();
        let good = prove(&device, "a", "n", 1);
        for (certificate, signature) in [
            ("".to_string(), good.signature.clone()),
            ("not base64!".to_string(), good.signature.clone()),
            ("A".repeat(100_000), good.signature.clone()),
            (
                data_encoding::BASE64.encode(b"garbage"),
                good.signature.clone(),
            ),
            (good.certificate.clone(), "".to_string()),
            (good.certificate.clone(), "%%%".to_string()),
            (good.certificate.clone(), "A".repeat(10_000)),
        ] {
            let proof = RegisterProof {
                certificate,
                counter: 1,
                signature,
            };
            assert!(verify(&proof, "a", "n", &device.device_id).is_err());
        }
        let shown = format!("{good:?}");
        assert!(!shown.contains(&good.signature), "{shown}");
    }
}

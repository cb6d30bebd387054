//! The links the device hands out (viewer, claim, borrow) and their QR codes. Secrets travel
//! only in the URL fragment, which browsers never send to any server.

use qrcode::QrCode;
use qrcode::render::{svg, unicode};

use super::secret::Secret;
use crate::identity::DeviceId;
use crate::identity::Fingerprint;

/// Links for one canonical origin: a browser's identity is per origin, so the device always
/// points people at the same one.
#[derive(Debug, Clone)]
pub struct Links {
    origin: String,
    device_id: DeviceId,
    fingerprint: Fingerprint,
    /// Whether the origin is a configured public URL (reachable beyond the LAN).
    public: bool,
}

impl Links {
    pub fn new(origin: &str, device_id: DeviceId, fingerprint: Fingerprint, public: bool) -> Self {
        Self {
            origin: origin.trim_end_matches('/').to_owned(),
            device_id,
            fingerprint,
            public,
        }
    }

    pub fn is_public(&self) -> bool {
        self.public
    }

    /// The device and its pinned fingerprint (hex, no colons, to keep QR codes small).
    fn base(&self) -> String {
        let fp = self
            .fingerprint
            .to_sdp()
            .replace(':', "")
            .to_ascii_lowercase();
        format!("{}/#device={}&fp={fp}", self.origin, self.device_id)
    }

    pub fn viewer(&self) -> String {
        self.base()
    }

    pub fn claim(&self, secret: &Secret) -> String {
        format!("{}&claim={}", self.base(), secret.expose())
    }

    pub fn borrow(&self, token: &Secret) -> String {
        format!("{}&invite={}", self.base(), token.expose())
    }
}

/// The link as an SVG QR code, rendered on the device so the browser needs no QR library.
pub fn qr_svg(text: &str) -> String {
    match QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

/// The link as a QR code of half-block characters, for a terminal or the journal.
pub fn qr_terminal(text: &str) -> String {
    match QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<unicode::Dense1x2>()
            .dark_color(unicode::Dense1x2::Light)
            .light_color(unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_device_fingerprint_and_secret_in_the_fragment() {
        let fp = Fingerprint::of_der(b"device");
        let links = Links::new("http://127.0.0.1:8080/", fp.device_id(), fp, false);
        let secret = Secret::from_random([5; 16]);
        let claim = links.claim(&secret);
        let (before, fragment) = claim.split_once('#').unwrap();
        assert_eq!(before, "http://127.0.0.1:8080/");
        assert!(fragment.starts_with(&format!("device={}&fp=", fp.device_id())));
        assert!(fragment.ends_with(&format!("&claim={}", secret.expose())));
        assert_eq!(
            fragment
                .split("&fp=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .len(),
            64
        );
    }

    #[test]
    fn qr_codes_render() {
        assert!(qr_svg("http://127.0.0.1:8080/#device=x").starts_with("<?xml"));
        assert!(
            qr_terminal("http://127.0.0.1:8080/#device=x")
                .lines()
                .count()
                > 10
        );
    }
}

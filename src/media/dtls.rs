//! Certificates on webrtcbin's DTLS transports.
//!
//! Two GStreamer 1.22 facts shape this module (both still so in current GStreamer):
//! - webrtcbin has no `on-new-transport` signal; its `dtlssrtpdec` elements appear through
//!   `deep-element-added`, and a certificate is set on each through its `pem` property
//!   (certificate and key in one PEM string). webrtcbin then computes the SDP `a=fingerprint`
//!   by base64-decoding *every* line of that string, key included, so the advertised
//!   fingerprint is wrong: the offer's fingerprint lines are rewritten with the real one
//!   (`sdp::set_fingerprint`).
//! - GStreamer's DTLS accepts any peer certificate and never compares it with the remote
//!   description. The decoder's `peer-pem` is the certificate the peer actually used: the
//!   session checks it against the remote SDP and the grants before any media flows.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

use crate::identity::{self, Fingerprint};

/// The DTLS decoders of one pipeline, to read the peer's certificate from.
#[derive(Clone, Default)]
pub struct Dtls {
    decoders: Arc<Mutex<Vec<gst::Element>>>,
}

impl Dtls {
    /// Watches `pipeline` for DTLS decoders; sets `pem` (certificate + key) on each if given,
    /// and calls `on_peer_certificate` (on a GStreamer thread) when a peer certificate arrives.
    pub fn install(
        pipeline: &gst::Pipeline,
        pem: Option<String>,
        on_peer_certificate: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let dtls = Self::default();
        let decoders = dtls.decoders.clone();
        let on_peer_certificate = Arc::new(on_peer_certificate);
        pipeline.connect_deep_element_added(move |_, _, element| {
            if element.factory().is_none_or(|f| f.name() != "dtlssrtpdec") {
                return;
            }
            if let Some(pem) = &pem {
                element.set_property("pem", pem);
            }
            let notify = on_peer_certificate.clone();
            element.connect_notify(Some("peer-pem"), move |_, _| notify());
            decoders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(element.clone());
        });
        dtls
    }

    /// The fingerprint of the certificate the peer presented in the DTLS handshake. With
    /// max-bundle there is one transport; if there were several, all must agree.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        let decoders = self
            .decoders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut seen = None;
        for decoder in decoders {
            let Some(pem) = decoder.property::<Option<String>>("peer-pem") else {
                continue;
            };
            let fingerprint = Fingerprint::of_der(&identity::pem_der(&pem)?);
            if seen.is_some_and(|s| s != fingerprint) {
                return None;
            }
            seen = Some(fingerprint);
        }
        seen
    }
}

//! The viewer's answer and ICE candidates, checked in pure Rust before webrtcbin sees them.
//!
//! webrtcbin 1.22 asserts (and aborts the whole device) on some answers a stranger can send:
//! m-sections in another order than the offer (`_get_final_direction`), a BUNDLE group led by
//! another section (`_connect_rtpfunnel`), duplicate session-level ICE credentials
//! (`_get_ice_credentials_from_sdp_media`). So every remote description is parsed with
//! `webrtc-sdp` (Firefox's parser for hostile input), checked against the offer this device
//! made, and webrtcbin is handed only an answer written here from the checked values; remote
//! candidates are rebuilt in one canonical form. Nothing the viewer wrote reaches webrtcbin
//! as text, and nothing it wrote is echoed in a refusal (the reasons are fixed strings).

use std::net::IpAddr;

use webrtc_sdp::address::Address;
use webrtc_sdp::attribute_type::{
    SdpAttribute, SdpAttributeCandidate, SdpAttributeCandidateTcpType as TcpType,
    SdpAttributeCandidateTransport as Transport, SdpAttributeCandidateType as CandidateType,
    SdpAttributeFingerprintHashType as Hash, SdpAttributeGroupSemantic, SdpAttributeSetup,
    SdpAttributeType,
};
use webrtc_sdp::media_type::{SdpFormatList, SdpMedia, SdpMediaValue, SdpProtocolValue};
use webrtc_sdp::{SdpSession, parse_sdp};

use crate::identity::Fingerprint;

mod candidates;
use candidates::canonical_candidate;
pub use candidates::{MAX_CANDIDATES, trickled_candidate};

/// webrtc-sdp parses in O(lines²): 512 lines take 1-2 ms, 1 MiB tens of seconds. Real
/// answers are 2-6 KiB and under 100 lines.
const MAX_SDP_BYTES: usize = 32 * 1024;
const MAX_SDP_LINES: usize = 512;
/// Why a remote description or candidate was refused: a fixed text, never the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub &'static str);

fn no<T>(why: &'static str) -> Result<T, Refused> {
    Err(Refused(why))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
    Data,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rtpmap {
    pt: u8,
    codec: String,
    clock: u32,
    channels: Option<u32>,
}

#[derive(Debug, Clone)]
struct OfferSection {
    kind: Kind,
    mid: String,
    rtpmaps: Vec<Rtpmap>,
    extmaps: Vec<(u16, String)>,
    feedback: Vec<(String, String)>,
}

/// What the device offered, as far as an answer is checked against it.
#[derive(Debug, Clone)]
pub struct Offer {
    sections: Vec<OfferSection>,
    bundle: Vec<String>,
}

#[derive(Debug, Clone)]
struct AnswerSection {
    kind: Kind,
    mid: String,
    direction: &'static str,
    /// Answered payload types with the offer's rtpmap, and RTX's `apt`.
    codecs: Vec<(Rtpmap, Option<u8>)>,
    feedback: Vec<(String, String)>,
    extmaps: Vec<(u16, String)>,
    rtcp_rsize: bool,
    /// `sctp-port` and `max-message-size` of the data section.
    sctp: Option<(u16, u64)>,
}

/// A checked answer: only typed values that passed, ready to be written for webrtcbin.
#[derive(Debug, Clone)]
pub struct Answer {
    session_id: u64,
    sections: Vec<AnswerSection>,
    ufrag: String,
    pwd: String,
    fingerprint: Fingerprint,
    setup: &'static str,
    /// Canonical `candidate:...` lines from the answer itself.
    candidates: Vec<String>,
}

fn kind_of(m: &SdpMedia) -> Result<Kind, Refused> {
    match (m.get_type(), m.get_proto(), m.get_formats()) {
        (SdpMediaValue::Audio, SdpProtocolValue::UdpTlsRtpSavpf, _) => Ok(Kind::Audio),
        (SdpMediaValue::Video, SdpProtocolValue::UdpTlsRtpSavpf, _) => Ok(Kind::Video),
        (SdpMediaValue::Application, SdpProtocolValue::UdpDtlsSctp, SdpFormatList::Strings(f))
            if f.len() == 1 && f[0] == "webrtc-datachannel" =>
        {
            Ok(Kind::Data)
        }
        _ => no("an m-section of a kind or transport the device does not offer"),
    }
}

fn mid_of(m: &SdpMedia) -> Result<String, Refused> {
    let mut mids = m.get_attributes().iter().filter_map(|a| match a {
        SdpAttribute::Mid(mid) => Some(mid.clone()),
        _ => None,
    });
    match (mids.next(), mids.next()) {
        (Some(mid), None) => Ok(mid),
        _ => no("each m-section needs exactly one a=mid"),
    }
}

fn payload_types(m: &SdpMedia) -> Vec<u32> {
    match m.get_formats() {
        SdpFormatList::Integers(v) => v.clone(),
        _ => Vec::new(),
    }
}

fn rtpmaps(m: &SdpMedia) -> Vec<Rtpmap> {
    m.get_attributes()
        .iter()
        .filter_map(|a| match a {
            SdpAttribute::Rtpmap(r) => Some(Rtpmap {
                pt: r.payload_type,
                codec: r.codec_name.clone(),
                clock: r.frequency,
                channels: r.channels,
            }),
            _ => None,
        })
        .collect()
}

fn extmaps(m: &SdpMedia) -> Vec<(u16, String)> {
    m.get_attributes()
        .iter()
        .filter_map(|a| match a {
            SdpAttribute::Extmap(e) => Some((e.id, e.url.clone())),
            _ => None,
        })
        .collect()
}

/// `("96", "nack pli")`: compared with the offer's, never written from the answer's text.
fn feedback(m: &SdpMedia) -> Vec<(String, String)> {
    m.get_attributes()
        .iter()
        .filter_map(|a| match a {
            SdpAttribute::Rtcpfb(f) => f
                .to_string()
                .split_once(' ')
                .map(|(pt, rest)| (pt.to_owned(), rest.to_owned())),
            _ => None,
        })
        .collect()
}

fn bundle_group(s: &SdpSession) -> Result<Vec<String>, Refused> {
    let mut groups = s.attribute.iter().filter_map(|a| match a {
        SdpAttribute::Group(g) => Some(g),
        _ => None,
    });
    match (groups.next(), groups.next()) {
        (Some(g), None)
            if matches!(g.semantics, SdpAttributeGroupSemantic::Bundle) && !g.tags.is_empty() =>
        {
            Ok(g.tags.clone())
        }
        _ => no("the answer needs exactly one a=group:BUNDLE and no other group"),
    }
}

/// Before any parser: small, few lines, no control characters but CRLF/LF. (gst_sdp stops at
/// a NUL and cuts values at CR, where webrtc-sdp keeps them: no differentials.)
fn precheck(text: &str, max_bytes: usize) -> Result<(), Refused> {
    if text.len() > max_bytes {
        return no("too large");
    }
    if text.lines().count() > MAX_SDP_LINES {
        return no("too many lines");
    }
    let mut previous = '\0';
    for c in text.chars() {
        if previous == '\r' && c != '\n' {
            return no("a CR without LF");
        }
        if c.is_control() && c != '\r' && c != '\n' {
            return no("a control character");
        }
        previous = c;
    }
    Ok(())
}

/// ICE's `ice-char` (RFC 8839): ALPHA / DIGIT / "+" / "/".
fn ice_chars(s: &str, min: usize) -> bool {
    (min..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

impl Offer {
    /// The offer as webrtcbin wrote it (the device's own text, so a failure is a bug here).
    pub fn parse(text: &str) -> Result<Offer, Refused> {
        let s = parse_sdp(text, false).map_err(|_| Refused("the device's offer does not parse"))?;
        let sections = s
            .media
            .iter()
            .map(|m| {
                Ok(OfferSection {
                    kind: kind_of(m)?,
                    mid: mid_of(m)?,
                    rtpmaps: rtpmaps(m),
                    extmaps: extmaps(m),
                    feedback: feedback(m),
                })
            })
            .collect::<Result<_, Refused>>()?;
        Ok(Offer {
            sections,
            bundle: bundle_group(&s)?,
        })
    }

    /// How many m-sections (m-line indexes) the offer has.
    pub fn sections(&self) -> usize {
        self.sections.len()
    }
}

/// The one attribute of type `t` of a section, else the session's (RFC 8839/8842 allow both
/// levels); two in one section are refused.
fn one_of<'a>(
    s: &'a SdpSession,
    m: &'a SdpMedia,
    t: SdpAttributeType,
) -> Result<Option<&'a SdpAttribute>, Refused> {
    let found = m.get_attributes_of_type(t.clone());
    match found.as_slice() {
        [] => {
            let mut session = s
                .attribute
                .iter()
                .filter(|a| SdpAttributeType::from(*a) == t);
            match (session.next(), session.next()) {
                (one, None) => Ok(one),
                _ => no("a session-level attribute given twice"),
            }
        }
        [one] => Ok(Some(one)),
        _ => no("an m-section attribute given twice"),
    }
}

impl Answer {
    /// Checks `text`, the viewer's answer, against `offer`.
    pub fn check(offer: &Offer, text: &str) -> Result<Answer, Refused> {
        precheck(text, MAX_SDP_BYTES)?;
        let s = parse_sdp(text, false).map_err(|_| Refused("the answer is not valid SDP"))?;
        if s.media.len() != offer.sections.len() {
            return no("the answer does not have the offer's m-sections");
        }
        let bundle = bundle_group(&s)?;
        if bundle.first() != offer.bundle.first()
            || bundle.len() != offer.bundle.len()
            || !bundle.iter().all(|m| offer.bundle.contains(m))
        {
            return no("the answer's BUNDLE group is not the offer's");
        }
        let mut ice: Option<(String, String)> = None;
        let mut certificate: Option<Fingerprint> = None;
        let mut role: Option<&'static str> = None;
        let mut candidates = Vec::new();
        let mut sections = Vec::new();
        for (m, o) in s.media.iter().zip(&offer.sections) {
            if kind_of(m)? != o.kind || mid_of(m)? != o.mid {
                return no("the answer's m-sections are not the offer's, in its order");
            }
            if m.get_port() == 0 {
                return no("the answer rejects an m-section (port 0)");
            }
            // ICE credentials: the same in every section.
            let credentials = match (
                one_of(&s, m, SdpAttributeType::IceUfrag)?,
                one_of(&s, m, SdpAttributeType::IcePwd)?,
            ) {
                (Some(SdpAttribute::IceUfrag(u)), Some(SdpAttribute::IcePwd(p)))
                    if ice_chars(u, 4) && ice_chars(p, 22) =>
                {
                    (u.clone(), p.clone())
                }
                _ => return no("an m-section without a usable ice-ufrag and ice-pwd"),
            };
            if *ice.get_or_insert_with(|| credentials.clone()) != credentials {
                return no("ICE credentials differ between bundled m-sections");
            }
            // Exactly one SHA-256 fingerprint (section level, else session level); SHA-384
            // and SHA-512 ones beside it are allowed (aiortc sends all three) and unused.
            let section_fps: Vec<_> = m
                .get_attributes()
                .iter()
                .chain(
                    if m.get_attribute(SdpAttributeType::Fingerprint).is_some() {
                        [].iter()
                    } else {
                        s.attribute.iter()
                    },
                )
                .filter_map(|a| match a {
                    SdpAttribute::Fingerprint(f) => Some(f),
                    _ => None,
                })
                .collect();
            if section_fps
                .iter()
                .any(|f| !matches!(f.hash_algorithm, Hash::Sha256 | Hash::Sha384 | Hash::Sha512))
            {
                return no("a fingerprint hash other than sha-256, sha-384 or sha-512");
            }
            let mut sha256 = section_fps
                .iter()
                .filter(|f| f.hash_algorithm == Hash::Sha256);
            let fingerprint = match (sha256.next(), sha256.next()) {
                (Some(f), None) => Fingerprint::from_bytes(&f.fingerprint)
                    .ok_or(Refused("a sha-256 fingerprint that is not 32 bytes"))?,
                _ => return no("an m-section without exactly one sha-256 fingerprint"),
            };
            if *certificate.get_or_insert(fingerprint) != fingerprint {
                return no("m-sections announce different certificates");
            }
            // DTLS role: our actpass is answered by active or passive, the same everywhere.
            let setup = match one_of(&s, m, SdpAttributeType::Setup)? {
                Some(SdpAttribute::Setup(SdpAttributeSetup::Active)) => "active",
                Some(SdpAttribute::Setup(SdpAttributeSetup::Passive)) => "passive",
                _ => return no("an m-section whose setup is not active or passive"),
            };
            if *role.get_or_insert(setup) != setup {
                return no("the DTLS setup differs between m-sections");
            }
            sections.push(answer_section(m, o)?);
            for a in m.get_attributes() {
                if let SdpAttribute::Candidate(c) = a {
                    candidates.push(canonical_candidate(c)?);
                }
            }
            if candidates.len() > MAX_CANDIDATES {
                return no("too many candidates");
            }
        }
        candidates.sort();
        candidates.dedup();
        let ((ufrag, pwd), fingerprint, setup) = match (ice, certificate, role) {
            (Some(ice), Some(fp), Some(setup)) => (ice, fp, setup),
            _ => return no("the answer has no m-section"),
        };
        Ok(Answer {
            session_id: s.origin.session_id,
            sections,
            ufrag,
            pwd,
            fingerprint,
            setup,
            candidates,
        })
    }

    /// The certificate the viewer says it will use: the DTLS handshake must show it.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Remote candidates the answer carried (they count against `MAX_CANDIDATES`).
    pub fn candidate_count(&self) -> usize {
        self.candidates.len()
    }

    /// Whether the answer kept header extension `id` with `uri` in some m-section.
    pub fn kept_extension(&self, id: u8, uri: &str) -> bool {
        self.sections
            .iter()
            .flat_map(|s| &s.extmaps)
            .any(|(i, u)| *i == u16::from(id) && u == uri)
    }

    /// The only text webrtcbin sees: every value from the checked model, the mids and BUNDLE
    /// group as the offer wrote them, ICE and DTLS attributes at media level only.
    pub fn to_sdp(&self, offer: &Offer) -> String {
        let fp = self.fingerprint.to_sdp();
        let mut o = format!(
            "v=0\r\no=- {} 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE {}\r\n",
            self.session_id,
            offer.bundle.join(" ")
        );
        for (i, s) in self.sections.iter().enumerate() {
            match s.kind {
                Kind::Data => o.push_str("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"),
                kind => {
                    let pts: Vec<String> = s.codecs.iter().map(|(r, _)| r.pt.to_string()).collect();
                    let media = if kind == Kind::Audio {
                        "audio"
                    } else {
                        "video"
                    };
                    o.push_str(&format!(
                        "m={media} 9 UDP/TLS/RTP/SAVPF {}\r\n",
                        pts.join(" ")
                    ));
                }
            }
            o.push_str(&format!(
                "c=IN IP4 0.0.0.0\r\na=mid:{}\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n\
                 a=fingerprint:sha-256 {fp}\r\na=setup:{}\r\n",
                s.mid, self.ufrag, self.pwd, self.setup
            ));
            if !s.direction.is_empty() {
                o.push_str(&format!("a={}\r\na=rtcp-mux\r\n", s.direction));
            }
            if s.rtcp_rsize {
                o.push_str("a=rtcp-rsize\r\n");
            }
            for (id, uri) in &s.extmaps {
                o.push_str(&format!("a=extmap:{id} {uri}\r\n"));
            }
            for (r, apt) in &s.codecs {
                let channels = r.channels.map(|c| format!("/{c}")).unwrap_or_default();
                o.push_str(&format!(
                    "a=rtpmap:{} {}/{}{channels}\r\n",
                    r.pt, r.codec, r.clock
                ));
                if let Some(apt) = apt {
                    o.push_str(&format!("a=fmtp:{} apt={apt}\r\n", r.pt));
                }
            }
            for (pt, fb) in &s.feedback {
                o.push_str(&format!("a=rtcp-fb:{pt} {fb}\r\n"));
            }
            if let Some((port, max)) = s.sctp {
                o.push_str(&format!(
                    "a=sctp-port:{port}\r\na=max-message-size:{max}\r\n"
                ));
            }
            if i == 0 {
                for c in &self.candidates {
                    o.push_str(&format!("a={c}\r\n"));
                }
            }
        }
        o
    }
}

/// The per-section checks: direction, codecs, feedback, extensions, SCTP.
fn answer_section(m: &SdpMedia, o: &OfferSection) -> Result<AnswerSection, Refused> {
    let attrs = m.get_attributes();
    // Our sendonly is answered by recvonly or inactive (RFC 3264 §6.1); data has none.
    let directions: Vec<&'static str> = attrs
        .iter()
        .filter_map(|a| match a {
            SdpAttribute::Recvonly => Some("recvonly"),
            SdpAttribute::Inactive => Some("inactive"),
            SdpAttribute::Sendonly => Some("sendonly"),
            SdpAttribute::Sendrecv => Some("sendrecv"),
            _ => None,
        })
        .collect();
    let direction = match (o.kind, directions.as_slice()) {
        (Kind::Data, []) => "",
        (Kind::Audio | Kind::Video, [d @ ("recvonly" | "inactive")]) => d,
        _ => return no("an m-section whose direction does not answer the offer's"),
    };
    // Codecs: only offered payload types, each with the offer's rtpmap; RTX with an `apt`
    // naming an answered payload type (webrtcbin builds rtprtxsend's map from it). Other fmtp
    // only shapes what webrtcbin would receive, and the device only sends.
    let answered = payload_types(m);
    let their_rtpmaps = rtpmaps(m);
    let mut codecs = Vec::new();
    for pt in &answered {
        let Some(offered) = o.rtpmaps.iter().find(|r| u32::from(r.pt) == *pt) else {
            return no("a payload type the offer does not have");
        };
        let same = their_rtpmaps.iter().any(|r| {
            r.pt == offered.pt
                && r.codec.eq_ignore_ascii_case(&offered.codec)
                && r.clock == offered.clock
                && r.channels.unwrap_or(1) == offered.channels.unwrap_or(1)
        });
        if !same {
            return no("a payload type whose rtpmap is not the offer's");
        }
        let apt = if offered.codec.eq_ignore_ascii_case("rtx") {
            let apt = attrs.iter().find_map(|a| match a {
                SdpAttribute::Fmtp(f) if f.payload_type == offered.pt => {
                    f.parameters.rtx.as_ref().map(|r| r.apt)
                }
                _ => None,
            });
            match apt {
                Some(apt) if answered.contains(&u32::from(apt)) => Some(apt),
                _ => return no("an RTX payload type without the apt of an answered codec"),
            }
        } else {
            None
        };
        codecs.push((offered.clone(), apt));
    }
    if o.kind != Kind::Data && codecs.is_empty() {
        return no("an m-section that answers no codec");
    }
    let sctp = if o.kind == Kind::Data {
        let port = match m.get_attribute(SdpAttributeType::SctpPort) {
            Some(SdpAttribute::SctpPort(p)) if (1..=65535).contains(p) => *p as u16,
            _ => return no("a data m-section without a usable sctp-port"),
        };
        // webrtcbin reads it with atoi, and 0 means unlimited: clamp to 1 GiB.
        let max = match m.get_attribute(SdpAttributeType::MaxMessageSize) {
            Some(SdpAttribute::MaxMessageSize(n)) if *n > 0 => (*n).min(1 << 30),
            _ => 65536,
        };
        Some((port, max))
    } else {
        None
    };
    Ok(AnswerSection {
        kind: o.kind,
        mid: o.mid.clone(),
        direction,
        codecs,
        feedback: feedback(m)
            .into_iter()
            .filter(|f| o.feedback.contains(f))
            .collect(),
        extmaps: extmaps(m)
            .into_iter()
            .filter(|e| o.extmaps.contains(e))
            .collect(),
        rtcp_rsize: m.get_attribute(SdpAttributeType::RtcpRsize).is_some(),
        sctp,
    })
}

#[cfg(test)]
mod tests;

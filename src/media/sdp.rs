//! Pure rewrites of the SDP the device sends, and of the ICE candidates it trickles.

use std::net::IpAddr;

use crate::identity::Fingerprint;

/// Signals H.264 the way browsers expect. x264 marks constrained baseline with
/// `constraint_set1` only (`42c0xx`), while browsers and the WebRTC specs name it `42e0xx`
/// (sets 0, 1 and 2). Both mean the same profile; say `42e0` and keep the level. Also makes
/// sure `packetization-mode=1` is there.
pub fn normalize_h264_fmtp(sdp: &str) -> String {
    let h264_payloads: Vec<String> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, codec)| codec.to_ascii_uppercase().starts_with("H264/"))
        .map(|(pt, _)| pt.to_owned())
        .collect();
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        let fmtp = body
            .strip_prefix("a=fmtp:")
            .and_then(|rest| rest.split_once(' '));
        match fmtp {
            Some((pt, params)) if h264_payloads.iter().any(|p| p == pt) => {
                out.push_str(&format!("a=fmtp:{pt} {}", rewrite_h264_params(params)));
                out.push_str(ending);
            }
            _ => out.push_str(line),
        }
    }
    out
}

fn rewrite_h264_params(params: &str) -> String {
    let mut parts: Vec<String> = params
        .split(';')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    for part in &mut parts {
        if let Some(value) = part.strip_prefix("profile-level-id=")
            && let Some(fixed) = constrained_baseline_id(value)
        {
            *part = format!("profile-level-id={fixed}");
        }
    }
    if !parts.iter().any(|p| p.starts_with("packetization-mode=")) {
        parts.push("packetization-mode=1".into());
    }
    parts.join(";")
}

/// `42c01f` -> `42e01f`: baseline profile (0x42) with constraint_set1 set is constrained
/// baseline (RFC 6184 table 5); anything else is left alone.
fn constrained_baseline_id(id: &str) -> Option<String> {
    if id.len() != 6 || !id[..2].eq_ignore_ascii_case("42") {
        return None;
    }
    let constraints = u8::from_str_radix(&id[2..4], 16).ok()?;
    let level = &id[4..6];
    u8::from_str_radix(level, 16).ok()?;
    (constraints & 0x40 != 0).then(|| format!("42e0{}", level.to_ascii_lowercase()))
}

/// Replaces every `a=fingerprint` line with the SHA-256 fingerprint of the certificate the
/// device really uses (see `dtls` for why webrtcbin's own line is wrong).
pub fn set_fingerprint(sdp: &str, fingerprint: &Fingerprint) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=fingerprint:") {
            let ending = &line[line.trim_end_matches(['\r', '\n']).len()..];
            out.push_str(&format!(
                "a=fingerprint:sha-256 {}{ending}",
                fingerprint.to_sdp()
            ));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The SHA-256 fingerprint an SDP announces, if it announces exactly one (session level or
/// every section alike); anything else is treated as no fingerprint.
pub fn fingerprint(sdp: &str) -> Option<Fingerprint> {
    let mut found: Option<Fingerprint> = None;
    for line in sdp.lines() {
        let Some(value) = line.strip_prefix("a=fingerprint:") else {
            continue;
        };
        let (hash, fp) = value.trim().split_once(' ')?;
        if !hash.eq_ignore_ascii_case("sha-256") {
            return None;
        }
        let fp = Fingerprint::parse(fp)?;
        if found.is_some_and(|f| f != fp) {
            return None;
        }
        found = Some(fp);
    }
    found
}

/// For a host candidate, the same candidate with its address replaced by `advertised`
/// (a container's published address, a 1:1 NAT), to be sent in addition to the original.
pub fn advertised_candidate(candidate: &str, advertised: IpAddr) -> Option<String> {
    let mut fields: Vec<&str> = candidate.split(' ').collect();
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    if fields.len() < 8 || fields[6] != "typ" || fields[7] != "host" {
        return None;
    }
    let address: IpAddr = fields[4].parse().ok()?;
    if address == advertised || address.is_ipv4() != advertised.is_ipv4() {
        return None;
    }
    let advertised = advertised.to_string();
    fields[4] = &advertised;
    Some(fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1;profile-level-id=42c01f;sprop-parameter-sets=Z0LAH9oBQBbsBEAAAAMAQAAADyPGDKg=,aM4PyA==\r\n\
        a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n";

    #[test]
    fn says_constrained_baseline_as_browsers_do() {
        let out = normalize_h264_fmtp(OFFER);
        assert!(
            out.contains(
                "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f;sprop-parameter-sets="
            ),
            "{out}"
        );
        assert!(
            out.contains("a=fmtp:97 apt=96\r\n"),
            "other codecs untouched: {out}"
        );
        assert_eq!(out.lines().count(), OFFER.lines().count());
    }

    #[test]
    fn leaves_other_profiles_alone_and_adds_packetization_mode() {
        let sdp = "a=rtpmap:100 H264/90000\na=fmtp:100 profile-level-id=640028\n";
        assert_eq!(
            normalize_h264_fmtp(sdp),
            "a=rtpmap:100 H264/90000\na=fmtp:100 profile-level-id=640028;packetization-mode=1\n"
        );
        assert_eq!(
            constrained_baseline_id("42001f"),
            None,
            "plain baseline is not constrained"
        );
        assert_eq!(constrained_baseline_id("42E01F").as_deref(), Some("42e01f"));
    }

    #[test]
    fn fingerprints_are_rewritten_and_read_back() {
        let real = Fingerprint::of_der(b"device");
        let sdp = "v=0\r\na=fingerprint:sha-256 CC:51\r\nm=video 9 X 96\r\na=fingerprint:sha-256 CC:51\r\n";
        let fixed = set_fingerprint(sdp, &real);
        assert_eq!(fixed.matches(&real.to_sdp()).count(), 2);
        assert!(fixed.ends_with("\r\n") && !fixed.contains("CC:51"));
        assert_eq!(fingerprint(&fixed), Some(real));
        let two = format!(
            "{fixed}a=fingerprint:sha-256 {}\r\n",
            Fingerprint::of_der(b"other").to_sdp()
        );
        assert_eq!(
            fingerprint(&two),
            None,
            "disagreeing fingerprints count as none"
        );
        assert_eq!(fingerprint("v=0\r\n"), None);
        assert_eq!(
            fingerprint(&format!("a=fingerprint:sha-1 {}", real.to_sdp())),
            None
        );
    }

    #[test]
    fn advertises_host_candidates_under_another_address() {
        let c = "candidate:1 1 UDP 2015363327 172.17.0.2 50000 typ host";
        assert_eq!(
            advertised_candidate(c, "203.0.113.7".parse().unwrap()).as_deref(),
            Some("candidate:1 1 UDP 2015363327 203.0.113.7 50000 typ host")
        );
        let srflx = "candidate:2 1 UDP 1 198.51.100.1 50000 typ srflx raddr 0.0.0.0 rport 0";
        assert_eq!(
            advertised_candidate(srflx, "203.0.113.7".parse().unwrap()),
            None
        );
        assert_eq!(advertised_candidate(c, "::1".parse().unwrap()), None);
    }
}

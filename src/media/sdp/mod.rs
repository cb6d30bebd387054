//! Pure rewrites of the SDP the device sends, and of the ICE candidates it trickles; the
//! checks of what the viewer sends back are in `remote`.

pub mod remote;

use std::net::IpAddr;

use crate::identity::Fingerprint;

/// Signals H.264 the way browsers expect. x264 marks constrained baseline with
/// `constraint_set1` only (`42c0xx`), while browsers and the WebRTC specs name it `42e0xx`
/// (sets 0, 1 and 2). Both mean the same profile; say `42e0` and keep the level. Makes sure
/// `packetization-mode=1` is there, and `profile-level-id` (from `fallback_id`, the capture's
/// own profile and level) when webrtcbin wrote the offer before the payloader had caps.
pub fn normalize_h264_fmtp(sdp: &str, fallback_id: Option<&str>) -> String {
    let h264_payloads: Vec<String> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, codec)| codec.to_ascii_uppercase().starts_with("H264/"))
        .map(|(pt, _)| pt.to_owned())
        .collect();
    let has_fmtp = |pt: &str| sdp.lines().any(|l| l.starts_with(&format!("a=fmtp:{pt} ")));
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let ending = &line[body.len()..];
        let fmtp = body
            .strip_prefix("a=fmtp:")
            .and_then(|rest| rest.split_once(' '));
        match fmtp {
            Some((pt, params)) if h264_payloads.iter().any(|p| p == pt) => {
                out.push_str(&format!(
                    "a=fmtp:{pt} {}",
                    rewrite_h264_params(params, fallback_id)
                ));
                out.push_str(ending);
            }
            _ => out.push_str(line),
        }
        // An H.264 payload type without any fmtp line gets one right after its rtpmap.
        let rtpmap_pt = body
            .strip_prefix("a=rtpmap:")
            .and_then(|r| r.split_once(' '))
            .map(|(pt, _)| pt);
        if let Some(pt) =
            rtpmap_pt.filter(|pt| h264_payloads.iter().any(|p| p == pt) && !has_fmtp(pt))
        {
            out.push_str(&format!(
                "a=fmtp:{pt} {}",
                rewrite_h264_params("", fallback_id)
            ));
            out.push_str(if ending.is_empty() { "\r\n" } else { ending });
        }
    }
    out
}

fn rewrite_h264_params(params: &str, fallback_id: Option<&str>) -> String {
    let mut parts: Vec<String> = params
        .split(';')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if let Some(id) =
        fallback_id.filter(|_| !parts.iter().any(|p| p.starts_with("profile-level-id=")))
    {
        parts.push(format!("profile-level-id={id}"));
    }
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

/// The RTP `profile-level-id` for H.264 caps' `profile` and `level` (RFC 6184), for the
/// profiles browsers decode.
pub fn profile_level_id(profile: &str, level: &str) -> Option<String> {
    let profile = match profile {
        "constrained-baseline" => "42e0",
        "baseline" => "4200",
        "main" => "4d00",
        "constrained-high" => "640c",
        "high" => "6400",
        _ => return None,
    };
    // Level "3.1" is level_idc 31, "4" is 40, "1b" is 9 (Annex A).
    let level_idc: u32 = match level {
        "1b" => 9,
        _ => {
            let (major, minor) = level.split_once('.').unwrap_or((level, "0"));
            major.parse::<u32>().ok()? * 10 + minor.parse::<u32>().ok()?
        }
    };
    (level_idc <= 0xff).then(|| format!("{profile}{level_idc:02x}"))
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
        let out = normalize_h264_fmtp(OFFER, None);
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
            normalize_h264_fmtp(sdp, Some("42e01f")),
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
    fn an_offer_written_before_caps_gets_the_capture_profile() {
        let sdp =
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=rtcp-fb:96 nack\r\n";
        let id = profile_level_id("constrained-baseline", "3.1");
        assert_eq!(id.as_deref(), Some("42e01f"));
        let out = normalize_h264_fmtp(sdp, id.as_deref());
        assert_eq!(
            out,
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 profile-level-id=42e01f;packetization-mode=1\r\na=rtcp-fb:96 nack\r\n"
        );
        let with_mode = "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n";
        assert_eq!(
            normalize_h264_fmtp(with_mode, Some("42e01f")),
            "a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n"
        );
        assert_eq!(profile_level_id("main", "4").as_deref(), Some("4d0028"));
        assert_eq!(profile_level_id("high-4:4:4", "4"), None);
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

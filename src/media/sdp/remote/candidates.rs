//! Remote ICE candidates, in the answer or trickled: parsed, checked and rebuilt in one form
//! before webrtcbin sees them, and capped per session.

use super::*;

/// Remote candidates per session, in the answer and trickled together: each makes the device
/// send STUN checks to an address of the viewer's choosing. A browser sends a handful.
pub const MAX_CANDIDATES: usize = 32;
/// One trickled candidate line.
const MAX_CANDIDATE_BYTES: usize = 512;

/// One remote candidate, from the answer or trickled, in the one form pipe hands webrtcbin:
/// `candidate:F 1 UDP|TCP PRIO ADDR PORT typ T [raddr IP rport P] [tcptype X]`.
pub(super) fn canonical_candidate(c: &SdpAttributeCandidate) -> Result<String, Refused> {
    if c.component != 1 {
        return no("a candidate for a component other than 1 (rtcp-mux)");
    }
    if c.foundation.is_empty() || c.foundation.len() > 32 || !ice_chars(&c.foundation, 1) {
        return no("a candidate with a bad foundation");
    }
    if c.priority > u64::from(u32::MAX) {
        return no("a candidate priority over 32 bits");
    }
    let address = match &c.address {
        Address::Ip(ip)
            if ip.is_unspecified()
                || ip.is_multicast()
                || *ip == IpAddr::from([255, 255, 255, 255]) =>
        {
            return no("a candidate address no host can have");
        }
        Address::Ip(ip) => ip.to_string(),
        // Browsers hide host addresses behind `<uuid>.local` (mDNS); any other name would be
        // a DNS lookup of the viewer's choosing.
        Address::Fqdn(name) => {
            let uuid = name.strip_suffix(".local").unwrap_or_default();
            let is_uuid = uuid.len() == 36
                && uuid.bytes().enumerate().all(|(i, b)| {
                    if [8, 13, 18, 23].contains(&i) {
                        b == b'-'
                    } else {
                        b.is_ascii_hexdigit()
                    }
                });
            if !is_uuid {
                return no("a candidate name that is not <uuid>.local");
            }
            name.to_ascii_lowercase()
        }
    };
    let (transport, tcp) = match (&c.transport, &c.tcp_type) {
        (Transport::Udp, None) => ("UDP", ""),
        (Transport::Tcp, Some(TcpType::Active)) => ("TCP", " tcptype active"),
        (Transport::Tcp, Some(TcpType::Passive)) => ("TCP", " tcptype passive"),
        (Transport::Tcp, Some(TcpType::Simultaneous)) => ("TCP", " tcptype so"),
        _ => return no("a candidate whose tcptype does not fit its transport"),
    };
    if c.port == 0 && tcp != " tcptype active" {
        return no("a candidate on port 0");
    }
    let kind = match c.c_type {
        CandidateType::Host => "host",
        CandidateType::Srflx => "srflx",
        CandidateType::Prflx => "prflx",
        CandidateType::Relay => "relay",
    };
    let related = match (&c.raddr, c.rport) {
        (Some(Address::Ip(ip)), Some(port)) => format!(" raddr {ip} rport {port}"),
        (None, None) => String::new(),
        _ => return no("a candidate with raddr and rport not both an address and a port"),
    };
    Ok(format!(
        "candidate:{} 1 {transport} {} {address} {} typ {kind}{related}{tcp}",
        c.foundation, c.priority, c.port
    ))
}

/// A trickled candidate as the viewer sent it, for m-line `mline` of `offer`; `Ok` is the
/// canonical line to hand webrtcbin.
pub fn trickled_candidate(offer: &Offer, text: &str, mline: u32) -> Result<String, Refused> {
    precheck(text, MAX_CANDIDATE_BYTES)?;
    if text.lines().count() != 1 {
        return no("a candidate of more than one line");
    }
    // webrtcbin queues a candidate for an unknown m-line forever.
    if mline as usize >= offer.sections.len() {
        return no("a candidate for an m-line the offer does not have");
    }
    // An empty or foreign string would reach webrtcbin as "end of candidates".
    match text
        .strip_prefix("a=")
        .unwrap_or(text)
        .parse::<SdpAttribute>()
    {
        Ok(SdpAttribute::Candidate(c)) => canonical_candidate(&c),
        _ => no("not an ICE candidate"),
    }
}

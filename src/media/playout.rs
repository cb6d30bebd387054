//! The playout-delay hint: an RTP header extension that tells the browser how long it may hold
//! a frame before showing it (`http://www.webrtc.org/experiments/rtp-hdrext/playout-delay`).
//!
//! Without it Chromium sizes its own buffer: ~13 ms on a quiet LAN (a 10 ms render allowance,
//! its decode-time estimate and a jitter margin), of which frames wait ~8 ms for nothing when
//! the path has no jitter. With min = max = 10 ms it shows each frame as soon as it is decoded
//! (measured on loopback: glass-to-glass p50 21 -> 13.5 ms in 15 sessions of 18; in the other
//! 3 Chromium held frames to their render time anyway, docs/benchmarks.md). 10 ms is the
//! extension's smallest step above 0; 0 puts Chromium on its low-latency renderer, which
//! measured slower. The price is that the browser no longer absorbs network jitter, so by
//! default only viewers on the local network get the hint (`PlayoutDelay::Lan`), where jitter
//! is usually a few ms (a congested Wi-Fi is the exception `never` is for).
//!
//! The extension is always offered; it is written into a viewer's packets only when its answer
//! kept it (`sdp::remote::Answer::kept_extension`) and the policy says so for its path.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::prelude::*;

pub use crate::config::PlayoutDelay;

pub const EXTENSION_URI: &str = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
/// The one-byte header extension id the offer gives it (`extmap-5` in the viewer's caps).
pub const EXTENSION_ID: u8 = 5;
/// min = max = 10 ms, in the extension's 10 ms units.
const DELAY_UNITS: u16 = 1;

/// One end of the selected ICE candidate pair, as webrtcbin's stats report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathEnd {
    /// `host`, `srflx`, `prflx` or `relay`.
    pub kind: String,
    pub address: String,
}

impl PlayoutDelay {
    /// Whether a viewer on this path gets the hint (`path`: local and remote end, if known).
    pub fn applies(self, path: Option<(&PathEnd, &PathEnd)>) -> bool {
        match self {
            PlayoutDelay::Always => true,
            PlayoutDelay::Never => false,
            PlayoutDelay::Lan => path.is_some_and(|(local, remote)| on_lan(local, remote)),
        }
    }
}

/// Direct on the local network: each end a host or peer-reflexive candidate (browsers hide
/// host addresses behind mDNS names, so the device learns theirs from the checks; libnice
/// reports ours as peer-reflexive when the check came from another of its addresses) with a
/// private, link-local or loopback address. A relayed or server-reflexive path, or a public
/// address, means the internet is in between.
fn on_lan(local: &PathEnd, remote: &PathEnd) -> bool {
    [local, remote]
        .iter()
        .all(|end| matches!(end.kind.as_str(), "host" | "prflx") && local_scope(&end.address))
}

fn local_scope(address: &str) -> bool {
    address.parse::<IpAddr>().is_ok_and(|ip| match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_private() || v4.is_loopback())
        }
    })
}

/// The extension's three bytes: 12 bits of minimum and 12 of maximum delay, in 10 ms units.
fn extension_bytes(min_units: u16, max_units: u16) -> [u8; 3] {
    let v = (u32::from(min_units & 0xfff) << 12) | u32::from(max_units & 0xfff);
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

/// Writes the hint into every packet leaving `pad` (a payloader's source pad) while `on` is
/// set. Packets are written in place when they are not shared.
pub fn install(pad: &gst::Pad, on: Arc<AtomicBool>) {
    let data = extension_bytes(DELAY_UNITS, DELAY_UNITS);
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| {
            if !on.load(Ordering::Relaxed) {
                return gst::PadProbeReturn::Ok;
            }
            match &mut info.data {
                Some(gst::PadProbeData::Buffer(buffer)) => add(buffer.make_mut(), &data),
                Some(gst::PadProbeData::BufferList(list)) => {
                    list.make_mut().foreach_mut(|mut buffer, _| {
                        add(buffer.make_mut(), &data);
                        std::ops::ControlFlow::Continue(Some(buffer))
                    });
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
}

fn add(buffer: &mut gst::BufferRef, data: &[u8; 3]) {
    if let Ok(mut rtp) = gst_rtp::RTPBuffer::from_buffer_writable(buffer) {
        // Fails only on a packet that has a two-byte-header extension already: leave it.
        let _ = rtp.add_extension_onebyte_header(EXTENSION_ID, data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst_rtp::prelude::*;

    fn end(kind: &str, address: &str) -> PathEnd {
        PathEnd {
            kind: kind.into(),
            address: address.into(),
        }
    }

    #[test]
    fn only_direct_paths_on_the_local_network_count_as_lan() {
        let host = end("host", "192.168.1.20");
        let lan = [
            end("host", "192.168.1.30"),
            end("prflx", "10.0.0.7"),
            end("prflx", "127.0.0.2"),
            end("host", "fe80::1"),
            end("host", "fd12::9"),
        ];
        for remote in &lan {
            assert!(on_lan(&host, remote), "{remote:?}");
        }
        let internet = [
            end("host", "203.0.113.5"),
            end("prflx", "2001:db8::1"),
            end("srflx", "192.168.1.30"),
            end("relay", "10.0.0.7"),
            end("host", "not-an-address.local"),
        ];
        for remote in &internet {
            assert!(!on_lan(&host, remote), "{remote:?}");
        }
        assert!(on_lan(
            &end("prflx", "127.0.0.2"),
            &end("host", "127.0.0.2")
        ));
        assert!(
            !on_lan(&end("relay", "10.0.0.1"), &lan[0]),
            "our end relayed"
        );
        assert!(!on_lan(&end("srflx", "192.168.1.1"), &lan[0]));
        assert!(
            !on_lan(&end("host", "198.51.100.1"), &lan[0]),
            "a public device"
        );
    }

    #[test]
    fn the_policy_decides_per_path() {
        let (local, lan, far) = (
            end("host", "10.0.0.1"),
            end("prflx", "10.0.0.2"),
            end("relay", "198.51.100.7"),
        );
        assert!(PlayoutDelay::Lan.applies(Some((&local, &lan))));
        assert!(!PlayoutDelay::Lan.applies(Some((&local, &far))));
        assert!(!PlayoutDelay::Lan.applies(None), "unknown path: no hint");
        assert!(PlayoutDelay::Always.applies(Some((&local, &far))));
        assert!(PlayoutDelay::Always.applies(None));
        assert!(!PlayoutDelay::Never.applies(Some((&local, &lan))));
        assert_eq!(PlayoutDelay::default(), PlayoutDelay::Lan);
    }

    #[test]
    fn the_extension_carries_min_and_max_in_10_ms_units() {
        assert_eq!(extension_bytes(1, 1), [0x00, 0x10, 0x01]);
        assert_eq!(extension_bytes(0, 0), [0, 0, 0]);
        assert_eq!(extension_bytes(0xfff, 0x123), [0xff, 0xf1, 0x23]);
    }

    #[test]
    fn packets_get_the_extension_only_while_on() {
        gst::init().unwrap();
        let on = Arc::new(AtomicBool::new(false));
        let seen: Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>> = Arc::default();
        let record = seen.clone();
        let src = gst::Pad::builder(gst::PadDirection::Src)
            .name("src")
            .build();
        // Lists reach the chain function one buffer at a time (no chain-list function here).
        let sink = gst::Pad::builder(gst::PadDirection::Sink)
            .name("sink")
            .chain_function(move |_, _, buffer| {
                let rtp = gst_rtp::RTPBuffer::from_buffer_readable(&buffer).unwrap();
                let ext = rtp
                    .extension_onebyte_header(EXTENSION_ID, 0)
                    .map(<[u8]>::to_vec);
                record.lock().unwrap().push(ext);
                Ok(gst::FlowSuccess::Ok)
            })
            .build();
        install(&src, on.clone());
        src.link(&sink).unwrap();
        src.set_active(true).unwrap();
        sink.set_active(true).unwrap();
        src.push_event(gst::event::StreamStart::new("s"));
        src.push_event(gst::event::Caps::new(&gst::Caps::new_empty_simple(
            "application/x-rtp",
        )));
        src.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()));
        let packet = || {
            let mut buffer = gst::Buffer::new_rtp_with_sizes(100, 0, 0).unwrap();
            {
                let mut rtp =
                    gst_rtp::RTPBuffer::from_buffer_writable(buffer.get_mut().unwrap()).unwrap();
                rtp.set_payload_type(96);
                rtp.set_seq(7);
            }
            buffer
        };
        src.push(packet()).unwrap();
        on.store(true, Ordering::Relaxed);
        src.push(packet()).unwrap();
        let mut list = gst::BufferList::new();
        list.get_mut().unwrap().add(packet());
        src.push_list(list).unwrap();

        let seen = seen.lock().unwrap();
        let hint = Some(vec![0x00, 0x10, 0x01]);
        assert_eq!(*seen, [None, hint.clone(), hint], "off, on, on in a list");
    }
}

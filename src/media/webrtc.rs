//! Typed wrappers over webrtcbin's stringly signals and properties, so the rest of pipe never
//! spells a signal name. Promises are turned into futures: nothing here blocks a tokio thread.

use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_webrtc::{WebRTCSDPType, WebRTCSessionDescription};

use super::MediaError;
use super::playout::PathEnd;
use crate::adapt::feedback::ReceiverReport;
use crate::config::IceConfig;

/// A promise and the future of its reply. Unlike `gst::Promise::new_future`, a promise that
/// webrtcbin drops unanswered (it does on shutdown) becomes an error here, not a panic.
fn promise(
    request: &'static str,
) -> (
    gst::Promise,
    impl Future<Output = Result<Option<gst::Structure>, MediaError>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let promise = gst::Promise::with_change_func(move |reply| {
        let reply = match reply {
            Ok(structure) => Ok(structure.map(|s| s.to_owned())),
            Err(e) => Err(e),
        };
        let _ = tx.send(reply);
    });
    let future = async move {
        let structure = rx
            .await
            .map_err(|_| MediaError::Dropped(request))?
            .map_err(|error| MediaError::Promise { request, error })?;
        if let Some(error) = structure
            .as_ref()
            .and_then(|s| s.get::<glib::Error>("error").ok())
        {
            return Err(MediaError::Refused { request, error });
        }
        Ok(structure)
    };
    (promise, future)
}

pub async fn create_offer(webrtc: &gst::Element) -> Result<WebRTCSessionDescription, MediaError> {
    let (promise, reply) = promise("create-offer");
    webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
    reply
        .await?
        .and_then(|s| s.get::<WebRTCSessionDescription>("offer").ok())
        .ok_or(MediaError::NoResult("create-offer"))
}

pub async fn create_answer(webrtc: &gst::Element) -> Result<WebRTCSessionDescription, MediaError> {
    let (promise, reply) = promise("create-answer");
    webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
    reply
        .await?
        .and_then(|s| s.get::<WebRTCSessionDescription>("answer").ok())
        .ok_or(MediaError::NoResult("create-answer"))
}

pub async fn set_local_description(
    webrtc: &gst::Element,
    desc: &WebRTCSessionDescription,
) -> Result<(), MediaError> {
    let (promise, reply) = promise("set-local-description");
    webrtc.emit_by_name::<()>("set-local-description", &[desc, &promise]);
    reply.await.map(drop)
}

pub async fn set_remote_description(
    webrtc: &gst::Element,
    desc: &WebRTCSessionDescription,
) -> Result<(), MediaError> {
    let (promise, reply) = promise("set-remote-description");
    webrtc.emit_by_name::<()>("set-remote-description", &[desc, &promise]);
    reply.await.map(drop)
}

pub fn add_ice_candidate(webrtc: &gst::Element, mline: u32, candidate: &str) {
    webrtc.emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate]);
}

pub fn create_data_channel(
    webrtc: &gst::Element,
    label: &str,
) -> Result<gst_webrtc::WebRTCDataChannel, MediaError> {
    webrtc
        .emit_by_name::<Option<gst_webrtc::WebRTCDataChannel>>(
            "create-data-channel",
            &[&label, &None::<gst::Structure>],
        )
        .ok_or_else(|| MediaError::DataChannel(label.to_string()))
}

/// webrtcbin's DTLS elements share one process-wide certificate besides ours, which the first
/// `dtlsdec` generates (RSA-2048: 100-500 ms on a small machine). Making it at start-up keeps
/// that out of the first viewer's wait (measured: first frame 384-773 ms -> 284-331 ms).
pub fn warm_up_dtls() {
    let _ = gst::ElementFactory::make("dtlsdec").build();
}

/// The selected ICE candidate pair, (ours, the peer's) (webrtcbin 1.22 reports only the
/// selected pair's candidates). The peer's end is the peer as the network sees it, whatever
/// its signalling carried (browsers send mDNS names for host candidates, or none at all).
pub async fn selected_path(webrtc: &gst::Element) -> (Option<PathEnd>, Option<PathEnd>) {
    let (promise, reply) = promise("get-stats");
    webrtc.emit_by_name::<()>("get-stats", &[&None::<gst::Pad>, &promise]);
    let Ok(Some(stats)) = reply.await else {
        return (None, None);
    };
    let end = |wanted: gst_webrtc::WebRTCStatsType| {
        stats.iter().find_map(|(_, value)| {
            let entry = value.get::<gst::Structure>().ok()?;
            if entry.get::<gst_webrtc::WebRTCStatsType>("type").ok()? != wanted {
                return None;
            }
            Some(PathEnd {
                kind: entry.get::<String>("candidate-type").unwrap_or_default(),
                address: entry.get::<String>("address").ok()?,
            })
        })
    };
    (
        end(gst_webrtc::WebRTCStatsType::LocalCandidate),
        end(gst_webrtc::WebRTCStatsType::RemoteCandidate),
    )
}

/// What the viewer's latest RTCP receiver report says about the stream `pad` (a webrtcbin sink
/// pad) sends: webrtcbin's `remote-inbound-rtp` statistics. `None` before the first report, or
/// when webrtcbin does not answer within a second.
pub async fn receiver_report(webrtc: &gst::Element, pad: &gst::Pad) -> Option<ReceiverReport> {
    let (promise, reply) = promise("get-stats");
    webrtc.emit_by_name::<()>("get-stats", &[&Some(pad), &promise]);
    let stats = tokio::time::timeout(Duration::from_secs(1), reply)
        .await
        .ok()?
        .ok()??;
    stats.iter().find_map(|(_, value)| {
        let entry = value.get::<gst::Structure>().ok()?;
        (entry.get::<gst_webrtc::WebRTCStatsType>("type").ok()?
            == gst_webrtc::WebRTCStatsType::RemoteInboundRtp)
            .then(|| report_from(&entry))
    })
}

/// A `remote-inbound-rtp` entry as a report. The numbers are the viewer's word: kept within
/// what they can mean (a fraction in 0..=1, a round trip under a minute, or none).
fn report_from(entry: &gst::StructureRef) -> ReceiverReport {
    let fraction_lost = entry
        .get::<f64>("fraction-lost")
        .ok()
        .filter(|f| f.is_finite())
        .map_or(0.0, |f| f.clamp(0.0, 1.0));
    let round_trip = entry
        .get::<f64>("round-trip-time")
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 60.0)
        .map(Duration::from_secs_f64);
    ReceiverReport {
        fraction_lost,
        round_trip,
        lost_total: entry.get::<i32>("packets-lost").map_or(0, i64::from),
    }
}

/// webrtcbin's sink pad that carries video (its caps name the media).
pub fn video_sink_pad(webrtc: &gst::Element) -> Option<gst::Pad> {
    webrtc.sink_pads().into_iter().find(|pad| {
        pad.peer_query_caps(None)
            .structure(0)
            .and_then(|s| s.get::<&str>("media").ok())
            .is_some_and(|media| media == "video")
    })
}

/// Stops a viewer's pipeline. First unblocks webrtcbin's `sctpenc`: with its send buffer
/// full (a datachannel sending to a peer that is gone), its input waits for room that never
/// comes while holding its stream lock, and GStreamer 1.22's state change to NULL then waits
/// on that lock forever. A flush wakes the wait and makes it give up. Blocks: call it from a
/// blocking thread.
pub fn stop_pipeline(pipeline: &gst::Pipeline) {
    for element in pipeline.iterate_recurse().into_iter().flatten() {
        if element.factory().is_some_and(|f| f.name() == "sctpenc") {
            for pad in element.sink_pads() {
                pad.send_event(gst::event::FlushStart::new());
            }
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
}

pub fn close_data_channel(channel: &gst_webrtc::WebRTCDataChannel) {
    channel.emit_by_name::<()>("close", &[]);
}

pub fn description(
    kind: WebRTCSDPType,
    text: &str,
) -> Result<WebRTCSessionDescription, MediaError> {
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes()).map_err(MediaError::Sdp)?;
    Ok(WebRTCSessionDescription::new(kind, sdp))
}

pub fn connection_state(webrtc: &gst::Element) -> gst_webrtc::WebRTCPeerConnectionState {
    webrtc.property("connection-state")
}

/// Sets every webrtcbin transceiver to send-only, with NACK/RTX on video only: RTX gives
/// audio a second SSRC (`a=ssrc-group:FID`), and Chromium's audio receiver takes one SSRC per
/// m-line and rejects the whole offer ("Failed to add remote stream ssrc").
pub fn configure_transceivers(webrtc: &gst::Element) {
    for pad in webrtc.sink_pads() {
        if let Some(transceiver) =
            pad.property::<Option<gst_webrtc::WebRTCRTPTransceiver>>("transceiver")
        {
            transceiver.set_property(
                "direction",
                gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly,
            );
            // The pad is linked to its capsfilter already, which names the media.
            let caps = pad.peer_query_caps(None);
            let video = caps
                .structure(0)
                .and_then(|s| s.get::<&str>("media").ok())
                .is_some_and(|media| media == "video");
            transceiver.set_property("do-nack", video);
        }
    }
}

/// Applies the ICE configuration to webrtcbin and its libnice agent.
pub fn configure_ice(webrtc: &gst::Element, ice: &IceConfig) {
    if let Some(stun) = ice.stun_servers.first() {
        // webrtcbin takes one STUN server, as stun://host:port.
        webrtc.set_property("stun-server", format!("stun://{}", strip_scheme(stun)));
        if ice.stun_servers.len() > 1 {
            tracing::warn!("webrtcbin uses one STUN server; ignoring all but {stun}");
        }
    }
    for turn in &ice.turn_servers {
        let scheme = if turn.url.starts_with("turns:") {
            "turns"
        } else {
            "turn"
        };
        let uri = format!(
            "{scheme}://{}:{}@{}",
            percent(&turn.username),
            percent(&turn.credential),
            strip_scheme(&turn.url)
        );
        let _ = webrtc.emit_by_name::<bool>("add-turn-server", &[&uri]);
    }
    let agent = webrtc.property::<glib::Object>("ice-agent");
    set_if_present(&agent, "ice-tcp", ice.tcp);
    if let (Some(lo), Some(hi)) = (ice.port_min, ice.port_max) {
        set_if_present(&agent, "min-rtp-port", u32::from(lo));
        set_if_present(&agent, "max-rtp-port", u32::from(hi));
    }
    if agent.find_property("agent").is_some() {
        let nice = agent.property::<glib::Object>("agent");
        // libnice maps ports over UPnP and multicasts SSDP by default: only when asked.
        set_if_present(&nice, "upnp", ice.upnp);
        // Connectivity checks every 5 ms rather than 20: ~40 ms sooner to the first picture
        // (docs/benchmarks.md).
        set_if_present(&nice, "stun-pacing-timer", 5u32);
    }
}

fn set_if_present<V: Into<glib::Value> + ToValue>(object: &glib::Object, name: &str, value: V) {
    if object.find_property(name).is_some() {
        object.set_property(name, value);
    } else {
        tracing::debug!(
            property = name,
            "this GStreamer's ICE agent lacks the property; skipped"
        );
    }
}

/// `turn:host:port?transport=udp` -> `host:port?transport=udp`.
fn strip_scheme(url: &str) -> &str {
    url.split_once(':')
        .map_or(url, |(_, rest)| rest.trim_start_matches("//"))
}

/// Percent-encodes what would break the userinfo part of webrtcbin's TURN URI.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_uris_are_built_safely() {
        assert_eq!(
            strip_scheme("turn:127.0.0.1:3478?transport=udp"),
            "127.0.0.1:3478?transport=udp"
        );
        assert_eq!(strip_scheme("stun:host:19302"), "host:19302");
        assert_eq!(percent("a b@c:d"), "a%20b%40c%3Ad");
    }

    #[test]
    fn receiver_report_numbers_are_kept_within_what_they_can_mean() {
        gst::init().unwrap();
        let entry = |fraction: f64, rtt: f64| {
            gst::Structure::builder("remote-inbound-rtp")
                .field("fraction-lost", fraction)
                .field("round-trip-time", rtt)
                .field("packets-lost", 7i32)
                .build()
        };
        let sane = report_from(&entry(0.25, 0.04));
        assert_eq!(sane.fraction_lost, 0.25);
        assert_eq!(sane.round_trip, Some(Duration::from_millis(40)));
        assert_eq!(sane.lost_total, 7);
        for (fraction, rtt) in [
            (f64::NAN, f64::NAN),
            (f64::INFINITY, f64::INFINITY),
            (-3.0, -1.0),
            (1e300, 1e300),
            (0.5, 0.0),
        ] {
            let r = report_from(&entry(fraction, rtt));
            assert!((0.0..=1.0).contains(&r.fraction_lost), "{fraction}: {r:?}");
            assert_eq!(r.round_trip, None, "{rtt}: {r:?}");
        }
        // Missing or mistyped fields: nothing lost, no round trip.
        let odd = gst::Structure::builder("remote-inbound-rtp")
            .field("fraction-lost", "all of it")
            .build();
        let r = report_from(&odd);
        assert_eq!(
            (r.fraction_lost, r.round_trip, r.lost_total),
            (0.0, None, 0)
        );
    }
}

//! Transport-wide congestion control feedback (TWCC,
//! draft-holmer-rmcat-transport-wide-cc-extensions-01): the payloader numbers every packet
//! with GStreamer's `rtphdrexttwcc` header extension (offered as `extmap-3` with
//! `a=rtcp-fb:96 transport-cc`, as webrtcsink does); the viewer reports when each arrived;
//! rtpsession matches the reports with its send times and sends them upstream as an
//! `RTPTWCCPackets` event, which a probe on the payloader's source pad turns into
//! `adapt::feedback::PacketReport`s for the session's estimator.

use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst_rtp::prelude::*;
use tokio::sync::mpsc;

use crate::adapt::feedback::PacketReport;

pub const EXTENSION_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
/// The one-byte header extension id the offer gives it (`extmap-3` in the viewer's caps).
pub const EXTENSION_ID: u8 = 3;
/// Reports waiting for the session task: about 3 s of feedback at 10 reports a second. When the
/// task lags further behind, the newest reports are dropped (an estimate from stale feedback
/// is worth little).
pub const QUEUE: usize = 32;

/// Gives the payloader the TWCC header extension; false when this GStreamer has none (the
/// viewer is then steered by its receiver reports alone).
pub fn install(payloader: &gst::Element) -> bool {
    let Ok(extension) = gst::ElementFactory::make("rtphdrexttwcc").build() else {
        return false;
    };
    let Ok(extension) = extension.downcast::<gst_rtp::RTPHeaderExtension>() else {
        return false;
    };
    extension.set_id(u32::from(EXTENSION_ID));
    payloader.emit_by_name::<()>("add-extension", &[&extension]);
    true
}

/// Forwards each `RTPTWCCPackets` event reaching `pad` (the payloader's source) to `reports`.
pub fn watch(pad: &gst::Pad, reports: mpsc::Sender<Vec<PacketReport>>) {
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
        if let Some(event) = info.event()
            && let Some(structure) = event.structure()
            && structure.name() == "RTPTWCCPackets"
        {
            let packets = parse(structure);
            if !packets.is_empty() {
                let _ = reports.try_send(packets);
            }
        }
        gst::PadProbeReturn::Ok
    });
}

/// The packets of one event (rtpsession puts them in a `GValueArray`); entries without a send
/// time (not ours) are skipped.
fn parse(structure: &gst::StructureRef) -> Vec<PacketReport> {
    let Ok(array) = structure.get::<glib::ValueArray>("packets") else {
        return Vec::new();
    };
    array
        .iter()
        .filter_map(|v| v.get::<gst::Structure>().ok())
        .filter_map(|s| packet(&s))
        .collect()
}

fn packet(s: &gst::StructureRef) -> Option<PacketReport> {
    let sent = s.get::<gst::ClockTime>("local-ts").ok()?;
    let lost = s.get::<bool>("lost").unwrap_or(true);
    let arrived = if lost {
        None
    } else {
        Some(Duration::from_nanos(
            s.get::<gst::ClockTime>("remote-ts").ok()?.nseconds(),
        ))
    };
    Some(PacketReport {
        seq: s.get::<u32>("seqnum").ok()?,
        sent: Duration::from_nanos(sent.nseconds()),
        arrived,
        size: s.get::<u32>("size").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_as_rtpsession_writes_it_becomes_reports() {
        gst::init().unwrap();
        let received = gst::Structure::builder("packet")
            .field("seqnum", 7u32)
            .field("local-ts", gst::ClockTime::from_mseconds(100))
            .field("remote-ts", gst::ClockTime::from_mseconds(1_020))
            .field("size", 1_200u32)
            .field("lost", false)
            .build();
        let lost = gst::Structure::builder("packet")
            .field("seqnum", 8u32)
            .field("local-ts", gst::ClockTime::from_mseconds(101))
            .field("size", 900u32)
            .field("lost", true)
            .build();
        let foreign = gst::Structure::builder("packet")
            .field("seqnum", 9u32)
            .field("lost", true)
            .build();
        // As rtpsession writes it: a GValueArray, which is not Send in Rust (hence `unsafe`:
        // this value never leaves this thread).
        let array = glib::ValueArray::new([
            received.to_send_value(),
            lost.to_send_value(),
            foreign.to_send_value(),
        ]);
        let mut event = gst::Structure::new_empty("RTPTWCCPackets");
        event.set_value("packets", unsafe { array.to_value().into_send_value() });
        assert_eq!(
            parse(&event),
            vec![
                PacketReport {
                    seq: 7,
                    sent: Duration::from_millis(100),
                    arrived: Some(Duration::from_millis(1_020)),
                    size: 1_200
                },
                PacketReport {
                    seq: 8,
                    sent: Duration::from_millis(101),
                    arrived: None,
                    size: 900
                },
            ]
        );
    }

    #[test]
    fn this_gstreamer_has_the_extension() {
        gst::init().unwrap();
        let pay = gst::ElementFactory::make("rtph264pay").build().unwrap();
        assert!(install(&pay));
    }
}

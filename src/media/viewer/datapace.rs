//! Paces the device's SCTP packets (the datachannels: control and the camera UI's proxy) on a
//! constrained link, so a download through the proxy cannot fill the link's queue under the
//! video (`adapt::datashare` decides the rate). A pad probe on webrtcbin's `sctpenc` source
//! pad holds each packet for its time: that pad is pushed from sctpenc's own task, so holding
//! delays the SCTP packets only, never the video's, and the data's backlog stays in SCTP's
//! send buffer, where the proxy's flow control (`buffered-amount`) already looks.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::adapt::datashare::Spacer;

/// The longest one hold (a pipeline going to NULL waits for one at most). A packet of 1,200
/// bytes at the 64 kbit/s floor takes 150 ms.
const MAX_HOLD: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct DataPace {
    /// bit/s; 0: unlimited.
    rate: AtomicU32,
    spacer: Mutex<Spacer>,
    /// SCTP bytes sent so far (what the data took from the link).
    bytes: AtomicU64,
}

impl DataPace {
    /// Paces `sctpenc`'s output from now on.
    pub fn install(self: &Arc<Self>, sctpenc: &gst::Element) {
        let Some(pad) = sctpenc.static_pad("src") else {
            return;
        };
        let pace = Arc::downgrade(self);
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                let size = match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => b.size(),
                    Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                    _ => return gst::PadProbeReturn::Ok,
                };
                if let Some(pace) = pace.upgrade() {
                    let hold = pace.hold(size);
                    if !hold.is_zero() {
                        std::thread::sleep(hold.min(MAX_HOLD));
                    }
                }
                gst::PadProbeReturn::Ok
            },
        );
    }

    /// The rate the data may leave at (`None`: unlimited).
    pub fn set_limit(&self, limit_bps: Option<u32>) {
        self.rate.store(limit_bps.unwrap_or(0), Ordering::Relaxed);
    }

    /// SCTP bytes sent so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn hold(&self, size: usize) -> Duration {
        self.bytes.fetch_add(size as u64, Ordering::Relaxed);
        let rate = Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0);
        self.spacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hold(Instant::now(), size, rate)
    }
}

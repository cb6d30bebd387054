//! A benchmark hook, off unless the device runs with the hidden `--bench-datachannel` flag
//! (docs/benchmarks.md, "Web-UI proxy"): a viewer allowed datachannels that opens one labelled
//! `bench-ceiling` (`session::machine::CEILING_LABEL`) gets 64 KiB binary messages on it as fast as its `buffered-amount` allows,
//! until it closes the channel. The proxy's throughput is compared with this raw ceiling, so it
//! keeps the channel as full as the proxy may (`HIGH_WATER`) and, like the proxy, sends from a
//! thread of its own.

use std::time::Duration;

use gst_webrtc::WebRTCDataChannelState;
use tracing::{info, warn};

use crate::media::datachannels::HIGH_WATER;

/// The largest message webrtcbin delivers (it advertises no `max-message-size`).
const MESSAGE_BYTES: usize = 64 << 10;
/// How often a full channel is looked at again. Polling, not `on-buffered-amount-low`: no
/// wake-up can be missed or delayed, and no lock is taken in a GLib signal handler; at 64 KiB
/// a message the channel drains ~15 messages per ms at most, so 1 ms keeps it busy.
const POLL: Duration = Duration::from_millis(1);

pub fn start(channel: gst_webrtc::WebRTCDataChannel) {
    let spawned = std::thread::Builder::new()
        .name("bench-ceiling".into())
        .spawn(move || send_until_closed(&channel));
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the datachannel ceiling sender");
    }
}

fn send_until_closed(channel: &gst_webrtc::WebRTCDataChannel) {
    let message = gst::glib::Bytes::from_owned(vec![0x5a_u8; MESSAGE_BYTES]);
    let (mut sent, mut full_polls) = (0_u64, 0_u64);
    while channel.ready_state() == WebRTCDataChannelState::Open {
        if channel.buffered_amount() > HIGH_WATER {
            full_polls += 1;
            std::thread::sleep(POLL);
            continue;
        }
        if channel.send_data_full(Some(&message)).is_err() {
            break;
        }
        sent += MESSAGE_BYTES as u64;
    }
    info!(sent, full_polls, "datachannel ceiling: channel closed");
}

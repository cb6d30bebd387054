//! A benchmark hook, off unless the device runs with the hidden `--bench-datachannel` flag
//! (docs/benchmarks.md, "Web-UI proxy"): a viewer allowed datachannels that opens one labelled
//! `bench-ceiling` gets 64 KiB binary messages on it as fast as its `buffered-amount` allows,
//! until it closes the channel. The proxy's throughput is compared with this raw ceiling, so it
//! uses the proxy's water marks and, like the proxy, sends from a thread of its own.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use gst_webrtc::WebRTCDataChannelState;
use gst_webrtc::prelude::*;
use tracing::{info, warn};

use crate::media::datachannels::{HIGH_WATER, LOW_WATER};

pub const LABEL: &str = "bench-ceiling";
/// The largest message webrtcbin delivers (it advertises no `max-message-size`).
const MESSAGE_BYTES: usize = 64 << 10;

pub fn start(channel: gst_webrtc::WebRTCDataChannel) {
    let spawned = std::thread::Builder::new()
        .name("bench-ceiling".into())
        .spawn(move || send_until_closed(&channel));
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the datachannel ceiling sender");
    }
}

fn send_until_closed(channel: &gst_webrtc::WebRTCDataChannel) {
    // Set by `on-buffered-amount-low`; the sender waits on it above the high-water mark.
    let low = Arc::new((Mutex::new(false), Condvar::new()));
    channel.set_buffered_amount_low_threshold(LOW_WATER);
    let signal = low.clone();
    let handler = channel.connect_on_buffered_amount_low(move |_| {
        let (flag, wake) = &*signal;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_one();
    });
    let message = gst::glib::Bytes::from_owned(vec![0x5a_u8; MESSAGE_BYTES]);
    let mut sent = 0_u64;
    // How often the sender waited for the channel to drain, and how many of those waits
    // outlasted 100 ms (a missed wake-up, or the end: the viewer closed a full channel).
    let (mut waits, mut long_waits) = (0_u64, 0_u64);
    while channel.ready_state() == WebRTCDataChannelState::Open {
        *low.0.lock().unwrap_or_else(|p| p.into_inner()) = false;
        if channel.send_data_full(Some(&message)).is_err() {
            break;
        }
        sent += MESSAGE_BYTES as u64;
        let (flag, wake) = &*low;
        let mut drained = flag.lock().unwrap_or_else(|p| p.into_inner());
        // The timeout notices a channel that closed while full.
        let mut waited = false;
        while !*drained
            && channel.buffered_amount() > HIGH_WATER
            && channel.ready_state() == WebRTCDataChannelState::Open
        {
            waits += u64::from(!waited);
            waited = true;
            let (guard, timeout) = wake
                .wait_timeout(drained, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner());
            drained = guard;
            long_waits += u64::from(timeout.timed_out());
        }
    }
    channel.disconnect(handler);
    info!(
        sent,
        waits, long_waits, "datachannel ceiling: channel closed"
    );
}

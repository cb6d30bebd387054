//! The viewer connection's datachannels other than the proxy's transport, as the session sees
//! them: the device's `control` channel (text messages both ways) and a channel the viewer
//! opened, which the session keeps or closes by its label and its reliability.

use gst::prelude::*;
use gst_webrtc::WebRTCDataChannel;
use tokio::sync::mpsc;

use crate::media::{MediaError, webrtc};

/// What the `control` channel's callbacks forward (they run on GStreamer threads).
#[derive(Debug)]
pub enum ControlEvent {
    Open,
    Message(String),
}

/// The device's `control` channel.
#[derive(Clone)]
pub struct ControlChannel(WebRTCDataChannel);

impl ControlChannel {
    /// Creates it on `webrtc` (before the offer, so it is negotiated in it). A full queue
    /// means a viewer flooding requests: dropping is the answer.
    pub(super) fn create(
        webrtc: &gst::Element,
        events: mpsc::Sender<ControlEvent>,
    ) -> Result<Self, MediaError> {
        let channel = webrtc::create_data_channel(webrtc, "control")?;
        let tx = events.clone();
        channel.connect("on-open", false, move |_| {
            let _ = tx.try_send(ControlEvent::Open);
            None
        });
        channel.connect("on-message-string", false, move |values| {
            if let Ok(Some(text)) = values[1].get::<Option<String>>() {
                let _ = events.try_send(ControlEvent::Message(text));
            }
            None
        });
        Ok(Self(channel))
    }

    /// Sends one text message (webrtcbin queues it; nothing here waits).
    pub fn send(&self, text: &str) {
        self.0.emit_by_name::<()>("send-string", &[&Some(text)]);
    }
}

/// A datachannel the viewer opened.
#[derive(Debug, Clone)]
pub struct ViewerChannel(WebRTCDataChannel);

impl ViewerChannel {
    pub(super) fn new(channel: WebRTCDataChannel) -> Self {
        Self(channel)
    }

    pub fn label(&self) -> String {
        self.0.label().map(|l| l.to_string()).unwrap_or_default()
    }

    /// Ordered, and retransmitted without limit in count or time.
    pub fn reliable(&self) -> bool {
        self.0.is_ordered() && self.0.max_retransmits() == -1 && self.0.max_packet_lifetime() == -1
    }

    /// Closes it (on a blocking thread: `close` takes webrtcbin's locks).
    pub fn close(&self) {
        let channel = self.0.clone();
        tokio::task::spawn_blocking(move || webrtc::close_data_channel(&channel));
    }

    /// The `--bench-datachannel` hook (`media::ceiling`).
    #[cfg(feature = "bench-hooks")]
    pub fn serve_ceiling(&self) {
        crate::media::ceiling::start(self.0.clone());
    }
}

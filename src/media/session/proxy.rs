//! The session's web-UI proxy: the four `proxy-N` channels as the viewer opens them, then the
//! bridge task (`proxy::bridge`), which ends with the session. The session decides whether the
//! grant allows channels at all; this checks the channels themselves.

use std::sync::Arc;

use tracing::{Instrument, warn};

use crate::media::datachannels::{Inbound, Tap};
use crate::media::webrtc;
use crate::proxy::CHANNELS;
use crate::proxy::upstream::Upstream;

pub struct Proxy {
    tap: Arc<Tap>,
    /// Taken by the bridge when it starts; dropped (discarding what came) when the proxy stops.
    inbound: Option<Inbound>,
    seen: [bool; CHANNELS],
    task: Option<tokio::task::JoinHandle<()>>,
    upstream: Arc<Upstream>,
}

impl Proxy {
    pub fn new(tap: Arc<Tap>, inbound: Option<Inbound>, upstream: Arc<Upstream>) -> Self {
        Self {
            tap,
            inbound,
            seen: [false; CHANNELS],
            task: None,
            upstream,
        }
    }

    /// Any proxy channel was opened on this connection.
    pub fn in_use(&self) -> bool {
        self.task.is_some() || self.seen.contains(&true)
    }

    /// A granted viewer opened proxy channel `index`; the bridge starts with the fourth.
    pub fn opened(&mut self, index: usize, channel: &gst_webrtc::WebRTCDataChannel) {
        // docs/proxy.md: ordered and reliable, or a stream's frames could be lost or reordered.
        let reliable = channel.is_ordered()
            && channel.max_retransmits() == -1
            && channel.max_packet_lifetime() == -1;
        if !reliable || self.seen[index] {
            warn!(
                channel = index,
                reliable, "proxy channel not ordered and reliable, or opened twice; proxy off"
            );
            webrtc::close_data_channel(channel);
            self.stop();
            return;
        }
        self.seen[index] = true;
        if self.seen.iter().all(|s| *s)
            && self.task.is_none()
            && let Some(outlet) = self.tap.outlet()
            && let Some(inbound) = self.inbound.take()
        {
            let bridge = crate::proxy::bridge::run(inbound, outlet, self.upstream.clone());
            let task = async move {
                bridge.await;
            };
            self.task = Some(tokio::spawn(task.in_current_span()));
        }
    }

    /// A viewer without the UI scope opened a proxy channel (the session closed it): what it
    /// sent is dropped, and the proxy stays off on this connection.
    pub fn refuse(&mut self) {
        self.inbound = None;
    }

    /// Stops the proxy for the rest of this peer connection and closes its channels.
    pub fn stop(&mut self) {
        self.halt();
        let channels = self.tap.channels();
        // `close` takes webrtcbin's locks: not on a tokio worker.
        tokio::task::spawn_blocking(move || {
            for channel in channels.into_iter().flatten() {
                webrtc::close_data_channel(&channel);
            }
        });
    }

    fn halt(&mut self) {
        self.inbound = None;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    /// The session is over: its pipeline goes to NULL, which closes the channels.
    fn drop(&mut self) {
        self.halt();
    }
}

//! The web-UI proxy: the camera's own HTTP and WebSocket UI carried to the browser over a small
//! fixed set of datachannels (`docs/proxy.md`).
//!
//! - `frame`: the binary frame codec, one frame per datachannel message (pure).
//! - `flow`: per-stream credit windows and the stream table with its lifecycle rules (pure).
//! - `upstream`: the one upstream, its limits, and head rewriting (pure).
//! - `bridge`: the device's task per viewer session, feeding frames to a `flow::Streams` and
//!   running each stream's `exchange` with the upstream (HTTP or WebSocket).

pub mod bridge;
pub mod exchange;
pub mod flow;
pub mod frame;
mod inbox;
pub mod upstream;

/// How many proxy datachannels the browser opens. A stream's frames, both ways, travel on
/// channel `id % CHANNELS`: one lost packet then stalls only a quarter of the streams, and
/// frames of one stream stay in order (`docs/proxy.md`, "Channels"). The labels and their
/// numbers belong to the transport below (`media::datachannels`).
pub use crate::media::datachannels::{CHANNEL_LABELS, CHANNELS, channel_of_label};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_map_to_channel_numbers() {
        for (i, label) in CHANNEL_LABELS.iter().enumerate() {
            assert_eq!(channel_of_label(label), Some(i));
        }
        assert_eq!(channel_of_label("control"), None);
        assert_eq!(channel_of_label("proxy-4"), None);
    }
}

//! The proxy's four datachannels (`docs/proxy.md`, "Channels") as GStreamer sees them, for
//! either end: the device's bridge and the in-process test client.
//!
//! - Receiving: webrtcbin cannot pause one channel, and blocking its callback stalls the whole
//!   association, so `on-message-data` only forwards into a queue bounded in messages and in
//!   bytes. A peer that obeys its credit never fills it (see `INBOUND_BYTES`); one that does is
//!   misbehaving, and the owner of the `Inbound` gets `LinkEvent::Overflow` and drops the proxy.
//! - Sending: `send-data` takes webrtcbin's locks, so it never runs on a tokio worker: one
//!   thread per link emits it (`Outlet`). After each message the thread reads the channel's
//!   `buffered-amount`; above `HIGH_WATER` the channel is marked high, and
//!   `on-buffered-amount-low` (threshold `LOW_WATER`) clears the mark and wakes the owner.
//!   No lock is held across an emit.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gst::glib;
use gst_webrtc::WebRTCDataChannel;
use tokio::sync::{Notify, mpsc};

/// How many datachannels the proxy's transport carries. Defined here, the lower layer, and
/// used by `proxy` (which spreads streams over them, `proxy::CHANNELS`).
pub const CHANNELS: usize = 4;

/// The labels of the proxy channels, indexed by channel number.
pub const CHANNEL_LABELS: [&str; CHANNELS] = ["proxy-0", "proxy-1", "proxy-2", "proxy-3"];

/// The channel number of a proxy datachannel label, `None` for any other label.
pub fn channel_of_label(label: &str) -> Option<usize> {
    CHANNEL_LABELS.iter().position(|l| *l == label)
}

/// Above this many bytes buffered in a channel, no more flow-controlled frames go on it.
pub const HIGH_WATER: u64 = 1 << 20;
/// `buffered-amount-low-threshold`: sending resumes once the channel drains to this.
pub const LOW_WATER: u64 = 256 << 10;
/// Bytes of received messages waiting for the device's bridge. The owner drains the queue
/// continuously (it never waits on an upstream while doing so) and data the browser may have
/// in flight is bounded by credit, 64 streams x 256 KiB (`flow::OPENER_WINDOW`) = 16 MiB;
/// heads, credits, ends and resets add a little. 20 MiB is therefore never reached by a peer
/// that keeps to the rules.
pub const INBOUND_BYTES: usize = 20 << 20;
/// Messages waiting for the owner. Every stream's whole window in full 64 KiB frames is 64 x 4
/// = 256 messages; 8192 allows the same in 2 KiB frames (a browser's usual chunk is larger).
/// Beyond it the peer is flooding tiny frames faster than the owner takes them.
pub const INBOUND_MESSAGES: usize = 8192;
/// Accounting cost of one queued message besides its bytes (its allocation and queue slot).
const MESSAGE_OVERHEAD: usize = 64;
/// Messages queued for the sending thread. Each is at most 64 KiB and the owner only queues
/// flow-controlled frames while the channel is below `HIGH_WATER`: at most 2 MiB.
const OUTLET_MESSAGES: usize = 32;

/// What arrives from the channels.
#[derive(Debug)]
pub enum LinkEvent {
    /// A binary message on channel `channel`.
    Message { channel: usize, bytes: Bytes },
    /// A channel closed (or failed): the proxy is over for this peer connection.
    Closed(usize),
    /// The peer sent more than the queue holds: it ignores flow control.
    Overflow,
}

struct Shared {
    tx: mpsc::Sender<LinkEvent>,
    /// Bytes (with `MESSAGE_OVERHEAD` each) the queue may hold.
    limit: usize,
    queued: AtomicUsize,
    overflow: AtomicBool,
    high: [AtomicBool; CHANNELS],
    /// A channel drained below `LOW_WATER`.
    low: Notify,
}

/// The receiving side, attached to channels as they appear (on GLib threads).
pub struct Tap {
    shared: Arc<Shared>,
    channels: Mutex<[Option<WebRTCDataChannel>; CHANNELS]>,
}

/// The owner's end of the received messages.
pub struct Inbound {
    rx: mpsc::Receiver<LinkEvent>,
    shared: Arc<Shared>,
}

impl Tap {
    /// The device's tap, its queue bounded by `INBOUND_BYTES`.
    pub fn new() -> (Arc<Tap>, Inbound) {
        Self::with_limit(INBOUND_BYTES)
    }

    /// A tap whose queue holds at most `limit` bytes (the opener's side, in the test kit,
    /// needs a larger one: the device may have 64 x 1 MiB in flight toward it).
    pub fn with_limit(limit: usize) -> (Arc<Tap>, Inbound) {
        let (tx, rx) = mpsc::channel(INBOUND_MESSAGES);
        let shared = Arc::new(Shared {
            tx,
            limit,
            queued: AtomicUsize::new(0),
            overflow: AtomicBool::new(false),
            high: Default::default(),
            low: Notify::new(),
        });
        let tap = Arc::new(Tap {
            shared: shared.clone(),
            channels: Mutex::new(Default::default()),
        });
        (tap, Inbound { rx, shared })
    }

    /// Listens on `channel` as proxy channel `index`; false if that index has a channel
    /// already (a second `proxy-N` is not listened to). Safe on a GLib thread: it only
    /// connects handlers.
    pub fn attach(&self, index: usize, channel: &WebRTCDataChannel) -> bool {
        {
            let mut slots = self.channels.lock().unwrap_or_else(|p| p.into_inner());
            if slots[index].is_some() {
                return false;
            }
            slots[index] = Some(channel.clone());
        }
        channel.set_buffered_amount_low_threshold(LOW_WATER);
        let shared = self.shared.clone();
        channel.connect_on_message_data(move |_, data| {
            let Some(data) = data else { return };
            let bytes = Bytes::copy_from_slice(data);
            let cost = bytes.len() + MESSAGE_OVERHEAD;
            if shared.queued.fetch_add(cost, Ordering::AcqRel) + cost > shared.limit {
                shared.queued.fetch_sub(cost, Ordering::AcqRel);
                shared.flag_overflow();
                return;
            }
            let event = LinkEvent::Message {
                channel: index,
                bytes,
            };
            if shared.tx.try_send(event).is_err() {
                shared.queued.fetch_sub(cost, Ordering::AcqRel);
                shared.flag_overflow();
            }
        });
        let shared = self.shared.clone();
        channel.connect_on_close(move |_| shared.closed(index));
        let shared = self.shared.clone();
        channel.connect_on_error(move |_, _| shared.closed(index));
        let shared = self.shared.clone();
        channel.connect_on_buffered_amount_low(move |_| {
            shared.high[index].store(false, Ordering::Release);
            shared.low.notify_one();
        });
        true
    }

    /// The channels attached so far, by index.
    pub fn channels(&self) -> [Option<WebRTCDataChannel>; CHANNELS] {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Closes every channel attached so far (on a blocking thread: `close` takes webrtcbin's
    /// locks). What they still deliver is dropped with the `Inbound`.
    pub fn close_all(&self) {
        let channels = self.channels();
        tokio::task::spawn_blocking(move || {
            for channel in channels.into_iter().flatten() {
                channel.close();
            }
        });
    }

    /// Starts the sending thread over the four channels; `None` unless all are attached.
    pub fn outlet(&self) -> Option<Outlet> {
        let channels = self.channels();
        if channels.iter().any(Option::is_none) {
            return None;
        }
        let channels: Vec<WebRTCDataChannel> = channels.into_iter().flatten().collect();
        let (tx, rx) = mpsc::channel(OUTLET_MESSAGES);
        let shared = self.shared.clone();
        let thread = channels.clone();
        std::thread::Builder::new()
            .name("proxy-send".into())
            .spawn(move || send_loop(thread, rx, shared))
            .ok()?;
        Some(Outlet {
            tx,
            shared: self.shared.clone(),
            channels,
        })
    }
}

impl Shared {
    fn flag_overflow(&self) {
        if !self.overflow.swap(true, Ordering::AcqRel) {
            // Wake the owner even if the queue is full: it checks the flag first.
            let _ = self.tx.try_send(LinkEvent::Overflow);
        }
    }

    fn closed(&self, index: usize) {
        if self.tx.try_send(LinkEvent::Closed(index)).is_err() {
            self.flag_overflow();
        }
    }
}

impl Inbound {
    /// The next event; `None` when the tap is gone.
    pub async fn recv(&mut self) -> Option<LinkEvent> {
        if self.shared.overflow.load(Ordering::Acquire) {
            return Some(LinkEvent::Overflow);
        }
        let event = self.rx.recv().await?;
        if let LinkEvent::Message { bytes, .. } = &event {
            self.shared
                .queued
                .fetch_sub(bytes.len() + MESSAGE_OVERHEAD, Ordering::AcqRel);
        }
        Some(event)
    }
}

/// The sending side: a thread emits `send-data`, in order per channel.
pub struct Outlet {
    tx: mpsc::Sender<(usize, Bytes)>,
    shared: Arc<Shared>,
    channels: Vec<WebRTCDataChannel>,
}

impl Outlet {
    /// Queues one message on channel `index`; false once the link is gone.
    pub async fn send(&self, index: usize, bytes: Vec<u8>) -> bool {
        self.tx.send((index, Bytes::from(bytes))).await.is_ok()
    }

    /// The channel holds more than `HIGH_WATER`: hold flow-controlled frames back.
    pub fn is_high(&self, index: usize) -> bool {
        self.shared.high[index].load(Ordering::Acquire)
    }

    /// Resolves when some channel drained below `LOW_WATER` (a stored wake-up counts).
    pub async fn drained(&self) {
        self.shared.low.notified().await
    }

    /// Closes the four channels (on a blocking thread: `close` takes webrtcbin's locks).
    pub async fn close(&self) {
        let channels = self.channels.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for channel in channels {
                channel.close();
            }
        })
        .await;
    }
}

fn send_loop(
    channels: Vec<WebRTCDataChannel>,
    mut rx: mpsc::Receiver<(usize, Bytes)>,
    shared: Arc<Shared>,
) {
    while let Some((index, bytes)) = rx.blocking_recv() {
        let channel = &channels[index];
        let data = glib::Bytes::from_owned(bytes);
        if let Err(e) = channel.send_data_full(Some(&data)) {
            tracing::debug!(channel = index, error = %e, "proxy channel refused a message");
            continue;
        }
        let buffered = channel.buffered_amount();
        if buffered > HIGH_WATER {
            tracing::debug!(
                channel = index,
                buffered,
                "proxy channel above its high-water mark"
            );
            shared.high[index].store(true, Ordering::Release);
            // Only this thread raises the amount: if it is already back at or below the
            // threshold, the low signal may have fired before the mark was set.
            if channel.buffered_amount() <= LOW_WATER {
                shared.high[index].store(false, Ordering::Release);
                shared.low.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gst::prelude::*;

    /// Stops its webrtcbin when dropped.
    struct Bin(gst::Element);

    impl Drop for Bin {
        fn drop(&mut self) {
            let _ = self.0.set_state(gst::State::Null);
        }
    }

    /// A channel of a webrtcbin with no peer: enough to emit its signals by hand.
    fn channel() -> (Bin, WebRTCDataChannel) {
        crate::media::init().unwrap();
        let webrtc = gst::ElementFactory::make("webrtcbin").build().unwrap();
        webrtc.set_state(gst::State::Ready).unwrap();
        let channel = crate::media::webrtc::create_data_channel(&webrtc, "proxy-0").unwrap();
        (Bin(webrtc), channel)
    }

    fn deliver(channel: &WebRTCDataChannel, len: usize) {
        let bytes = glib::Bytes::from_owned(vec![0u8; len]);
        channel.emit_by_name::<()>("on-message-data", &[&bytes]);
    }

    #[tokio::test]
    async fn messages_are_queued_and_a_flood_is_overflow() {
        let (_webrtc, channel) = channel();
        let (tap, mut inbound) = Tap::new();
        assert!(tap.attach(0, &channel));
        assert!(!tap.attach(0, &channel), "one channel per index");
        deliver(&channel, 10);
        match inbound.recv().await {
            Some(LinkEvent::Message { channel: 0, bytes }) => assert_eq!(bytes.len(), 10),
            other => panic!("{other:?}"),
        }
        // 20 MiB in 64 KiB messages that nobody takes: the byte budget runs out first.
        for _ in 0..(INBOUND_BYTES / 65536 + 1) {
            deliver(&channel, 65536);
        }
        let mut messages = 0;
        loop {
            match inbound.recv().await {
                Some(LinkEvent::Message { .. }) => messages += 1,
                Some(LinkEvent::Overflow) => break,
                other => panic!("{other:?}"),
            }
        }
        assert!(messages < INBOUND_BYTES / 65536, "{messages}");
        assert!(
            matches!(inbound.recv().await, Some(LinkEvent::Overflow)),
            "stays"
        );
    }

    #[tokio::test]
    async fn too_many_small_messages_are_overflow() {
        let (_webrtc, channel) = channel();
        let (tap, mut inbound) = Tap::new();
        tap.attach(0, &channel);
        for _ in 0..INBOUND_MESSAGES {
            deliver(&channel, 1);
        }
        assert!(
            !inbound.shared.overflow.load(Ordering::Acquire),
            "exactly full is fine"
        );
        deliver(&channel, 1);
        let mut seen = 0;
        while let Some(LinkEvent::Message { .. }) = inbound.recv().await {
            seen += 1;
        }
        assert_eq!(seen, 0, "overflow is reported first");
    }
}

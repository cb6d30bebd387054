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

use crate::proxy::CHANNELS;

/// Above this many bytes buffered in a channel, no more flow-controlled frames go on it.
pub const HIGH_WATER: u64 = 1 << 20;
/// `buffered-amount-low-threshold`: sending resumes once the channel drains to this.
pub const LOW_WATER: u64 = 256 << 10;
/// Bytes of received messages waiting for the owner. The owner drains the queue continuously
/// (it never waits on an upstream while doing so) and data a peer may have in flight is
/// bounded by credit, 64 streams x 256 KiB = 16 MiB; heads, credits, ends and resets add a
/// little. 20 MiB is therefore never reached by a peer that keeps to the rules.
pub const INBOUND_BYTES: usize = 20 << 20;
/// Messages waiting for the owner: at ~300 per full window of 64 KiB frames, 8192 leaves room
/// for every stream to have a window of smaller frames in flight at once, and beyond it the
/// peer is flooding tiny frames.
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
    pub fn new() -> (Arc<Tap>, Inbound) {
        let (tx, rx) = mpsc::channel(INBOUND_MESSAGES);
        let shared = Arc::new(Shared {
            tx,
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
            if shared.queued.fetch_add(cost, Ordering::AcqRel) + cost > INBOUND_BYTES {
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
        if channel.buffered_amount() > HIGH_WATER {
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

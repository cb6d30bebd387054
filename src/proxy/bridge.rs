//! The device's proxy for one viewer session: one task owns the stream table and the four
//! channels; each stream's exchange with the upstream runs in a task of its own.
//!
//! ```text
//! GLib on-message-data -> Inbound (bounded) -> bridge task -> Inbox -> exchange -> upstream
//! upstream -> exchange (takes credit) -> Out (bounded) -> bridge task -> per-channel queue
//!          -> Outlet thread (send-data, buffered-amount marks) -> datachannel
//! ```
//!
//! Credit: an exchange takes permits from its stream's semaphore before it hands on a
//! flow-controlled piece, so with no credit it stops reading the upstream. Budget: then it
//! takes as many from the session's `RESPONSE_BUDGET`, held until the frame is handed to the
//! sending thread. Buffered amount: a channel above the high-water mark keeps its queued frames
//! (at most the credit of its streams, and all channels together at most the budget) until
//! `on-buffered-amount-low`. `Credit` and `Reset` frames skip the queue.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use super::CHANNELS;
use super::exchange::{self, Budget, Exchange, Out};
use super::flow::{DEFAULT_MAX_STREAMS, Delivery, Role, State, Streams};
use super::frame::{self, Body, Frame, ResetCode, StreamId};
use super::inbox::{Inbox, Item};
use super::upstream::Upstream;
use crate::media::datachannels::{Inbound, LinkEvent, Outlet};

/// Events from all exchanges of a session. Each event's data is covered by credit the exchange
/// already took; 64 is a frame or so per stream, and the bridge drains it continuously.
const OUT_EVENTS: usize = 64;

/// Response bytes of one session read from the upstream and not yet handed to the sending
/// thread (in `Out` events and the per-channel queues), over all its streams. Credit alone
/// would allow 64 streams x 1 MiB (`flow::ACCEPTOR_WINDOW`) = 64 MiB; this caps it at 8 MiB,
/// half of what 64 x 256 KiB allowed before the downstream window grew. Enough not to slow
/// anything down: one stream never has more than its 1 MiB window in flight, so 8 MiB is two
/// full windows queued per channel while the channels are above their high-water mark, and
/// below it frames pass straight through. A stream without credit takes no budget (credit
/// comes first), so readers that stopped cannot use it up.
pub const RESPONSE_BUDGET: usize = 8 << 20;

/// Why the proxy of a session stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error("proxy channel {0} closed")]
    ChannelClosed(usize),
    #[error("the viewer sent more than its credit allows (inbound queue full)")]
    Overflow,
    #[error("the channels' sending thread is gone")]
    SendFailed,
}

struct Handle {
    credit: Arc<Semaphore>,
    inbox: Arc<Inbox>,
    /// Aborted on drop unless detached.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Handle {
    /// Lets a finished exchange's task run out (a WebSocket still flushing its close).
    fn detach(mut self) {
        self.task = None;
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inbox.close();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub struct Bridge {
    upstream: Arc<Upstream>,
    streams: Streams,
    handles: HashMap<StreamId, Handle>,
    /// Frames waiting for their channel to drain, in order, with their share of the budget.
    pending: [VecDeque<(Frame, Option<Budget>)>; CHANNELS],
    outlet: Outlet,
    out_tx: mpsc::Sender<(StreamId, Out)>,
    budget: Arc<Semaphore>,
    credit_tx: mpsc::UnboundedSender<StreamId>,
}

/// Runs the proxy of one session until a channel closes or the viewer misbehaves; the
/// channels are closed on the way out.
pub async fn run(mut inbound: Inbound, outlet: Outlet, upstream: Arc<Upstream>) -> BridgeError {
    let (out_tx, mut out_rx) = mpsc::channel(OUT_EVENTS);
    // At most one wake-up per stream is outstanding (Inbox sends on 0 -> more): bounded by
    // the 64-stream limit.
    let (credit_tx, mut credit_rx) = mpsc::unbounded_channel();
    let mut bridge = Bridge {
        upstream,
        streams: Streams::new(Role::Acceptor, DEFAULT_MAX_STREAMS),
        handles: HashMap::new(),
        pending: Default::default(),
        outlet,
        out_tx,
        budget: Arc::new(Semaphore::new(RESPONSE_BUDGET)),
        credit_tx,
    };
    info!("web-UI proxy open");
    let error = loop {
        let blocked = bridge.blocked();
        let step = tokio::select! {
            event = inbound.recv() => match event {
                Some(LinkEvent::Message { channel, bytes }) => {
                    bridge.on_message(channel, &bytes).await
                }
                Some(LinkEvent::Closed(channel)) => Err(BridgeError::ChannelClosed(channel)),
                Some(LinkEvent::Overflow) => Err(BridgeError::Overflow),
                None => Err(BridgeError::ChannelClosed(0)),
            },
            Some((id, out)) = out_rx.recv() => bridge.on_out(id, out).await,
            Some(id) = credit_rx.recv() => bridge.on_consumed(id).await,
            _ = bridge.outlet.drained(), if blocked => Ok(()),
        };
        if let Err(e) = step.and(bridge.flush().await) {
            break e;
        }
    };
    match &error {
        BridgeError::Overflow => warn!(%error, "web-UI proxy closed"),
        _ => info!(%error, "web-UI proxy closed"),
    }
    bridge.handles.clear();
    bridge.outlet.close().await;
    error
}

impl Bridge {
    /// Some channel has frames waiting and is above its high-water mark.
    fn blocked(&self) -> bool {
        (0..CHANNELS).any(|c| !self.pending[c].is_empty() && self.outlet.is_high(c))
    }

    /// Sends a frame now, bypassing the queue (`Credit`, `Reset`: already recorded).
    async fn send_now(&self, frame: &Frame) -> Result<(), BridgeError> {
        let ok = self
            .outlet
            .send(frame.stream.channel(), frame::encode(frame))
            .await;
        ok.then_some(()).ok_or(BridgeError::SendFailed)
    }

    /// Sends queued frames of every channel that is below its high-water mark.
    async fn flush(&mut self) -> Result<(), BridgeError> {
        for c in 0..CHANNELS {
            while !self.outlet.is_high(c) {
                let Some((frame, budget)) = self.pending[c].pop_front() else {
                    break;
                };
                // A stream reset since the frame was queued: drop it (and its budget).
                if self.streams.on_send(&frame).is_err() {
                    continue;
                }
                self.send_now(&frame).await?;
                // In the sending thread's queue now: its bytes leave the budget.
                drop(budget);
                self.forget_if_closed(frame.stream);
            }
        }
        Ok(())
    }

    fn forget_if_closed(&mut self, id: StreamId) {
        if !matches!(
            self.streams.state(id),
            Some(State::Open | State::HalfClosedLocal | State::HalfClosedRemote)
        ) && let Some(handle) = self.handles.remove(&id)
        {
            handle.detach();
        }
    }

    async fn on_message(&mut self, channel: usize, bytes: &[u8]) -> Result<(), BridgeError> {
        let frame = match frame::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                debug!(channel, error = %e, "undecodable proxy frame");
                let reply = self.streams.undecodable(channel, bytes, &e.to_string());
                if let Some(reply) = reply {
                    self.handles.remove(&reply.stream);
                    self.send_now(&reply).await?;
                }
                return Ok(());
            }
        };
        let id = frame.stream;
        match self.streams.on_receive(channel, &frame) {
            Err(violation) => {
                debug!(stream = %id, error = %violation.error, "proxy stream violation");
                self.handles.remove(&id);
                if let Some(reply) = violation.reply {
                    self.send_now(&reply).await?;
                }
                return Ok(());
            }
            Ok(Delivery::Ignore) => return Ok(()),
            Ok(Delivery::Deliver) => {}
        }
        match frame.body {
            Body::RequestHead(head) => self.open(id, head),
            Body::Data(data) => {
                let n = data.as_bytes().len();
                self.deliver(id, Item::Data(data.into_vec().into()), n)
                    .await?
            }
            Body::End => self.deliver(id, Item::End(None), 0).await?,
            Body::WsMessage(m) => {
                let n = 1 + m.payload().len();
                self.deliver(id, Item::Ws(m), n).await?
            }
            Body::WsClose(c) => self.deliver(id, Item::End(Some(c)), 0).await?,
            Body::Credit(n) => {
                if let Some(h) = self.handles.get(&id) {
                    h.credit.add_permits(n.get() as usize);
                }
            }
            Body::Reset(r) => {
                debug!(stream = %id, code = ?r.code(), "viewer reset a proxy stream");
                self.handles.remove(&id);
            }
            Body::ResponseHead(_) => unreachable!("flow::Streams refuses heads from the opener"),
        }
        self.forget_if_closed(id);
        Ok(())
    }

    /// Hands the browser's bytes to the exchange, or discards them (it stopped reading) and
    /// returns their credit.
    async fn deliver(&mut self, id: StreamId, item: Item, cost: usize) -> Result<(), BridgeError> {
        let taken = self.handles.get(&id).is_some_and(|h| h.inbox.push(item));
        if !taken && cost > 0 {
            let cost = u32::try_from(cost).expect("a frame's cost");
            if let Some(credit) = self.streams.consumed(id, cost) {
                self.send_now(&credit).await?;
            }
        }
        Ok(())
    }

    fn open(&mut self, id: StreamId, head: frame::RequestHead) {
        debug!(stream = %id, method = head.method(), websocket = head.websocket(), "proxy request");
        let credit = Arc::new(Semaphore::new(Role::Acceptor.send_window() as usize));
        let inbox = Inbox::new(id, self.credit_tx.clone());
        let x = Exchange {
            id,
            upstream: self.upstream.clone(),
            out: self.out_tx.clone(),
            credit: credit.clone(),
            budget: self.budget.clone(),
            inbox: inbox.clone(),
        };
        let task = if head.websocket() {
            tokio::spawn(exchange::websocket(x, head))
        } else {
            tokio::spawn(exchange::http(x, head))
        };
        let task = Some(task);
        self.handles.insert(
            id,
            Handle {
                credit,
                inbox,
                task,
            },
        );
    }

    async fn on_out(&mut self, id: StreamId, out: Out) -> Result<(), BridgeError> {
        if !self.handles.contains_key(&id) {
            return Ok(()); // reset meanwhile
        }
        let (body, budget) = match out {
            Out::Head(h) => (Body::ResponseHead(h), None),
            Out::Data(b, budget) => {
                let data = frame::Data::new(b.to_vec()).expect("1..=MAX_DATA bytes");
                (Body::Data(data), Some(budget))
            }
            Out::End => (Body::End, None),
            Out::Ws(m, budget) => (Body::WsMessage(m), Some(budget)),
            Out::WsClose(c) => (Body::WsClose(c), None),
            Out::Reset(code, message) => {
                debug!(stream = %id, ?code, %message, "proxy stream reset by the device");
                return self.reset(id, code, &message).await;
            }
        };
        self.pending[id.channel()].push_back((Frame { stream: id, body }, budget));
        Ok(())
    }

    async fn on_consumed(&mut self, id: StreamId) -> Result<(), BridgeError> {
        let Some(n) = self.handles.get(&id).map(|h| h.inbox.take_consumed()) else {
            return Ok(());
        };
        if n > 0
            && let Some(credit) = self.streams.consumed(id, n)
        {
            self.send_now(&credit).await?;
        }
        Ok(())
    }

    async fn reset(
        &mut self,
        id: StreamId,
        code: ResetCode,
        message: &str,
    ) -> Result<(), BridgeError> {
        self.handles.remove(&id);
        match self.streams.reset(id, code, message) {
            Some(frame) => self.send_now(&frame).await,
            None => Ok(()),
        }
    }
}

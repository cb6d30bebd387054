//! Credit-based flow control and stream lifecycles (`docs/proxy.md`, "Flow control",
//! "Streams"). Pure state machines: the caller passes every frame it sends to `on_send` and
//! every frame it receives to `on_receive`, and sends the frames they hand back.
//!
//! Why credits: a datachannel's buffered amount only holds back its *sender*, and webrtcbin
//! cannot stop reading one channel, so without per-stream credit one slow reader would make
//! the device buffer without bound or stall every stream behind it.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

mod credit;

pub use self::credit::{ACCEPTOR_WINDOW, FlowError, Inbound, OPENER_WINDOW, Window};
use super::CHANNELS;
use super::frame::{Body, Frame, Reset, ResetCode, StreamId, WsKind};

/// Streams the device serves at once; the browser queues beyond this.
pub const DEFAULT_MAX_STREAMS: usize = 64;

/// Which end of the proxy this table is: the browser opens every stream, the device accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Opener,
    Acceptor,
}

impl Role {
    /// The initial window of the direction this end sends in.
    pub const fn send_window(self) -> u32 {
        match self {
            Role::Opener => OPENER_WINDOW,
            Role::Acceptor => ACCEPTOR_WINDOW,
        }
    }

    /// The initial window of the direction this end receives in.
    pub const fn recv_window(self) -> u32 {
        self.peer().send_window()
    }

    const fn peer(self) -> Self {
        match self {
            Role::Opener => Role::Acceptor,
            Role::Acceptor => Role::Opener,
        }
    }
}

/// A stream's lifecycle; "local" is this end's sending direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// We ended our direction (`End` or `WsClose`); the peer may still send.
    HalfClosedLocal,
    /// The peer ended its direction; we may still send.
    HalfClosedRemote,
    /// Both directions ended, or a `Reset` went either way. Nothing is kept.
    Closed,
}

impl State {
    fn can_send(self, local: bool) -> bool {
        match self {
            State::Open => true,
            State::HalfClosedLocal => !local,
            State::HalfClosedRemote => local,
            State::Closed => false,
        }
    }

    fn end(self, local: bool) -> State {
        match (self, local) {
            (State::Open, true) => State::HalfClosedLocal,
            (State::Open, false) => State::HalfClosedRemote,
            _ => State::Closed,
        }
    }
}

/// A frame that breaks the stream rules; each maps to the reset code sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("stream {stream} travels on channel {expected}, not {channel}")]
    WrongChannel {
        stream: StreamId,
        channel: usize,
        expected: usize,
    },
    #[error("a {frame} frame cannot come from the {sender:?}")]
    WrongSender { frame: &'static str, sender: Role },
    #[error("stream id is not above the last one opened on its channel")]
    IdNotIncreasing,
    #[error("{0} streams are open already")]
    TooManyStreams(usize),
    #[error("no stream was opened with this id")]
    Unknown,
    #[error("the stream is closed")]
    Closed,
    #[error("a second head on one stream")]
    DuplicateHead,
    #[error("{0} frame after its sender ended its direction")]
    AfterEnd(&'static str),
    #[error("{0} frame before the response head")]
    BeforeHead(&'static str),
    #[error("{0} frame on a WebSocket stream")]
    HttpOnWebSocket(&'static str),
    #[error("{0} frame on a stream that is not an open WebSocket")]
    NotUpgraded(&'static str),
    #[error("status 101 for a request that did not ask for a WebSocket")]
    UnaskedUpgrade,
    #[error("fragments of one WebSocket message change kind")]
    FragmentKind,
    #[error("ws-close in the middle of a fragmented message")]
    CloseMidMessage,
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl StreamError {
    pub fn reset_code(&self) -> ResetCode {
        match self {
            StreamError::TooManyStreams(_) => ResetCode::Refused,
            StreamError::Closed => ResetCode::Closed,
            StreamError::Flow(_) => ResetCode::FlowControl,
            _ => ResetCode::Protocol,
        }
    }
}

/// What to do with a received frame that is within the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Act on it.
    Deliver,
    /// Drop it: a `Credit` or `Reset` that crossed our own end of the stream.
    Ignore,
}

/// A received frame that broke the rules. The stream, if it was open, is gone; send `reply`
/// (a `Reset`; none answers a `Reset`) on the stream's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub stream: StreamId,
    pub error: StreamError,
    pub reply: Option<Frame>,
}

#[derive(Debug)]
struct Stream {
    state: State,
    websocket: bool,
    /// The response head went by.
    answered: bool,
    /// It was a 101: WebSocket messages flow from now on.
    upgraded: bool,
    send: Window,
    recv: Inbound,
    /// The kind of a fragmented message still being sent / received.
    send_partial: Option<WsKind>,
    recv_partial: Option<WsKind>,
}

/// What a frame does to its stream once it passed the checks.
enum Step {
    Stay,
    End,
    Close,
}

/// Every stream of one peer connection, as one end sees them.
#[derive(Debug)]
pub struct Streams {
    role: Role,
    max_streams: usize,
    /// Highest id opened (or refused) per channel: ids at or below it are used up.
    last_opened: [u32; CHANNELS],
    streams: BTreeMap<StreamId, Stream>,
}

impl Streams {
    pub fn new(role: Role, max_streams: usize) -> Self {
        Self {
            role,
            max_streams,
            last_opened: [0; CHANNELS],
            streams: BTreeMap::new(),
        }
    }

    /// Streams not yet closed.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// `None` for an id never opened, `Closed` for one used up.
    pub fn state(&self, id: StreamId) -> Option<State> {
        match self.streams.get(&id) {
            Some(s) => Some(s.state),
            None if id.get() <= self.last_opened[id.channel()] => Some(State::Closed),
            None => None,
        }
    }

    /// Flow-controlled bytes we may send on the stream now.
    pub fn send_credit(&self, id: StreamId) -> u32 {
        self.streams.get(&id).map_or(0, |s| s.send.available())
    }

    /// For the opener: the id for its next stream (ids count up from 1).
    pub fn next_id(&self) -> Option<StreamId> {
        let highest = self.last_opened.iter().max().copied().unwrap_or(0);
        highest.checked_add(1).and_then(StreamId::new)
    }

    /// Checks and records a frame we are about to send; on error nothing changed and the
    /// frame must not be sent. Frames from `consumed` and `reset` are recorded already.
    pub fn on_send(&mut self, frame: &Frame) -> Result<(), StreamError> {
        self.apply(frame, true, None).map(|_| ())
    }

    /// Checks and records a frame received on `channel`.
    pub fn on_receive(&mut self, channel: usize, frame: &Frame) -> Result<Delivery, Violation> {
        self.apply(frame, false, Some(channel)).map_err(|error| {
            self.streams.remove(&frame.stream);
            let reply = match frame.body {
                Body::Reset(_) => None,
                _ => Some(reset_frame(
                    frame.stream,
                    error.reset_code(),
                    error.to_string(),
                )),
            };
            Violation {
                stream: frame.stream,
                error,
                reply,
            }
        })
    }

    /// `n` received bytes of the stream were handed on; returns a `Credit` to send, if due.
    pub fn consumed(&mut self, id: StreamId, n: u32) -> Option<Frame> {
        let stream = self.streams.get_mut(&id)?;
        let credit = stream.recv.consumed(n)?;
        // After the peer's End nothing more comes, so credit would be wasted.
        if !stream.state.can_send(false) {
            return None;
        }
        let credit = NonZeroU32::new(credit).expect("Inbound returns nonzero credit");
        Some(Frame {
            stream: id,
            body: Body::Credit(credit),
        })
    }

    /// A message received on `channel` that did not decode (`frame::decode` failed with
    /// `error`). Returns the `Reset protocol` to send, if any: for an open stream, which is
    /// dropped; and for a `RequestHead` (type byte 0x01) whose id is new on its own channel
    /// (a refused target, method or header), whose id is then used up. Anything else is
    /// dropped without an answer.
    pub fn undecodable(&mut self, channel: usize, msg: &[u8], error: &str) -> Option<Frame> {
        let id = super::frame::peek_stream(msg)?;
        if self.streams.contains_key(&id) {
            return self.reset(id, ResetCode::Protocol, error);
        }
        let new_head = msg.first() == Some(&0x01)
            && self.role == Role::Acceptor
            && id.channel() == channel
            && id.get() > self.last_opened[channel];
        if !new_head {
            return None;
        }
        self.last_opened[channel] = id.get();
        Some(reset_frame(id, ResetCode::Protocol, error))
    }

    /// Abandons an open stream; returns the `Reset` to send, `None` if it was not open.
    pub fn reset(&mut self, id: StreamId, code: ResetCode, message: &str) -> Option<Frame> {
        self.streams
            .remove(&id)
            .map(|_| reset_frame(id, code, message))
    }

    fn apply(
        &mut self,
        frame: &Frame,
        local: bool,
        channel: Option<usize>,
    ) -> Result<Delivery, StreamError> {
        let id = frame.stream;
        let expected = id.channel();
        if let Some(channel) = channel.filter(|c| *c != expected) {
            return Err(StreamError::WrongChannel {
                stream: id,
                channel,
                expected,
            });
        }
        let sender = if local { self.role } else { self.role.peer() };
        let name = frame.body.name();
        if let Body::RequestHead(head) = &frame.body {
            if sender != Role::Opener {
                return Err(StreamError::WrongSender {
                    frame: name,
                    sender,
                });
            }
            if self.streams.contains_key(&id) {
                return Err(StreamError::DuplicateHead);
            }
            if id.get() <= self.last_opened[expected] {
                return Err(StreamError::IdNotIncreasing);
            }
            if self.streams.len() >= self.max_streams {
                if !local {
                    self.last_opened[expected] = id.get();
                }
                return Err(StreamError::TooManyStreams(self.streams.len()));
            }
            self.last_opened[expected] = id.get();
            self.streams
                .insert(id, Stream::new(self.role, head.websocket()));
            return Ok(Delivery::Deliver);
        }
        let used = id.get() <= self.last_opened[expected];
        let Some(st) = self.streams.get_mut(&id) else {
            return match (&frame.body, used) {
                _ if local => Err(if used {
                    StreamError::Closed
                } else {
                    StreamError::Unknown
                }),
                (Body::Reset(_), _) | (Body::Credit(_), true) => Ok(Delivery::Ignore),
                (_, true) => Err(StreamError::Closed),
                (_, false) => Err(StreamError::Unknown),
            };
        };
        let may_send = st.state.can_send(local);
        let step = match &frame.body {
            Body::RequestHead(_) => unreachable!("handled above"),
            Body::ResponseHead(head) => {
                if sender != Role::Acceptor {
                    return Err(StreamError::WrongSender {
                        frame: name,
                        sender,
                    });
                }
                if st.answered {
                    return Err(StreamError::DuplicateHead);
                }
                // The acceptor cannot end its direction before its head, so it may send.
                let upgraded = head.status() == 101;
                if upgraded && !st.websocket {
                    return Err(StreamError::UnaskedUpgrade);
                }
                (st.answered, st.upgraded) = (true, upgraded);
                Step::Stay
            }
            Body::Data(_) | Body::End => {
                if !may_send {
                    return Err(StreamError::AfterEnd(name));
                }
                match sender {
                    Role::Opener if st.websocket => return Err(StreamError::HttpOnWebSocket(name)),
                    Role::Acceptor if !st.answered => return Err(StreamError::BeforeHead(name)),
                    Role::Acceptor if st.upgraded => {
                        return Err(StreamError::HttpOnWebSocket(name));
                    }
                    _ => {}
                }
                match frame.body {
                    Body::End if st.websocket => Step::Close, // a refused upgrade ends both ways
                    Body::End => Step::End,
                    _ => {
                        st.flow(local, frame.body.flow_cost())?;
                        Step::Stay
                    }
                }
            }
            Body::WsMessage(m) => {
                if !st.upgraded {
                    return Err(StreamError::NotUpgraded(name));
                }
                if !may_send {
                    return Err(StreamError::AfterEnd(name));
                }
                if st.partial(local).is_some_and(|k| k != m.kind()) {
                    return Err(StreamError::FragmentKind);
                }
                st.flow(local, frame.body.flow_cost())?;
                *st.partial(local) = m.more().then_some(m.kind());
                Step::Stay
            }
            Body::WsClose(_) => {
                if !st.upgraded {
                    return Err(StreamError::NotUpgraded(name));
                }
                if !may_send {
                    return Err(StreamError::AfterEnd(name));
                }
                if st.partial(local).is_some() {
                    return Err(StreamError::CloseMidMessage);
                }
                Step::End
            }
            Body::Credit(n) => {
                if !local {
                    st.send.grant(n.get())?;
                }
                Step::Stay
            }
            Body::Reset(_) => Step::Close,
        };
        match step {
            Step::Stay => {}
            Step::End => st.state = st.state.end(local),
            Step::Close => st.state = State::Closed,
        }
        if st.state == State::Closed {
            self.streams.remove(&id);
        }
        Ok(Delivery::Deliver)
    }
}

impl Stream {
    /// A new stream as `role` sees it: its sending window is its own direction's.
    fn new(role: Role, websocket: bool) -> Self {
        Self {
            state: State::Open,
            websocket,
            answered: false,
            upgraded: false,
            send: Window::new(role.send_window()),
            recv: Inbound::new(role.recv_window()),
            send_partial: None,
            recv_partial: None,
        }
    }

    fn flow(&mut self, local: bool, cost: u32) -> Result<(), FlowError> {
        if local {
            self.send.consume_send(cost)
        } else {
            self.recv.received(cost)
        }
    }

    fn partial(&mut self, local: bool) -> &mut Option<WsKind> {
        if local {
            &mut self.send_partial
        } else {
            &mut self.recv_partial
        }
    }
}

fn reset_frame(stream: StreamId, code: ResetCode, message: impl Into<String>) -> Frame {
    Frame {
        stream,
        body: Body::Reset(Reset::new(code, message)),
    }
}

#[cfg(test)]
mod tests;

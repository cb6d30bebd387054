//! The client's owning task: the stream table, the channels, and each stream's queues.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{ClientError, WsEvent};
use pipe::media::datachannels::{Inbound, LinkEvent, Outlet};
use pipe::proxy::CHANNELS;
use pipe::proxy::flow::{DEFAULT_MAX_STREAMS, Delivery, Role, State, Streams};
use pipe::proxy::frame::{self, Body, Frame, RequestHead, ResetCode, StreamId, WsKind};

pub(super) enum Command {
    Open {
        head: RequestHead,
        reply: oneshot::Sender<Result<Opened, ClientError>>,
    },
    Send(Frame),
    Consumed(StreamId, u32),
    Cancel(StreamId),
    Raw(usize, Vec<u8>),
}

pub(super) struct Opened {
    pub(super) id: StreamId,
    pub(super) head: oneshot::Receiver<Result<frame::ResponseHead, ClientError>>,
    pub(super) body: mpsc::UnboundedReceiver<Result<Bytes, ClientError>>,
    pub(super) ws: mpsc::UnboundedReceiver<Result<WsEvent, ClientError>>,
    pub(super) credit: Arc<Semaphore>,
}

/// The client's record of one stream. Its receive queues are unbounded in type but bounded by
/// credit: the device sends at most a window (1 MiB, `flow::ACCEPTOR_WINDOW`) that the caller
/// has not read.
struct Entry {
    head: Option<oneshot::Sender<Result<frame::ResponseHead, ClientError>>>,
    body: Option<mpsc::UnboundedSender<Result<Bytes, ClientError>>>,
    ws: Option<mpsc::UnboundedSender<Result<WsEvent, ClientError>>>,
    partial: Option<(WsKind, Vec<u8>)>,
    credit: Arc<Semaphore>,
}

struct Task {
    streams: Streams,
    entries: HashMap<StreamId, Entry>,
    pending: [VecDeque<Frame>; CHANNELS],
    outlet: Outlet,
    strays: Arc<std::sync::Mutex<Vec<Frame>>>,
}

pub(super) async fn run(
    mut inbound: Inbound,
    outlet: Outlet,
    mut commands: mpsc::UnboundedReceiver<Command>,
    strays: Arc<std::sync::Mutex<Vec<Frame>>>,
) {
    let mut task = Task {
        streams: Streams::new(Role::Opener, DEFAULT_MAX_STREAMS),
        entries: HashMap::new(),
        pending: Default::default(),
        outlet,
        strays,
    };
    loop {
        let blocked = (0..CHANNELS).any(|c| !task.pending[c].is_empty() && task.outlet.is_high(c));
        let go_on = tokio::select! {
            event = inbound.recv() => match event {
                Some(LinkEvent::Message { channel, bytes }) => { task.on_message(channel, &bytes).await; true }
                _ => false,
            },
            command = commands.recv() => match command {
                Some(command) => { task.on_command(command).await; true }
                None => false,
            },
            _ = task.outlet.drained(), if blocked => true,
        };
        if !go_on {
            break;
        }
        task.flush().await;
    }
    for (_, entry) in task.entries.drain() {
        fail(entry, ClientError::Closed);
    }
}

fn fail(mut entry: Entry, error: ClientError) {
    if let Some(head) = entry.head.take() {
        let _ = head.send(Err(error.clone()));
    }
    if let Some(body) = entry.body.take() {
        let _ = body.send(Err(error.clone()));
    }
    if let Some(ws) = entry.ws.take() {
        let _ = ws.send(Err(error));
    }
    entry.credit.close();
}

impl Task {
    async fn send_now(&self, frame: &Frame) {
        self.outlet
            .send(frame.stream.channel(), frame::encode(frame))
            .await;
    }

    async fn flush(&mut self) {
        for c in 0..CHANNELS {
            while !self.outlet.is_high(c) {
                let Some(frame) = self.pending[c].pop_front() else {
                    break;
                };
                if self.streams.on_send(&frame).is_ok() {
                    self.send_now(&frame).await;
                    self.forget_if_closed(frame.stream);
                }
            }
        }
    }

    fn forget_if_closed(&mut self, id: StreamId) {
        if !matches!(
            self.streams.state(id),
            Some(State::Open | State::HalfClosedLocal | State::HalfClosedRemote)
        ) {
            self.entries.remove(&id);
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Open { head, reply } => {
                let _ = reply.send(self.open(head).await);
            }
            Command::Send(frame) => self.pending[frame.stream.channel()].push_back(frame),
            Command::Consumed(id, n) => {
                if let Some(credit) = self.streams.consumed(id, n) {
                    self.send_now(&credit).await;
                }
            }
            Command::Cancel(id) => {
                self.entries.remove(&id);
                if let Some(reset) = self.streams.reset(id, ResetCode::Cancel, "body dropped") {
                    self.send_now(&reset).await;
                }
            }
            Command::Raw(channel, bytes) => {
                self.outlet.send(channel, bytes).await;
            }
        }
    }

    async fn open(&mut self, head: RequestHead) -> Result<Opened, ClientError> {
        if self.streams.len() >= DEFAULT_MAX_STREAMS {
            return Err(ClientError::Refused("64 streams are open".into()));
        }
        let id = self
            .streams
            .next_id()
            .ok_or_else(|| ClientError::Refused("no ids left".into()))?;
        let frame = Frame {
            stream: id,
            body: Body::RequestHead(head),
        };
        self.streams
            .on_send(&frame)
            .map_err(|e| ClientError::Refused(e.to_string()))?;
        self.send_now(&frame).await;
        let (head_tx, head) = oneshot::channel();
        let (body_tx, body) = mpsc::unbounded_channel();
        let (ws_tx, ws) = mpsc::unbounded_channel();
        // What this client may send: its own direction's window.
        let credit = Arc::new(Semaphore::new(Role::Opener.send_window() as usize));
        self.entries.insert(
            id,
            Entry {
                head: Some(head_tx),
                body: Some(body_tx),
                ws: Some(ws_tx),
                partial: None,
                credit: credit.clone(),
            },
        );
        Ok(Opened {
            id,
            head,
            body,
            ws,
            credit,
        })
    }

    async fn on_message(&mut self, channel: usize, bytes: &[u8]) {
        let frame = match frame::decode(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                if let Some(reply) = self.streams.undecodable(channel, bytes, &e.to_string()) {
                    self.send_now(&reply).await;
                }
                return;
            }
        };
        let id = frame.stream;
        if self.streams.state(id).is_none() {
            self.strays
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(frame);
            return;
        }
        match self.streams.on_receive(channel, &frame) {
            Err(violation) => {
                if let Some(entry) = self.entries.remove(&id) {
                    fail(entry, ClientError::Refused(violation.error.to_string()));
                }
                if let Some(reply) = violation.reply {
                    self.send_now(&reply).await;
                }
                return;
            }
            Ok(Delivery::Ignore) => return,
            Ok(Delivery::Deliver) => {}
        }
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let mut credit = None;
        match frame.body {
            Body::ResponseHead(head) => {
                if let Some(tx) = entry.head.take() {
                    let _ = tx.send(Ok(head));
                }
            }
            Body::Data(data) => {
                if let Some(tx) = &entry.body {
                    let _ = tx.send(Ok(Bytes::from(data.into_vec())));
                }
            }
            Body::End => entry.body = None,
            Body::Credit(n) => entry.credit.add_permits(n.get() as usize),
            Body::Reset(r) => {
                if let Some(entry) = self.entries.remove(&id) {
                    fail(
                        entry,
                        ClientError::Reset {
                            code: r.code(),
                            message: r.message().to_string(),
                        },
                    );
                }
            }
            Body::WsMessage(m) => {
                // Consumed once appended to the message being reassembled.
                credit = self.streams.consumed(id, 1 + m.payload().len() as u32);
                let (kind, more) = (m.kind(), m.more());
                let partial = entry.partial.get_or_insert((kind, Vec::new()));
                partial.1.extend_from_slice(m.payload());
                if !more && let Some((kind, bytes)) = entry.partial.take() {
                    let event = match kind {
                        WsKind::Text => WsEvent::Text(String::from_utf8_lossy(&bytes).into()),
                        WsKind::Binary => WsEvent::Binary(bytes),
                    };
                    if let Some(tx) = &entry.ws {
                        let _ = tx.send(Ok(event));
                    }
                }
            }
            Body::WsClose(c) => {
                if let Some(tx) = entry.ws.take() {
                    let _ = tx.send(Ok(WsEvent::Close(c.code(), c.reason().to_string())));
                }
            }
            Body::RequestHead(_) => {}
        }
        if let Some(credit) = credit {
            self.send_now(&credit).await;
        }
        self.forget_if_closed(id);
    }
}

//! The opener's side of the proxy in Rust, over an in-process GStreamer viewer: the reference
//! second client of `docs/proxy.md`, used by tests and benchmarks. It keeps the same rules as
//! the browser: ids counting up, at most 64 streams, credit taken before each flow-controlled
//! frame, credit returned only once the caller has read a response's bytes (or, for WebSocket
//! fragments, once they are appended to the message being reassembled).
//!
//! One task owns the stream table and the channels (`media::datachannels`); requests talk to
//! it over channels.

mod task;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{Semaphore, mpsc, oneshot};

use self::task::{Command, Opened, run};
use crate::receiver::Receiver;
use pipe::media::datachannels::Tap;
use pipe::proxy::frame::{
    self, Body, Frame, FrameError, Headers, MAX_DATA, RequestHead, ResetCode, StreamId, WsClose,
};

/// Bytes of received messages the opener's tap holds: the device may have 64 streams x 1 MiB
/// (`flow::ACCEPTOR_WINDOW`) in flight toward it, plus the slack of the device's own tap
/// (`datachannels::INBOUND_BYTES`).
pub const OPENER_INBOUND_BYTES: usize = 68 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("the proxy channels did not open: {0}")]
    NotOpen(String),
    #[error("the proxy is closed")]
    Closed,
    #[error("bad request: {0}")]
    Frame(#[from] FrameError),
    #[error("the device reset the stream ({code:?}): {message}")]
    Reset { code: ResetCode, message: String },
    #[error("cannot open a stream: {0}")]
    Refused(String),
}

/// A response: its head, and its body as it arrives.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: BodyReader,
}

impl Response {
    /// The first value of a header (lowercase name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response body. Credit for its bytes goes back to the device as they are read.
#[derive(Debug)]
pub struct BodyReader {
    id: StreamId,
    rx: mpsc::UnboundedReceiver<Result<Bytes, ClientError>>,
    commands: mpsc::UnboundedSender<Command>,
    /// Read to its end (or failed): nothing to cancel.
    done: bool,
}

impl Drop for BodyReader {
    /// A body dropped before its end is cancelled, as a browser does for an aborted fetch.
    fn drop(&mut self) {
        if !self.done {
            let _ = self.commands.send(Command::Cancel(self.id));
        }
    }
}

impl BodyReader {
    /// The next piece, `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        match self.rx.recv().await {
            Some(Ok(bytes)) => {
                let n = u32::try_from(bytes.len()).expect("a frame");
                let _ = self.commands.send(Command::Consumed(self.id, n));
                Ok(Some(bytes))
            }
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while let Some(b) = self.chunk().await? {
            out.extend_from_slice(&b);
        }
        Ok(out)
    }
}

/// What a WebSocket stream delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, String),
}

/// An open WebSocket bridged by the device.
pub struct WebSocket {
    id: StreamId,
    pub headers: Vec<(String, String)>,
    events: mpsc::UnboundedReceiver<Result<WsEvent, ClientError>>,
    credit: Arc<Semaphore>,
    commands: mpsc::UnboundedSender<Command>,
}

impl WebSocket {
    pub async fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.send(frame::WsPayload::Text(text)).await
    }

    pub async fn send_binary(&self, bytes: &[u8]) -> Result<(), ClientError> {
        self.send(frame::WsPayload::Binary(bytes)).await
    }

    async fn send(&self, message: frame::WsPayload<'_>) -> Result<(), ClientError> {
        for bytes in frame::ws_frames(self.id, message) {
            let frame = frame::decode(&bytes)?;
            take_credit(&self.credit, frame.body.flow_cost()).await?;
            self.commands
                .send(Command::Send(frame))
                .map_err(|_| ClientError::Closed)?;
        }
        Ok(())
    }

    pub fn close(&self, code: u16, reason: &str) -> Result<(), ClientError> {
        let body = Body::WsClose(WsClose::new(code, reason)?);
        self.commands
            .send(Command::Send(Frame {
                stream: self.id,
                body,
            }))
            .map_err(|_| ClientError::Closed)
    }

    /// The next message or close; `None` once the stream is over.
    pub async fn recv(&mut self) -> Option<Result<WsEvent, ClientError>> {
        self.events.recv().await
    }
}

async fn take_credit(credit: &Semaphore, n: u32) -> Result<(), ClientError> {
    if n == 0 {
        return Ok(());
    }
    credit
        .acquire_many(n)
        .await
        .map_err(|_| ClientError::Closed)?
        .forget();
    Ok(())
}

/// The proxy over one viewer's peer connection.
pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    strays: Arc<std::sync::Mutex<Vec<Frame>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Opens the four proxy channels on a connected receiver and waits until they are open.
    pub async fn open(receiver: &Receiver) -> Result<Client, ClientError> {
        let (tap, inbound) = Tap::with_limit(OPENER_INBOUND_BYTES);
        let mut channels = Vec::new();
        for (index, label) in pipe::proxy::CHANNEL_LABELS.iter().enumerate() {
            let channel = receiver
                .open_channel(label)
                .ok_or_else(|| ClientError::NotOpen(format!("cannot create {label}")))?;
            tap.attach(index, &channel);
            channels.push(channel);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let states: Vec<_> = channels.iter().map(|c| c.ready_state()).collect();
            if states
                .iter()
                .all(|s| *s == gst_webrtc::WebRTCDataChannelState::Open)
            {
                break;
            }
            let closed = states.iter().any(|s| {
                matches!(
                    s,
                    gst_webrtc::WebRTCDataChannelState::Closing
                        | gst_webrtc::WebRTCDataChannelState::Closed
                )
            });
            if closed || tokio::time::Instant::now() > deadline {
                return Err(ClientError::NotOpen(format!("states {states:?}")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let outlet = tap
            .outlet()
            .ok_or_else(|| ClientError::NotOpen("no sending thread".into()))?;
        // Unbounded in type, bounded in use: data frames are sent only within credit (64
        // streams x 256 KiB, `flow::OPENER_WINDOW`), and the rest (heads, ends, credits,
        // cancels) is a few per stream. Drop-side senders (`BodyReader`'s cancel) cannot await a bounded queue.
        let (commands, rx) = mpsc::unbounded_channel();
        let strays = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn(run(inbound, outlet, rx, strays.clone()));
        Ok(Client {
            commands,
            strays,
            task,
        })
    }

    /// Whether the proxy still runs (a closed channel or misbehaviour ends it).
    pub fn is_open(&self) -> bool {
        !self.task.is_finished()
    }

    async fn start(&self, head: RequestHead) -> Result<Opened, ClientError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Open { head, reply })
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// One HTTP exchange: the body (if any) streams out under credit while the response is
    /// awaited.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        body: Option<BoxStream<'static, Bytes>>,
    ) -> Result<Response, ClientError> {
        let head = RequestHead::new(method, path, Headers::new(headers)?, false)?;
        let opened = self.start(head).await?;
        let (id, credit, commands) = (opened.id, opened.credit.clone(), self.commands.clone());
        let upload = async move {
            if let Some(mut body) = body {
                while let Some(bytes) = body.next().await {
                    for chunk in bytes.chunks(MAX_DATA) {
                        let data = frame::Data::new(chunk.to_vec())?;
                        let frame = Frame {
                            stream: id,
                            body: Body::Data(data),
                        };
                        take_credit(&credit, frame.body.flow_cost()).await?;
                        commands
                            .send(Command::Send(frame))
                            .map_err(|_| ClientError::Closed)?;
                    }
                }
            }
            let end = Frame {
                stream: id,
                body: Body::End,
            };
            commands
                .send(Command::Send(end))
                .map_err(|_| ClientError::Closed)
        };
        // The upload runs on its own: the device may answer (413, 502) before it is done.
        tokio::spawn(upload);
        let head = opened.head.await.map_err(|_| ClientError::Closed)??;
        Ok(Response {
            status: head.status(),
            headers: head
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: BodyReader {
                id,
                rx: opened.body,
                commands: self.commands.clone(),
                done: false,
            },
        })
    }

    /// `GET path` with no headers.
    pub async fn get(&self, path: &str) -> Result<Response, ClientError> {
        self.request("GET", path, Vec::new(), None).await
    }

    /// Opens a WebSocket; a refused upgrade comes back as `Err(Ok(response))`.
    pub async fn websocket(
        &self,
        path: &str,
        headers: Vec<(String, String)>,
    ) -> Result<Result<WebSocket, Response>, ClientError> {
        let head = RequestHead::new("GET", path, Headers::new(headers)?, true)?;
        let opened = self.start(head).await?;
        let head = opened.head.await.map_err(|_| ClientError::Closed)??;
        let headers = head
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        if head.status() != 101 {
            return Ok(Err(Response {
                status: head.status(),
                headers,
                body: BodyReader {
                    id: opened.id,
                    rx: opened.body,
                    commands: self.commands.clone(),
                    done: false,
                },
            }));
        }
        Ok(Ok(WebSocket {
            id: opened.id,
            headers,
            events: opened.ws,
            credit: opened.credit,
            commands: self.commands.clone(),
        }))
    }

    /// Sends bytes as they are on channel `channel` (tests of what the device refuses). Use
    /// ids above any this client will open.
    pub fn send_raw(&self, channel: usize, bytes: Vec<u8>) {
        let _ = self.commands.send(Command::Raw(channel, bytes));
    }

    /// Frames the device sent for streams this client did not open (answers to `send_raw`).
    pub fn strays(&self) -> Vec<Frame> {
        self.strays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

//! A headless viewer in GStreamer: it speaks the viewer side of the signalling protocol,
//! answers the device's offer with its own webrtcbin and counts what arrives. Tests use it to
//! check frames end to end without a browser, and benchmarks use it as the cheap extra viewer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gst::prelude::*;
use gst_webrtc::{WebRTCSDPType, WebRTCSessionDescription};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use pipe::config::IceConfig;
use pipe::media::{MediaError, webrtc};

/// Why the test viewer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("rendezvous connection timed out")]
    Timeout,
    #[error("rendezvous: {0}")]
    Rendezvous(#[from] tokio_tungstenite::tungstenite::Error),
    /// Building or starting the test viewer's own elements.
    #[error("test viewer: {0}")]
    Setup(String),
}
use pipe::signalling::protocol::{
    self, ClientMessage, DeviceId, IceCandidate, Sdp, SdpKind, ServerMessage, SessionId, SignalData,
};

/// What a receiver has seen so far.
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    pub connected: bool,
    /// Video frames out of the decoder (or access units, without decoding).
    pub frames: u64,
    /// Frames whose content differed from the one before (decoding only).
    pub distinct_frames: u64,
    /// The longest run of consecutive frames each differing from the one before.
    pub longest_distinct_run: u64,
    current_run: u64,
    pub width: u32,
    pub height: u32,
    pub audio_buffers: u64,
    /// The session the rendezvous gave this viewer, once it has.
    pub session_id: Option<SessionId>,
    /// `error` messages heard after the session began (they do not end it), as
    /// `code: message`.
    pub errors: Vec<String>,
    /// Why the session ended, once it has.
    pub ended: Option<String>,
    /// Every message the device sent on the `control` channel, in order.
    pub control: Vec<String>,
}

/// A viewer's certificate: what the device's grants know it by.
pub struct PeerIdentity {
    pem: String,
    pub fingerprint: pipe::identity::Fingerprint,
}

impl PeerIdentity {
    pub fn generate() -> Result<Self, pipe::identity::IdentityError> {
        let (cert_pem, key_pem, fingerprint) = pipe::identity::generate_certificate("pipe viewer")?;
        Ok(Self {
            pem: format!("{cert_pem}{}", key_pem.expose()),
            fingerprint,
        })
    }
}

/// How a receiver connects.
#[derive(Clone)]
pub struct Options {
    /// Decode video (measuring sizes and distinct frames), or only count access units.
    pub decode: bool,
    /// The certificate to present; shared by receivers that act as the same browser.
    pub identity: Arc<PeerIdentity>,
    /// Requests to send on the control channel as soon as it opens (a `claim`, a `redeem`).
    pub on_open: Vec<String>,
    /// The device fingerprint the offer must announce (what a paired browser checks).
    pub expect_device: Option<pipe::identity::Fingerprint>,
}

impl Options {
    pub fn new(identity: Arc<PeerIdentity>, decode: bool) -> Self {
        Self {
            decode,
            identity,
            on_open: Vec::new(),
            expect_device: None,
        }
    }

    pub fn claim(mut self, secret: &str) -> Self {
        self.on_open
            .push(format!(r#"{{"type":"claim","secret":"{secret}"}}"#));
        self
    }

    pub fn redeem(mut self, token: &str) -> Self {
        self.on_open
            .push(format!(r#"{{"type":"redeem","token":"{token}"}}"#));
        self
    }
}

pub struct Receiver {
    stats: Arc<Mutex<ReceiverStats>>,
    channel: Arc<Mutex<Option<gst_webrtc::WebRTCDataChannel>>>,
    webrtc: Arc<Mutex<Option<gst::Element>>>,
    task: tokio::task::JoinHandle<()>,
    leave: tokio::sync::oneshot::Sender<()>,
    raw: mpsc::Sender<String>,
}

impl Receiver {
    pub fn stats(&self) -> ReceiverStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends a request on the control channel; false if it is not open.
    pub fn control(&self, request: &str) -> bool {
        let channel = self
            .channel
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        channel
            .map(|c| c.emit_by_name::<()>("send-string", &[&Some(request)]))
            .is_some()
    }

    /// Waits until `done` holds for the stats, or the timeout passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&ReceiverStats) -> bool,
    ) -> Result<ReceiverStats, ReceiverStats> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if done(&stats) {
                return Ok(stats);
            }
            if tokio::time::Instant::now() > deadline || self.task.is_finished() {
                return Err(stats);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends `text` as is, in one text frame, on this viewer's signalling socket (tests use
    /// it to misbehave from inside a live session). False if the receiver has ended.
    pub fn send_raw(&self, text: impl Into<String>) -> bool {
        self.raw.try_send(text.into()).is_ok()
    }

    /// Opens a datachannel of the viewer's own (as the camera UI proxy will), once connected.
    pub fn open_channel(&self, label: &str) -> Option<gst_webrtc::WebRTCDataChannel> {
        let webrtc = self
            .webrtc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        webrtc::create_data_channel(&webrtc, label).ok()
    }

    /// Leaves abruptly: the task (socket and pipeline) is dropped without an `end`.
    pub fn kill(self) {
        self.task.abort();
    }

    /// Leaves politely: sends `end`, closes the socket, stops the pipeline.
    pub async fn close(self) {
        let _ = self.leave.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("receiver did not close within 5 s");
        }
    }
}

/// Connects to `signal_url` as a viewer of `device_id`. With `decode`, frames are decoded
/// (and sizes and distinctness measured); without, only access units are counted.
pub async fn connect(
    signal_url: &str,
    device_id: DeviceId,
    options: Options,
) -> Result<Receiver, ReceiverError> {
    pipe::media::init()?;
    let (socket, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(signal_url),
    )
    .await
    .map_err(|_| ReceiverError::Timeout)??;
    let stats = Arc::new(Mutex::new(ReceiverStats::default()));
    let (leave, leave_rx) = tokio::sync::oneshot::channel();
    // A test sends a handful of raw messages at a time; a full queue is its mistake.
    let (raw, raw_rx) = mpsc::channel(32);
    let control = Control {
        leave: leave_rx,
        raw: raw_rx,
    };
    let channel = Arc::new(Mutex::new(None));
    let webrtc = Arc::new(Mutex::new(None));
    let shared = Shared {
        stats: stats.clone(),
        channel: channel.clone(),
        webrtc: webrtc.clone(),
    };
    let task = tokio::spawn(run(socket, device_id, options, shared, control));
    Ok(Receiver {
        stats,
        channel,
        webrtc,
        task,
        leave,
        raw,
    })
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Local {
    Candidate(u32, String),
}

/// What the test tells a running receiver.
struct Control {
    leave: tokio::sync::oneshot::Receiver<()>,
    raw: mpsc::Receiver<String>,
}

/// What the receiver task shares with its handle.
struct Shared {
    stats: Arc<Mutex<ReceiverStats>>,
    channel: Arc<Mutex<Option<gst_webrtc::WebRTCDataChannel>>>,
    webrtc: Arc<Mutex<Option<gst::Element>>>,
}

async fn run(
    socket: Socket,
    device_id: DeviceId,
    options: Options,
    shared: Shared,
    control: Control,
) {
    let Shared {
        stats,
        channel,
        webrtc: webrtc_slot,
    } = shared;
    let (expect, fingerprint) = (options.expect_device, options.identity.fingerprint);
    let (pipeline, webrtc, mut local) = match build(options, stats.clone(), channel) {
        Ok(parts) => parts,
        Err(e) => {
            stats.lock().unwrap_or_else(|p| p.into_inner()).ended = Some(e.to_string());
            return;
        }
    };
    *webrtc_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(webrtc.clone());
    // Stop the pipeline whether this task ends, fails or is aborted.
    let _guard = StopOnDrop(pipeline.clone());
    let peers = Peers {
        device_id: &device_id,
        expect,
        identity: fingerprint,
    };
    let reason = session(socket, peers, &webrtc, &mut local, &stats, control).await;
    stats.lock().unwrap_or_else(|p| p.into_inner()).ended = Some(reason);
}

/// The rendezvous went away. Media is peer to peer: a connected session goes on (as a
/// browser's does) until the viewer leaves or the connection itself is lost.
async fn linger(
    webrtc: &gst::Element,
    stats: &Arc<Mutex<ReceiverStats>>,
    leave: &mut tokio::sync::oneshot::Receiver<()>,
) -> String {
    use gst_webrtc::WebRTCPeerConnectionState::Connected;
    if webrtc::connection_state(webrtc) != Connected {
        return "rendezvous closed".into();
    }
    loop {
        tokio::select! {
            _ = &mut *leave => return "left".into(),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let connected = webrtc::connection_state(webrtc) == Connected;
                lock(stats).connected = connected;
                if !connected {
                    return "rendezvous closed, then the connection was lost".into();
                }
            }
        }
    }
}

/// Who talks to whom: the device asked for, the fingerprint it must show (if pinned) and this
/// receiver's own.
struct Peers<'a> {
    device_id: &'a DeviceId,
    expect: Option<pipe::identity::Fingerprint>,
    identity: pipe::identity::Fingerprint,
}

async fn session(
    socket: Socket,
    peers: Peers<'_>,
    webrtc: &gst::Element,
    local: &mut mpsc::Receiver<Local>,
    stats: &Arc<Mutex<ReceiverStats>>,
    control: Control,
) -> String {
    let Control { mut leave, mut raw } = control;
    let Peers {
        device_id,
        expect,
        identity,
    } = peers;
    let (mut sink, mut stream) = socket.split();
    let connect = ClientMessage::Connect {
        device_id: device_id.clone(),
    };
    if sink
        .send(Message::text(protocol::encode(&connect)))
        .await
        .is_err()
    {
        return "rendezvous closed".into();
    }
    let mut session_id = None;
    loop {
        tokio::select! {
            frame = stream.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    match frame { Some(Ok(_)) => continue, _ => return linger(webrtc, stats, &mut leave).await }
                };
                let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) else { continue };
                match message {
                    ServerMessage::Session { session_id: id, .. } => {
                        lock(stats).session_id = Some(id.clone());
                        session_id = Some(id);
                    }
                    ServerMessage::Signal { data: SignalData::Sdp(offer), session_id: id } if offer.kind == SdpKind::Offer => {
                        // What a paired browser does: refuse a device other than the one paired with.
                        if let Some(expected) = expect
                            && pipe::media::sdp::fingerprint(&offer.sdp) != Some(expected) {
                                return "refused: the offer's device fingerprint is not the paired one".into();
                            }
                        match answer(webrtc, &offer.sdp).await {
                            // webrtcbin's own fingerprint line is wrong for a certificate set
                            // by PEM (see `dtls`): announce the real one, as the device does.
                            Ok(sdp) => {
                                let sdp = pipe::media::sdp::set_fingerprint(&sdp, &identity);
                                let data = SignalData::Sdp(Sdp { kind: SdpKind::Answer, sdp });
                                let msg = ClientMessage::Signal { session_id: id, data };
                                if sink.send(Message::text(protocol::encode(&msg))).await.is_err() { return "rendezvous closed".into(); }
                            }
                            Err(e) => return e.to_string(),
                        }
                    }
                    ServerMessage::Signal { data: SignalData::Ice(c), .. } => webrtc::add_ice_candidate(webrtc, c.sdp_m_line_index, &c.candidate),
                    ServerMessage::End { reason, .. } => return reason,
                    // Before a session exists an error is the answer to `connect`, and final;
                    // after, it answers something else this socket sent (see `send_raw`).
                    ServerMessage::Error { message, .. } if session_id.is_none() => return message,
                    ServerMessage::Error { code, message, .. } => {
                        let code = protocol::encode(&code);
                        lock(stats).errors.push(format!("{}: {message}", code.trim_matches('"')));
                    }
                    _ => {}
                }
            }
            Some(Local::Candidate(mline, candidate)) = local.recv() => {
                let Some(id) = session_id.clone() else { continue };
                let data = SignalData::Ice(IceCandidate { candidate, sdp_m_line_index: mline });
                let msg = ClientMessage::Signal { session_id: id, data };
                if sink.send(Message::text(protocol::encode(&msg))).await.is_err() { return "rendezvous closed".into(); }
            }
            Some(text) = raw.recv() => {
                if sink.send(Message::text(text)).await.is_err() { return "rendezvous closed".into(); }
            }
            _ = &mut leave => {
                if let Some(id) = session_id.clone() {
                    let end = ClientMessage::End { session_id: id, reason: Some("viewer-left".into()) };
                    let _ = sink.send(Message::text(protocol::encode(&end))).await;
                }
                let _ = sink.send(Message::Close(None)).await;
                return "left".into();
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let state = webrtc::connection_state(webrtc);
                stats.lock().unwrap_or_else(|p| p.into_inner()).connected =
                    state == gst_webrtc::WebRTCPeerConnectionState::Connected;
            }
        }
    }
}

fn lock(stats: &Mutex<ReceiverStats>) -> std::sync::MutexGuard<'_, ReceiverStats> {
    stats.lock().unwrap_or_else(|p| p.into_inner())
}

async fn answer(webrtc: &gst::Element, offer: &str) -> Result<String, MediaError> {
    let offer = webrtc::description(WebRTCSDPType::Offer, offer)?;
    webrtc::set_remote_description(webrtc, &offer).await?;
    let answer: WebRTCSessionDescription = webrtc::create_answer(webrtc).await?;
    webrtc::set_local_description(webrtc, &answer).await?;
    answer.sdp().as_text().map_err(MediaError::WriteSdp)
}

struct StopOnDrop(gst::Pipeline);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

fn build(
    options: Options,
    stats: Arc<Mutex<ReceiverStats>>,
    channel: Arc<Mutex<Option<gst_webrtc::WebRTCDataChannel>>>,
) -> Result<(gst::Pipeline, gst::Element, mpsc::Receiver<Local>), ReceiverError> {
    let decode = options.decode;
    let pipeline = gst::Pipeline::new();
    pipe::media::dtls::Dtls::install(&pipeline, Some(options.identity.pem.clone()), || {});
    let webrtc = gst::ElementFactory::make("webrtcbin")
        .property_from_str("bundle-policy", "max-bundle")
        .build()
        .map_err(|e| ReceiverError::Setup(e.to_string()))?;
    pipeline
        .add(&webrtc)
        .map_err(|e| ReceiverError::Setup(e.to_string()))?;
    webrtc::configure_ice(&webrtc, &IceConfig::default());
    // Candidates come in bursts; the session task drains them at once.
    let (tx, rx) = mpsc::channel(256);
    webrtc.connect("on-ice-candidate", false, move |values| {
        if let (Ok(mline), Ok(candidate)) = (values[1].get::<u32>(), values[2].get::<String>()) {
            let _ = tx.try_send(Local::Candidate(mline, candidate));
        }
        None
    });
    // The device's `control` channel: record what it says, send the opening requests.
    let (control_stats, on_open) = (stats.clone(), options.on_open.clone());
    webrtc.connect("on-data-channel", false, move |values| {
        let Ok(dc) = values[1].get::<gst_webrtc::WebRTCDataChannel>() else {
            return None;
        };
        let messages = control_stats.clone();
        dc.connect("on-message-string", false, move |values| {
            if let Ok(Some(text)) = values[1].get::<Option<String>>() {
                lock(&messages).control.push(text);
            }
            None
        });
        for request in &on_open {
            dc.emit_by_name::<()>("send-string", &[&Some(request.as_str())]);
        }
        *channel.lock().unwrap_or_else(|p| p.into_inner()) = Some(dc);
        None
    });
    // Weak: a strong reference from a child's handler to its pipeline is a cycle that kept
    // every receiver's pipeline (its ICE agent's sockets and wakeup descriptors) alive.
    let bin = pipeline.downgrade();
    webrtc.connect_pad_added(move |_, pad| {
        let Some(bin) = bin.upgrade() else { return };
        if pad.direction() != gst::PadDirection::Src {
            return;
        }
        let media = pad
            .current_caps()
            .and_then(|c| c.structure(0).and_then(|s| s.get::<String>("media").ok()))
            .unwrap_or_default();
        if let Err(e) = link_output(&bin, pad, &media, decode, stats.clone()) {
            tracing::warn!(error = %e, "receiver cannot handle a pad");
        }
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| ReceiverError::Setup(e.to_string()))?;
    Ok((pipeline, webrtc, rx))
}

fn link_output(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    media: &str,
    decode: bool,
    stats: Arc<Mutex<ReceiverStats>>,
) -> Result<(), ReceiverError> {
    let description = match (media, decode) {
        ("video", true) => {
            "rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 ! appsink name=out sync=false"
        }
        ("video", false) => {
            "rtph264depay ! video/x-h264,alignment=au ! appsink name=out sync=false"
        }
        _ => "queue ! appsink name=out sync=false",
    };
    let bin = gst::parse::bin_from_description(description, true)
        .map_err(|e| ReceiverError::Setup(e.to_string()))?;
    let sink = bin
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .expect("named above");
    let is_video = media == "video";
    let mut last_digest = 0u64;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
                if !is_video {
                    stats.audio_buffers += 1;
                    return Ok(gst::FlowSuccess::Ok);
                }
                stats.frames += 1;
                if decode {
                    if let Some(s) = sample.caps().and_then(|c| c.structure(0)) {
                        stats.width = s.get::<i32>("width").unwrap_or(0).max(0) as u32;
                        stats.height = s.get::<i32>("height").unwrap_or(0).max(0) as u32;
                    }
                    let digest = sample
                        .buffer()
                        .and_then(|b| b.map_readable().ok())
                        .map_or(0, |m| digest(&m));
                    if digest != last_digest {
                        stats.distinct_frames += 1;
                        stats.current_run += 1;
                        stats.longest_distinct_run =
                            stats.longest_distinct_run.max(stats.current_run);
                        last_digest = digest;
                    } else {
                        stats.current_run = 0;
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline
        .add(&bin)
        .map_err(|e| ReceiverError::Setup(e.to_string()))?;
    bin.sync_state_with_parent()
        .map_err(|e| ReceiverError::Setup(e.to_string()))?;
    let sinkpad = bin.static_pad("sink").expect("ghost pad");
    pad.link(&sinkpad)
        .map_err(|e| ReceiverError::Setup(format!("{e:?}")))?;
    Ok(())
}

/// A cheap content hash: every 64th byte of the frame (enough to tell frames apart).
fn digest(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .step_by(64)
        .fold(0xcbf29ce484222325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        })
}

//! One viewer session: its own pipeline (appsrc -> payloader -> webrtcbin), owned by one task
//! that takes signalling commands and webrtcbin's events, and tears everything down when the
//! session ends, whichever side ends it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use gst::prelude::*;
use gst_webrtc::{WebRTCPeerConnectionState, WebRTCSDPType};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::capture::{Capture, Feed};
use super::{MediaError, sdp, webrtc};
use crate::config::IceConfig;
use crate::signalling::protocol::{
    ClientMessage, IceCandidate, Sdp, SdpKind, SessionId, SignalData,
};

/// A session that is not connected this long after it started is given up (a viewer that
/// vanished mid-negotiation, or ICE that cannot succeed).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `disconnected` may last before the session counts as failed (no ICE restart in
/// GStreamer 1.22, so the viewer starts a new session).
const DISCONNECTED_GRACE: Duration = Duration::from_secs(5);

/// What the device's signalling loop tells a session.
#[derive(Debug)]
pub enum Command {
    Remote(SignalData),
    /// The other side or the device ended it; do not send `end` back.
    End(String),
}

/// What webrtcbin's callbacks forward to the session task (they run on GStreamer threads and
/// only translate).
#[derive(Debug)]
enum GstEvent {
    Candidate(u32, String),
    State(WebRTCPeerConnectionState),
}

pub struct SessionHandle {
    pub commands: mpsc::Sender<Command>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Everything a session needs from the device.
#[derive(Clone)]
pub struct SessionContext {
    pub capture: Arc<Capture>,
    pub ice: IceConfig,
    pub outgoing: mpsc::Sender<ClientMessage>,
    pub registry: Registry,
}

/// Weak references to every viewer pipeline built. Counting the live ones shows a leaked
/// pipeline (a reference kept after its session ended) in the device's status.
#[derive(Clone, Default)]
pub struct Registry(Arc<std::sync::Mutex<Vec<gst::glib::WeakRef<gst::Pipeline>>>>);

impl Registry {
    fn add(&self, pipeline: &gst::Pipeline) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|weak| weak.upgrade().is_some());
        list.push(pipeline.downgrade());
    }

    /// Live viewer pipelines and the elements in them (recursively).
    pub fn live(&self) -> (usize, usize) {
        let pipelines: Vec<gst::Pipeline> = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|w| w.upgrade())
            .collect();
        let elements = pipelines
            .iter()
            .map(|p| p.iterate_recurse().into_iter().count())
            .sum();
        (pipelines.len(), elements)
    }
}

pub fn spawn(id: SessionId, context: SessionContext) -> SessionHandle {
    // A session receives one answer and a few dozen candidates; 64 is plenty and a full queue
    // means the task is stuck, which `send` in the device loop would then wait out.
    let (commands, rx) = mpsc::channel(64);
    let span = info_span!("session", id = %id);
    let task = tokio::spawn(run(id, context, rx).instrument(span));
    SessionHandle { commands, task }
}

struct Viewer {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    feed: Arc<Feed>,
}

async fn run(id: SessionId, context: SessionContext, mut commands: mpsc::Receiver<Command>) {
    // Candidates can come in bursts of dozens; the task drains them at once.
    let (events_tx, mut events) = mpsc::channel(256);
    let (capture, ice) = (context.capture.clone(), context.ice.clone());
    let built = tokio::task::spawn_blocking(move || build(&capture, &ice, events_tx)).await;
    let viewer = match built {
        Ok(Ok(viewer)) => viewer,
        Ok(Err(e)) => return end(&id, &context, &format!("cannot start the session: {e}")).await,
        Err(e) => return end(&id, &context, &format!("cannot start the session: {e}")).await,
    };
    context.registry.add(&viewer.pipeline);
    context.capture.attach(viewer.feed.clone());
    let outcome = drive(&id, &context, &viewer, &mut commands, &mut events).await;
    context.capture.detach(&viewer.feed);
    match outcome {
        Ok(reason) => info!(%reason, "session ended"),
        Err(reason) => {
            info!(%reason, "session ended by the device");
            end(&id, &context, &reason).await;
        }
    }
    let pipeline = viewer.pipeline;
    // Never block tokio on a state change: webrtcbin joins its threads on the way to NULL.
    let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
}

/// Runs the session until it ends. `Ok(reason)`: the other side ended it; `Err(reason)`: this
/// side did, and must tell the viewer.
async fn drive(
    id: &SessionId,
    context: &SessionContext,
    viewer: &Viewer,
    commands: &mut mpsc::Receiver<Command>,
    events: &mut mpsc::Receiver<GstEvent>,
) -> Result<String, String> {
    let webrtc = &viewer.webrtc;
    webrtc::create_data_channel(webrtc, "control").map_err(|e| e.to_string())?;
    let offer = webrtc::create_offer(webrtc)
        .await
        .map_err(|e| e.to_string())?;
    webrtc::set_local_description(webrtc, &offer)
        .await
        .map_err(|e| e.to_string())?;
    let text = offer
        .sdp()
        .as_text()
        .map_err(|e| format!("cannot write the offer: {e}"))?;
    let data = SignalData::Sdp(Sdp {
        kind: SdpKind::Offer,
        sdp: sdp::normalize_h264_fmtp(&text, context.capture.profile_level_id().as_deref()),
    });
    send(context, id, data).await?;

    let mut bus = viewer
        .pipeline
        .bus()
        .expect("a pipeline has a bus")
        .stream();
    let connect_deadline = tokio::time::sleep(CONNECT_TIMEOUT);
    tokio::pin!(connect_deadline);
    let mut connected = false;
    let mut disconnected_since: Option<tokio::time::Instant> = None;
    let mut grace = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Remote(SignalData::Sdp(answer))) if answer.kind == SdpKind::Answer => {
                    let desc = webrtc::description(WebRTCSDPType::Answer, &answer.sdp).map_err(|e| e.to_string())?;
                    webrtc::set_remote_description(webrtc, &desc).await.map_err(|e| e.to_string())?;
                }
                Some(Command::Remote(SignalData::Sdp(_))) => return Err("the device makes the offer; expected an answer".into()),
                Some(Command::Remote(SignalData::Ice(c))) => webrtc::add_ice_candidate(webrtc, c.sdp_m_line_index, &c.candidate),
                Some(Command::End(reason)) => return Ok(reason),
                None => return Ok("device shutting down".into()),
            },
            event = events.recv() => match event {
                Some(GstEvent::Candidate(mline, candidate)) => {
                    if let Some(extra) = context.ice.advertise_address.and_then(|a| sdp::advertised_candidate(&candidate, a)) {
                        send(context, id, SignalData::Ice(IceCandidate { candidate: extra, sdp_m_line_index: mline })).await?;
                    }
                    send(context, id, SignalData::Ice(IceCandidate { candidate, sdp_m_line_index: mline })).await?;
                }
                Some(GstEvent::State(state)) => {
                    debug!(?state, "peer connection state");
                    match state {
                        WebRTCPeerConnectionState::Connected => {
                            disconnected_since = None;
                            if !connected {
                                connected = true;
                                info!("viewer connected");
                                // Only now is a key frame useful: earlier it would be lost.
                                viewer.feed.open();
                                context.capture.request_keyframe();
                            }
                        }
                        WebRTCPeerConnectionState::Disconnected => disconnected_since = Some(tokio::time::Instant::now()),
                        WebRTCPeerConnectionState::Failed => return Err("connection failed".into()),
                        WebRTCPeerConnectionState::Closed => return Err("connection closed".into()),
                        _ => {}
                    }
                }
                None => return Err("webrtcbin went away".into()),
            },
            message = bus.next() => {
                if let Some(gst::MessageView::Error(e)) = message.as_ref().map(|m| m.view()) {
                    return Err(format!("viewer pipeline error: {}", e.error()));
                }
            }
            _ = &mut connect_deadline, if !connected => return Err("not connected within 30 s".into()),
            _ = grace.tick() => {
                if disconnected_since.is_some_and(|t| t.elapsed() > DISCONNECTED_GRACE) {
                    return Err("connection lost".into());
                }
            }
        }
    }
}

async fn send(context: &SessionContext, id: &SessionId, data: SignalData) -> Result<(), String> {
    context
        .outgoing
        .send(ClientMessage::Signal {
            session_id: id.clone(),
            data,
        })
        .await
        .map_err(|_| "signalling is shut down".to_string())
}

async fn end(id: &SessionId, context: &SessionContext, reason: &str) {
    warn!(%reason, "ending session");
    let _ = context
        .outgoing
        .send(ClientMessage::End {
            session_id: id.clone(),
            reason: Some(reason.into()),
        })
        .await;
}

/// Builds and starts the viewer pipeline (on a blocking thread).
fn build(
    capture: &Capture,
    ice: &IceConfig,
    events: mpsc::Sender<GstEvent>,
) -> Result<Viewer, MediaError> {
    let mut description = String::from(
        "webrtcbin name=webrtc bundle-policy=max-bundle \
         appsrc name=video is-live=true format=time do-timestamp=false block=false \
         ! rtph264pay config-interval=-1 aggregate-mode=zero-latency mtu=1200 pt=96 \
         ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,packetization-mode=(string)1 ! webrtc. ",
    );
    if capture.has_audio() {
        description.push_str(
            "appsrc name=audio is-live=true format=time do-timestamp=false block=false \
             ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2 ! webrtc. ",
        );
    }
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| MediaError::Pipeline(format!("cannot build a viewer pipeline: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| MediaError::Pipeline("viewer description is not a pipeline".into()))?;
    pipeline.use_clock(Some(capture.clock()));
    // webrtcbin 1.22 puts a clocksync on every input stream, holding each frame until its
    // running time (plus latency). Our input is live and already paced by the camera, so the
    // wait only adds latency: let frames through at once.
    pipeline.connect_deep_element_added(|_, _, element| {
        if element.factory().is_some_and(|f| f.name() == "clocksync") {
            element.set_property("sync", false);
        }
    });
    let webrtc = pipeline
        .by_name("webrtc")
        .expect("named in the description");
    let appsrc = |name| {
        pipeline
            .by_name(name)
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    };
    let video = appsrc("video").expect("named in the description");
    let audio = if capture.has_audio() {
        appsrc("audio")
    } else {
        None
    };

    webrtc::configure_transceivers(&webrtc);
    webrtc::configure_ice(&webrtc, ice);
    // webrtcbin's callbacks only translate and forward; a full queue means the session task
    // is gone or stuck, and dropping is then harmless.
    let tx = events.clone();
    webrtc.connect("on-ice-candidate", false, move |values| {
        if let (Ok(mline), Ok(candidate)) = (values[1].get::<u32>(), values[2].get::<String>()) {
            let _ = tx.try_send(GstEvent::Candidate(mline, candidate));
        }
        None
    });
    webrtc.connect_notify(Some("connection-state"), move |webrtc, _| {
        let _ = events.try_send(GstEvent::State(webrtc::connection_state(webrtc)));
    });
    // A PLI or FIR from the viewer arrives as an upstream force-key-unit event at the appsrc:
    // forward it to the shared encoder's throttle.
    let keyframes = capture.keyframe_requester();
    if let Some(pad) = video.static_pad("src") {
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(event) = info.event()
                && gst_video::ForceKeyUnitEvent::is(event)
            {
                let _ = keyframes.try_send(());
                // Handled, not Drop: with gstreamer-rs a Drop hands GStreamer back a NULL
                // event, which 1.22 then unrefs (a GStreamer-CRITICAL on every PLI).
                return gst::PadProbeReturn::Handled;
            }
            gst::PadProbeReturn::Ok
        });
    }
    // Fix the base time ourselves (no start time: GStreamer keeps it), so the fan-out can move
    // each frame's capture clock time into this pipeline's running time from the first frame.
    let base_time = capture.clock().time();
    pipeline.set_start_time(gst::ClockTime::NONE);
    pipeline.set_base_time(base_time);
    // Nothing here waits for the clock, so the pipeline's latency is zero; saying so up front
    // also lets rtpsession timestamp RTCP before any latency query completes.
    pipeline.set_latency(gst::ClockTime::ZERO);
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| MediaError::Pipeline("the viewer pipeline did not start".into()))?;
    let feed = Feed::new(video, audio, base_time);
    Ok(Viewer {
        pipeline,
        webrtc,
        feed,
    })
}

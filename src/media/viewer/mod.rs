//! A viewer's own pipeline: appsrc -> payloader -> webrtcbin, with the device's certificate
//! on its DTLS transport, and the `control` datachannel the device offers. Built on a blocking
//! thread; its GStreamer callbacks only translate and forward to the session task. Everything
//! the session does to it goes through [`Viewer`]'s methods, so the session never touches
//! GStreamer.

mod attached;
mod channels;
mod datapace;
mod pli;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use gst::prelude::*;
use gst_webrtc::{WebRTCPeerConnectionState, WebRTCSDPType};
use tokio::sync::mpsc;
use tracing::debug;

pub use self::attached::Attached;
pub use self::channels::{ControlChannel, ControlEvent, ViewerChannel};
use super::capture::{Capture, Feed};
use super::datachannels::{self, Inbound, Tap};
use super::dtls::Dtls;
use super::pacer::{self, Pacer};
use super::playout::PathEnd;
use super::{MediaError, Part, playout, twcc, webrtc};
use crate::adapt::feedback::{PacketReport, ReceiverReport};
use crate::adapt::rendition::Rendition;
use crate::config::IceConfig;
use crate::identity::Fingerprint;

/// The peer connection's state, as the session needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    Connecting,
    Connected,
    /// Connectivity lost for now; it may come back.
    Disconnected,
    Failed,
    Closed,
}

impl From<WebRTCPeerConnectionState> for PeerState {
    fn from(state: WebRTCPeerConnectionState) -> Self {
        match state {
            WebRTCPeerConnectionState::Connected => Self::Connected,
            WebRTCPeerConnectionState::Disconnected => Self::Disconnected,
            WebRTCPeerConnectionState::Failed => Self::Failed,
            WebRTCPeerConnectionState::Closed => Self::Closed,
            _ => Self::Connecting,
        }
    }
}

/// What webrtcbin's callbacks forward to the session task.
#[derive(Debug)]
pub enum ViewerEvent {
    /// A local ICE candidate for m-line `.0`.
    Candidate(u32, String),
    State(PeerState),
    /// The DTLS handshake showed the peer's certificate (`Viewer::peer_fingerprint`).
    PeerCertificate,
    /// A datachannel the viewer opened.
    Channel(ViewerChannel),
}

pub struct Viewer {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    feed: Arc<Feed>,
    dtls: Dtls,
    /// Listens on the viewer's `proxy-N` channels from the moment they appear, so no frame
    /// is lost before the session task has checked the grant.
    proxy_tap: Arc<Tap>,
    /// Taken by the session's web-UI proxy.
    proxy_inbound: Option<Inbound>,
    /// The device's `control` channel (created before the offer, so it is negotiated in it).
    control: ControlChannel,
    /// Set: the video packets carry the playout-delay hint (`playout`).
    playout_hint: Arc<AtomicBool>,
    /// The viewer's TWCC feedback (`twcc`), taken by the session's estimator.
    feedback: Option<mpsc::Receiver<Vec<PacketReport>>>,
    /// Spreads the video packets out at twice the viewer's estimate (`pacer`).
    pacer: Pacer,
    /// Holds the datachannels' packets to their share of a constrained link (`datapace`).
    data_pace: Arc<datapace::DataPace>,
    /// webrtcbin's video sink pad, whose stream the viewer's receiver reports describe.
    video_pad: Option<gst::Pad>,
    /// This viewer's key-frame requests, at most one a second to the shared encoder (`pli`).
    keyframes: Arc<pli::PliGate>,
}

impl Viewer {
    /// Makes the device's offer, sets it as the local description and returns its text.
    pub async fn offer(&self) -> Result<String, MediaError> {
        let offer = webrtc::create_offer(&self.webrtc).await?;
        webrtc::set_local_description(&self.webrtc, &offer).await?;
        offer.sdp().as_text().map_err(MediaError::WriteSdp)
    }

    /// Hands webrtcbin the viewer's answer (written by `sdp::remote` from its checked model).
    pub async fn set_answer(&self, sdp: &str) -> Result<(), MediaError> {
        let desc = webrtc::description(WebRTCSDPType::Answer, sdp)?;
        webrtc::set_remote_description(&self.webrtc, &desc).await
    }

    /// Hands webrtcbin a remote candidate (checked and rebuilt by `sdp::remote`).
    pub fn add_candidate(&self, mline: u32, candidate: &str) {
        webrtc::add_ice_candidate(&self.webrtc, mline, candidate);
    }

    /// The candidate pair ICE chose (either end may be unknown).
    pub async fn selected_path(&self) -> (Option<PathEnd>, Option<PathEnd>) {
        webrtc::selected_path(&self.webrtc).await
    }

    /// Whether this viewer's video packets carry the playout-delay hint from now on.
    pub fn set_playout_hint(&self, on: bool) {
        self.playout_hint.store(on, Ordering::Relaxed);
    }

    /// The certificate the peer showed in the DTLS handshake, once it has.
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        self.dtls.peer_fingerprint()
    }

    /// Lets frames flow to this viewer, from a key frame asked for now (through the viewer's
    /// gate); true the first time.
    pub fn open_feed(&self) -> bool {
        let opened = self.feed.open();
        if opened {
            self.request_keyframe();
        }
        opened
    }

    /// Asks for a key frame for this viewer, through its gate (as its PLIs are).
    pub fn request_keyframe(&self) {
        self.keyframes.request(self.feed.keyframe_rendition());
    }

    /// Sends the viewer `rendition` from its next key frame on (asked for now, through the
    /// viewer's gate); the fan-out switches at it.
    pub fn switch_to(&self, rendition: Rendition) {
        if self.feed.switch_to(rendition) && self.feed.is_open() {
            self.request_keyframe();
        }
    }

    /// The rendition the viewer is sent now.
    pub fn rendition(&self) -> Rendition {
        self.feed.rendition()
    }

    /// Whether frames flow to this viewer (it was granted them).
    pub fn receives_media(&self) -> bool {
        self.feed.is_open()
    }

    pub fn control(&self) -> &ControlChannel {
        &self.control
    }

    /// The proxy's receiving side (all four channels' messages), once.
    pub fn take_proxy_inbound(&mut self) -> Option<Inbound> {
        self.proxy_inbound.take()
    }

    /// The viewer's link estimate and the most it can be: its video packets are paced at
    /// twice the estimate, or not at all at the ceiling (`adapt::pacer`).
    pub fn pace(&self, estimate_bps: u32, ceiling_bps: u32) {
        self.pacer.set_estimate(estimate_bps, ceiling_bps);
    }

    /// The rate the viewer's datachannels may send at (`None`: unlimited).
    pub fn pace_data(&self, limit_bps: Option<u32>) {
        self.data_pace.set_limit(limit_bps);
    }

    /// Bytes the viewer's datachannels have sent so far (SCTP packets).
    pub fn data_bytes(&self) -> u64 {
        self.data_pace.bytes()
    }

    /// What the viewer's latest receiver report says about its video (loss, round trip).
    pub async fn receiver_report(&self) -> Option<ReceiverReport> {
        webrtc::receiver_report(&self.webrtc, self.video_pad.as_ref()?).await
    }

    /// The viewer's congestion control feedback, once.
    pub fn take_feedback(&mut self) -> Option<mpsc::Receiver<Vec<PacketReport>>> {
        self.feedback.take()
    }

    pub fn proxy_tap(&self) -> Arc<Tap> {
        self.proxy_tap.clone()
    }

    /// The pipeline's errors, as text, for as long as it lives.
    pub fn errors(&self) -> impl Stream<Item = String> + Unpin + use<> {
        self.pipeline
            .bus()
            .expect("a pipeline has a bus")
            .stream()
            .filter_map(|message| async move {
                match message.view() {
                    gst::MessageView::Error(e) => Some(e.error().to_string()),
                    _ => None,
                }
            })
            .boxed()
    }
}

/// Weak references to every viewer pipeline built. Counting the live ones shows a leaked
/// pipeline (a reference kept after its session ended) in the device's status.
#[derive(Clone, Default)]
pub struct Registry(Arc<std::sync::Mutex<Vec<gst::glib::WeakRef<gst::Pipeline>>>>);

impl Registry {
    pub fn add(&self, viewer: &Viewer) {
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|weak| weak.upgrade().is_some());
        list.push(viewer.pipeline.downgrade());
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

/// How old a packet may be and still be sent again on a NACK, in ms.
const RTX_HISTORY_MS: u32 = 250;

/// Builds and starts the viewer pipeline (on a blocking thread).
pub fn build(
    capture: &Capture,
    ice: &IceConfig,
    certificate_pem: String,
    events: mpsc::Sender<ViewerEvent>,
    control_events: mpsc::Sender<ControlEvent>,
) -> Result<Viewer, MediaError> {
    let mut description = format!(
        "webrtcbin name=webrtc bundle-policy=max-bundle \
         appsrc name=video is-live=true format=time do-timestamp=false block=false \
         ! rtph264pay name=pay config-interval=-1 aggregate-mode=zero-latency mtu=1200 pt=96 \
         ! {} name=pacer \
         ! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,packetization-mode=(string)1,extmap-{}=(string){},extmap-{}=(string){},rtcp-fb-transport-cc=(boolean)true ! webrtc. ",
        pacer::FACTORY,
        playout::EXTENSION_ID,
        playout::EXTENSION_URI,
        twcc::EXTENSION_ID,
        twcc::EXTENSION_URI,
    );
    if capture.has_audio() {
        description.push_str(
            "appsrc name=audio is-live=true format=time do-timestamp=false block=false \
             ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2 ! webrtc. ",
        );
    }
    pacer::register().map_err(|error| MediaError::Build {
        part: Part::Viewer,
        error: gst::glib::Error::new(gst::CoreError::MissingPlugin, &error.to_string()),
    })?;
    let pipeline = gst::parse::launch(&description)
        .map_err(|error| MediaError::Build {
            part: Part::Viewer,
            error,
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| MediaError::NotAPipeline(Part::Viewer))?;
    pipeline.use_clock(Some(capture.clock()));
    // webrtcbin 1.22 puts a clocksync on every input stream, holding each frame until its
    // running time (plus latency). Our input is live and already paced by the camera, so the
    // wait only adds latency: let frames through at once.
    let data_pace = Arc::new(datapace::DataPace::default());
    let pace = data_pace.clone();
    pipeline.connect_deep_element_added(move |_, _, element| {
        match element.factory().map(|f| f.name()) {
            Some(name) if name == "sctpenc" => pace.install(element),
            Some(name) if name == "clocksync" => element.set_property("sync", false),
            // Retransmit only what the viewer can still use: a packet older than this is late
            // for the picture anyway, and resending it into a full queue (the browser asks
            // again and again) multiplied the traffic four times on a 1 Mbit/s link.
            Some(name) if name == "rtprtxsend" => {
                element.set_property("max-size-time", RTX_HISTORY_MS);
            }
            _ => {}
        }
    });
    let dtls = {
        let events = events.clone();
        Dtls::install(&pipeline, Some(certificate_pem), move || {
            let _ = events.try_send(ViewerEvent::PeerCertificate);
        })
    };
    let webrtc = pipeline
        .by_name("webrtc")
        .expect("named in the description");
    let appsrc = |name| {
        pipeline
            .by_name(name)
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    };
    let video = appsrc("video").expect("named in the description");
    // Offered to every viewer (webrtcbin turns caps' extmap-N into the offer's a=extmap);
    // written into the packets once the session has decided this viewer gets it.
    let pay = pipeline.by_name("pay").expect("named in the description");
    let pacer = pipeline
        .by_name("pacer")
        .and_then(|e| e.downcast::<Pacer>().ok())
        .expect("named in the description");
    let playout_hint = Arc::new(AtomicBool::new(false));
    let (feedback_tx, feedback) = mpsc::channel(twcc::QUEUE);
    let twcc = twcc::install(&pay);
    if let Some(pad) = pay.static_pad("src") {
        playout::install(&pad, playout_hint.clone());
        if twcc {
            twcc::watch(&pad, feedback_tx);
        }
    }
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
            let _ = tx.try_send(ViewerEvent::Candidate(mline, candidate));
        }
        None
    });
    let tx = events.clone();
    let (proxy_tap, proxy_inbound) = Tap::new();
    let tap = proxy_tap.clone();
    webrtc.connect("on-data-channel", false, move |values| {
        if let Ok(channel) = values[1].get::<gst_webrtc::WebRTCDataChannel>() {
            let label = channel.label().unwrap_or_default();
            if let Some(index) = datachannels::channel_of_label(&label) {
                tap.attach(index, &channel);
            }
            let _ = tx.try_send(ViewerEvent::Channel(ViewerChannel::new(channel)));
        }
        None
    });
    webrtc.connect_notify(Some("connection-state"), move |webrtc, _| {
        let state = webrtc::connection_state(webrtc).into();
        let _ = events.try_send(ViewerEvent::State(state));
    });
    // A PLI or FIR from the viewer arrives as an upstream force-key-unit event at the appsrc:
    // forward it, at most once a second for this viewer (`pli`), to the shared encoder's throttle.
    // Fix the base time ourselves (no start time: GStreamer keeps it), so the fan-out can move
    // each frame's capture clock time into this pipeline's running time from the first frame.
    let base_time = capture.clock().time();
    let feed = Feed::new(video.clone(), audio, base_time);
    let keyframes = pli::PliGate::new(capture.keyframe_requester(), capture.clock().clone());
    let gate = keyframes.clone();
    // Weak: the probe lives on the feed's own appsrc.
    let weak_feed = Arc::downgrade(&feed);
    if let Some(pad) = video.static_pad("src") {
        pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_, info| {
            if let Some(event) = info.event()
                && gst_video::ForceKeyUnitEvent::is(event)
            {
                debug!("the viewer asks for a key frame (PLI or FIR)");
                if let Some(feed) = weak_feed.upgrade() {
                    keyframes.request(feed.keyframe_rendition());
                }
                // Handled, not Drop: with gstreamer-rs a Drop hands GStreamer back a NULL
                // event, which 1.22 then unrefs (a GStreamer-CRITICAL on every PLI).
                return gst::PadProbeReturn::Handled;
            }
            gst::PadProbeReturn::Ok
        });
    }
    pipeline.set_start_time(gst::ClockTime::NONE);
    pipeline.set_base_time(base_time);
    // Nothing here waits for the clock, so the pipeline's latency is zero; saying so up front
    // also lets rtpsession timestamp RTCP before any latency query completes.
    pipeline.set_latency(gst::ClockTime::ZERO);
    if pipeline.set_state(gst::State::Playing).is_err() {
        // Some elements may have started: stopped, not disposed while running.
        webrtc::stop_pipeline(&pipeline);
        return Err(MediaError::DidNotStart {
            part: Part::Viewer,
            error: None,
        });
    }
    // Created as the session's task created it before (on a PLAYING webrtcbin, before the
    // offer); a pipeline that fails here is stopped, never dropped while PLAYING.
    let control = match ControlChannel::create(&webrtc, control_events) {
        Ok(control) => control,
        Err(e) => {
            webrtc::stop_pipeline(&pipeline);
            return Err(e);
        }
    };
    let video_pad = webrtc::video_sink_pad(&webrtc);
    Ok(Viewer {
        pipeline,
        webrtc,
        feed,
        dtls,
        proxy_tap,
        proxy_inbound: Some(proxy_inbound),
        control,
        playout_hint,
        feedback: Some(feedback),
        pacer,
        data_pace,
        video_pad,
        keyframes: gate,
    })
}

//! One viewer session, owned by one task: it builds the viewer's pipeline, negotiates, checks
//! the peer's real DTLS certificate against the answer and the grants before any media flows,
//! serves the `control` channel (claim, redeem, lend, grants, revoke, renew), re-checks the
//! grant whenever grants change, and tears everything down when the session ends.

mod access;
pub mod admission;
mod attached;
#[cfg(feature = "bench-hooks")]
mod ceiling;
mod context;
mod control;
mod proxy;
mod viewer;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gst::prelude::*;
use gst_webrtc::{WebRTCPeerConnectionState, WebRTCSDPType};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

pub use viewer::Registry;

use self::access::State;
use self::attached::Attached;
use self::context::Slot;
pub use self::context::{Command, Connected, SessionContext, SessionHandle};
use self::proxy::Proxy;
use self::viewer::{GstEvent, Viewer};
use super::playout::{self, PlayoutDelay};
use super::sdp::{self, remote};
use super::webrtc;
use crate::identity::Fingerprint;
use crate::signalling::protocol::{
    ClientMessage, IceCandidate, Sdp, SdpKind, SessionId, SignalData,
};

/// A session that is not connected this long after it started is given up (a viewer that
/// vanished mid-negotiation, or ICE that cannot succeed).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the viewer has to answer the offer. A browser answers in tens of milliseconds; a
/// session without an answer holds a pipeline and a slot for nothing.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `disconnected` may last before the session counts as failed (no ICE restart in
/// GStreamer 1.22, so the viewer starts a new session).
const DISCONNECTED_GRACE: Duration = Duration::from_secs(5);
/// A session whose viewer's signalling socket closed goes on while the viewer says `alive`
/// on the control channel (every 5 s; background tabs may throttle timers to once a second,
/// or less): silent this long, it ends.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// The rendezvous's reason when a viewer's socket closed without an `end`.
const VIEWER_GONE: &str = "viewer-gone";

pub fn spawn(id: SessionId, context: SessionContext) -> SessionHandle {
    // A session receives one answer and a few dozen candidates; 64 is plenty and a full queue
    // means the task is stuck, which the device loop then treats as a failure.
    let (commands, rx) = mpsc::channel(64);
    let span = info_span!("session", id = %id);
    let task = tokio::spawn(run(id, context, rx).instrument(span));
    SessionHandle { commands, task }
}

async fn run(id: SessionId, context: SessionContext, mut commands: mpsc::Receiver<Command>) {
    // The supervisor admitted this session (`admission::Admission::request`); its slot is
    // given back when this task ends or is aborted.
    let slot = Slot {
        admission: context.admission.clone(),
        id: id.clone(),
    };
    // Candidates can come in bursts of dozens; the task drains them at once.
    let (events_tx, mut events) = mpsc::channel(256);
    let (capture, ice) = (context.capture.clone(), context.ice.clone());
    let pem = format!(
        "{}{}",
        context.identity.cert_pem,
        context.identity.key_pem.expose()
    );
    let built =
        tokio::task::spawn_blocking(move || viewer::build(&capture, &ice, pem, events_tx)).await;
    let mut viewer = match built {
        Ok(Ok(viewer)) => viewer,
        Ok(Err(e)) => return end(&id, &context, &format!("cannot start the session: {e}")).await,
        Err(e) => return end(&id, &context, &format!("cannot start the session: {e}")).await,
    };
    let proxy = Proxy::new(
        viewer.proxy_tap.clone(),
        viewer.proxy_inbound.take(),
        context.upstream.clone(),
    );
    context.registry.add(&viewer.pipeline);
    context.capture.attach(viewer.feed.clone());
    // From here on, whatever ends this task (the session's end, a failure, or the
    // supervisor's `abort`) gives all of that back.
    let attached = Attached::new(
        context.capture.clone(),
        viewer.feed.clone(),
        context.connected.clone(),
        id.clone(),
        viewer.pipeline.clone(),
    );
    let mut session = Session::new(&id, &context, &viewer, proxy, &slot);
    let outcome = session.drive(&mut commands, &mut events).await;
    drop(session);
    match outcome {
        Ok(reason) => info!(%reason, "session ended"),
        Err(reason) => {
            info!(%reason, "session ended by the device");
            end(&id, &context, &reason).await;
        }
    }
    attached.release().await;
}

/// The state one session task keeps.
struct Session<'a> {
    id: &'a SessionId,
    context: &'a SessionContext,
    viewer: &'a Viewer,
    state: State,
    /// What this device offered: every answer and candidate is checked against it.
    offer: Option<remote::Offer>,
    /// The fingerprint the viewer's answer announced (set once: a second answer ends it).
    answered: Option<Fingerprint>,
    /// Remote candidates handed to webrtcbin so far (capped at `remote::MAX_CANDIDATES`).
    candidates: usize,
    /// The viewer's answer kept the playout-delay extension (`playout`).
    playout_accepted: bool,
    transport_up: bool,
    control: control::Control,
    proxy: Proxy,
    slot: &'a Slot,
}

impl<'a> Session<'a> {
    fn new(
        id: &'a SessionId,
        context: &'a SessionContext,
        viewer: &'a Viewer,
        proxy: Proxy,
        slot: &'a Slot,
    ) -> Self {
        Self {
            id,
            context,
            viewer,
            state: State::Unchecked,
            offer: None,
            answered: None,
            candidates: 0,
            playout_accepted: false,
            transport_up: false,
            control: control::Control::default(),
            proxy,
            slot,
        }
    }

    /// Runs the session until it ends. `Ok(reason)`: the other side ended it; `Err(reason)`:
    /// this side did, and must tell the viewer.
    async fn drive(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        events: &mut mpsc::Receiver<GstEvent>,
    ) -> Result<String, String> {
        let webrtc = &self.viewer.webrtc;
        let (control_tx, mut control_rx) = mpsc::channel(32);
        self.control.open(webrtc, control_tx)?;
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
        self.offer = Some(remote::Offer::parse(&text).map_err(|e| format!("own offer: {e}"))?);
        let text =
            sdp::normalize_h264_fmtp(&text, self.context.capture.profile_level_id().as_deref());
        let text = sdp::set_fingerprint(&text, &self.context.identity.fingerprint);
        self.send(SignalData::Sdp(Sdp {
            kind: SdpKind::Offer,
            sdp: text,
        }))
        .await?;
        debug!("offer sent");

        let mut bus = self
            .viewer
            .pipeline
            .bus()
            .expect("a pipeline has a bus")
            .stream();
        let mut grants_changed = self.context.grants.subscribe();
        let mut camera = self.context.capture.camera();
        let connect_deadline = tokio::time::sleep(CONNECT_TIMEOUT);
        tokio::pin!(connect_deadline);
        let answer_deadline = tokio::time::sleep(ANSWER_TIMEOUT);
        tokio::pin!(answer_deadline);
        let mut disconnected_since: Option<Instant> = None;
        // Without signalling, nothing else can tell us the viewer left.
        let mut signalling_lost = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Remote(data)) => self.remote(data).await?,
                    Some(Command::End(reason)) => {
                        // A viewer that says `alive` keeps a connected session without its
                        // socket (media is peer to peer); it ends when the viewer goes silent.
                        if reason == VIEWER_GONE && self.transport_up && self.control.last_alive().is_some() {
                            info!("the viewer's signalling socket closed; the connected session goes on while it is alive");
                            signalling_lost = true;
                            continue;
                        }
                        return Ok(reason);
                    }
                    Some(Command::Close(reason)) => return Err(reason),
                    Some(Command::RendezvousLost) => {
                        if !self.transport_up {
                            return Ok("rendezvous connection lost".into());
                        }
                        debug!("rendezvous connection lost; the connected session goes on");
                        signalling_lost = true;
                    }
                    None => return Ok("device shutting down".into()),
                },
                event = events.recv() => match event {
                    Some(GstEvent::Candidate(mline, candidate)) => self.local_candidate(mline, candidate).await?,
                    Some(GstEvent::State(state)) => {
                        debug!(?state, "peer connection state");
                        match state {
                            WebRTCPeerConnectionState::Connected => {
                                disconnected_since = None;
                                self.choose_playout_hint().await;
                                self.transport_up = true;
                                self.open_media_if_allowed();
                            }
                            WebRTCPeerConnectionState::Disconnected => disconnected_since = Some(Instant::now()),
                            WebRTCPeerConnectionState::Failed => return Err("connection failed".into()),
                            WebRTCPeerConnectionState::Closed => return Err("connection closed".into()),
                            _ => {}
                        }
                    }
                    Some(GstEvent::PeerCertificate) => self.peer_certificate().await?,
                    Some(GstEvent::ViewerChannel(channel)) => {
                        // A channel can beat the certificate notification to this task too.
                        self.peer_certificate().await?;
                        self.viewer_channel(&channel);
                    }
                    None => return Err("webrtcbin went away".into()),
                },
                Some(event) = control_rx.recv() => {
                    // The channel can beat the certificate notification to this task.
                    self.peer_certificate().await?;
                    let (reply, change) = self.control.handle(event, &self.state, self.context).await;
                    if let Some((_, access)) = change {
                        self.regrant(access)?;
                    }
                    if let Some(reply) = reply {
                        self.control.send(&reply);
                    }
                }
                Ok(()) = camera.changed() => {
                    let state = *camera.borrow_and_update();
                    if self.state.media_allowed() {
                        self.control.camera(state);
                    }
                }
                _ = grants_changed.changed() => {
                    if let Some(fp) = self.state.fingerprint() {
                        let access = self.context.grants.check(&fp);
                        self.regrant(access)?;
                    }
                }
                message = bus.next() => {
                    if let Some(gst::MessageView::Error(e)) = message.as_ref().map(|m| m.view()) {
                        return Err(format!("viewer pipeline error: {}", e.error()));
                    }
                }
                _ = &mut answer_deadline, if self.answered.is_none() => {
                    return Err(format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()));
                }
                _ = &mut connect_deadline, if !self.transport_up => return Err("not connected within 30 s".into()),
                _ = tick.tick() => {
                    if disconnected_since.is_some_and(|t| t.elapsed() > DISCONNECTED_GRACE) {
                        return Err("connection lost".into());
                    }
                    if signalling_lost && self.control.last_alive().is_some_and(|t| t.elapsed() > ALIVE_TIMEOUT) {
                        return Ok("the viewer went silent after its signalling closed".into());
                    }
                    if let State::PreAuth { until, .. } = self.state
                        && Instant::now() >= until {
                            return Err("no grant for this browser: closed after 10 s".into());
                        }
                    // Each session checks its own grant against the clock: expiry and
                    // revocation bite here even if the grants thread or the disk lags.
                    if let Some(fp) = self.state.fingerprint().filter(|_| self.state.media_allowed()) {
                        let access = self.context.grants.check(&fp);
                        if access != self.state.access() {
                            self.regrant(access)?;
                        }
                    }
                }
            }
        }
    }

    async fn remote(&mut self, data: SignalData) -> Result<(), String> {
        let webrtc = &self.viewer.webrtc;
        let offer = self
            .offer
            .as_ref()
            .expect("drive() makes the offer before it reads commands");
        match data {
            SignalData::Sdp(answer) if answer.kind == SdpKind::Answer => {
                if self.answered.is_some() {
                    return Err("a second answer".into());
                }
                // webrtcbin sees only an answer written from the checked model.
                let answer = remote::Answer::check(offer, &answer.sdp)
                    .map_err(|e| format!("unusable answer: {e}"))?;
                // The fingerprint the viewer says it will use; the handshake must show it.
                self.answered = Some(answer.fingerprint());
                self.slot.advance(admission::Phase::Unverified);
                self.candidates += answer.candidate_count();
                self.playout_accepted =
                    answer.kept_extension(playout::EXTENSION_ID, playout::EXTENSION_URI);
                let desc = webrtc::description(WebRTCSDPType::Answer, &answer.to_sdp(offer))
                    .map_err(|e| e.to_string())?;
                webrtc::set_remote_description(webrtc, &desc)
                    .await
                    .map_err(|e| e.to_string())
            }
            SignalData::Sdp(_) => Err("the device makes the offer; expected an answer".into()),
            // A candidate the device cannot use is ignored, not fatal: browsers send some
            // (mDNS names of other kinds, end-of-candidates) in good faith.
            SignalData::Ice(c) => {
                if self.candidates >= remote::MAX_CANDIDATES {
                    debug!(
                        "remote candidate ignored: over the cap of {}",
                        remote::MAX_CANDIDATES
                    );
                    return Ok(());
                }
                match remote::trickled_candidate(offer, &c.candidate, c.sdp_m_line_index) {
                    Ok(candidate) => {
                        self.candidates += 1;
                        webrtc::add_ice_candidate(webrtc, c.sdp_m_line_index, &candidate);
                    }
                    Err(why) => debug!(%why, "remote candidate ignored"),
                }
                Ok(())
            }
        }
    }

    async fn local_candidate(&self, mline: u32, candidate: String) -> Result<(), String> {
        if let Some(extra) = self
            .context
            .ice
            .advertise_address
            .and_then(|a| sdp::advertised_candidate(&candidate, a))
        {
            self.send(SignalData::Ice(IceCandidate {
                candidate: extra,
                sdp_m_line_index: mline,
            }))
            .await?;
        }
        self.send(SignalData::Ice(IceCandidate {
            candidate,
            sdp_m_line_index: mline,
        }))
        .await
    }

    /// The DTLS handshake showed the peer's certificate: it must be the one the answer
    /// announced, and the grants decide what it may do.
    async fn peer_certificate(&mut self) -> Result<(), String> {
        if self.state != State::Unchecked {
            return Ok(());
        }
        let grants = &self.context.grants;
        // Not there yet: the decoder's notification will bring us back.
        let Some(peer) = self.viewer.dtls.peer_fingerprint() else {
            return Ok(());
        };
        if self.answered != Some(peer) {
            grants.record(
                "refused",
                peer,
                "DTLS certificate differs from the answer's fingerprint",
            );
            return Err("the DTLS certificate differs from the answer's fingerprint".into());
        }
        let mut access = grants.check(&peer);
        if access.is_none() && grants.renewal_offered(&peer) {
            // A renewed certificate proving its key: the grant moves to it now.
            let service = grants.clone();
            match tokio::task::spawn_blocking(move || service.complete_renewal(peer)).await {
                Ok(Some(Ok(_))) => access = grants.check(&peer),
                Ok(Some(Err(error))) => warn!(%error, "renewal could not be completed"),
                Ok(None) | Err(_) => {}
            }
        }
        self.state = State::checked(peer, access, Instant::now());
        match self.state.access() {
            Some(access) => {
                info!(fingerprint = %peer.short(), role = ?access.role, "viewer authorised");
                grants.record("connected", peer, "");
                self.context.connected.set(self.id, Some(peer));
            }
            None => {
                // No per-address limit here: everyone behind one carrier NAT or TURN server
                // would share it. A pre-auth session is bounded by its slot (admission), its
                // three claim/redeem attempts (control) and its 10 s.
                grants.record(
                    "refused",
                    peer,
                    "no grant: pre-auth session (claim or redeem only)",
                );
                info!(fingerprint = %peer.short(), "unknown browser: pre-auth session for 10 s");
            }
        }
        self.control.announce(&self.state, self.context);
        self.note_granted();
        self.open_media_if_allowed();
        Ok(())
    }

    /// A session whose certificate a grant covers moves to the slots strangers cannot take.
    fn note_granted(&self) {
        if self.state.media_allowed() {
            self.slot.advance(admission::Phase::Granted);
        }
    }

    /// Grants changed (or a claim/redeem on this session succeeded).
    fn regrant(&mut self, access: Option<crate::grants::Access>) -> Result<(), String> {
        let before = self.state;
        let Some(after) = before.regrant(access) else {
            if let Some(fp) = before.fingerprint() {
                self.context.grants.record(
                    "refused",
                    fp,
                    "grant revoked or expired: session closed",
                );
            }
            return Err("access revoked or expired".into());
        };
        self.state = after;
        self.note_granted();
        if !after.channel_allowed() && self.proxy.in_use() {
            self.proxy.stop();
        }
        if let (None, Some(fp)) = (
            before.access(),
            after.fingerprint().filter(|_| after.media_allowed()),
        ) {
            self.context
                .grants
                .record("connected", fp, "after claim or redeem");
        }
        if after != before {
            if let Some(fp) = after.fingerprint().filter(|_| after.media_allowed()) {
                self.context.connected.set(self.id, Some(fp));
            }
            self.control.announce(&after, self.context);
            self.open_media_if_allowed();
        }
        Ok(())
    }

    /// Whether this viewer's packets carry the playout-delay hint, decided once ICE has
    /// chosen its path (webrtcbin 1.22 has no ICE restart, so the path stays).
    async fn choose_playout_hint(&self) {
        let policy = self.context.playout;
        if !self.playout_accepted || policy == PlayoutDelay::Never {
            return;
        }
        let (local, remote) = webrtc::selected_path(&self.viewer.webrtc).await;
        let path = local.as_ref().zip(remote.as_ref());
        let on = policy.applies(path);
        debug!(?policy, ?local, ?remote, on, "playout-delay hint");
        self.viewer.playout_hint.store(on, Ordering::Relaxed);
    }

    /// Media flows once the transport is up (earlier frames would be lost) and the peer is
    /// granted; a key frame starts the picture.
    fn open_media_if_allowed(&mut self) {
        if self.transport_up && self.state.media_allowed() && self.viewer.feed.open() {
            info!("media open");
            self.context.capture.request_keyframe();
        }
    }

    /// Every channel the viewer opens is checked against its grant's scope when it opens.
    /// Once all four proxy channels are open, the web-UI proxy starts.
    fn viewer_channel(&mut self, channel: &gst_webrtc::WebRTCDataChannel) {
        let label = channel
            .property::<Option<String>>("label")
            .unwrap_or_default();
        if !self.state.channel_allowed() {
            warn!(%label, "viewer opened a channel its grant does not allow; closing it");
            webrtc::close_data_channel(channel);
            if crate::proxy::channel_of_label(&label).is_some() {
                self.proxy.refuse();
            }
            return;
        }
        debug!(%label, "viewer opened a channel");
        #[cfg(feature = "bench-hooks")]
        if label == ceiling::LABEL && self.context.bench_datachannel {
            ceiling::start(channel.clone());
            return;
        }
        if let Some(index) = crate::proxy::channel_of_label(&label) {
            self.proxy.opened(index, channel);
        }
    }

    async fn send(&self, data: SignalData) -> Result<(), String> {
        self.context
            .outgoing
            .send(ClientMessage::Signal {
                session_id: self.id.clone(),
                data,
            })
            .await
            .map_err(|_| "signalling is shut down".to_string())
    }
}

async fn end(id: &SessionId, context: &SessionContext, reason: &str) {
    warn!(%reason, "ending session");
    let end = ClientMessage::End {
        session_id: id.clone(),
        reason: Some(reason.into()),
    };
    let _ = context.outgoing.send(end).await;
}

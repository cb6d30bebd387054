//! One viewer session's decisions, sans IO: `Session::handle(input, now) -> actions`.
//!
//! The task around it (`task.rs`) turns what happens (signalling, webrtcbin's callbacks, the
//! DTLS handshake, the grants, the camera, the clock) into [`Input`]s and carries out the
//! [`Action`]s, in order. Nothing here touches GStreamer, a socket or a clock: time comes in as
//! `now`, and every SDP and candidate is checked by the pure `media::sdp` before an action
//! hands it on.
//!
//! The life of a session: the device offers (`Offered`); the viewer answers (checked against
//! the offer) and trickles candidates (checked, capped); ICE connects; the DTLS handshake shows
//! the peer's certificate, which must be the one the answer announced, and the grants say
//! what it may do (`access::State`). Media opens once the transport is up and the peer is
//! granted. The session ends, once, with an [`Ending`]: whoever ended it, and why.

mod messages;

use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

pub use self::messages::{Action, Config, Ending, Input, PeerState};

use super::access::State;
use super::admission::Phase;
use crate::grants::Access;
use crate::identity::Fingerprint;
use crate::media::datachannels::{CHANNELS, channel_of_label};
use crate::media::playout::{self, PlayoutDelay};
use crate::media::sdp::{self, remote};
use crate::signalling::protocol::{IceCandidate, Sdp, SdpKind, SignalData};

/// A session that is not connected this long after it started is given up (a viewer that
/// vanished mid-negotiation, or ICE that cannot succeed).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the viewer has to answer the offer. A browser answers in tens of milliseconds; a
/// session without an answer holds a pipeline and a slot for nothing.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `disconnected` may last before the session counts as failed (no ICE restart in
/// GStreamer 1.22, so the viewer starts a new session).
pub const DISCONNECTED_GRACE: Duration = Duration::from_secs(5);
/// A session whose viewer's signalling socket closed goes on while the viewer says `alive`
/// on the control channel (every 5 s; background tabs may throttle timers to once a second,
/// or less): silent this long, it ends.
pub const ALIVE_TIMEOUT: Duration = Duration::from_secs(30);
/// The rendezvous's reason when a viewer's socket closed without an `end`.
pub const VIEWER_GONE: &str = "viewer-gone";
/// The label of the `--bench-datachannel` hook's channel (`media::ceiling`).
pub const CEILING_LABEL: &str = "bench-ceiling";

/// One session's state.
pub struct Session {
    config: Config,
    started: Instant,
    state: State,
    /// What this device offered: every answer and candidate is checked against it.
    offer: Option<remote::Offer>,
    /// The fingerprint the viewer's answer announced (set once: a second answer ends it).
    answered: Option<Fingerprint>,
    /// A renewal is being completed for the peer's certificate.
    renewing: Option<Fingerprint>,
    /// Remote candidates handed to webrtcbin so far (capped at `remote::MAX_CANDIDATES`).
    candidates: usize,
    /// The viewer's answer kept the playout-delay extension.
    playout_accepted: bool,
    transport_up: bool,
    media_open: bool,
    disconnected_since: Option<Instant>,
    /// The viewer's signalling is gone; only `alive` tells that it is still there.
    signalling_lost: bool,
    /// When the viewer last said `alive` (viewers that never do are not held to it).
    last_alive: Option<Instant>,
    /// Proxy channels the viewer opened, by number.
    proxy_seen: [bool; CHANNELS],
    /// The proxy was refused or stopped: it stays off on this connection.
    proxy_off: bool,
    ended: bool,
}

impl Session {
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            config,
            started: now,
            state: State::Unchecked,
            offer: None,
            answered: None,
            renewing: None,
            candidates: 0,
            playout_accepted: false,
            transport_up: false,
            media_open: false,
            disconnected_since: None,
            signalling_lost: false,
            last_alive: None,
            proxy_seen: [false; CHANNELS],
            proxy_off: false,
            ended: false,
        }
    }

    /// Where the session stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// The peer's certificate is still to be checked: the task reports it (`Certificate`) as
    /// soon as the handshake has shown it.
    pub fn awaits_certificate(&self) -> bool {
        self.state == State::Unchecked && self.renewing.is_none() && !self.ended
    }

    #[cfg(test)]
    pub fn has_ended(&self) -> bool {
        self.ended
    }

    /// Decides what `input`, at `now`, means for this session.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Out::default();
        if self.ended {
            return out.0;
        }
        if let Err(ending) = self.step(input, now, &mut out) {
            match &ending {
                Ending::ByPeer(reason) => info!(%reason, "session ended"),
                Ending::ByDevice(reason) => warn!(%reason, "session ended by the device"),
            }
            self.ended = true;
            out.push(Action::End(ending));
        }
        out.0
    }

    fn step(&mut self, input: Input, now: Instant, out: &mut Out) -> Result<(), Ending> {
        match input {
            Input::Offered(text) => self.offered(&text, out),
            Input::Remote(data) => self.remote(data, out),
            Input::EndedByPeer(reason) => {
                // A viewer that says `alive` keeps a connected session without its socket
                // (media is peer to peer); it ends when the viewer goes silent.
                if reason == VIEWER_GONE && self.transport_up && self.last_alive.is_some() {
                    info!(
                        "the viewer's signalling socket closed; the connected session goes on while it is alive"
                    );
                    self.signalling_lost = true;
                    return Ok(());
                }
                Err(Ending::ByPeer(reason))
            }
            Input::Close(reason) => Err(Ending::ByDevice(reason)),
            Input::RendezvousLost => {
                if !self.transport_up {
                    return Err(Ending::ByPeer("rendezvous connection lost".into()));
                }
                debug!("rendezvous connection lost; the connected session goes on");
                self.signalling_lost = true;
                Ok(())
            }
            Input::SignallingClosed => Err(Ending::ByPeer("signalling is shut down".into())),
            Input::LocalCandidate { mline, candidate } => {
                if let Some(extra) = self
                    .config
                    .advertise_address
                    .and_then(|a| sdp::advertised_candidate(&candidate, a))
                {
                    out.signal_candidate(mline, extra);
                }
                out.signal_candidate(mline, candidate);
                Ok(())
            }
            Input::Peer(state) => self.peer(state, now, out),
            Input::Certificate {
                peer,
                access,
                renewal_offered,
            } => self.certificate(peer, access, renewal_offered, now, out),
            Input::Renewed(access) => match self.renewing.take() {
                Some(peer) if self.state == State::Unchecked => {
                    self.authorise(peer, access, now, out);
                    Ok(())
                }
                _ => Ok(()),
            },
            Input::Channel { label, reliable } => {
                self.channel(&label, reliable, out);
                Ok(())
            }
            Input::Alive => {
                self.last_alive = Some(now);
                Ok(())
            }
            Input::Access(access) => {
                if self.state.fingerprint().is_some() && access != self.state.access() {
                    self.regrant(access, out)?;
                }
                Ok(())
            }
            Input::Camera(camera) => {
                if self.state.media_allowed() {
                    out.push(Action::TellCamera(camera));
                }
                Ok(())
            }
            Input::SelectedPath(local, remote) => {
                let path = local.as_ref().zip(remote.as_ref());
                let on = self.config.playout.applies(path);
                debug!(policy = ?self.config.playout, ?local, ?remote, on, "playout-delay hint");
                out.push(Action::PlayoutHint(on));
                Ok(())
            }
            Input::Failed(reason) => Err(Ending::ByDevice(reason)),
            Input::Tick => self.tick(now),
        }
    }

    fn offered(&mut self, text: &str, out: &mut Out) -> Result<(), Ending> {
        let offer =
            remote::Offer::parse(text).map_err(|e| Ending::ByDevice(format!("own offer: {e}")))?;
        self.offer = Some(offer);
        let text = sdp::normalize_h264_fmtp(text, self.config.profile_level_id.as_deref());
        let text = sdp::set_fingerprint(&text, &self.config.fingerprint);
        out.push(Action::Signal(SignalData::Sdp(Sdp {
            kind: SdpKind::Offer,
            sdp: text,
        })));
        debug!("offer sent");
        Ok(())
    }

    fn remote(&mut self, data: SignalData, out: &mut Out) -> Result<(), Ending> {
        let Some(offer) = &self.offer else {
            // The task makes the offer before it reads anything the viewer sends.
            return Err(Ending::ByDevice("a message before the offer".into()));
        };
        match data {
            SignalData::Sdp(answer) if answer.kind == SdpKind::Answer => {
                if self.answered.is_some() {
                    return Err(Ending::ByDevice("a second answer".into()));
                }
                // webrtcbin sees only an answer written from the checked model.
                let answer = remote::Answer::check(offer, &answer.sdp)
                    .map_err(|e| Ending::ByDevice(format!("unusable answer: {e}")))?;
                // The fingerprint the viewer says it will use; the handshake must show it.
                self.answered = Some(answer.fingerprint());
                self.candidates += answer.candidate_count();
                self.playout_accepted =
                    answer.kept_extension(playout::EXTENSION_ID, playout::EXTENSION_URI);
                out.push(Action::Admit(Phase::Unverified));
                out.push(Action::SetAnswer(answer.to_sdp(offer)));
                Ok(())
            }
            SignalData::Sdp(_) => Err(Ending::ByDevice(
                "the device makes the offer; expected an answer".into(),
            )),
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
                        out.push(Action::AddCandidate {
                            mline: c.sdp_m_line_index,
                            candidate,
                        });
                    }
                    Err(why) => debug!(%why, "remote candidate ignored"),
                }
                Ok(())
            }
        }
    }

    fn peer(&mut self, state: PeerState, now: Instant, out: &mut Out) -> Result<(), Ending> {
        debug!(?state, "peer connection state");
        match state {
            PeerState::Connected => {
                self.disconnected_since = None;
                if !self.transport_up
                    && self.playout_accepted
                    && self.config.playout != PlayoutDelay::Never
                {
                    // Decided once ICE has chosen its path (webrtcbin 1.22 has no ICE restart,
                    // so the path stays).
                    out.push(Action::ChoosePlayoutHint);
                }
                self.transport_up = true;
                self.open_media_if_allowed(out);
                Ok(())
            }
            PeerState::Disconnected => {
                self.disconnected_since.get_or_insert(now);
                Ok(())
            }
            PeerState::Failed => Err(Ending::ByDevice("connection failed".into())),
            PeerState::Closed => Err(Ending::ByDevice("connection closed".into())),
            PeerState::Connecting => Ok(()),
        }
    }

    /// The DTLS handshake showed the peer's certificate: it must be the one the answer
    /// announced, and the grants decide what it may do.
    fn certificate(
        &mut self,
        peer: Fingerprint,
        access: Option<Access>,
        renewal_offered: bool,
        now: Instant,
        out: &mut Out,
    ) -> Result<(), Ending> {
        if !self.awaits_certificate() {
            return Ok(());
        }
        if self.answered != Some(peer) {
            out.push(Action::Audit {
                event: "refused",
                fingerprint: peer,
                detail: "DTLS certificate differs from the answer's fingerprint",
            });
            return Err(Ending::ByDevice(
                "the DTLS certificate differs from the answer's fingerprint".into(),
            ));
        }
        if access.is_none() && renewal_offered {
            // A renewed certificate proving its key: the grant moves to it first.
            self.renewing = Some(peer);
            out.push(Action::CompleteRenewal(peer));
            return Ok(());
        }
        self.authorise(peer, access, now, out);
        Ok(())
    }

    fn authorise(
        &mut self,
        peer: Fingerprint,
        access: Option<Access>,
        now: Instant,
        out: &mut Out,
    ) {
        self.state = State::checked(peer, access, now);
        match access {
            Some(access) => {
                info!(fingerprint = %peer.short(), role = ?access.role, "viewer authorised");
                out.push(Action::Audit {
                    event: "connected",
                    fingerprint: peer,
                    detail: "",
                });
                out.push(Action::MarkConnected(peer));
            }
            None => {
                // No per-address limit here: everyone behind one carrier NAT or TURN server
                // would share it. A pre-auth session is bounded by its slot (admission), its
                // three claim/redeem attempts (control) and its 10 s.
                out.push(Action::Audit {
                    event: "refused",
                    fingerprint: peer,
                    detail: "no grant: pre-auth session (claim or redeem only)",
                });
                info!(fingerprint = %peer.short(), "unknown browser: pre-auth session for 10 s");
            }
        }
        out.push(Action::Announce(self.state));
        self.note_granted(out);
        self.open_media_if_allowed(out);
    }

    /// What the grants say about this certificate changed.
    fn regrant(&mut self, access: Option<Access>, out: &mut Out) -> Result<(), Ending> {
        let before = self.state;
        let Some(after) = before.regrant(access) else {
            if let Some(fingerprint) = before.fingerprint() {
                out.push(Action::Audit {
                    event: "refused",
                    fingerprint,
                    detail: "grant revoked or expired: session closed",
                });
            }
            return Err(Ending::ByDevice("access revoked or expired".into()));
        };
        self.state = after;
        if after == before {
            return Ok(());
        }
        self.note_granted(out);
        if !after.channel_allowed() && self.proxy_seen.contains(&true) && !self.proxy_off {
            self.proxy_off = true;
            out.push(Action::StopProxy);
        }
        if let Some(fingerprint) = after.fingerprint().filter(|_| after.media_allowed()) {
            if before.access().is_none() {
                out.push(Action::Audit {
                    event: "connected",
                    fingerprint,
                    detail: "after claim or redeem",
                });
            }
            out.push(Action::MarkConnected(fingerprint));
        }
        out.push(Action::Announce(after));
        self.open_media_if_allowed(out);
        Ok(())
    }

    /// A session whose certificate a grant covers moves to the slots strangers cannot take.
    fn note_granted(&self, out: &mut Out) {
        if self.state.media_allowed() {
            out.push(Action::Admit(Phase::Granted));
        }
    }

    /// Media flows once the transport is up (earlier frames would be lost) and the peer is
    /// granted; a key frame starts the picture.
    fn open_media_if_allowed(&mut self, out: &mut Out) {
        if self.transport_up && self.state.media_allowed() && !self.media_open {
            self.media_open = true;
            info!("media open");
            out.push(Action::OpenMedia);
        }
    }

    /// Every channel the viewer opens is checked against its grant's scope when it opens.
    /// Once all four proxy channels are open, ordered and reliable, the web-UI proxy starts.
    fn channel(&mut self, label: &str, reliable: bool, out: &mut Out) {
        let proxy = channel_of_label(label);
        if !self.state.channel_allowed() {
            warn!(%label, "viewer opened a channel its grant does not allow; closing it");
            out.push(Action::CloseChannel);
            if proxy.is_some() && !self.proxy_off {
                self.proxy_off = true;
                out.push(Action::RefuseProxy);
            }
            return;
        }
        debug!(%label, "viewer opened a channel");
        if label == CEILING_LABEL && self.config.bench_datachannel {
            out.push(Action::ServeCeiling);
            return;
        }
        let Some(index) = proxy else {
            return;
        };
        if self.proxy_off {
            out.push(Action::CloseChannel);
            return;
        }
        // docs/proxy.md: ordered and reliable, or a stream's frames could be lost or reordered.
        if !reliable || self.proxy_seen[index] {
            warn!(
                channel = index,
                reliable, "proxy channel not ordered and reliable, or opened twice; proxy off"
            );
            self.proxy_off = true;
            out.push(Action::CloseChannel);
            out.push(Action::StopProxy);
            return;
        }
        self.proxy_seen[index] = true;
        if self.proxy_seen.iter().all(|s| *s) {
            out.push(Action::StartProxy);
        }
    }

    fn tick(&mut self, now: Instant) -> Result<(), Ending> {
        if self.answered.is_none() && now >= self.started + ANSWER_TIMEOUT {
            return Err(Ending::ByDevice(format!(
                "no answer within {} s",
                ANSWER_TIMEOUT.as_secs()
            )));
        }
        if !self.transport_up && now >= self.started + CONNECT_TIMEOUT {
            return Err(Ending::ByDevice(format!(
                "not connected within {} s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        if self
            .disconnected_since
            .is_some_and(|t| now >= t + DISCONNECTED_GRACE)
        {
            return Err(Ending::ByDevice("connection lost".into()));
        }
        if self.signalling_lost && self.last_alive.is_some_and(|t| now >= t + ALIVE_TIMEOUT) {
            return Err(Ending::ByPeer(
                "the viewer went silent after its signalling closed".into(),
            ));
        }
        if let State::PreAuth { until, .. } = self.state
            && now >= until
        {
            return Err(Ending::ByDevice(
                "no grant for this browser: closed after 10 s".into(),
            ));
        }
        Ok(())
    }
}

/// The actions of one `handle`, in order.
#[derive(Default)]
struct Out(Vec<Action>);

impl Out {
    fn push(&mut self, action: Action) {
        self.0.push(action);
    }

    fn signal_candidate(&mut self, mline: u32, candidate: String) {
        self.push(Action::Signal(SignalData::Ice(IceCandidate {
            candidate,
            sdp_m_line_index: mline,
        })));
    }
}

#[cfg(test)]
mod tests;

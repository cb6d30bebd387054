//! The task that runs one session: it builds the viewer (`media::viewer`), turns what happens
//! into the machine's inputs, and carries out the actions the machine decides, in order. It
//! decides nothing itself.
//!
//! Whatever ends the task (the session's end, a failure, or the supervisor's `abort`, which
//! skips everything after the `.await` it stops at), drop guards give back what it holds: its
//! viewer slot (`Slot`), its `Connected` entry (`ConnectedEntry`) and the attached viewer
//! (`media::viewer::Attached`: out of the capture fan-out, pipeline to NULL off the runtime).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info_span, warn};

use super::adapt::Vote;
use super::context::{ConnectedEntry, Slot};
use super::control::{Control, ControlEvent, Outcome};
use super::machine::{Action, Config, Ending, Input, Session};
use super::proxy::Proxy;
use super::{Command, SessionContext, SessionHandle};
use crate::adapt::datashare;
use crate::adapt::estimator::Estimator;
use crate::adapt::feedback::{PacketReport, ReceiverReport};
use crate::media::viewer::{self, Attached, ViewerChannel, ViewerEvent};
use crate::signalling::protocol::{ClientMessage, SessionId};

/// How often the clock and the grants are looked at: expiry and revocation bite within this,
/// even if the grants thread or the disk lags.
const TICK: Duration = Duration::from_millis(250);
/// How often the viewer's latest receiver report is read (viewers send about one a second).
const REPORTS: Duration = Duration::from_secs(1);
/// After the key frame a viewer's media opens with, a second one this much later.
///
/// For a first key frame whose first packets were lost: a browser cannot see that loss (no
/// packet before them shows a gap, so it neither NACKs nor sends a PLI), and libwebrtc hands
/// the H.264 key frame to the decoder without them. The picture then stayed damaged until
/// the next periodic key frame, 10 s later (seen at 3 % loss: docs/benchmarks.md).
const SECOND_KEY_FRAME: Duration = Duration::from_secs(1);
/// TWCC feedback this recent means the viewer sends it: its receiver reports then give the
/// round trip only, and the delay detector steers.
const TWCC_FRESH: Duration = Duration::from_secs(2);
/// TWCC feedback comes every 50-100 ms; after a silence this long (a blackout) the viewer
/// has lost packets it cannot get again (resends are kept 250 ms), so it is sent a key frame
/// as soon as its feedback resumes. Otherwise Chromium asks only once it has decoded nothing
/// for 3 s: the picture came back 0.1-3.1 s after a 3 s blackout, by how the browser's timer
/// fell against the blackout.
const FEEDBACK_GAP: Duration = Duration::from_secs(1);

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
    // Candidates can come in bursts of dozens; the task drains them at once. Control requests
    // have a queue of their own, so a viewer flooding them loses only its own requests.
    let (events_tx, mut events) = mpsc::channel(256);
    let (control_tx, mut control_events) = mpsc::channel(32);
    let (capture, ice) = (context.capture.clone(), context.ice.clone());
    let pem = format!(
        "{}{}",
        context.identity.cert_pem,
        context.identity.key_pem.expose()
    );
    let built = tokio::task::spawn_blocking(move || {
        viewer::build(&capture, &ice, pem, events_tx, control_tx)
    })
    .await;
    let viewer = match built {
        Ok(Ok(viewer)) => viewer,
        Ok(Err(e)) => return end(&id, &context, &format!("cannot start the session: {e}")).await,
        Err(e) => return end(&id, &context, &format!("cannot start the session: {e}")).await,
    };
    // From here on, whatever ends this task gives all of this back.
    let mut viewer = Attached::new(context.capture.clone(), viewer, &context.registry);
    let connected = ConnectedEntry {
        connected: context.connected.clone(),
        id: id.clone(),
    };
    let proxy = Proxy::new(
        viewer.proxy_tap(),
        viewer.take_proxy_inbound(),
        context.upstream.clone(),
    );
    let mut feedback = viewer.take_feedback().unwrap_or_else(|| mpsc::channel(1).1);
    let vote = Vote {
        adaptation: context.adaptation.clone(),
        session: id.clone(),
    };
    let config = Config {
        fingerprint: context.identity.fingerprint,
        profile_level_id: context.capture.profile_level_id(),
        advertise_address: context.ice.advertise_address,
        playout: context.playout,
        #[cfg(feature = "bench-hooks")]
        bench_datachannel: context.bench_datachannel,
        #[cfg(not(feature = "bench-hooks"))]
        bench_datachannel: false,
    };
    let mut shell = Shell {
        id: &id,
        context: &context,
        viewer: &viewer,
        session: Session::new(config, Instant::now()),
        control: Control::new(viewer.control().clone()),
        proxy,
        slot: &slot,
        connected: &connected,
        vote: &vote,
        estimator: Estimator::new(context.adaptation.bounds()),
        logged_estimate: 0,
        last_twcc: None,
        last_report: None,
        second_keyframe: None,
        data_meter: (Instant::now(), 0),
        data_bps: 0,
        channel: None,
        ending: None,
    };
    let ending = shell
        .drive(
            &mut commands,
            &mut events,
            &mut control_events,
            &mut feedback,
        )
        .await;
    drop(shell);
    if let Ending::ByDevice(reason) = &ending {
        end(&id, &context, reason).await;
    }
    viewer.release().await;
}

/// Whether feedback arriving at `now` ends a silence of `FEEDBACK_GAP` or more.
fn resumed_after_gap(last: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|t| now.saturating_duration_since(t) >= FEEDBACK_GAP)
}

/// What the task holds while the session runs.
struct Shell<'a> {
    id: &'a SessionId,
    context: &'a SessionContext,
    viewer: &'a Attached,
    session: Session,
    control: Control,
    proxy: Proxy,
    slot: &'a Slot,
    connected: &'a ConnectedEntry,
    /// This session's say in the encoder's bitrate, from its own link's estimate.
    vote: &'a Vote,
    estimator: Estimator,
    /// The estimate last logged (a line when it moves by 10 %).
    logged_estimate: u32,
    /// When TWCC feedback last came (a viewer without it is steered by receiver reports).
    last_twcc: Option<Instant>,
    /// The receiver report last read, so the same one is not counted twice.
    last_report: Option<ReceiverReport>,
    /// When to ask for the second key frame after media opened (`SECOND_KEY_FRAME`).
    second_keyframe: Option<Instant>,
    /// The datachannels' bytes at a time, and the rate they sent at over the last second.
    data_meter: (Instant, u64),
    data_bps: u32,
    /// The channel of the `Input::Channel` being handled.
    channel: Option<ViewerChannel>,
    ending: Option<Ending>,
}

impl Shell<'_> {
    /// Feeds the machine until it ends the session.
    async fn drive(
        &mut self,
        commands: &mut mpsc::Receiver<Command>,
        events: &mut mpsc::Receiver<ViewerEvent>,
        control_events: &mut mpsc::Receiver<ControlEvent>,
        feedback: &mut mpsc::Receiver<Vec<PacketReport>>,
    ) -> Ending {
        match self.viewer.offer().await {
            Ok(text) => self.feed(Input::Offered(text)).await,
            Err(e) => self.feed(Input::Failed(e.to_string())).await,
        }
        let mut errors = self.viewer.errors();
        let mut grants_changed = self.context.grants.subscribe();
        let mut camera = self.context.capture.camera();
        let mut tick = tokio::time::interval(TICK);
        let mut report_timer = tokio::time::interval(REPORTS);
        while self.ending.is_none() {
            let input = tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Remote(data)) => Input::Remote(data),
                    Some(Command::End(reason)) => Input::EndedByPeer(reason),
                    Some(Command::Close(reason)) => Input::Close(reason),
                    Some(Command::RendezvousLost) => Input::RendezvousLost,
                    None => Input::EndedByPeer("device shutting down".into()),
                },
                event = events.recv() => match event {
                    Some(ViewerEvent::Candidate(mline, candidate)) => {
                        Input::LocalCandidate { mline, candidate }
                    }
                    Some(ViewerEvent::State(state)) => Input::Peer(state),
                    Some(ViewerEvent::PeerCertificate) => {
                        self.check_certificate().await;
                        continue;
                    }
                    Some(ViewerEvent::Channel(channel)) => {
                        // A channel can beat the certificate notification to this task.
                        self.check_certificate().await;
                        let input = Input::Channel {
                            label: channel.label(),
                            reliable: channel.reliable(),
                        };
                        self.channel = Some(channel);
                        input
                    }
                    None => Input::Failed("webrtcbin went away".into()),
                },
                Some(event) = control_events.recv() => {
                    // The channel can beat the certificate notification to this task too.
                    self.check_certificate().await;
                    let state = self.session.state();
                    match self.control.handle(event, &state, self.context).await {
                        Outcome::Nothing => continue,
                        Outcome::Alive => Input::Alive,
                        Outcome::Reply(reply) => {
                            self.control.send(&reply);
                            continue;
                        }
                        Outcome::Changed(access, reply) => {
                            self.feed(Input::Access(access)).await;
                            self.control.send(&reply);
                            continue;
                        }
                    }
                }
                Some(reports) = feedback.recv() => {
                    let now = Instant::now();
                    if resumed_after_gap(self.last_twcc, now) {
                        debug!("feedback resumed after a gap: a key frame for the viewer");
                        self.viewer.request_keyframe();
                    }
                    self.last_twcc = Some(now);
                    self.estimator.on_feedback(&reports, now);
                    self.estimated();
                    continue;
                }
                _ = report_timer.tick() => {
                    self.receiver_report().await;
                    continue;
                }
                Ok(()) = camera.changed() => Input::Camera(*camera.borrow_and_update()),
                Ok(()) = grants_changed.changed() => match self.grant() {
                    Some(input) => input,
                    None => continue,
                },
                Some(error) = errors.next() => Input::Failed(format!("viewer pipeline error: {error}")),
                _ = tick.tick() => {
                    self.measure_data(Instant::now());
                    if self.second_keyframe.is_some_and(|at| Instant::now() >= at) {
                        self.second_keyframe = None;
                        self.viewer.request_keyframe();
                    }
                    self.feed(Input::Tick).await;
                    match self.grant() {
                        Some(input) => input,
                        None => continue,
                    }
                }
            };
            self.feed(input).await;
            self.channel = None;
        }
        self.ending.take().expect("the loop ends with an ending")
    }

    /// A new estimate: logged when it moved, then it paces this viewer and is its vote.
    fn estimated(&mut self) {
        let estimate = self.estimator.estimate_bps();
        // The first estimate logs too: that is how to see that feedback flows.
        if estimate.abs_diff(self.logged_estimate) > self.logged_estimate / 10 {
            self.logged_estimate = estimate;
            debug!(
                estimate,
                acked = self.estimator.acked_bps().unwrap_or(0.0) as u32,
                queued_ms = self.estimator.queue_delay().as_millis() as u64,
                usage = ?self.estimator.usage(),
                twcc = self.last_twcc.is_some(),
                "the viewer's link"
            );
        }
        let ceiling = self.estimator.bounds().max_bps;
        self.viewer.pace(estimate, ceiling);
        // On a constrained link the datachannels get their share, and the encoder is voted
        // what they leave (what they took over the last second, at most their share).
        let data_limit = datashare::limit(estimate, self.vote.adaptation.configured_bps());
        self.viewer.pace_data(data_limit);
        let data = data_limit.map_or(0, |limit| self.data_bps.min(limit));
        let rendition = self
            .vote
            .adaptation
            .vote(self.id, estimate.saturating_sub(data));
        self.viewer.switch_to(rendition);
    }

    /// The datachannels' send rate over the last second, once a second.
    fn measure_data(&mut self, now: Instant) {
        let (since, before) = self.data_meter;
        let secs = now.saturating_duration_since(since).as_secs_f64();
        if secs < 1.0 {
            return;
        }
        let bytes = self.viewer.data_bytes();
        self.data_bps = (bytes.saturating_sub(before) as f64 * 8.0 / secs) as u32;
        self.data_meter = (now, bytes);
    }

    /// Reads the viewer's latest receiver report, if it is new. With TWCC it gives the round
    /// trip; without (aiortc sends none) its loss and round trip are the estimate's only input,
    /// and the session votes and is paced by it.
    async fn receiver_report(&mut self) {
        // Only a viewer we send video to has a say (as with TWCC, which only such a viewer
        // can send): a stranger before its grant could write receiver reports too.
        if !self.viewer.receives_media() {
            return;
        }
        let Some(report) = self.viewer.receiver_report().await else {
            return;
        };
        if self.last_report == Some(report) {
            return;
        }
        self.last_report = Some(report);
        let now = Instant::now();
        let twcc = self
            .last_twcc
            .is_some_and(|t| now.duration_since(t) < TWCC_FRESH);
        self.estimator.on_receiver_report(report, now, twcc);
        if !twcc {
            self.estimated();
        }
    }

    /// What the grants say about the session's certificate now, once it is known.
    fn grant(&self) -> Option<Input> {
        let fingerprint = self.session.state().fingerprint()?;
        Some(Input::Access(self.context.grants.check(&fingerprint)))
    }

    /// Reports the peer's certificate once the handshake has shown it.
    async fn check_certificate(&mut self) {
        if !self.session.awaits_certificate() {
            return;
        }
        // Not there yet: the decoder's notification will bring us back.
        let Some(peer) = self.viewer.peer_fingerprint() else {
            return;
        };
        let grants = &self.context.grants;
        let input = Input::Certificate {
            peer,
            access: grants.check(&peer),
            renewal_offered: grants.renewal_offered(&peer),
        };
        self.feed(input).await;
    }

    /// Hands the machine one input and carries out what it decides, and what follows from it.
    async fn feed(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for action in self.session.handle(input, Instant::now()) {
                if let Some(next) = self.carry_out(action).await {
                    inputs.push_back(next);
                }
            }
        }
    }

    /// Carries out one action; some report back with an input.
    async fn carry_out(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Signal(data) => {
                let message = ClientMessage::Signal {
                    session_id: self.id.clone(),
                    data,
                };
                if self.context.outgoing.send(message).await.is_err() {
                    return Some(Input::SignallingClosed);
                }
            }
            Action::SetAnswer(sdp) => {
                if let Err(e) = self.viewer.set_answer(&sdp).await {
                    return Some(Input::Failed(e.to_string()));
                }
            }
            Action::AddCandidate { mline, candidate } => {
                self.viewer.add_candidate(mline, &candidate);
            }
            Action::Admit(phase) => self.slot.advance(phase),
            Action::Audit {
                event,
                fingerprint,
                detail,
            } => {
                // An fsync'd line (and, for "connected", a grants write): off the runtime.
                let service = self.context.grants.clone();
                let recorded =
                    tokio::task::spawn_blocking(move || service.record(event, fingerprint, detail));
                if let Err(error) = recorded.await {
                    warn!(%error, "the audit record was lost");
                }
            }
            Action::MarkConnected(fingerprint) => self.connected.set(fingerprint),
            Action::Announce(state) => self.control.announce(&state, self.context),
            Action::TellCamera(state) => self.control.camera(state),
            Action::CompleteRenewal(peer) => {
                let service = self.context.grants.clone();
                let done = tokio::task::spawn_blocking(move || service.complete_renewal(peer));
                if let Ok(Some(Err(error))) = done.await {
                    warn!(%error, "renewal could not be completed");
                }
                return Some(Input::Renewed(self.context.grants.check(&peer)));
            }
            Action::ChoosePlayoutHint => {
                let (local, remote) = self.viewer.selected_path().await;
                return Some(Input::SelectedPath(local, remote));
            }
            Action::PlayoutHint(on) => self.viewer.set_playout_hint(on),
            Action::OpenMedia => {
                if self.viewer.open_feed() {
                    self.second_keyframe = Some(Instant::now() + SECOND_KEY_FRAME);
                }
            }
            Action::CloseChannel => {
                if let Some(channel) = &self.channel {
                    channel.close();
                }
            }
            Action::ServeCeiling =>
            {
                #[cfg(feature = "bench-hooks")]
                if let Some(channel) = &self.channel {
                    channel.serve_ceiling();
                }
            }
            Action::StartProxy => self.proxy.start(),
            Action::RefuseProxy => self.proxy.refuse(),
            Action::StopProxy => self.proxy.stop(),
            Action::End(ending) => self.ending = Some(ending),
        }
        None
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::watch;

    use super::*;
    use crate::config::{IceConfig, UiConfig};
    use crate::grants::GrantsService;
    use crate::grants::links::Links;
    use crate::grants::model::LendPolicy;
    use crate::identity::{DeviceIdentity, Fingerprint};
    use crate::media::capture::Capture;
    use crate::session::adapt::Adaptation;
    use crate::session::admission::{Admission, Decision, Limits};
    use crate::session::{Connected, Registry};
    use crate::signalling::protocol::{SdpKind, SignalData};

    /// A capture chain without a camera, as the device builds one (appsink `video`).
    const CHAIN: &str = "videotestsrc is-live=true ! video/x-raw,width=64,height=48 \
        ! x264enc tune=zerolatency speed-preset=ultrafast \
        ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au \
        ! h264parse ! appsink name=video caps=video/x-h264,stream-format=byte-stream,alignment=au \
          sync=false async=false emit-signals=false max-buffers=2 drop=false";

    /// The device's supervisor aborts a session that cannot keep up with signalling. An
    /// aborted session task leaves nothing behind: its feed is out of the capture fan-out,
    /// its `Connected` entry and its viewer slot are gone, and its pipeline was stopped and
    /// freed (off the runtime's workers).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_session_leaves_nothing_behind() {
        crate::media::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let identity = Arc::new(DeviceIdentity::load_or_create(dir.path()).unwrap());
        let grants = GrantsService::open(dir.path(), LendPolicy::default()).unwrap();
        let capture = Capture::start(CHAIN.into(), false, None).await.unwrap();
        let (outgoing, mut sent) = mpsc::channel(64);
        let admission = Arc::new(Mutex::new(Admission::new(Limits::for_max(4))));
        let context = SessionContext {
            capture: capture.clone(),
            ice: IceConfig::default(),
            outgoing,
            registry: Registry::default(),
            identity: identity.clone(),
            grants,
            links: Links::new(
                "http://127.0.0.1:1/",
                identity.device_id.clone(),
                identity.fingerprint,
                false,
            ),
            connected: Connected::default(),
            #[cfg(feature = "bench-hooks")]
            bench_datachannel: false,
            upstream: Arc::new(
                crate::proxy::upstream::Upstream::new("http://127.0.0.1:1/", &UiConfig::default())
                    .unwrap(),
            ),
            playout: Default::default(),
            admission: admission.clone(),
            adaptation: Adaptation::start(capture.clone(), 2_000, watch::channel(false).1),
        };
        let id = SessionId("aaaaaaaaaaaa-1".into());
        let decision = admission.lock().unwrap().request(id.clone(), None);
        assert_eq!(decision, Decision::Admit { evict: None });
        let handle = spawn(id.clone(), context.clone());

        // The session built its viewer and sent its offer.
        let offer = tokio::time::timeout(Duration::from_secs(10), sent.recv())
            .await
            .expect("an offer within 10 s")
            .unwrap();
        assert!(matches!(
            offer,
            ClientMessage::Signal { data: SignalData::Sdp(ref sdp), .. } if sdp.kind == SdpKind::Offer
        ));
        assert_eq!(capture.viewer_count(), 1);
        assert_eq!(context.registry.live().0, 1);
        // As a granted session's entry would be, and its vote on the encoder's bitrate.
        let peer = Fingerprint::of_der(b"viewer");
        context.connected.set(&id, Some(peer));
        context.adaptation.vote(&id, 500_000);
        assert_eq!(context.adaptation.voters(), 1);

        handle.task.abort();
        let _ = handle.task.await;
        assert_eq!(
            capture.viewer_count(),
            0,
            "the feed is still in the fan-out"
        );
        assert!(
            !context.connected.contains(&peer),
            "the Connected entry is still there"
        );
        assert!(
            admission.lock().unwrap().is_empty(),
            "the slot is still held"
        );
        assert_eq!(context.adaptation.voters(), 0, "the vote is still counted");
        let deadline = Instant::now() + Duration::from_secs(5);
        while context.registry.live().0 != 0 {
            assert!(
                Instant::now() < deadline,
                "the pipeline was not stopped and freed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        capture.stop().await;
    }

    #[test]
    fn only_feedback_after_a_silence_asks_for_a_key_frame() {
        let t = Instant::now();
        assert!(!resumed_after_gap(None, t), "the first feedback");
        assert!(!resumed_after_gap(Some(t), t + Duration::from_millis(100)));
        assert!(!resumed_after_gap(Some(t), t + Duration::from_millis(999)));
        assert!(resumed_after_gap(Some(t), t + FEEDBACK_GAP));
        assert!(resumed_after_gap(Some(t), t + Duration::from_secs(3)));
    }
}

//! The encoders follow the viewers' links: each session's estimator votes
//! (`adapt::estimator`), the device's one `adapt::rendition::Renditions` puts the viewer on the
//! main or the low rendition and turns each rendition's votes into its encoder's bitrate, and
//! one task applies the newest decisions through the capture chain (`pipe-encoder`'s bitrate,
//! so any pipeline file with that hook adapts; the low rendition's encoder; its valve).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::adapt::encoder::EncoderPolicy;
use crate::adapt::estimator::Bounds;
use crate::adapt::rendition::{Decision, LOW_MAX_KBPS, LOW_MIN_KBPS, Rendition, Renditions};
use crate::adapt::utilization::{self, Utilization};
use crate::media::capture::Capture;
use crate::signalling::protocol::SessionId;

/// The encoder never goes below this (kbit/s): under it, H.264 at the configured size is a
/// smear; a lower resolution is the answer there (not built yet).
pub const FLOOR_KBPS: u32 = 150;

pub struct Adaptation {
    renditions: Mutex<Renditions<SessionId>>,
    configured_kbps: u32,
    /// The newest targets (main, low kbit/s) and whether the low rendition runs; the task
    /// applies only the newest, so a burst of decisions costs one encoder change.
    targets: watch::Sender<Targets>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Targets {
    main_kbps: u32,
    low_kbps: Option<u32>,
    low_open: bool,
}

impl Adaptation {
    /// Starts the task that applies targets to `capture`'s encoder; it ends with `shutdown`.
    pub fn start(
        capture: Arc<Capture>,
        configured_kbps: u32,
        mut shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let policy = |min: u32, max: u32| EncoderPolicy::new(min.min(max), max);
        let main = policy(FLOOR_KBPS, configured_kbps);
        let low = capture
            .has_low()
            .then(|| policy(LOW_MIN_KBPS, LOW_MAX_KBPS.min(configured_kbps)));
        let renditions = Renditions::new(main, low);
        let first = Targets {
            main_kbps: renditions.main_kbps(),
            low_kbps: renditions.low_kbps(),
            low_open: false,
        };
        let (targets, mut newest) = watch::channel(first);
        tokio::spawn(async move {
            // The low encoder is a copy of the main one, bitrate included, until told.
            if let Some(kbps) = first.low_kbps
                && let Err(error) = capture.controls().set_low_bitrate_kbps(kbps).await
            {
                warn!(%error, kbps, "cannot set the low rendition's bitrate");
            }
            let mut applied = first;
            // The main encoder's output against its target (adapt::utilization): measured all
            // the time, applied only under the configured bitrate, which stays the ceiling
            // (on a good link the encoder is set as configured, as before).
            let mut utilization = Utilization::default();
            utilization.target(
                first.main_kbps,
                capture.video_output().bytes,
                Instant::now(),
            );
            let mut measure = tokio::time::interval(utilization::WINDOW / 4);
            // What the adaptation last set `pipe-encoder` to: it is set again only when that
            // changes, so a good link (target and setting at the configured rate) never
            // touches it, and a setting made elsewhere (a camera UI's) stands until the
            // adaptation has something new to say.
            let mut main_set = first.main_kbps;
            measure.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = newest.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let next = *newest.borrow_and_update();
                        if next.main_kbps != applied.main_kbps {
                            utilization.target(
                                next.main_kbps,
                                capture.video_output().bytes,
                                Instant::now(),
                            );
                        }
                        let main = main_kbps(&utilization, configured_kbps, next.main_kbps);
                        if main != main_set {
                            // `kbps` last: tests read the number after it.
                            info!(
                                set = main,
                                kbps = next.main_kbps,
                                "encoder bitrate follows the viewers' links"
                            );
                            set_main(&capture, main).await;
                            main_set = main;
                        }
                        apply(&capture, applied, next).await;
                        applied = next;
                    }
                    _ = measure.tick() => {
                        let bytes = capture.video_output().bytes;
                        if let Some(factor) = utilization.measure(bytes, Instant::now()) {
                            let main = main_kbps(&utilization, configured_kbps, applied.main_kbps);
                            if main != main_set {
                                debug!(factor, kbps = applied.main_kbps, set = main,
                                    "the encoder is asked for its target times what it undershoots by");
                                set_main(&capture, main).await;
                                main_set = main;
                            }
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        });
        Arc::new(Self {
            renditions: Mutex::new(renditions),
            configured_kbps,
            targets,
        })
    }

    /// The configured video bitrate, bit/s (the main encoder's ceiling).
    pub fn configured_bps(&self) -> u32 {
        self.configured_kbps.saturating_mul(1000)
    }

    /// What a session's estimator starts from and is bounded by.
    pub fn bounds(&self) -> Bounds {
        // Above the configured rate, so the estimate can say the link has room (the encoder
        // never goes above the configured rate), and starting there: a new viewer does not
        // pull the encoder down before its link has said anything.
        let max_bps = self.configured_kbps * 1500;
        Bounds {
            min_bps: 100_000,
            start_bps: max_bps,
            max_bps,
        }
    }

    /// A session's estimate; the rendition the session is to be sent.
    pub fn vote(&self, session: &SessionId, estimate_bps: u32) -> Rendition {
        let now = Instant::now();
        let (decision, rendition) = {
            let mut renditions = self.renditions.lock().unwrap_or_else(|p| p.into_inner());
            let decision = renditions.vote(session.clone(), estimate_bps, now);
            (decision, renditions.rendition_of(session))
        };
        if let Some(to) = decision.moved {
            info!(rendition = ?to, estimate_bps, "the viewer moves to another rendition");
        }
        self.publish(decision);
        rendition
    }

    /// How many sessions vote now.
    pub fn voters(&self) -> usize {
        self.renditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .voters()
    }

    /// A session ended: its vote goes with it.
    pub fn forget(&self, session: &SessionId) {
        let decision = self
            .renditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(session);
        self.publish(decision);
    }

    /// Hands what changed to the task that applies it.
    fn publish(&self, decision: Decision) {
        if decision.main_kbps.is_none()
            && decision.low_kbps.is_none()
            && decision.low_open.is_none()
        {
            return;
        }
        self.targets.send_modify(|t| {
            if let Some(kbps) = decision.main_kbps {
                t.main_kbps = kbps;
            }
            if let Some(kbps) = decision.low_kbps {
                t.low_kbps = Some(kbps);
            }
            if let Some(open) = decision.low_open {
                t.low_open = open;
            }
        });
    }
}

/// Carries out the low rendition's part of the change from `before` to `after` (the main
/// encoder's is the task's, which corrects it for the encoder's undershoot).
async fn apply(capture: &Capture, before: Targets, after: Targets) {
    if let Some(kbps) = after.low_kbps.filter(|k| Some(*k) != before.low_kbps) {
        info!(
            kbps,
            "the low rendition's bitrate follows its viewers' links"
        );
        if let Err(error) = capture.controls().set_low_bitrate_kbps(kbps).await {
            warn!(%error, kbps, "cannot change the low rendition's bitrate");
        }
    }
    if after.low_open != before.low_open {
        capture.set_low_wanted(after.low_open);
    }
}

/// What the main encoder is set to for `target_kbps`: corrected for what it makes of it, never
/// above the configured bitrate.
fn main_kbps(utilization: &Utilization, configured_kbps: u32, target_kbps: u32) -> u32 {
    utilization
        .adjusted(target_kbps)
        .min(configured_kbps.max(target_kbps))
}

async fn set_main(capture: &Capture, kbps: u32) {
    if let Err(error) = capture.controls().set_bitrate_kbps(kbps).await {
        warn!(%error, kbps, "cannot change the encoder's bitrate");
    }
}

/// Takes a session's vote back when its task ends, however it ends.
pub struct Vote {
    pub adaptation: Arc<Adaptation>,
    pub session: SessionId,
}

impl Drop for Vote {
    fn drop(&mut self) {
        self.adaptation.forget(&self.session);
    }
}

//! The encoder follows the viewers' links: each session's estimator votes
//! (`adapt::estimator`), the device's one `adapt::encoder::EncoderPolicy` turns the votes into
//! the shared encoder's bitrate, and one task applies the newest decision through the capture
//! chain's live controls (`pipe-encoder`'s bitrate, so any pipeline file with that hook adapts).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::adapt::encoder::EncoderPolicy;
use crate::adapt::estimator::Bounds;
use crate::media::capture::Capture;
use crate::signalling::protocol::SessionId;

/// The encoder never goes below this (kbit/s): under it, H.264 at the configured size is a
/// smear; a lower resolution is the answer there (not built yet).
pub const FLOOR_KBPS: u32 = 150;

pub struct Adaptation {
    policy: Mutex<EncoderPolicy<SessionId>>,
    configured_kbps: u32,
    target: watch::Sender<u32>,
}

impl Adaptation {
    /// Starts the task that applies targets to `capture`'s encoder; it ends with `shutdown`.
    pub fn start(
        capture: Arc<Capture>,
        configured_kbps: u32,
        mut shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let has_audio = capture.has_audio();
        let (target, mut targets) = watch::channel(configured_kbps);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = targets.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let kbps = *targets.borrow_and_update();
                        if let Err(error) = capture.controls().set_bitrate_kbps(kbps).await {
                            warn!(%error, kbps, "cannot change the encoder's bitrate");
                        }
                    }
                    _ = shutdown.changed() => return,
                }
            }
        });
        let policy = EncoderPolicy::new(FLOOR_KBPS.min(configured_kbps), configured_kbps);
        let policy = if has_audio {
            policy
        } else {
            policy.without_audio()
        };
        Arc::new(Self {
            policy: Mutex::new(policy),
            configured_kbps,
            target,
        })
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

    /// A session's estimate.
    pub fn vote(&self, session: &SessionId, estimate_bps: u32) {
        let now = Instant::now();
        let decided = {
            let mut policy = self.policy.lock().unwrap_or_else(|p| p.into_inner());
            policy.vote(session.clone(), estimate_bps, now);
            policy.decide(now)
        };
        if let Some(kbps) = decided {
            info!(kbps, "encoder bitrate follows the viewers' links");
            self.target.send_replace(kbps);
        }
    }

    /// How many sessions vote now.
    pub fn voters(&self) -> usize {
        self.policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .voters()
    }

    /// A session ended: its vote goes with it.
    pub fn forget(&self, session: &SessionId) {
        let reset = self
            .policy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(session);
        if let Some(kbps) = reset {
            info!(
                kbps,
                "no viewer left: the encoder is back at the configured bitrate"
            );
            self.target.send_replace(kbps);
        }
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

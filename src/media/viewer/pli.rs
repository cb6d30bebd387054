//! One viewer's key-frame requests (PLI and FIR, which reach the viewer's appsrc as upstream
//! force-key-unit events). The encoder is shared, so each key frame goes to every viewer: a
//! viewer on a lossy link asking again and again would make everyone's stream a train of key
//! frames, which on a narrow link are the bursts that freeze pictures. So at most one request
//! per viewer per `PER_VIEWER` reaches the shared throttle (`media::keyframe`, at most one key
//! frame per 500 ms for all); a request inside that time is kept and sent when it ends, on the
//! pipeline clock, never dropped (the viewer needs its key frame to recover).

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio::sync::mpsc;

use crate::adapt::rendition::Rendition;
use crate::media::keyframe::{Decision, KeyframeThrottle};

/// The most often one viewer can cause a key frame.
pub const PER_VIEWER: Duration = Duration::from_secs(1);

pub struct PliGate {
    throttle: Mutex<KeyframeThrottle>,
    keyframes: mpsc::Sender<Rendition>,
    /// The rendition the latest request was for (the one the viewer is sent or switching to),
    /// which a kept request goes to.
    rendition: Mutex<Rendition>,
    clock: gst::Clock,
    /// The clock wait for a kept request, unscheduled when the viewer goes.
    waiting: Mutex<Option<gst::SingleShotClockId>>,
}

impl PliGate {
    pub fn new(keyframes: mpsc::Sender<Rendition>, clock: gst::Clock) -> Arc<Self> {
        Arc::new(Self {
            throttle: Mutex::new(KeyframeThrottle::new(PER_VIEWER)),
            keyframes,
            rendition: Mutex::new(Rendition::Main),
            clock,
            waiting: Mutex::new(None),
        })
    }

    /// The viewer asked for a key frame of `rendition`.
    pub fn request(self: &Arc<Self>, rendition: Rendition) {
        *self.rendition.lock().unwrap_or_else(|p| p.into_inner()) = rendition;
        let now = Instant::now();
        let (was_waiting, decision) = {
            let mut throttle = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
            (throttle.pending().is_some(), throttle.request(now))
        };
        match decision {
            Decision::Now => {
                let _ = self.keyframes.try_send(rendition);
            }
            Decision::At(_) if was_waiting => {} // already kept
            Decision::At(due) => self.send_at(due, due.saturating_duration_since(now)),
        }
    }

    /// Sends the kept request `after` from now (the throttle's `due`).
    fn send_at(self: &Arc<Self>, due: Instant, after: Duration) {
        let at = self.clock.time() + gst::ClockTime::from_nseconds(after.as_nanos() as u64);
        let id = self.clock.new_single_shot_id(at);
        let gate: Weak<Self> = Arc::downgrade(self);
        let scheduled = id.wait_async(move |_, _, _| {
            let Some(gate) = gate.upgrade() else { return };
            // `due` itself, not `Instant::now()`: the pipeline clock and `Instant` may differ
            // by a hair, and the throttle must not think it is early.
            let fire = gate
                .throttle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .fire_due(due);
            if fire {
                let _ = gate.keyframes.try_send(gate.rendition());
            }
        });
        if scheduled.is_ok() {
            *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        } else {
            // No clock wait: send it now rather than never.
            let _ = self.keyframes.try_send(self.rendition());
        }
    }

    fn rendition(&self) -> Rendition {
        *self.rendition.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for PliGate {
    fn drop(&mut self) {
        if let Some(id) = self
            .waiting
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            id.unschedule();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gate on the system clock and what it lets through.
    fn gate() -> (Arc<PliGate>, mpsc::Receiver<Rendition>) {
        gst::init().unwrap();
        let (tx, rx) = mpsc::channel(16);
        (PliGate::new(tx, gst::SystemClock::obtain()), rx)
    }

    #[test]
    fn a_viewer_asking_again_and_again_causes_one_key_frame_a_second() {
        let (gate, mut rx) = gate();
        let start = Instant::now();
        // A PLI every 50 ms for 1.5 s.
        while start.elapsed() < Duration::from_millis(1_500) {
            gate.request(Rendition::Main);
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(700)); // the kept one fires at 2 s
        let mut sent = 0;
        while rx.try_recv().is_ok() {
            sent += 1;
        }
        // At once, at 1 s and at 2 s: three, not thirty.
        assert_eq!(sent, 3, "{sent} requests reached the encoder");
    }

    #[test]
    fn a_kept_request_goes_with_the_viewer() {
        let (gate, mut rx) = gate();
        gate.request(Rendition::Main);
        gate.request(Rendition::Main); // kept for 1 s
        drop(gate);
        std::thread::sleep(Duration::from_millis(1_200));
        assert_eq!(rx.try_recv(), Ok(Rendition::Main));
        assert!(rx.try_recv().is_err(), "a gone viewer's request was sent");
    }

    #[test]
    fn a_kept_request_goes_to_the_rendition_asked_for_last() {
        let (gate, mut rx) = gate();
        gate.request(Rendition::Main);
        gate.request(Rendition::Low); // kept: the viewer is moving to the low rendition
        std::thread::sleep(Duration::from_millis(1_200));
        assert_eq!(rx.try_recv(), Ok(Rendition::Main));
        assert_eq!(rx.try_recv(), Ok(Rendition::Low));
    }
}

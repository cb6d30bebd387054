//! What the encoder makes of its target, and the correction for it.
//!
//! x264's ABR under a tight VBV (pipe's chains: 250 ms) delivers less than it is asked for on
//! camera-like content: 426 kbit/s for 500, 683 for 770, 921 for 1,000 on the benchmark's
//! zone plate (docs/benchmarks.md). The policy's target is what the link can take, so an
//! encoder that delivers 89 % of it leaves 11 % of the link unused, and after every cut of the
//! estimate the send rate falls 11 % further than the estimator meant. libwebrtc corrects the
//! same thing (its encoder bitrate adjuster measures each encoder's output against its target).
//!
//! Here: over windows of `WINDOW`, the encoder's output is measured against the target it had
//! (time-weighted, when the target moved within the window), and the encoder is asked for
//! `target x factor`, where the factor makes up for the encoder's own ratio:
//! - it rises slowly (halfway to the correction a window asks for) and never above `MAX`, so a
//!   quiet scene, which cannot use its bitrate anyway, does not leave a large factor behind for
//!   the next busy one;
//! - it falls at once to what a window asks (a busy scene, a key frame): an encoder that
//!   makes what it is asked gets no more than the link was meant to take;
//! - a window whose target moved by more than half says little (the encoder's VBV is still
//!   catching up): it is not judged.

use std::time::{Duration, Instant};

/// How long the output is measured before it is judged.
pub const WINDOW: Duration = Duration::from_secs(2);
/// The most the encoder is asked for beyond the target.
pub const MAX: f64 = 1.15;
/// A change of the factor smaller than this is not worth retuning the encoder for.
const STEP: f64 = 0.02;

#[derive(Debug)]
pub struct Utilization {
    /// The correction the measurements ask for.
    measured: f64,
    /// The correction the encoder was last given.
    applied: f64,
    window: Option<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    start_bytes: u64,
    /// The target now and since when.
    target_kbps: u32,
    target_since: Instant,
    /// Target x time so far, in kbit.
    asked_kbit: f64,
    lowest_kbps: u32,
    highest_kbps: u32,
}

impl Default for Utilization {
    fn default() -> Self {
        Self {
            measured: 1.0,
            applied: 1.0,
            window: None,
        }
    }
}

impl Utilization {
    /// What the encoder is asked for, for a `target_kbps`.
    pub fn adjusted(&self, target_kbps: u32) -> u32 {
        (f64::from(target_kbps) * self.applied).round() as u32
    }

    /// The correction the encoder has now.
    pub fn factor(&self) -> f64 {
        self.applied
    }

    /// The target changed at `now` (the encoder's total output so far: `bytes`).
    pub fn target(&mut self, target_kbps: u32, bytes: u64, now: Instant) {
        match &mut self.window {
            Some(w) => {
                w.asked_kbit += f64::from(w.target_kbps)
                    * now.saturating_duration_since(w.target_since).as_secs_f64();
                w.target_kbps = target_kbps;
                w.target_since = now;
                w.lowest_kbps = w.lowest_kbps.min(target_kbps);
                w.highest_kbps = w.highest_kbps.max(target_kbps);
            }
            None => self.window = Some(Window::new(target_kbps, bytes, now)),
        }
    }

    /// The encoder's total output so far is `bytes` at `now`; `Some(factor)` when a window
    /// ended and the correction moved enough to retune the encoder.
    pub fn measure(&mut self, bytes: u64, now: Instant) -> Option<f64> {
        let w = self.window.as_mut()?;
        if now.saturating_duration_since(w.start) < WINDOW {
            return None;
        }
        let asked_kbit = w.asked_kbit
            + f64::from(w.target_kbps)
                * now.saturating_duration_since(w.target_since).as_secs_f64();
        let made_kbit = bytes.saturating_sub(w.start_bytes) as f64 * 8.0 / 1000.0;
        let steady = f64::from(w.lowest_kbps) >= 0.5 * f64::from(w.highest_kbps);
        *w = Window::new(w.target_kbps, bytes, now);
        if !steady || asked_kbit <= 0.0 {
            return None;
        }
        // The encoder's own ratio: its output against what it was asked (target x correction),
        // and the correction that would make its output the target.
        let ratio = made_kbit / (asked_kbit * self.applied);
        let wanted = if ratio > 0.0 {
            (1.0 / ratio).clamp(1.0, MAX)
        } else {
            MAX
        };
        self.measured = if wanted < self.measured || wanted - self.measured < STEP {
            wanted
        } else {
            self.measured + 0.5 * (wanted - self.measured)
        };
        if (self.measured - self.applied).abs() < STEP
            && !(self.measured == 1.0 && self.applied != 1.0)
        {
            return None;
        }
        self.applied = self.measured;
        Some(self.applied)
    }
}

impl Window {
    fn new(target_kbps: u32, bytes: u64, now: Instant) -> Self {
        Self {
            start: now,
            start_bytes: bytes,
            target_kbps,
            target_since: now,
            asked_kbit: 0.0,
            lowest_kbps: target_kbps,
            highest_kbps: target_kbps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An encoder at a `kbps` target, and what it has made so far.
    struct Encoder {
        u: Utilization,
        t: Instant,
        bytes: u64,
    }

    impl Encoder {
        fn new() -> Self {
            Self {
                u: Utilization::default(),
                t: Instant::now(),
                bytes: 0,
            }
        }

        /// It delivers `ratio` of what it is asked for `windows` windows; the factor after.
        fn run(&mut self, kbps: u32, ratio: f64, windows: usize) -> f64 {
            self.u.target(kbps, self.bytes, self.t);
            for _ in 0..windows {
                let asked = f64::from(self.u.adjusted(kbps)) * WINDOW.as_secs_f64();
                self.bytes += (asked * ratio * 1000.0 / 8.0) as u64;
                self.t += WINDOW;
                self.u.measure(self.bytes, self.t);
            }
            self.u.factor()
        }
    }

    #[test]
    fn an_encoder_that_undershoots_is_asked_for_more_until_it_delivers_the_target() {
        let mut e = Encoder::new();
        let f = e.run(770, 0.89, 8);
        assert!((f - 1.0 / 0.89).abs() < 0.02, "{f}");
        assert_eq!(e.u.adjusted(770), (770.0 * f).round() as u32);
    }

    #[test]
    fn the_correction_has_a_ceiling() {
        // A still scene makes a third of its bitrate.
        assert_eq!(Encoder::new().run(1000, 0.33, 10), MAX);
    }

    #[test]
    fn an_encoder_that_reaches_its_target_gets_no_correction_and_loses_one_at_once() {
        let mut e = Encoder::new();
        assert_eq!(e.run(1000, 1.05, 4), 1.0);
        assert_eq!(e.run(1000, 0.8, 10), MAX);
        // The scene gets busy: asked for 1150, it makes 1150 (all it was asked): back to no
        // correction in one window.
        assert_eq!(e.run(1000, 1.0, 1), 1.0);
    }

    #[test]
    fn a_window_whose_target_moved_a_lot_is_not_judged() {
        let (mut u, mut t) = (Utilization::default(), Instant::now());
        u.target(1000, 0, t);
        t += Duration::from_millis(500);
        u.target(400, 0, t);
        t += Duration::from_millis(1500);
        // Made half of a time-weighted 550: would ask for a correction if judged.
        assert_eq!(
            u.measure((550.0 * 2.0 * 0.5 * 1000.0 / 8.0) as u64, t),
            None
        );
        assert_eq!(u.factor(), 1.0);
    }

    #[test]
    fn the_target_is_weighted_by_how_long_it_held() {
        let (mut u, mut t) = (Utilization::default(), Instant::now());
        u.target(800, 0, t);
        t += Duration::from_secs(1);
        u.target(1000, 0, t);
        t += Duration::from_secs(1);
        // Asked 1800 kbit over the window, made 1800 x 0.9.
        let f = u.measure((1800.0 * 0.9 * 1000.0 / 8.0) as u64, t);
        let expected = 1.0 + 0.5 * (1.0 / 0.9 - 1.0);
        assert!(f.is_some_and(|f| (f - expected).abs() < 1e-9), "{f:?}");
    }

    #[test]
    fn nothing_is_judged_before_a_window_is_full() {
        let (mut u, t) = (Utilization::default(), Instant::now());
        assert_eq!(u.measure(0, t), None);
        u.target(1000, 0, t);
        assert_eq!(u.measure(10, t + WINDOW / 2), None);
    }
}

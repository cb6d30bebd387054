//! Two renditions from one capture: the main one at the configured size, and a low one (e.g.
//! 640x360) that runs only while a viewer needs it. Each viewer is assigned to one by its own
//! estimate, with hysteresis, and each rendition's encoder follows the lowest fresh vote of its
//! own viewers (`encoder::EncoderPolicy`), so a viewer on 4G no longer sets the bitrate of the
//! owner on Wi-Fi. Pure: estimates and time in, targets and assignments out.
//!
//! - A viewer moves **down** when its estimate has stayed under `DOWN_BPS` for `DOWN_AFTER`
//!   (under ~500 kbit/s the configured size is a smear), and **up** when it has stayed over
//!   `UP_BPS` for `UP_AFTER`. The gap and the longer wait up keep a viewer near a threshold
//!   from flapping: every switch costs a key frame.
//! - The low rendition's encoder is asked to run (`low_open`) while at least one viewer is
//!   assigned to it, and to stop when none is.
//! - Without a low rendition (the chain cannot make one) every viewer stays on the main one and
//!   its lowest vote sets the bitrate, as before.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::encoder::EncoderPolicy;

/// Under this estimate for `DOWN_AFTER`, a viewer moves to the low rendition.
pub const DOWN_BPS: u32 = 500_000;
pub const DOWN_AFTER: Duration = Duration::from_secs(2);
/// Over this estimate for `UP_AFTER`, a viewer moves back to the main rendition.
pub const UP_BPS: u32 = 800_000;
pub const UP_AFTER: Duration = Duration::from_secs(5);
/// The low rendition's video bitrate bounds (kbit/s): 640x360 at 30 fps looks right at a few
/// hundred; more than this and the viewer belongs on the main rendition.
pub const LOW_MIN_KBPS: u32 = 100;
pub const LOW_MAX_KBPS: u32 = 700;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Rendition {
    #[default]
    Main,
    Low,
}

/// One viewer's rendition, moved by its estimate with hysteresis.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    rendition: Rendition,
    /// Since when the estimate has been on the other side of this rendition's threshold.
    crossed: Option<Instant>,
}

impl Assignment {
    pub fn rendition(&self) -> Rendition {
        self.rendition
    }

    /// A new estimate; `Some` with the new rendition when the viewer moves.
    pub fn update(&mut self, estimate_bps: u32, now: Instant) -> Option<Rendition> {
        let (crossed, after, other) = match self.rendition {
            Rendition::Main => (estimate_bps < DOWN_BPS, DOWN_AFTER, Rendition::Low),
            Rendition::Low => (estimate_bps > UP_BPS, UP_AFTER, Rendition::Main),
        };
        if !crossed {
            self.crossed = None;
            return None;
        }
        let since = *self.crossed.get_or_insert(now);
        if now.saturating_duration_since(since) < after {
            return None;
        }
        self.rendition = other;
        self.crossed = None;
        Some(other)
    }
}

/// What changed with one vote or departure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decision {
    /// The main encoder's new target, kbit/s.
    pub main_kbps: Option<u32>,
    /// The low encoder's new target, kbit/s.
    pub low_kbps: Option<u32>,
    /// The low rendition starts (`true`) or stops (`false`).
    pub low_open: Option<bool>,
    /// The voting viewer moved to this rendition.
    pub moved: Option<Rendition>,
}

/// Every viewer's rendition and each rendition's encoder target.
#[derive(Debug)]
pub struct Renditions<K> {
    main: EncoderPolicy<K>,
    /// `None` when the chain has no low rendition.
    low: Option<EncoderPolicy<K>>,
    viewers: HashMap<K, Assignment>,
    low_open: bool,
}

impl<K: Eq + Hash + Clone> Renditions<K> {
    /// `low`: the low rendition's policy, if the chain has one.
    pub fn new(main: EncoderPolicy<K>, low: Option<EncoderPolicy<K>>) -> Self {
        Self {
            main,
            low,
            viewers: HashMap::new(),
            low_open: false,
        }
    }

    pub fn main_kbps(&self) -> u32 {
        self.main.target_kbps()
    }

    pub fn low_kbps(&self) -> Option<u32> {
        self.low.as_ref().map(EncoderPolicy::target_kbps)
    }

    pub fn rendition_of(&self, viewer: &K) -> Rendition {
        self.viewers
            .get(viewer)
            .map(Assignment::rendition)
            .unwrap_or_default()
    }

    /// Viewers with a say (fresh or not) on either rendition.
    pub fn voters(&self) -> usize {
        self.viewers.len()
    }

    /// A viewer's estimate (bit/s of everything it is sent).
    pub fn vote(&mut self, viewer: K, estimate_bps: u32, now: Instant) -> Decision {
        let assignment = self.viewers.entry(viewer.clone()).or_default();
        let moved = match self.low {
            Some(_) => assignment.update(estimate_bps, now),
            None => None,
        };
        let rendition = assignment.rendition();
        let mut decision = Decision {
            moved,
            ..Decision::default()
        };
        if let Some(to) = moved {
            // Its vote leaves the rendition it left.
            let reset = self.policy(other(to)).forget(&viewer);
            decision.set(other(to), reset);
        }
        let policy = self.policy(rendition);
        policy.vote(viewer, estimate_bps, now);
        let target = policy.decide(now);
        decision.set(rendition, target);
        // The other rendition may have been waiting for a stale vote to age out.
        let target = self.policy(other(rendition)).decide(now);
        decision.set(other(rendition), target);
        self.open_low(&mut decision);
        decision
    }

    /// A viewer left.
    pub fn forget(&mut self, viewer: &K) -> Decision {
        let mut decision = Decision::default();
        let rendition = self.rendition_of(viewer);
        self.viewers.remove(viewer);
        let reset = self.policy(rendition).forget(viewer);
        decision.set(rendition, reset);
        self.open_low(&mut decision);
        decision
    }

    fn policy(&mut self, rendition: Rendition) -> &mut EncoderPolicy<K> {
        match (rendition, &mut self.low) {
            (Rendition::Low, Some(low)) => low,
            _ => &mut self.main,
        }
    }

    fn open_low(&mut self, decision: &mut Decision) {
        let wanted = self
            .viewers
            .values()
            .any(|a| a.rendition() == Rendition::Low);
        if wanted != self.low_open {
            self.low_open = wanted;
            decision.low_open = Some(wanted);
        }
    }
}

impl Decision {
    fn set(&mut self, rendition: Rendition, kbps: Option<u32>) {
        if kbps.is_none() {
            return;
        }
        match rendition {
            Rendition::Main => self.main_kbps = kbps,
            Rendition::Low => self.low_kbps = kbps,
        }
    }
}

fn other(rendition: Rendition) -> Rendition {
    match rendition {
        Rendition::Main => Rendition::Low,
        Rendition::Low => Rendition::Main,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn renditions() -> Renditions<&'static str> {
        Renditions::new(
            EncoderPolicy::new(150, 2_000),
            Some(EncoderPolicy::new(LOW_MIN_KBPS, LOW_MAX_KBPS)),
        )
    }

    /// Votes every 100 ms from `from` for `span`; the decisions that said something.
    fn votes(
        r: &mut Renditions<&'static str>,
        viewer: &'static str,
        bps: u32,
        t: Instant,
        from: u64,
        span: u64,
    ) -> Vec<(u64, Decision)> {
        (from..from + span)
            .step_by(100)
            .map(|at| (at, r.vote(viewer, bps, t + ms(at))))
            .filter(|(_, d)| *d != Decision::default())
            .collect()
    }

    #[test]
    fn a_viewer_moves_down_after_two_seconds_under_and_up_after_five_over() {
        let t = Instant::now();
        let mut a = Assignment::default();
        assert_eq!(a.update(400_000, t), None);
        assert_eq!(a.update(450_000, t + ms(1_900)), None);
        assert_eq!(a.update(450_000, t + ms(2_000)), Some(Rendition::Low));
        // Over the low threshold but under the high one: stays.
        assert_eq!(a.update(700_000, t + ms(9_000)), None);
        assert_eq!(a.update(900_000, t + ms(10_000)), None);
        assert_eq!(a.update(900_000, t + ms(14_900)), None);
        assert_eq!(a.update(900_000, t + ms(15_000)), Some(Rendition::Main));
    }

    #[test]
    fn one_estimate_on_the_other_side_restarts_the_wait() {
        let t = Instant::now();
        let mut a = Assignment::default();
        a.update(400_000, t);
        a.update(600_000, t + ms(1_500)); // a good moment
        assert_eq!(a.update(400_000, t + ms(2_500)), None);
        assert_eq!(a.update(400_000, t + ms(4_400)), None);
        assert_eq!(a.update(400_000, t + ms(4_500)), Some(Rendition::Low));
    }

    #[test]
    fn a_weak_viewer_no_longer_sets_the_strong_viewers_bitrate() {
        let t = Instant::now();
        let mut r = renditions();
        r.vote("wifi", 4_000_000, t);
        // The 4G viewer pulls the main encoder down at once, as before...
        let d = r.vote("4g", 450_000, t);
        assert_eq!(d.main_kbps, Some(427)); // 450 * 0.95
        // ...until it has been under 500 kbit/s for 2 s: it moves to the low rendition, which
        // starts, and the main encoder is free to climb back.
        let mut moved = None;
        for at in (100..=2_000).step_by(100) {
            r.vote("wifi", 4_000_000, t + ms(at));
            let d = r.vote("4g", 450_000, t + ms(at));
            if d.moved.is_some() {
                moved = Some((at, d));
            }
        }
        let (at, d) = moved.expect("the 4G viewer moved");
        assert_eq!(at, 2_000);
        assert_eq!(d.moved, Some(Rendition::Low));
        assert_eq!(d.low_open, Some(true));
        assert_eq!(d.low_kbps, Some(427));
        // The main encoder goes straight back to the wifi viewer's link (the ceiling).
        assert_eq!(d.main_kbps, Some(2_000));
        assert_eq!(r.rendition_of(&"4g"), Rendition::Low);
        assert_eq!(r.rendition_of(&"wifi"), Rendition::Main);
        let later = votes(&mut r, "wifi", 4_000_000, t, 2_100, 3_000);
        assert_eq!(later, [], "nothing more to change");
        assert_eq!((r.main_kbps(), r.low_kbps()), (2_000, Some(427)));
    }

    #[test]
    fn the_low_rendition_stops_when_its_last_viewer_moves_up_or_leaves() {
        let t = Instant::now();
        let mut r = renditions();
        votes(&mut r, "a", 300_000, t, 0, 2_100);
        votes(&mut r, "b", 300_000, t, 0, 2_100);
        assert_eq!(r.rendition_of(&"a"), Rendition::Low);
        assert_eq!(r.rendition_of(&"b"), Rendition::Low);
        // a's link grows: after 5 s over 800 kbit/s it is back on the main rendition; the low
        // one keeps running for b.
        let mut moves = Vec::new();
        for at in (2_100..8_000).step_by(100) {
            let d = r.vote("a", 1_200_000, t + ms(at));
            r.vote("b", 300_000, t + ms(at));
            if d.moved.is_some() || d.low_open.is_some() {
                moves.push((at, d.moved, d.low_open));
            }
        }
        assert_eq!(moves, [(7_100, Some(Rendition::Main), None)]);
        // b leaves: nobody is on the low rendition, it stops.
        let d = r.forget(&"b");
        assert_eq!(d.low_open, Some(false));
        assert_eq!(r.voters(), 1);
    }

    #[test]
    fn without_a_low_rendition_everyone_stays_on_the_main_one() {
        let t = Instant::now();
        let mut r = Renditions::new(EncoderPolicy::new(150, 2_000), None);
        let d = votes(&mut r, "4g", 300_000, t, 0, 10_000);
        assert!(
            d.iter()
                .all(|(_, d)| d.moved.is_none() && d.low_open.is_none())
        );
        assert_eq!(r.rendition_of(&"4g"), Rendition::Main);
        assert_eq!(r.main_kbps(), 285);
        assert_eq!(r.low_kbps(), None);
    }

    #[test]
    fn a_stale_vote_on_the_other_rendition_ages_out_with_anyone_s_vote() {
        let t = Instant::now();
        let mut r = renditions();
        votes(&mut r, "4g", 300_000, t, 0, 2_100);
        r.vote("wifi", 600_000, t + ms(2_100));
        assert_eq!(r.main_kbps(), 570);
        // The main viewer goes dark; the low viewer's votes still let the main target be
        // decided again (it holds: no fresh vote on the main rendition).
        let d = votes(&mut r, "4g", 300_000, t, 2_200, 3_000);
        assert!(d.iter().all(|(_, d)| d.main_kbps.is_none()));
        assert_eq!(r.main_kbps(), 570);
    }
}

//! One encoder, many viewers: the shared encoder's bitrate follows the lowest fresh estimate.
//!
//! - Each viewer votes with its estimate; a vote older than `FRESH` (a viewer in a blackout, or
//!   one whose feedback stopped) does not count, so one dead link does not drag everyone down.
//!   With no fresh vote the target stays where it is; with no viewer at all it goes back to
//!   the configured rate.
//! - The target is the lowest vote, less packet overhead. Not less the audio: it carries no
//!   TWCC sequence numbers, so the estimates are of what the link leaves the video, the audio's
//!   rate already off.
//! - Down at once (a queue is building somewhere); up only when the lowest vote clears the
//!   current target by 10 %, and at most once a second, so the encoder is not retuned on every
//!   report.
//! - Between `min_kbps` and the configured bitrate, which stays the ceiling.
//!
//! The weakest viewer still sets everyone's picture: a second, low rendition for it is the next
//! step (docs/adaptation.md).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How old a vote may be and still count.
pub const FRESH: Duration = Duration::from_secs(1);
const UP_STEP: f64 = 1.10;
const UP_INTERVAL: Duration = Duration::from_secs(1);
/// RTP, SRTP and UDP overhead (~5 % of the video). The audio needs no room of its own here:
/// only the video is numbered for TWCC (`media::twcc`), so the estimator meets the audio as
/// cross traffic and its estimate is of what the link leaves the video. (Taking ~48 kbit/s off
/// for the audio as well cost the video ~50 kbit/s on a 1 Mbit/s link: docs/benchmarks.md.)
const OVERHEAD: f64 = 0.95;

#[derive(Debug)]
pub struct EncoderPolicy<K> {
    min_kbps: u32,
    max_kbps: u32,
    target_kbps: u32,
    last_raise: Option<Instant>,
    votes: HashMap<K, (u32, Instant)>,
}

impl<K: Eq + Hash> EncoderPolicy<K> {
    /// Starts at `max_kbps`, the configured bitrate.
    pub fn new(min_kbps: u32, max_kbps: u32) -> Self {
        Self {
            min_kbps: min_kbps.min(max_kbps),
            max_kbps,
            target_kbps: max_kbps,
            last_raise: None,
            votes: HashMap::new(),
        }
    }

    pub fn target_kbps(&self) -> u32 {
        self.target_kbps
    }

    pub fn voters(&self) -> usize {
        self.votes.len()
    }

    /// A viewer's estimate (bits per second of the video it can be sent).
    pub fn vote(&mut self, viewer: K, estimate_bps: u32, now: Instant) {
        self.votes.insert(viewer, (estimate_bps, now));
    }

    /// A viewer left: its vote goes with it. The last one gone, the target goes back to the
    /// configured rate (`Some` when that is a change), so the next viewer does not start from
    /// the last one's link.
    pub fn forget(&mut self, viewer: &K) -> Option<u32> {
        self.votes.remove(viewer);
        (self.votes.is_empty() && self.target_kbps != self.max_kbps).then(|| {
            self.target_kbps = self.max_kbps;
            self.last_raise = None;
            self.max_kbps
        })
    }

    /// The encoder's target now; `Some` when it changed.
    pub fn decide(&mut self, now: Instant) -> Option<u32> {
        let lowest = self
            .votes
            .values()
            .filter(|(_, at)| now.saturating_duration_since(*at) <= FRESH)
            .map(|(bps, _)| *bps)
            .min()?;
        let video_kbps = (f64::from(lowest) * OVERHEAD / 1000.0) as u32;
        let wanted = video_kbps.clamp(self.min_kbps, self.max_kbps);
        let next = if wanted < self.target_kbps {
            wanted
        } else if f64::from(wanted) >= f64::from(self.target_kbps) * UP_STEP
            && self
                .last_raise
                .is_none_or(|t| now.saturating_duration_since(t) >= UP_INTERVAL)
        {
            self.last_raise = Some(now);
            wanted
        } else {
            return None;
        };
        (next != self.target_kbps).then(|| {
            self.target_kbps = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_lowest_fresh_vote_sets_the_target_less_overhead() {
        let t = Instant::now();
        let mut p = EncoderPolicy::new(150, 2_000);
        assert_eq!(p.decide(t), None, "no votes: stay at the configured rate");
        p.vote("a", 4_000_000, t);
        p.vote("b", 1_000_000, t);
        // 1000 * 0.95
        assert_eq!(p.decide(t), Some(950));
        assert_eq!(p.target_kbps(), 950);
    }

    #[test]
    fn a_viewer_whose_feedback_stopped_has_no_vote() {
        let t = Instant::now();
        let mut p = EncoderPolicy::new(150, 2_000);
        p.vote("wifi", 3_000_000, t);
        p.vote("blackout", 300_000, t);
        assert_eq!(p.decide(t), Some(285));
        // The blacked-out viewer says nothing more; the other one goes on.
        for i in 1..=30 {
            p.vote("wifi", 3_000_000, t + ms(100 * i));
            p.decide(t + ms(100 * i));
        }
        assert_eq!(
            p.target_kbps(),
            2_000,
            "back to the ceiling without the stale vote"
        );
        p.vote("blackout", 300_000, t + ms(3_100));
        assert_eq!(p.decide(t + ms(3_100)), Some(285), "its vote counts again");
        assert_eq!(p.forget(&"wifi"), None, "one viewer is left");
        assert_eq!(p.decide(t + ms(4_200)), None, "nobody fresh: hold");
        assert_eq!(
            p.forget(&"blackout"),
            Some(2_000),
            "the last one gone: the configured rate"
        );
    }

    #[test]
    fn down_at_once_up_in_steps_of_ten_percent_at_most_once_a_second() {
        let t = Instant::now();
        let mut p = EncoderPolicy::new(150, 2_000);
        p.vote("v", 1_000_000, t);
        assert_eq!(p.decide(t), Some(950));
        p.vote("v", 1_040_000, t + ms(100));
        assert_eq!(p.decide(t + ms(100)), None, "a 4 % rise is noise");
        p.vote("v", 1_500_000, t + ms(200));
        assert_eq!(p.decide(t + ms(200)), Some(1_425));
        p.vote("v", 2_000_000, t + ms(300));
        assert_eq!(p.decide(t + ms(300)), None, "one raise a second");
        assert_eq!(p.decide(t + ms(1_250)), Some(1_900));
        p.vote("v", 500_000, t + ms(1_300));
        assert_eq!(p.decide(t + ms(1_300)), Some(475), "down at once");
        p.vote("v", 10_000, t + ms(1_400));
        assert_eq!(p.decide(t + ms(1_400)), Some(150), "never under the floor");
    }
}

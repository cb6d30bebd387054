//! The datachannels' share of a narrow link. The camera UI's proxy rides SCTP on the same
//! path as the video, and SCTP's congestion control backs off only on loss: a download
//! through the proxy filled a 1 Mbit/s link's queue, the video's packets were dropped with
//! it, and the picture froze for 4.5 s of a 21 s download (docs/benchmarks.md). So while a
//! viewer's link is constrained (its estimate under the configured video bitrate: the link
//! cannot carry the video the camera is set up for), the device's SCTP packets leave at most
//! at `SHARE` of the estimate, and the encoder is voted what the data actually took less. On
//! a link with room for the configured video nothing is paced (not "under the estimate's
//! ceiling": on a good link the estimate can sit just under it, capped at 1.5 times what an
//! undershooting encoder sent). Pure: sizes and time in.

use std::time::{Duration, Instant};

/// The datachannels' part of a constrained link's estimate.
pub const SHARE: f64 = 0.25;
/// The least they get, so the camera UI still loads on a very narrow link.
pub const MIN_BPS: u32 = 64_000;
/// Unused sending time kept as credit: a few packets leave back to back.
const BURST: Duration = Duration::from_millis(10);

/// The rate the datachannels may send at, bit/s; `None`: unlimited (the link has room for
/// the configured video, `configured_bps`).
pub fn limit(estimate_bps: u32, configured_bps: u32) -> Option<u32> {
    (estimate_bps < configured_bps).then(|| ((f64::from(estimate_bps) * SHARE) as u32).max(MIN_BPS))
}

/// Spaces packets out to a rate: how long to hold each one. Unlike the video's pacer it never
/// forgives a debt: SCTP has no deadline, and sending faster is what it must not do.
#[derive(Debug, Clone, Default)]
pub struct Spacer {
    free_at: Option<Instant>,
}

impl Spacer {
    /// How long to hold a packet of `bytes` ready at `now`, at `rate_bps` (`None`: not at all).
    pub fn hold(&mut self, now: Instant, bytes: usize, rate_bps: Option<u32>) -> Duration {
        let Some(rate) = rate_bps.filter(|r| *r > 0) else {
            self.free_at = None;
            return Duration::ZERO;
        };
        let earliest = now.checked_sub(BURST).unwrap_or(now);
        let start = self.free_at.filter(|t| *t > earliest).unwrap_or(earliest);
        let on_link = Duration::from_secs_f64(bytes as f64 * 8.0 / f64::from(rate));
        self.free_at = Some(start + on_link);
        start.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_constrained_link_limits_the_data_and_never_to_nothing() {
        assert_eq!(limit(2_900_000, 2_000_000), None, "a good link");
        assert_eq!(limit(1_000_000, 2_000_000), Some(250_000));
        assert_eq!(limit(100_000, 2_000_000), Some(MIN_BPS));
    }

    #[test]
    fn packets_leave_at_the_rate_on_average_and_a_few_at_once() {
        let t = Instant::now();
        let mut s = Spacer::default();
        // 1,000 packets of 1,200 bytes offered at once, 250 kbit/s: 38.4 s of sending.
        let mut at = t;
        let mut first_held = None;
        for i in 0..1_000 {
            let hold = s.hold(at, 1_200, Some(250_000));
            if hold > Duration::ZERO && first_held.is_none() {
                first_held = Some(i);
            }
            at += hold;
        }
        let took = at - t;
        assert!(
            (38.0..38.5).contains(&took.as_secs_f64()),
            "{took:?} for 1,000 packets"
        );
        // The 10 ms credit lets the first packet go at once, not a burst of many.
        assert_eq!(first_held, Some(1));
    }

    #[test]
    fn an_idle_spacer_keeps_little_credit_and_unlimited_passes_at_once() {
        let t = Instant::now();
        let mut s = Spacer::default();
        s.hold(t, 1_200, Some(250_000));
        // A minute later: at most the burst credit (10 ms, a quarter of a packet here), so
        // one packet leaves and the next waits its time.
        let later = t + Duration::from_secs(60);
        assert_eq!(s.hold(later, 1_200, Some(250_000)), Duration::ZERO);
        let next = s.hold(later, 1_200, Some(250_000));
        assert!(
            (Duration::from_millis(28)..Duration::from_millis(29)).contains(&next),
            "{next:?}"
        );
        assert_eq!(s.hold(later, 64_000, None), Duration::ZERO);
        assert_eq!(s.hold(later, 1_200, Some(250_000)), Duration::ZERO);
    }
}

//! Pacing one viewer's packets: a key frame leaves as a stream at a few times the viewer's
//! estimate rather than as one burst at line rate, so it does not overflow the queue of a
//! narrow uplink (a 40-packet queue on a 1 Mbit/s link drops most of a 60-packet burst).
//! Pure: packet sizes and time in, how long to hold each packet out.
//!
//! - The rate is `FACTOR` times the viewer's estimate; while the estimate is at its ceiling
//!   (a link that has never shown a limit) packets pass straight through, so a good link pays
//!   nothing for pacing.
//! - Up to `BURST` of unused time is kept as credit: a frame of a few packets after a quiet
//!   gap leaves at once.
//! - No packet is held once it is `MAX_DELAY` old (from capture): the pacer then sends at line
//!   rate and forgets the debt. It never drops: every H.264 P frame is a reference, so a
//!   dropped packet costs a key frame (skipping raw frames before the encoder is the way to
//!   send less).

use std::time::{Duration, Instant};

/// The pacing rate over the estimate (libwebrtc paces at 2.5 times its target; the estimate
/// here is already what the link carries, not a target below it).
pub const FACTOR: f64 = 2.0;
/// Unused sending time kept as credit.
pub const BURST: Duration = Duration::from_millis(5);
/// The oldest a packet may be (since capture) and still be held: the device's queue never
/// holds more than this of video.
pub const MAX_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct Pacer {
    /// Bits per second; `None`: pass straight through.
    rate_bps: Option<f64>,
    /// When the link (as paced) is free for the next packet.
    free_at: Option<Instant>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacer {
    /// Starts passing straight through, until an estimate says otherwise.
    pub fn new() -> Self {
        Self {
            rate_bps: None,
            free_at: None,
        }
    }

    /// The viewer's estimate and the most it can be (`Bounds::max_bps`): at the ceiling the
    /// link has shown no limit and nothing is paced.
    pub fn set_estimate(&mut self, estimate_bps: u32, ceiling_bps: u32) {
        self.rate_bps = (estimate_bps < ceiling_bps).then(|| f64::from(estimate_bps) * FACTOR);
    }

    pub fn rate_bps(&self) -> Option<f64> {
        self.rate_bps
    }

    /// How long to hold a packet of `bytes` that is ready at `now`, captured `age` ago (`None`
    /// if unknown). The caller sends it after that long and asks for the next one after that.
    pub fn hold(&mut self, now: Instant, bytes: usize, age: Option<Duration>) -> Duration {
        let Some(rate) = self.rate_bps.filter(|r| *r > 0.0) else {
            self.free_at = None;
            return Duration::ZERO;
        };
        let earliest = now.checked_sub(BURST).unwrap_or(now);
        let start = self.free_at.filter(|t| *t > earliest).unwrap_or(earliest);
        let budget = MAX_DELAY.saturating_sub(age.unwrap_or(Duration::ZERO));
        let wait = start.saturating_duration_since(now).min(budget);
        let send_at = now + wait;
        // Time on the paced link: from `start`, or from the send time when the budget ran out
        // (the debt beyond it is forgiven).
        let on_link = Duration::from_secs_f64(bytes as f64 * 8.0 / rate);
        self.free_at = Some(start.min(send_at) + on_link);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Sends `packets` of `bytes` as the element does (each after the previous one's hold),
    /// all ready at `t0` and captured at `t0`; returns each send time relative to `t0`.
    fn send_burst(pacer: &mut Pacer, t0: Instant, packets: usize, bytes: usize) -> Vec<Duration> {
        let mut now = t0;
        (0..packets)
            .map(|_| {
                now += pacer.hold(now, bytes, Some(now - t0));
                now - t0
            })
            .collect()
    }

    #[test]
    fn without_an_estimate_below_the_ceiling_nothing_is_held() {
        let mut pacer = Pacer::new();
        let t0 = Instant::now();
        assert!(
            send_burst(&mut pacer, t0, 60, 1200)
                .iter()
                .all(|t| t.is_zero())
        );
        pacer.set_estimate(3_000_000, 3_000_000);
        assert!(
            send_burst(&mut pacer, t0, 60, 1200)
                .iter()
                .all(|t| t.is_zero())
        );
    }

    #[test]
    fn a_key_frame_leaves_at_twice_the_estimate() {
        let mut pacer = Pacer::new();
        pacer.set_estimate(1_000_000, 3_000_000);
        let t0 = Instant::now();
        // 16 packets of 1250 bytes = 160 kbit: 80 ms at 2 Mbit/s.
        let sent = send_burst(&mut pacer, t0, 16, 1250);
        // The first leaves at once and uses the 5 ms credit; then one every 5 ms.
        assert_eq!(sent[0], Duration::ZERO);
        let last = *sent.last().unwrap();
        assert!(
            last >= 70 * MS && last <= 80 * MS,
            "the last packet left at {last:?}"
        );
        for pair in sent.windows(2).skip(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= 4 * MS && gap <= 6 * MS, "gap {gap:?}");
        }
    }

    #[test]
    fn a_few_packets_after_a_quiet_gap_leave_at_once() {
        let mut pacer = Pacer::new();
        pacer.set_estimate(2_000_000, 3_000_000);
        let t0 = Instant::now();
        send_burst(&mut pacer, t0, 10, 1200);
        // 33 ms later (the next frame), a two-packet frame: 9.6 kbit = 2.4 ms at 4 Mbit/s,
        // inside the credit.
        let t1 = t0 + 33 * MS;
        assert_eq!(send_burst(&mut pacer, t1, 2, 1200), vec![Duration::ZERO; 2]);
    }

    #[test]
    fn no_packet_is_held_past_the_maximum_delay() {
        let mut pacer = Pacer::new();
        // A link estimate far below what is sent: a 100-packet frame would take 1.2 s.
        pacer.set_estimate(100_000, 3_000_000);
        let t0 = Instant::now();
        let sent = send_burst(&mut pacer, t0, 100, 1200);
        assert!(sent.iter().all(|t| *t <= MAX_DELAY), "held past 100 ms");
        // Past the budget the rest go at once.
        assert_eq!(*sent.last().unwrap(), sent[sent.len() - 2]);
        // Packets that are already old when they arrive are not held at all.
        let later = t0 + Duration::from_secs(1);
        assert_eq!(pacer.hold(later, 1200, Some(150 * MS)), Duration::ZERO);
    }

    #[test]
    fn the_debt_past_the_budget_is_forgiven() {
        let mut pacer = Pacer::new();
        pacer.set_estimate(100_000, 3_000_000);
        let t0 = Instant::now();
        send_burst(&mut pacer, t0, 100, 1200);
        // A second later the link has drained at the paced rate (1,000 ms at 200 kbit/s is 25
        // packets): a new frame is not held for the first frame's 960 kbit.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(pacer.hold(t1, 1200, Some(Duration::ZERO)), Duration::ZERO);
    }

    #[test]
    fn a_rising_estimate_at_the_ceiling_stops_pacing() {
        let mut pacer = Pacer::new();
        pacer.set_estimate(500_000, 3_000_000);
        let t0 = Instant::now();
        assert!(send_burst(&mut pacer, t0, 20, 1200).last().unwrap() > &Duration::ZERO);
        pacer.set_estimate(3_000_000, 3_000_000);
        assert_eq!(pacer.rate_bps(), None);
        assert!(
            send_burst(&mut pacer, t0 + 10 * MS, 20, 1200)
                .iter()
                .all(|t| t.is_zero())
        );
    }
}

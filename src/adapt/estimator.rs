//! One viewer's bandwidth estimate, from its feedback: a delay-based detector (the queue on the
//! path grows before it overflows) and a loss-based bound, after Google Congestion Control
//! (draft-ietf-rmcat-gcc-02; the trendline filter of libwebrtc rather than the Kalman filter).
//! Pure: packets and time in, an estimate out.
//!
//! - Packets sent within 5 ms form a group (a frame's burst). For each new group, the growth
//!   of the one-way delay since the last one (arrival gap minus send gap) is accumulated and
//!   smoothed; the slope of that over the last 20 groups says whether a queue is building.
//! - The slope is compared with an adaptive threshold: over it for 10 ms is overuse, below
//!   minus it is underuse (a queue draining).
//! - Overuse with a standing queue (one that did not drain within the last 300 ms: a key
//!   frame's burst queues for a moment, a rate above the link for good): the estimate drops
//!   to 85 % of what the viewer actually received over the last half second, less what
//!   drains the queue beyond 100 ms that built up, within about a second (down to half).
//! - Otherwise it grows 8 % a second while below the rate of the last overuses, by about a
//!   packet per response time once the estimate is near it (within three deviations), and 15 % a second once 30 % (or three deviations)
//!   more got through than that rate (the link grew; GStreamer 1.22 cannot send padding to
//!   probe, so a faster climb is how the new room is found); never raised above 1.5 times
//!   the most the viewer received in a half second of the last two (an estimate far above
//!   the send rate is a guess), though not cut by that either.
//! - Loss over 10 % cuts it by half the loss (once per round trip and 300 ms, and never
//!   under 85 % of what the viewer received); under 2 % lets it grow. The estimate is the
//!   lower of the two.
//!
//! A viewer without TWCC (aiortc sends none) feeds only receiver reports (about one a second):
//! the loss-based part alone then steers it, and a round trip 100 ms over its least of the
//! last 30 reports (a queue on the path) cuts it by 15 % as heavy loss would.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::feedback::{PacketReport, ReceiverReport};

/// Bounds and start of an estimate, in bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min_bps: u32,
    pub start_bps: u32,
    pub max_bps: u32,
}

const BURST: Duration = Duration::from_millis(5);
const TRENDLINE_WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const TREND_GAIN: f64 = 4.0;
const THRESHOLD_START_MS: f64 = 12.5;
const THRESHOLD_UP: f64 = 0.0087;
const THRESHOLD_DOWN: f64 = 0.039;
const OVERUSE_TIME: Duration = Duration::from_millis(10);
const BETA: f64 = 0.85;
/// Growth a second below the rate of the last congestions (GCC's 8 %).
const GROWTH: f64 = 1.08;
/// A queue this short at an overuse is left to the 85 % cut to drain.
const QUEUE_KEPT: Duration = Duration::from_millis(100);
/// Growth a second where no congestion is known (the link grew past the last one's rate).
const GROWTH_UNKNOWN: f64 = 1.15;
const ACKED_WINDOW: Duration = Duration::from_millis(500);
/// Packets kept for the acked rate, whatever the arrival times say: half a second of 50 Mbit/s
/// in 1200-byte packets. A viewer reporting one arrival time for everything would otherwise
/// grow the window forever.
const ACKED_MAX: usize = 2_600;
const LOSS_INTERVAL: Duration = Duration::from_millis(200);
/// How far back the cap on increases looks for the highest acked rate.
const PEAK_WINDOW: Duration = Duration::from_secs(2);
/// Acked rates kept for it, whatever the update rate (feedback comes ~10 times a second).
const PEAKS_MAX: usize = 64;
/// How far back the standing queue looks: the least queueing delay of the packets that arrived
/// within it. A key frame's burst queues for a moment and drains between frames; a rate above
/// the link leaves a queue that never drains.
const STANDING_WINDOW: Duration = Duration::from_millis(300);
/// The standing queue an overuse must show to cut the estimate.
const STANDING_MIN_MS: f64 = 10.0;
/// The one-way delay's floor is the least of the last `BASE_BUCKETS` buckets of `BASE_BUCKET`
/// each, so clock drift between us and the viewer, or a new route, cannot pin it for good.
const BASE_BUCKET: Duration = Duration::from_secs(1);
const BASE_BUCKETS: usize = 30;
/// Without TWCC: a round trip this much over the least of the last `RTTS_KEPT` is a queue on
/// the path.
const RTT_QUEUE: Duration = Duration::from_millis(100);
const RTTS_KEPT: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Normal,
    Over,
    Under,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_sent: Duration,
    last_sent: Duration,
    last_arrived: Duration,
}

#[derive(Debug)]
pub struct Estimator {
    bounds: Bounds,
    /// The delay-based estimate.
    delay_bps: f64,
    /// The loss-based estimate.
    loss_bps: f64,
    group: Option<Group>,
    previous: Option<Group>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (arrival ms since the first group, smoothed accumulated delay ms)
    history: VecDeque<(f64, f64)>,
    first_arrival: Option<Duration>,
    /// Deltas seen so far (up to 60): the trend counts for more once there are many.
    deltas: u32,
    threshold_ms: f64,
    last_threshold_update: Option<Instant>,
    overusing_since: Option<Instant>,
    previous_trend: f64,
    usage: Usage,
    /// Received packets of the last `ACKED_WINDOW` (arrival, size), for the acked rate.
    acked: VecDeque<(Duration, u32)>,
    /// Mean of the acked rate at past overuses, and its variance (both in kbit/s).
    congested_kbps: Option<(f64, f64)>,
    /// The acked rate at each update of the last `PEAK_WINDOW` (at most `PEAKS_MAX`): increases
    /// are capped by its highest, not by the last half second's, which dips between key
    /// frames (an encoder's output over 500 ms swings with its key frames).
    acked_peaks: VecDeque<(Instant, f64)>,
    last_update: Option<Instant>,
    last_loss_update: Option<Instant>,
    last_loss_cut: Option<Instant>,
    last_one_way_ms: Option<f64>,
    /// The least one-way delay per `BASE_BUCKET` of arrival time (bucket, ms), the newest last.
    floor: VecDeque<(u64, f64)>,
    /// One-way delays of the last `STANDING_WINDOW` (arrival, ms), at most `ACKED_MAX`.
    recent: VecDeque<(Duration, f64)>,
    round_trip: Duration,
    /// The round trips of the last `RTTS_KEPT` receiver reports.
    round_trips: VecDeque<Duration>,
    /// Loss over the last feedback interval, for the loss-based part.
    lost: u32,
    received: u32,
    highest_seq: Option<u32>,
}

impl Estimator {
    pub fn new(bounds: Bounds) -> Self {
        let start = f64::from(bounds.start_bps.clamp(bounds.min_bps, bounds.max_bps));
        Self {
            bounds,
            delay_bps: start,
            loss_bps: start,
            group: None,
            previous: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            history: VecDeque::new(),
            first_arrival: None,
            deltas: 0,
            threshold_ms: THRESHOLD_START_MS,
            last_threshold_update: None,
            overusing_since: None,
            previous_trend: 0.0,
            usage: Usage::Normal,
            acked: VecDeque::new(),
            congested_kbps: None,
            acked_peaks: VecDeque::new(),
            last_update: None,
            last_loss_update: None,
            last_loss_cut: None,
            last_one_way_ms: None,
            floor: VecDeque::new(),
            recent: VecDeque::new(),
            round_trip: Duration::from_millis(100),
            round_trips: VecDeque::new(),
            lost: 0,
            received: 0,
            highest_seq: None,
        }
    }

    /// What the estimate starts from and stays within.
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The estimate now, in bits per second.
    pub fn estimate_bps(&self) -> u32 {
        let bps = self.delay_bps.min(self.loss_bps);
        (bps as u32).clamp(self.bounds.min_bps, self.bounds.max_bps)
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// What the viewer received over the last half second, in bits per second; `None` until
    /// the feedback spans most of that (the first reports cover a few packets, and a rate
    /// from them would be noise that caps the estimate at nearly nothing).
    pub fn acked_bps(&self) -> Option<f64> {
        let (first, last) = (self.acked.front()?.0, self.acked.back()?.0);
        let span = last.saturating_sub(first);
        if span < ACKED_WINDOW * 4 / 5 {
            return None;
        }
        let bits: f64 = self.acked.iter().map(|(_, s)| f64::from(*s) * 8.0).sum();
        Some(bits / span.as_secs_f64())
    }

    /// A batch of TWCC feedback, in sequence order.
    pub fn on_feedback(&mut self, packets: &[PacketReport], now: Instant) {
        for p in packets {
            // Feedback can repeat a packet (a report lost and sent again): count it once.
            if self
                .highest_seq
                .is_some_and(|h| seq_newer(h, p.seq) || h == p.seq)
            {
                continue;
            }
            self.highest_seq = Some(p.seq);
            match p.arrived {
                None => self.lost += 1,
                Some(arrived) => {
                    self.received += 1;
                    push_within(&mut self.acked, (arrived, p.size), ACKED_WINDOW, ACKED_MAX);
                    self.on_arrival(p.sent, arrived, now);
                }
            }
        }
        self.update_loss(now);
        self.update_rate(now);
    }

    /// A receiver report: the round trip, and without TWCC (`twcc` false) the loss and the
    /// round trip's growth, which then steer the estimate alone.
    pub fn on_receiver_report(&mut self, report: ReceiverReport, now: Instant, twcc: bool) {
        if let Some(rtt) = report.round_trip {
            self.round_trip = rtt.clamp(Duration::from_millis(1), Duration::from_secs(5));
            self.round_trips.push_back(self.round_trip);
            if self.round_trips.len() > RTTS_KEPT {
                self.round_trips.pop_front();
            }
        }
        if !twcc {
            // Without arrival times per packet, a round trip grown over its recent least is
            // the only sign of a queue before it overflows.
            let least = self.round_trips.iter().min().copied();
            let queued = least.map_or(Duration::ZERO, |l| self.round_trip.saturating_sub(l));
            self.apply_loss(report.fraction_lost, queued >= RTT_QUEUE, now);
        }
    }

    /// How long packets now wait in queues on the path: the one-way delay over its minimum
    /// (the clocks differ, so only this difference means anything).
    pub fn queue_delay(&self) -> Duration {
        match (self.last_one_way_ms, self.floor_ms()) {
            (Some(last), Some(min)) => Duration::from_secs_f64((last - min).max(0.0) / 1000.0),
            _ => Duration::ZERO,
        }
    }

    /// The queue that does not drain: the least queueing delay of the packets that arrived in
    /// the last `STANDING_WINDOW`.
    pub fn standing_queue(&self) -> Duration {
        let least = self.recent.iter().map(|(_, ms)| *ms).reduce(f64::min);
        match (least, self.floor_ms()) {
            (Some(least), Some(min)) => Duration::from_secs_f64((least - min).max(0.0) / 1000.0),
            _ => Duration::ZERO,
        }
    }

    fn floor_ms(&self) -> Option<f64> {
        self.floor.iter().map(|(_, ms)| *ms).reduce(f64::min)
    }

    fn on_arrival(&mut self, sent: Duration, arrived: Duration, now: Instant) {
        let one_way = signed_ms(arrived, sent);
        self.last_one_way_ms = Some(one_way);
        let bucket = (arrived.as_nanos() / BASE_BUCKET.as_nanos()) as u64;
        match self.floor.back_mut() {
            Some((b, least)) if *b == bucket => *least = least.min(one_way),
            _ => {
                self.floor.push_back((bucket, one_way));
                while self.floor.len() > BASE_BUCKETS
                    || self
                        .floor
                        .front()
                        .is_some_and(|(b, _)| bucket.saturating_sub(*b) >= BASE_BUCKETS as u64)
                {
                    self.floor.pop_front();
                }
            }
        }
        push_within(
            &mut self.recent,
            (arrived, one_way),
            STANDING_WINDOW,
            ACKED_MAX,
        );
        let Some(group) = &mut self.group else {
            self.group = Some(Group {
                first_sent: sent,
                last_sent: sent,
                last_arrived: arrived,
            });
            return;
        };
        if sent.saturating_sub(group.first_sent) <= BURST {
            group.last_sent = group.last_sent.max(sent);
            group.last_arrived = group.last_arrived.max(arrived);
            return;
        }
        let done = *group;
        self.group = Some(Group {
            first_sent: sent,
            last_sent: sent,
            last_arrived: arrived,
        });
        if let Some(previous) = self.previous {
            let arrival_gap = signed_ms(done.last_arrived, previous.last_arrived);
            let send_gap = signed_ms(done.last_sent, previous.last_sent);
            self.on_delta(arrival_gap - send_gap, done.last_arrived, now);
        }
        self.previous = Some(done);
    }

    fn on_delta(&mut self, delta_ms: f64, arrived: Duration, now: Instant) {
        let first = *self.first_arrival.get_or_insert(arrived);
        self.deltas = (self.deltas + 1).min(60);
        self.accumulated_ms += delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        self.history
            .push_back((signed_ms(arrived, first), self.smoothed_ms));
        if self.history.len() > TRENDLINE_WINDOW {
            self.history.pop_front();
        }
        if self.history.len() < TRENDLINE_WINDOW {
            return;
        }
        let trend = slope(&self.history).unwrap_or(0.0) * f64::from(self.deltas) * TREND_GAIN;
        self.detect(trend, now);
    }

    fn detect(&mut self, trend: f64, now: Instant) {
        if trend > self.threshold_ms {
            let since = *self.overusing_since.get_or_insert(now);
            if now.duration_since(since) >= OVERUSE_TIME && trend >= self.previous_trend {
                self.usage = Usage::Over;
            }
        } else if trend < -self.threshold_ms {
            self.overusing_since = None;
            self.usage = Usage::Under;
        } else {
            self.overusing_since = None;
            self.usage = Usage::Normal;
        }
        self.previous_trend = trend;
        // The threshold follows the trend (slowly up, faster down), unless it is an outlier.
        let elapsed = self
            .last_threshold_update
            .map_or(0.0, |t| now.duration_since(t).as_secs_f64() * 1000.0)
            .min(100.0);
        self.last_threshold_update = Some(now);
        if trend.abs() <= self.threshold_ms + 15.0 {
            let k = if trend.abs() < self.threshold_ms {
                THRESHOLD_DOWN
            } else {
                THRESHOLD_UP
            };
            self.threshold_ms += k * (trend.abs() - self.threshold_ms) * elapsed;
            self.threshold_ms = self.threshold_ms.clamp(6.0, 600.0);
        }
    }

    fn update_rate(&mut self, now: Instant) {
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |t| now.duration_since(t))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        let acked = self.acked_bps();
        match self.usage {
            Usage::Over => {
                // A queue that drains between frames is a key frame's burst, not a link too
                // narrow for the rate: hold rather than cut. (Cutting at every key frame kept a
                // 1 Mbit/s link at about 440 kbit/s of video.)
                let standing = self.standing_queue().as_secs_f64() * 1000.0 >= STANDING_MIN_MS;
                if standing && let Some(acked) = acked {
                    // Below the link by enough to drain, within about a second, what queued
                    // up beyond `QUEUE_KEPT` (GCC's 85 % alone takes seconds to drain a
                    // modem's deep queue; draining the whole of a short one made every cut
                    // on a steady 1 Mbit/s link ~10 % deeper than needed).
                    let queued = self.queue_delay().saturating_sub(QUEUE_KEPT).as_secs_f64();
                    let cut = (BETA - queued).max(0.5) * acked;
                    if cut < self.delay_bps {
                        self.delay_bps = cut;
                        // Under half the rate of the congestions before: the link has
                        // shrunk, start over.
                        if let Some((mean, _)) = self.congested_kbps
                            && acked / 1000.0 < mean * 0.5
                        {
                            self.congested_kbps = None;
                        }
                        self.remember_congestion(acked / 1000.0);
                    }
                }
                // Hold until the detector clears.
            }
            Usage::Under => {
                // The queue drains: hold, so it empties.
            }
            Usage::Normal => {
                // More got through than the last congestions allow: the link has grown, and
                // the rate it congested at says nothing any more.
                if let (Some(a), Some((mean, var))) = (acked, self.congested_kbps)
                    && a / 1000.0 > mean + 3.0 * var.sqrt().max(mean * 0.1)
                {
                    self.congested_kbps = None;
                }
                let secs = elapsed.as_secs_f64();
                let before = self.delay_bps;
                // Near the rate the link congested at: the estimate is within three
                // deviations of it. The estimate, not what got through: that lags the
                // estimate by the encoder's reaction and undershoot, and the climb overshot
                // the link at 8 %/s before what got through said "near". Past the band the
                // climb is multiplicative again, until what gets through clears it too and the
                // record is dropped (above).
                let near = self.congested_kbps.is_some_and(|(mean, var)| {
                    let sd = var.sqrt().max(mean * 0.05);
                    (before / 1000.0 - mean).abs() < 3.0 * sd
                });
                let mut raised = if near {
                    // Additive: about one 1200-byte packet per response time (the round
                    // trip plus the detector's ~100 ms, twice: libwebrtc's AIMD).
                    let response = 2.0 * (self.round_trip.as_secs_f64() + 0.1);
                    before + (1200.0 * 8.0 / response) * secs
                } else if self.congested_kbps.is_none() {
                    // No congestion known below (the link grew past it): without padding to
                    // probe with, a faster climb is the only way to find the new room soon.
                    before * GROWTH_UNKNOWN.powf(secs)
                } else {
                    before * GROWTH.powf(secs)
                };
                // Raised no further than 1.5x what gets through (without probes, more is a
                // guess), but not cut by it either: an encoder that undershoots its target, or
                // a quiet scene, says nothing about the link.
                if let Some(peak) = self.acked_peak(now, acked) {
                    raised = raised.min((1.5 * peak + 10_000.0).max(before));
                }
                self.delay_bps = raised;
            }
        }
        self.delay_bps = self.delay_bps.clamp(
            f64::from(self.bounds.min_bps),
            f64::from(self.bounds.max_bps),
        );
    }

    /// The highest acked rate of the last `PEAK_WINDOW`, `acked` (now's) included.
    fn acked_peak(&mut self, now: Instant, acked: Option<f64>) -> Option<f64> {
        if let Some(acked) = acked {
            self.acked_peaks.push_back((now, acked));
        }
        while self.acked_peaks.len() > PEAKS_MAX
            || self
                .acked_peaks
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > PEAK_WINDOW)
        {
            self.acked_peaks.pop_front();
        }
        self.acked_peaks.iter().map(|(_, a)| *a).reduce(f64::max)
    }

    fn remember_congestion(&mut self, kbps: f64) {
        self.congested_kbps = Some(match self.congested_kbps {
            None => (kbps, 0.0),
            Some((mean, var)) => {
                let mean = 0.95 * mean + 0.05 * kbps;
                let norm = mean.max(1.0);
                let var = 0.95 * var + 0.05 * (kbps - mean).powi(2) / norm;
                (mean, var)
            }
        });
    }

    fn update_loss(&mut self, now: Instant) {
        if self
            .last_loss_update
            .is_some_and(|t| now.duration_since(t) < LOSS_INTERVAL)
        {
            return;
        }
        let total = self.lost + self.received;
        if total < 10 {
            return;
        }
        let fraction = f64::from(self.lost) / f64::from(total);
        self.lost = 0;
        self.received = 0;
        self.apply_loss(fraction, false, now);
    }

    /// Loss over an interval, and whether a queue stands (known from receiver reports only
    /// when there is no TWCC): heavy loss cuts by half of it, a queue by `BETA`.
    fn apply_loss(&mut self, fraction: f64, queue: bool, now: Instant) {
        self.last_loss_update = Some(now);
        if fraction > 0.1 || queue {
            // One cut per congestion event: the loss a cut would cure shows for a round trip
            // (and the queue's drain) after it.
            let hold = self.round_trip + Duration::from_millis(300);
            if self
                .last_loss_cut
                .is_none_or(|t| now.saturating_duration_since(t) >= hold)
            {
                self.loss_bps *= if fraction > 0.1 {
                    1.0 - 0.5 * fraction
                } else {
                    BETA
                };
                // Not below what demonstrably gets through: loss from our own overshoot (a
                // start above the link) would otherwise cut again and again while the queue
                // that overflowed drains, down to nothing.
                if let Some(acked) = self.acked_bps() {
                    self.loss_bps = self.loss_bps.max(BETA * acked);
                }
                self.last_loss_cut = Some(now);
            }
        } else if fraction < 0.02 {
            self.loss_bps *= 1.05;
        }
        // Never far above the delay-based part: the loss-based one only ever lowers it.
        self.loss_bps = self.loss_bps.clamp(
            f64::from(self.bounds.min_bps),
            f64::from(self.bounds.max_bps).max(self.delay_bps),
        );
    }
}

/// Appends `entry` (arrival time first) and drops what arrived more than `window` before it,
/// and the oldest beyond `max` whatever the times say (they are the viewer's word).
fn push_within<T>(
    queue: &mut VecDeque<(Duration, T)>,
    entry: (Duration, T),
    window: Duration,
    max: usize,
) {
    let newest = entry.0;
    queue.push_back(entry);
    while queue.len() > max
        || queue
            .front()
            .is_some_and(|(t, _)| newest.saturating_sub(*t) > window)
    {
        queue.pop_front();
    }
}

/// `a - b` in milliseconds, negative when `a` is earlier.
fn signed_ms(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() * 1000.0 - b.as_secs_f64() * 1000.0
}

/// Whether `a` is newer than `b` in 16-bit sequence space (TWCC numbers wrap at 65536).
fn seq_newer(a: u32, b: u32) -> bool {
    let diff = (a.wrapping_sub(b)) & 0xffff;
    diff != 0 && diff < 0x8000
}

/// The least-squares slope of `y` over `x`.
fn slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), (x, y)| {
        (num + (x - mx) * (y - my), den + (x - mx).powi(2))
    });
    (den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests;

//! The estimator against a simulated bottleneck (no sockets, no clock): a sender that sends
//! 30 frames a second at the estimate, a link of a given rate with a drop-tail queue and a base
//! delay, and TWCC feedback every 100 ms.

use super::*;

const START: Bounds = Bounds {
    min_bps: 100_000,
    start_bps: 2_000_000,
    max_bps: 2_000_000,
};

/// A bottleneck: `rate_bps` (changing over time), `queue` packets, `base` one-way delay.
struct Link {
    rate_bps: Box<dyn Fn(Duration) -> f64>,
    queue: usize,
    base: Duration,
    /// When the link finishes sending what it holds (its queue drains at `rate`).
    busy_until: Duration,
    /// Send times of the packets in the queue, for its length.
    in_queue: VecDeque<Duration>,
}

impl Link {
    /// The arrival time of a packet of `size` bytes sent at `at`, or `None` if the queue is full.
    fn send(&mut self, at: Duration, size: u32) -> Option<Duration> {
        while self.in_queue.front().is_some_and(|t| *t <= at) {
            self.in_queue.pop_front();
        }
        if self.in_queue.len() >= self.queue {
            return None;
        }
        let start = self.busy_until.max(at);
        let serialise = Duration::from_secs_f64(f64::from(size) * 8.0 / (self.rate_bps)(at));
        self.busy_until = start + serialise;
        self.in_queue.push_back(self.busy_until);
        Some(self.busy_until + self.base)
    }
}

struct Run {
    /// (time, estimate bps, queueing delay of the packets sent then)
    samples: Vec<(Duration, u32, Duration)>,
}

impl Run {
    fn estimate_at(&self, t: Duration) -> u32 {
        self.samples
            .iter()
            .rev()
            .find(|(at, _, _)| *at <= t)
            .map(|(_, e, _)| *e)
            .unwrap()
    }

    fn mean_estimate(&self, from: Duration, to: Duration) -> u32 {
        let within: Vec<u64> = self
            .samples
            .iter()
            .filter(|(at, _, _)| *at >= from && *at < to)
            .map(|(_, e, _)| u64::from(*e))
            .collect();
        (within.iter().sum::<u64>() / within.len() as u64) as u32
    }

    /// The 95th percentile of the queueing delay between `from` and `to`.
    fn queue_p95(&self, from: Duration, to: Duration) -> Duration {
        let mut delays: Vec<Duration> = self
            .samples
            .iter()
            .filter(|(at, _, _)| *at >= from && *at < to)
            .map(|(_, _, d)| *d)
            .collect();
        delays.sort();
        delays[delays.len() * 95 / 100]
    }
}

fn simulate(secs: u64, mut link: Link) -> Run {
    let mut estimator = Estimator::new(START);
    let t0 = Instant::now();
    let mut pending: Vec<(PacketReport, Duration)> = Vec::new(); // report, arrival (MAX: lost)
    let mut seq = 0u32;
    let mut samples = Vec::new();
    let frame = Duration::from_micros(33_333);
    let mut next_feedback = Duration::from_millis(100);
    let mut t = Duration::ZERO;
    while t < Duration::from_secs(secs) {
        // One frame at the estimate, in 1200-byte packets sent 100 us apart.
        let bytes = (f64::from(estimator.estimate_bps()) / 30.0 / 8.0) as u32;
        let mut queued = Duration::ZERO;
        for i in 0..bytes.div_ceil(1200) {
            let sent = t + Duration::from_micros(100 * u64::from(i));
            let size = (bytes - i * 1200).min(1200);
            let arrived = link.send(sent, size);
            if let Some(a) = arrived {
                queued = queued.max(a - sent - link.base);
            }
            let report = PacketReport {
                seq: seq & 0xffff,
                sent,
                arrived,
                size,
            };
            seq += 1;
            pending.push((report, arrived.unwrap_or(Duration::MAX)));
        }
        t += frame;
        while next_feedback <= t {
            // The viewer reports, in order, every packet up to the last one that arrived
            // (those before it that did not are lost: the link keeps order).
            let last = pending
                .iter()
                .rposition(|(_, arrived)| *arrived <= next_feedback);
            let batch: Vec<PacketReport> = match last {
                Some(i) => pending.drain(..=i).map(|(r, _)| r).collect(),
                None => Vec::new(),
            };
            // The feedback itself takes the base delay back.
            estimator.on_feedback(&batch, t0 + next_feedback + link.base);
            next_feedback += Duration::from_millis(100);
        }
        samples.push((t, estimator.estimate_bps(), queued));
    }
    Run { samples }
}

fn link(rate: impl Fn(Duration) -> f64 + 'static) -> Link {
    Link {
        rate_bps: Box::new(rate),
        queue: 40,
        base: Duration::from_millis(20),
        busy_until: Duration::ZERO,
        in_queue: VecDeque::new(),
    }
}

#[test]
fn it_settles_under_a_narrow_link_with_a_short_queue() {
    let run = simulate(30, link(|_| 1_000_000.0));
    let settled = run.mean_estimate(Duration::from_secs(10), Duration::from_secs(30));
    let p95 = run.queue_p95(Duration::from_secs(10), Duration::from_secs(30));
    println!("1 Mbit/s: estimate {settled} bit/s on average, queueing p95 {p95:?}");
    assert!((750_000..=1_050_000).contains(&settled), "{settled}");
    assert!(p95 < Duration::from_millis(100), "{p95:?}");
    // Down from 2 Mbit/s within a few seconds.
    assert!(run.estimate_at(Duration::from_secs(3)) < 1_200_000);
}

#[test]
fn it_follows_a_step_down_and_back_up() {
    let rate = |t: Duration| {
        if t >= Duration::from_secs(20) && t < Duration::from_secs(40) {
            600_000.0
        } else {
            4_000_000.0
        }
    };
    let run = simulate(60, link(rate));
    let before = run.estimate_at(Duration::from_secs(19));
    let dropped = run.estimate_at(Duration::from_secs(22));
    let back = run.estimate_at(Duration::from_secs(55));
    let p95 = run.queue_p95(Duration::from_secs(22), Duration::from_secs(40));
    println!(
        "4 -> 0.6 -> 4 Mbit/s: {before}, 2 s after the drop {dropped}, 15 s after the rise {back}; queueing p95 {p95:?}"
    );
    assert!(before >= 1_900_000, "{before}");
    assert!(dropped <= 660_000, "{dropped}");
    assert!(p95 < Duration::from_millis(150), "{p95:?}");
    assert!(back >= 1_400_000, "{back}: 70 % of min(link, 2 Mbit/s)");
}

#[test]
fn loss_without_a_queue_lowers_the_estimate_only_when_heavy() {
    let mut e = Estimator::new(START);
    let now = Instant::now();
    let report = |fraction_lost| ReceiverReport {
        fraction_lost,
        round_trip: Some(Duration::from_millis(50)),
        lost_total: 0,
    };
    for i in 0..10 {
        e.on_receiver_report(report(0.01), now + Duration::from_secs(i), false);
    }
    assert_eq!(e.estimate_bps(), 2_000_000, "1 % loss costs nothing");
    e.on_receiver_report(report(0.3), now + Duration::from_secs(11), false);
    assert_eq!(e.estimate_bps(), 1_700_000, "30 % loss: down by 15 %");
}

#[test]
fn without_twcc_a_growing_round_trip_lowers_the_estimate_and_a_short_one_lets_it_grow() {
    let mut e = Estimator::new(START);
    let now = Instant::now();
    let report = |ms| ReceiverReport {
        fraction_lost: 0.0,
        round_trip: Some(Duration::from_millis(ms)),
        lost_total: 0,
    };
    for i in 0..5 {
        e.on_receiver_report(report(40), now + Duration::from_secs(i), false);
    }
    assert_eq!(e.estimate_bps(), 2_000_000);
    // A queue builds: 40 -> 240 ms, one report a second.
    for (i, ms) in [90, 160, 240, 240, 240].into_iter().enumerate() {
        e.on_receiver_report(report(ms), now + Duration::from_secs(5 + i as u64), false);
    }
    let low = e.estimate_bps();
    assert!(low < 1_300_000, "four cuts of 15 %: {low}");
    // Drained: it grows again, 5 % a report.
    for i in 0..5 {
        e.on_receiver_report(report(45), now + Duration::from_secs(10 + i), false);
    }
    assert!(e.estimate_bps() > low, "{} after {low}", e.estimate_bps());
    // With TWCC the round trip steers nothing by itself (the delay detector does).
    let mut twcc = Estimator::new(START);
    for (i, ms) in [40, 40, 240, 240].into_iter().enumerate() {
        twcc.on_receiver_report(report(ms), now + Duration::from_secs(i as u64), true);
    }
    assert_eq!(twcc.estimate_bps(), 2_000_000);
}

#[test]
fn repeated_feedback_counts_once_and_sequence_numbers_wrap() {
    let mut e = Estimator::new(START);
    let now = Instant::now();
    let p = |seq, ms| PacketReport {
        seq,
        sent: Duration::from_millis(ms),
        arrived: Some(Duration::from_millis(ms + 20)),
        size: 1200,
    };
    e.on_feedback(&[p(65_534, 0), p(65_535, 1), p(0, 2)], now);
    e.on_feedback(&[p(65_535, 1), p(0, 2), p(1, 3)], now);
    assert_eq!(e.acked.len(), 4);
    assert!(seq_newer(0, 65_535) && !seq_newer(65_535, 0));
}

#[test]
fn the_first_reports_do_not_cap_the_estimate() {
    let mut e = Estimator::new(START);
    let now = Instant::now();
    // Three packets: far too few to say what the link carries.
    let reports: Vec<PacketReport> = (0..3)
        .map(|i| PacketReport {
            seq: i,
            sent: Duration::from_millis(u64::from(i)),
            arrived: Some(Duration::from_millis(20 + u64::from(i))),
            size: 1200,
        })
        .collect();
    e.on_feedback(&reports, now);
    assert_eq!(e.acked_bps(), None);
    assert_eq!(e.estimate_bps(), 2_000_000);
}

/// Feedback is the viewer's word: arrival times that never move, or jump about, must not make
/// the estimator hold more, or panic.
#[test]
fn hostile_feedback_keeps_memory_bounded_and_the_estimate_in_bounds() {
    let mut e = Estimator::new(START);
    let now = Instant::now();
    let mut seq = 0u32;
    for round in 0..200u64 {
        let reports: Vec<PacketReport> = (0..100)
            .map(|i| {
                seq = seq.wrapping_add(1);
                PacketReport {
                    seq: seq & 0xffff,
                    sent: Duration::from_millis(round * 100 + i),
                    // The same arrival for everything, or nonsense.
                    arrived: Some(if i % 2 == 0 {
                        Duration::from_secs(5)
                    } else {
                        Duration::from_nanos(u64::MAX / (i + 1))
                    }),
                    size: u32::MAX,
                }
            })
            .collect();
        e.on_feedback(&reports, now + Duration::from_millis(round * 100));
    }
    assert!(e.acked.len() <= ACKED_MAX, "{}", e.acked.len());
    assert!(e.recent.len() <= ACKED_MAX, "{}", e.recent.len());
    assert!(e.floor.len() <= BASE_BUCKETS, "{}", e.floor.len());
    let estimate = e.estimate_bps();
    assert!(
        (START.min_bps..=START.max_bps).contains(&estimate),
        "{estimate}"
    );
}

/// Receiver reports are the viewer's word too (a viewer without TWCC steers by them alone):
/// whatever they say, memory stays bounded and the estimate within its bounds.
#[test]
fn hostile_receiver_reports_keep_memory_bounded_and_the_estimate_in_bounds() {
    let mut e = Estimator::new(START);
    let now = Instant::now();
    for i in 0..1_000u64 {
        let report = ReceiverReport {
            fraction_lost: if i % 2 == 0 { 1.0 } else { 0.0 },
            round_trip: Some(if i % 3 == 0 {
                Duration::from_secs(3_600)
            } else {
                Duration::ZERO
            }),
            lost_total: i64::MAX,
        };
        e.on_receiver_report(report, now + Duration::from_millis(i * 10), false);
        let estimate = e.estimate_bps();
        assert!(
            (START.min_bps..=START.max_bps).contains(&estimate),
            "{estimate} after report {i}"
        );
    }
    assert!(e.round_trips.len() <= RTTS_KEPT, "{}", e.round_trips.len());
    assert!(e.round_trip <= Duration::from_secs(5), "{:?}", e.round_trip);
    // Total loss over and over: down to the floor, not below it.
    for i in 0..200u64 {
        let report = ReceiverReport {
            fraction_lost: 1.0,
            round_trip: None,
            lost_total: 0,
        };
        e.on_receiver_report(report, now + Duration::from_secs(20 + i), false);
    }
    assert_eq!(e.estimate_bps(), START.min_bps);
}

/// An encoder's output over half a second swings with its key frames: the cap on increases
/// looks at the most the viewer received within two seconds, not at the last dip.
#[test]
fn increases_are_capped_by_the_recent_peak_of_what_got_through() {
    let mut e = Estimator::new(START);
    let t0 = Instant::now();
    assert_eq!(e.acked_peak(t0, Some(600_000.0)), Some(600_000.0));
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(e.acked_peak(t1, Some(200_000.0)), Some(600_000.0), "a dip");
    let t2 = t0 + Duration::from_millis(2_500);
    assert_eq!(e.acked_peak(t2, None), Some(200_000.0), "the peak aged out");
    // Bounded whatever the update rate.
    for _ in 0..1_000 {
        e.acked_peak(t2, Some(1.0));
    }
    assert!(e.acked_peaks.len() <= PEAKS_MAX);
}

//! What the userspace stage does to each packet: keep or lose it, and when to let it go. Pure:
//! time is passed in and the randomness is seeded, so a scenario replays exactly.

use std::time::{Duration, Instant};

use super::spec::{Loss, Shape};

/// A small, seeded generator (xorshift64*): the same seed loses the same packets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Lose,
    /// Let it go at this time (never before a packet that came earlier: no reordering).
    ReleaseAt(Instant),
}

/// One direction's delay, jitter and loss.
#[derive(Debug, Clone)]
pub struct Impairment {
    rng: Rng,
    /// Gilbert-Elliott: whether the channel is in its bad state now.
    bad: bool,
    /// The last release time handed out, so jitter never reorders.
    last_release: Option<Instant>,
}

impl Impairment {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            bad: false,
            last_release: None,
        }
    }

    /// Decides the fate of a packet that arrives at `now` under `shape`.
    pub fn fate(&mut self, shape: &Shape, now: Instant) -> Fate {
        if shape.blackout || self.lost(&shape.loss) {
            return Fate::Lose;
        }
        let jitter = if shape.jitter.is_zero() {
            Duration::ZERO
        } else {
            shape.jitter.mul_f64(self.rng.next_f64())
        };
        let mut at = now + shape.delay + jitter;
        if let Some(last) = self.last_release {
            at = at.max(last);
        }
        self.last_release = Some(at);
        Fate::ReleaseAt(at)
    }

    fn lost(&mut self, loss: &Loss) -> bool {
        match *loss {
            Loss::None => false,
            Loss::Random { fraction } => self.rng.next_f64() < fraction,
            Loss::Bursty {
                enter_bad,
                leave_bad,
                loss_in_bad,
            } => {
                // Move between the states first, then lose by the state's rate (a packet in the
                // good state is never lost).
                let roll = self.rng.next_f64();
                self.bad = if self.bad {
                    roll >= leave_bad
                } else {
                    roll < enter_bad
                };
                self.bad && self.rng.next_f64() < loss_in_bad
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape::default()
    }

    #[test]
    fn an_open_link_releases_at_once() {
        let mut imp = Impairment::new(1);
        let now = Instant::now();
        assert_eq!(imp.fate(&shape(), now), Fate::ReleaseAt(now));
    }

    #[test]
    fn delay_and_jitter_never_reorder() {
        let mut imp = Impairment::new(7);
        let s = Shape {
            delay: Duration::from_millis(40),
            jitter: Duration::from_millis(30),
            ..shape()
        };
        let t0 = Instant::now();
        let mut last = t0;
        let mut spread = (Duration::MAX, Duration::ZERO);
        for i in 0..1000 {
            let now = t0 + Duration::from_millis(10 * i);
            let Fate::ReleaseAt(at) = imp.fate(&s, now) else {
                panic!("nothing is lost here")
            };
            assert!(at >= last, "packet {i} reordered");
            assert!(at >= now + Duration::from_millis(40));
            let held = at - now;
            spread = (spread.0.min(held), spread.1.max(held));
            last = at;
        }
        assert!(spread.0 < Duration::from_millis(45), "{spread:?}");
        assert!(spread.1 > Duration::from_millis(60), "{spread:?}");
        assert!(spread.1 < Duration::from_millis(71), "{spread:?}");
    }

    #[test]
    fn random_loss_loses_its_fraction_and_replays_exactly() {
        let s = Shape {
            loss: Loss::Random { fraction: 0.03 },
            ..shape()
        };
        let now = Instant::now();
        let run = |seed| {
            let mut imp = Impairment::new(seed);
            (0..100_000)
                .map(|_| imp.fate(&s, now) == Fate::Lose)
                .collect::<Vec<_>>()
        };
        let a = run(42);
        let lost = a.iter().filter(|l| **l).count();
        assert!((2_700..3_300).contains(&lost), "{lost} of 100000");
        assert_eq!(a, run(42), "the same seed loses the same packets");
        assert_ne!(a, run(43));
    }

    #[test]
    fn bursty_loss_comes_in_runs() {
        // Bad 1% of the time on entry, leaving with 20%: runs of ~5 packets, all lost.
        let s = Shape {
            loss: Loss::Bursty {
                enter_bad: 0.01,
                leave_bad: 0.2,
                loss_in_bad: 1.0,
            },
            ..shape()
        };
        let mut imp = Impairment::new(9);
        let now = Instant::now();
        let fates: Vec<bool> = (0..100_000)
            .map(|_| imp.fate(&s, now) == Fate::Lose)
            .collect();
        let lost = fates.iter().filter(|l| **l).count();
        let runs = fates.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean_run = lost as f64 / runs as f64;
        // Stationary loss = p / (p + r) = 0.01 / 0.21, about 4.8 %.
        assert!((3_800..5_800).contains(&lost), "{lost}");
        assert!((3.5..6.5).contains(&mean_run), "mean run {mean_run}");
    }

    #[test]
    fn a_blackout_loses_everything() {
        let mut imp = Impairment::new(3);
        let s = Shape {
            blackout: true,
            ..shape()
        };
        let now = Instant::now();
        assert!((0..100).all(|_| imp.fate(&s, now) == Fate::Lose));
    }
}

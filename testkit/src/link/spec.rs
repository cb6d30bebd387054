//! What a link does, and how it changes over time: plain data, so a scenario is written once
//! and replays exactly.

use std::time::Duration;

/// One direction of the link at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The bottleneck's rate; `None`: not capped.
    pub rate_kbps: Option<u32>,
    /// Packets the bottleneck holds before it drops (a drop-tail FIFO, as in a modem).
    pub queue_packets: u32,
    /// Added one-way delay.
    pub delay: Duration,
    /// Added on top of `delay`, uniform in [0, jitter); packets are never reordered.
    pub jitter: Duration,
    pub loss: Loss,
    /// Nothing gets through.
    pub blackout: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            rate_kbps: None,
            queue_packets: 40,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: Loss::None,
            blackout: false,
        }
    }
}

impl Shape {
    /// A link capped at `kbps` with the default 40-packet queue (a cellular uplink in miniature).
    pub fn capped(kbps: u32) -> Self {
        Self {
            rate_kbps: Some(kbps),
            ..Self::default()
        }
    }

    pub fn blackout() -> Self {
        Self {
            blackout: true,
            ..Self::default()
        }
    }

    /// Whether packets need the userspace stage (delay, jitter, loss or a blackout).
    pub fn needs_stage(&self) -> bool {
        !self.delay.is_zero() || !self.jitter.is_zero() || self.loss != Loss::None || self.blackout
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    None,
    /// Each packet lost independently with this probability.
    Random {
        fraction: f64,
    },
    /// Gilbert-Elliott: from good to bad with `enter_bad`, back with `leave_bad` (per packet);
    /// in the bad state a packet is lost with `loss_in_bad`, in the good state never.
    Bursty {
        enter_bad: f64,
        leave_bad: f64,
        loss_in_bad: f64,
    },
}

/// The two directions, seen from the device under test.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Link {
    /// From the device (its media: the uplink of a camera).
    pub up: Shape,
    /// To the device (the viewers' feedback: RTCP, ICE checks).
    pub down: Shape,
}

impl Link {
    /// Only the device's uplink is shaped.
    pub fn uplink(up: Shape) -> Self {
        Self {
            up,
            down: Shape::default(),
        }
    }
}

/// A link that changes at given times after the start: `[(0 s, 4 Mbit/s), (20 s, 0.6 Mbit/s),
/// (40 s, 4 Mbit/s)]`. The first step should be at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub steps: Vec<(Duration, Link)>,
    /// Seeds the loss and jitter: the same seed replays the same packets' fates.
    pub seed: u64,
}

impl Scenario {
    /// One link for the whole run.
    pub fn steady(link: Link) -> Self {
        Self {
            steps: vec![(Duration::ZERO, link)],
            seed: 1,
        }
    }

    /// Adds a step at `at` (kept in time order).
    pub fn then(mut self, at: Duration, link: Link) -> Self {
        self.steps.push((at, link));
        self.steps.sort_by_key(|(at, _)| *at);
        self
    }

    /// The link in force at `elapsed`.
    pub fn at(&self, elapsed: Duration) -> &Link {
        self.steps
            .iter()
            .rev()
            .find(|(at, _)| *at <= elapsed)
            .or(self.steps.first())
            .map(|(_, link)| link)
            .expect("a scenario has at least one step")
    }

    pub fn needs_stage(&self) -> bool {
        self.steps
            .iter()
            .any(|(_, l)| l.up.needs_stage() || l.down.needs_stage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_says_which_link_holds_when() {
        let s = Scenario::steady(Link::uplink(Shape::capped(4_000)))
            .then(Duration::from_secs(40), Link::uplink(Shape::capped(4_000)))
            .then(Duration::from_secs(20), Link::uplink(Shape::capped(600)));
        assert_eq!(s.at(Duration::ZERO).up.rate_kbps, Some(4_000));
        assert_eq!(s.at(Duration::from_secs(19)).up.rate_kbps, Some(4_000));
        assert_eq!(s.at(Duration::from_secs(20)).up.rate_kbps, Some(600));
        assert_eq!(s.at(Duration::from_secs(41)).up.rate_kbps, Some(4_000));
        assert!(!s.needs_stage());
        let s = s.then(Duration::from_secs(50), Link::uplink(Shape::blackout()));
        assert!(s.needs_stage());
    }
}

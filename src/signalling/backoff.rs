//! Exponential backoff with jitter, as data: the caller passes the randomness in.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The next delay, scaled by `jitter` in `[0.5, 1.0]` so that many devices restarted by
    /// the same outage do not reconnect in lockstep.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let delay = self.next.mul_f64(jitter.clamp(0.5, 1.0));
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let delays: Vec<u128> = (0..7).map(|_| b.next_delay(1.0).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert_eq!(b.next_delay(0.5).as_millis(), 5000);
        b.reset();
        assert_eq!(b.next_delay(7.0).as_millis(), 500, "jitter is clamped");
    }
}

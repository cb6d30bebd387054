//! Coalescing of key-frame requests. Every joining viewer and every PLI/FIR asks for a key
//! frame; the shared encoder makes at most one per interval, and a request that arrives inside
//! the interval is kept and served when it ends, never dropped. Pure: time is passed in.

use std::time::{Duration, Instant};

/// The documented limit: at most one forced key frame per 500 ms across all viewers.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Force a key frame now.
    Now,
    /// One is already due at this instant; nothing more to do.
    At(Instant),
}

#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last: Option<Instant>,
    pending: Option<Instant>,
}

impl KeyframeThrottle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            pending: None,
        }
    }

    pub fn request(&mut self, now: Instant) -> Decision {
        if let Some(due) = self.pending {
            return Decision::At(due);
        }
        match self.last {
            Some(last) if now < last + self.interval => {
                let due = last + self.interval;
                self.pending = Some(due);
                Decision::At(due)
            }
            _ => {
                self.last = Some(now);
                Decision::Now
            }
        }
    }

    /// When a kept request is due, if one is.
    pub fn pending(&self) -> Option<Instant> {
        self.pending
    }

    /// Call at the instant a [`Decision::At`] named: true if the key frame is to be forced.
    pub fn fire_due(&mut self, now: Instant) -> bool {
        match self.pending {
            Some(due) if now >= due => {
                self.pending = None;
                self.last = Some(now);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_requests_within_the_interval_into_one_later_key_frame() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut k = KeyframeThrottle::new(MIN_INTERVAL);
        assert_eq!(k.request(t0), Decision::Now);
        assert_eq!(k.request(t0 + ms(100)), Decision::At(t0 + ms(500)));
        assert_eq!(k.request(t0 + ms(300)), Decision::At(t0 + ms(500)));
        assert!(!k.fire_due(t0 + ms(499)));
        assert!(k.fire_due(t0 + ms(500)));
        assert!(!k.fire_due(t0 + ms(501)), "fires once");
        assert_eq!(k.request(t0 + ms(600)), Decision::At(t0 + ms(1000)));
        assert!(k.fire_due(t0 + ms(1000)));
        assert_eq!(k.request(t0 + ms(1600)), Decision::Now);
    }
}

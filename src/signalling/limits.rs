//! How often one source may ask the rendezvous for a session: a token bucket per source
//! address, pure (time is passed in). Each `connect` makes the device build a viewer pipeline
//! and an offer; a stranger churning `connect`/`end` built 148 of them a second (a whole core)
//! before this limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Connects one source may make at once (a page reload, a few tabs, a test's burst of
/// viewers), and how fast its allowance comes back afterwards.
pub const CONNECT_BURST: u32 = 30;
pub const CONNECT_REFILL: Duration = Duration::from_secs(1);
/// Sources remembered at most; past that the fullest buckets (idle sources) are forgotten.
const MAX_SOURCES: usize = 4096;

/// The key a source is limited by: its IPv4 address, or the /64 of an IPv6 address (one
/// host usually holds a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct ConnectLimiter {
    burst: u32,
    refill: Duration,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Default for ConnectLimiter {
    fn default() -> Self {
        Self::new(CONNECT_BURST, CONNECT_REFILL)
    }
}

impl ConnectLimiter {
    pub fn new(burst: u32, refill: Duration) -> Self {
        Self {
            burst,
            refill,
            buckets: HashMap::new(),
        }
    }

    fn level(&self, bucket: Bucket, now: Instant) -> f64 {
        let earned =
            now.saturating_duration_since(bucket.at).as_secs_f64() / self.refill.as_secs_f64();
        (bucket.tokens + earned).min(f64::from(self.burst))
    }

    /// May `source` connect now? Takes one token when it may.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let key = source_key(source);
        let full = Bucket {
            tokens: f64::from(self.burst),
            at: now,
        };
        let tokens = self
            .buckets
            .get(&key)
            .map_or(f64::from(self.burst), |b| self.level(*b, now));
        if tokens < 1.0 {
            return false;
        }
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_SOURCES {
            self.forget_idle(now);
            if self.buckets.len() >= MAX_SOURCES {
                // More busy sources than we remember: this one goes unlimited rather than
                // the table growing without bound (whoever has that many addresses is not
                // stopped by a per-address limit anyway).
                return true;
            }
        }
        self.buckets.insert(
            key,
            Bucket {
                tokens: tokens - 1.0,
                ..full
            },
        );
        true
    }

    /// Drops the sources whose bucket has refilled: they are indistinguishable from new ones.
    fn forget_idle(&mut self, now: Instant) {
        let burst = f64::from(self.burst);
        let refill = self.refill;
        self.buckets.retain(|_, b| {
            let earned = now.saturating_duration_since(b.at).as_secs_f64() / refill.as_secs_f64();
            b.tokens + earned < burst
        });
    }

    pub fn sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_then_one_per_refill_period() {
        let mut limiter = ConnectLimiter::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!((0..3).all(|_| limiter.allow(a, t0)));
        assert!(!limiter.allow(a, t0));
        assert!(!limiter.allow(a, t0 + Duration::from_millis(900)));
        assert!(limiter.allow(a, t0 + Duration::from_millis(1000)));
        assert!(!limiter.allow(a, t0 + Duration::from_millis(1100)));
        // Another source has its own bucket.
        assert!(limiter.allow(ip("192.0.2.2"), t0));
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| limiter.allow(a, later)));
        assert!(!limiter.allow(a, later));
    }

    #[test]
    fn ipv6_sources_are_limited_by_their_64() {
        let mut limiter = ConnectLimiter::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(limiter.allow(ip("2001:db8:1:2::1"), t0));
        assert!(limiter.allow(ip("2001:db8:1:2::ffff"), t0));
        assert!(!limiter.allow(ip("2001:db8:1:2:abcd::9"), t0));
        assert!(limiter.allow(ip("2001:db8:1:3::1"), t0));
        assert_eq!(source_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn memory_stays_bounded_under_many_sources() {
        let mut limiter = ConnectLimiter::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            let source = IpAddr::from((0x0a00_0000u32 + i).to_be_bytes());
            limiter.allow(source, t0 + Duration::from_millis(u64::from(i)));
        }
        assert!(limiter.sources() <= MAX_SOURCES, "{}", limiter.sources());
    }
}

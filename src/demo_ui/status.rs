//! The live status the UI pushes: frame rate and bitrate measured at the capture chain's
//! output over a sliding window, and the viewer count. Pure: time is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::settings::Settings;

/// How often the status is sampled and pushed.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// The span rates are measured over: long enough to smooth a key frame (several times a delta
/// frame's size) and frame jitter, short enough that a change shows within a few seconds.
pub const WINDOW: Duration = Duration::from_secs(3);

/// Encoded video out of the capture chain so far (monotonic counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Output {
    pub frames: u64,
    pub bytes: u64,
}

/// What `/ws/status` pushes and `/api/status` answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// Encoded frames per second, to one decimal.
    pub fps: f64,
    /// Encoded bits per second / 1000.
    pub bitrate_kbps: u32,
    pub viewers: usize,
    pub settings: Settings,
    /// The settings this chain can change ([`Settings::supported`]).
    pub supported: Vec<&'static str>,
}

/// Rates over the samples of the last [`WINDOW`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub fps: f64,
    pub bitrate_kbps: f64,
}

#[derive(Debug)]
pub struct RateMeter {
    window: Duration,
    samples: VecDeque<(Instant, Output)>,
}

impl RateMeter {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            samples: VecDeque::new(),
        }
    }

    pub fn record(&mut self, now: Instant, output: Output) {
        // Counters only grow; if they did not, start over rather than report nonsense.
        if self
            .samples
            .back()
            .is_some_and(|(t, o)| now < *t || output.frames < o.frames || output.bytes < o.bytes)
        {
            self.samples.clear();
        }
        self.samples.push_back((now, output));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > self.window)
        {
            self.samples.pop_front();
        }
    }

    /// From the oldest sample in the window to the newest; zero until there are two.
    pub fn rates(&self) -> Rates {
        let (Some((t0, first)), Some((t1, last))) = (self.samples.front(), self.samples.back())
        else {
            return Rates::default();
        };
        let seconds = t1.duration_since(*t0).as_secs_f64();
        if seconds <= 0.0 {
            return Rates::default();
        }
        Rates {
            fps: (last.frames - first.frames) as f64 / seconds,
            bitrate_kbps: (last.bytes - first.bytes) as f64 * 8.0 / 1000.0 / seconds,
        }
    }
}

impl Status {
    /// The measured part of the status updated.
    pub fn measured(&mut self, rates: Rates, viewers: usize) {
        self.fps = (rates.fps * 10.0).round() / 10.0;
        // Rounded and clamped non-negative first, so the cast cannot truncate.
        self.bitrate_kbps = rates.bitrate_kbps.round().clamp(0.0, f64::from(u32::MAX)) as u32;
        self.viewers = viewers;
    }

    pub fn set_settings(&mut self, settings: Settings) {
        self.supported = settings.supported();
        self.settings = settings;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn rates_over_the_window() {
        let start = Instant::now();
        let mut meter = RateMeter::new(WINDOW);
        assert_eq!(meter.rates(), Rates::default());
        meter.record(start, Output::default());
        assert_eq!(meter.rates(), Rates::default(), "one sample is no rate");
        // 30 frames of 1000 bytes a second: 30 fps, 240 kbit/s.
        for s in 1..=10u64 {
            meter.record(
                at(start, s * 1000),
                Output {
                    frames: 30 * s,
                    bytes: 30_000 * s,
                },
            );
        }
        let r = meter.rates();
        assert!((r.fps - 30.0).abs() < 1e-9, "{r:?}");
        assert!((r.bitrate_kbps - 240.0).abs() < 1e-9, "{r:?}");
        assert_eq!(meter.samples.len(), 4, "only the last 3 s are kept");
    }

    #[test]
    fn a_change_shows_once_the_window_has_passed() {
        let start = Instant::now();
        let mut meter = RateMeter::new(WINDOW);
        let mut out = Output::default();
        for s in 0..=10u64 {
            // 2000 kbit/s for 5 s, then 500.
            let kbps = if s <= 5 { 2000 } else { 500 };
            out.bytes += kbps * 1000 / 8;
            out.frames += 30;
            meter.record(at(start, s * 1000), out);
        }
        let r = meter.rates();
        assert!((r.bitrate_kbps - 500.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn counters_that_go_backwards_start_over() {
        let start = Instant::now();
        let mut meter = RateMeter::new(WINDOW);
        meter.record(
            start,
            Output {
                frames: 100,
                bytes: 100,
            },
        );
        meter.record(
            at(start, 1000),
            Output {
                frames: 5,
                bytes: 5,
            },
        );
        assert_eq!(meter.rates(), Rates::default());
    }

    #[test]
    fn status_rounds_what_it_shows() {
        let mut status = Status::default();
        status.measured(
            Rates {
                fps: 29.96,
                bitrate_kbps: 1999.6,
            },
            2,
        );
        assert_eq!(
            (status.fps, status.bitrate_kbps, status.viewers),
            (30.0, 2000, 2)
        );
        let json = serde_json::to_value(&status).unwrap();
        for key in ["fps", "bitrate_kbps", "viewers", "settings", "supported"] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
    }
}

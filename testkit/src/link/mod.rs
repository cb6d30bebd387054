//! A link emulator for tests and benchmarks (the kernel here has `htb`, `tbf`, nftables and
//! NFQUEUE, not `netem`). It shapes only the device's media: UDP packets from and to the
//! device's ICE port range (`ice.port_min`..`ice.port_max`), on `lo` of the test's private
//! network namespace (`scripts/netns`), so page loads, signalling and a test's own connections
//! go untouched. Per direction: a rate cap with a drop-tail queue of a given depth (an HTB
//! class and a FIFO), and, in a userspace stage fed by NFQUEUE, added delay, jitter (never
//! reordering), random or bursty (Gilbert-Elliott) loss and blackouts. A `Scenario` changes the
//! link at given times, and its seed makes the same packets meet the same fates, so a run
//! replays exactly. Documented in docs/benchmarks.md ("The link emulator").
//!
//! ```no_run
//! # use std::time::Duration;
//! # use pipe_testkit::link::{Emulator, Link, Scenario, Shape};
//! // 4 Mbit/s, 0.6 Mbit/s at 20 s, 4 Mbit/s again at 40 s, and 3 s of nothing at 50 s.
//! let scenario = Scenario::steady(Link::uplink(Shape::capped(4_000)))
//!     .then(Duration::from_secs(20), Link::uplink(Shape::capped(600)))
//!     .then(Duration::from_secs(40), Link::uplink(Shape::capped(4_000)))
//!     .then(Duration::from_secs(50), Link::uplink(Shape::blackout()))
//!     .then(Duration::from_secs(53), Link::uplink(Shape::capped(4_000)));
//! let link = Emulator::start(50_000..=50_063, scenario)?;
//! // ... run the device with ice.port_min = 50000, ice.port_max = 50063 ...
//! drop(link); // everything is taken away again
//! # Ok::<(), pipe_testkit::link::LinkError>(())
//! ```

pub mod impair;
pub mod kernel;
pub mod spec;
mod stage;

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use kernel::Counters;
pub use spec::{Link, Loss, Scenario, Shape};
pub use stage::StageCounters;

use kernel::{DOWN_CLASS, UP_CLASS};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the link emulator shapes only a private network namespace: run through scripts/netns")]
    NotInNamespace,
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    #[error("the NFQUEUE stage: {0}")]
    Queue(String),
    #[error("a link emulator is already running in this namespace")]
    Busy,
}

/// At most one emulator per namespace: they would share `lo`'s root qdisc.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// A running emulated link; dropping it takes every rule away again.
pub struct Emulator {
    ports: RangeInclusive<u16>,
    stage: bool,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stage_counters: Arc<Mutex<stage::Shared>>,
    started: Instant,
    /// When each later step of the scenario took effect (the thread can be late on a busy
    /// machine: tests measure from these, not from the schedule).
    applied: Arc<Mutex<Vec<Instant>>>,
}

impl Emulator {
    /// Shapes the media of a device whose ICE ports are `ports`, by `scenario` from now on.
    pub fn start(ports: RangeInclusive<u16>, scenario: Scenario) -> Result<Self, LinkError> {
        if std::env::var_os("PIPE_NETNS").is_none() {
            return Err(LinkError::NotInNamespace);
        }
        if RUNNING.swap(true, Ordering::SeqCst) {
            return Err(LinkError::Busy);
        }
        let stage = scenario.needs_stage();
        let first = scenario.at(Duration::ZERO).clone();
        let mut emulator = Self {
            ports: ports.clone(),
            stage,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            stage_counters: Arc::new(Mutex::new(stage::Shared::default())),
            started: Instant::now(),
            applied: Arc::new(Mutex::new(Vec::new())),
        };
        // From here on, a failure drops `emulator`, which removes what was installed.
        kernel::install(&ports, &first.up, &first.down, stage)?;
        let link = Arc::new(Mutex::new(first));
        if stage {
            let stage =
                stage::Stage::open(link.clone(), emulator.stage_counters.clone(), scenario.seed)?;
            let stop = emulator.stop.clone();
            emulator.threads.push(
                std::thread::Builder::new()
                    .name("link-stage".into())
                    .spawn(move || stage.run(&stop))
                    .map_err(|e| LinkError::Queue(e.to_string()))?,
            );
        }
        if scenario.steps.len() > 1 {
            let stop = emulator.stop.clone();
            let started = emulator.started;
            let applied = emulator.applied.clone();
            emulator.threads.push(
                std::thread::Builder::new()
                    .name("link-scenario".into())
                    .spawn(move || play(&scenario, &link, started, &stop, &applied))
                    .map_err(|e| LinkError::Queue(e.to_string()))?,
            );
        }
        Ok(emulator)
    }

    /// What each direction's bottleneck sent and dropped so far.
    pub fn counters(&self) -> Result<(Counters, Counters), LinkError> {
        Ok((kernel::counters(UP_CLASS)?, kernel::counters(DOWN_CLASS)?))
    }

    /// What the userspace stage passed and lost so far (zero when it is not running).
    pub fn stage_counters(&self) -> (StageCounters, StageCounters) {
        let c = self
            .stage_counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        (c.up, c.down)
    }

    /// When the scenario's clock started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When each step after the first took effect, so far.
    pub fn applied(&self) -> Vec<Instant> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        kernel::remove(&self.ports, self.stage);
        RUNNING.store(false, Ordering::SeqCst);
    }
}

/// Applies each later step at its time: the rates and queues in the kernel, the rest for the
/// stage.
fn play(
    scenario: &Scenario,
    link: &Mutex<Link>,
    started: Instant,
    stop: &AtomicBool,
    applied: &Mutex<Vec<Instant>>,
) {
    for (at, next) in scenario.steps.iter().skip(1) {
        while started.elapsed() < *at {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep((*at - started.elapsed()).min(Duration::from_millis(10)));
        }
        let previous = std::mem::replace(
            &mut *link.lock().unwrap_or_else(|p| p.into_inner()),
            next.clone(),
        );
        // The stage acts on the new link from here; the kernel's rate a few ms later (tc).
        applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Instant::now());
        for (class, before, after) in [
            (UP_CLASS, &previous.up, &next.up),
            (DOWN_CLASS, &previous.down, &next.down),
        ] {
            if (before.rate_kbps, before.queue_packets) != (after.rate_kbps, after.queue_packets)
                && let Err(e) = kernel::set_class(class, after, "change")
            {
                eprintln!("link emulator: step at {at:?}: {e}");
            }
        }
    }
}

//! The userspace stage: packets the kernel queued (NFQUEUE) are lost or held for their delay
//! and jitter, then let go, in order. One thread, on a non-blocking netlink socket; it wakes at
//! least every half millisecond, which is its timing resolution.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nfq::{Message, Queue, Verdict};

use super::LinkError;
use super::impair::{Fate, Impairment};
use super::kernel::{DOWN_QUEUE, UP_QUEUE};
use super::spec::Link;

const TICK: Duration = Duration::from_micros(500);
/// Packets the kernel keeps for the stage (held ones count): 150 ms of a 20 Mbit/s stream.
const KERNEL_QUEUE: u32 = 4096;

/// Counts of what the stage did, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageCounters {
    pub passed: u64,
    pub lost: u64,
}

#[derive(Default)]
pub struct Shared {
    pub up: StageCounters,
    pub down: StageCounters,
}

pub struct Stage {
    queue: Queue,
    link: Arc<Mutex<Link>>,
    counters: Arc<Mutex<Shared>>,
    up: Direction,
    down: Direction,
}

struct Direction {
    impairment: Impairment,
    held: VecDeque<(Instant, Message)>,
}

impl Stage {
    pub fn open(
        link: Arc<Mutex<Link>>,
        counters: Arc<Mutex<Shared>>,
        seed: u64,
    ) -> Result<Self, LinkError> {
        let queue_error = |e: std::io::Error| LinkError::Queue(e.to_string());
        let mut queue = Queue::open().map_err(queue_error)?;
        for number in [UP_QUEUE, DOWN_QUEUE] {
            queue.bind(number).map_err(queue_error)?;
            queue
                .set_queue_max_len(number, KERNEL_QUEUE)
                .map_err(queue_error)?;
            // Full: pass packets rather than drop them (a test's own drops must be the link's).
            queue.set_fail_open(number, true).map_err(queue_error)?;
        }
        queue.set_nonblocking(true);
        Ok(Self {
            queue,
            link,
            counters,
            up: Direction {
                impairment: Impairment::new(seed),
                held: VecDeque::new(),
            },
            down: Direction {
                impairment: Impairment::new(seed.wrapping_add(1)),
                held: VecDeque::new(),
            },
        })
    }

    /// Runs until `stop`; then lets every held packet go.
    pub fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            loop {
                match self.queue.recv() {
                    Ok(message) => self.take(message),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        eprintln!("link emulator: the stage stops: {e}");
                        return;
                    }
                }
            }
            let now = Instant::now();
            self.release(now, false);
            let next = [&self.up, &self.down]
                .iter()
                .filter_map(|d| d.held.front().map(|(at, _)| *at))
                .min();
            let wait = next.map_or(TICK, |at| at.saturating_duration_since(now).min(TICK));
            std::thread::sleep(wait);
        }
        self.release(Instant::now(), true);
    }

    fn take(&mut self, mut message: Message) {
        let up = message.get_queue_num() == UP_QUEUE;
        let shape = {
            let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
            if up {
                link.up.clone()
            } else {
                link.down.clone()
            }
        };
        let direction = if up { &mut self.up } else { &mut self.down };
        let fate = direction.impairment.fate(&shape, Instant::now());
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let count = if up {
            &mut counters.up
        } else {
            &mut counters.down
        };
        match fate {
            Fate::Lose => {
                count.lost += 1;
                message.set_verdict(Verdict::Drop);
                let _ = self.queue.verdict(message);
            }
            Fate::ReleaseAt(at) => {
                count.passed += 1;
                direction.held.push_back((at, message));
            }
        }
    }

    fn release(&mut self, now: Instant, all: bool) {
        for direction in [&mut self.up, &mut self.down] {
            while direction
                .held
                .front()
                .is_some_and(|(at, _)| all || *at <= now)
            {
                let (_, mut message) = direction.held.pop_front().expect("checked");
                message.set_verdict(Verdict::Accept);
                let _ = self.queue.verdict(message);
            }
        }
    }
}

//! The link emulator (testkit/src/link) does what benchmarks rely on, measured with plain UDP
//! through the real kernel parts: a cap delivers its rate and drops the rest at its queue,
//! only the device's ports are shaped, delay and jitter hold packets without reordering them,
//! loss replays exactly from its seed, and a scenario's steps (a blackout) land on time.

mod support;

use std::net::UdpSocket;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pipe_testkit::link::{Emulator, Link, Loss, Scenario, Shape};

/// The "device" ports the emulator shapes; the receivers use ports outside it.
const PORTS: std::ops::RangeInclusive<u16> = 47_000..=47_063;
const PACKET: usize = 1_200;

/// One emulator per namespace, so one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What arrived: for each packet received, its sequence number and one-way delay.
struct Arrivals {
    sent: u64,
    got: Vec<(u64, Duration)>,
}

/// Sends `kbps` of `PACKET`-byte UDP packets for `secs` from `from_port` to a receiver on an
/// unshaped port; returns what arrived. Each packet carries its number and its send time.
fn stream(from_port: u16, kbps: u32, secs: f64) -> (Arrivals, Vec<(u64, Duration)>) {
    let (arrivals, arrived_at, _) = stream_with_epoch(from_port, kbps, secs);
    (arrivals, arrived_at)
}

/// `stream`, and the instant its times count from.
fn stream_with_epoch(
    from_port: u16,
    kbps: u32,
    secs: f64,
) -> (Arrivals, Vec<(u64, Duration)>, Instant) {
    let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let to = receiver.local_addr().unwrap();
    let epoch = Instant::now();
    let sender = std::thread::spawn(move || {
        let socket = UdpSocket::bind(("127.0.0.1", from_port)).unwrap();
        let interval = Duration::from_secs_f64((PACKET * 8) as f64 / (kbps as f64 * 1_000.0));
        let count = (secs / interval.as_secs_f64()) as u64;
        let mut packet = vec![0u8; PACKET];
        for seq in 0..count {
            let due = epoch + interval * seq as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            packet[..8].copy_from_slice(&seq.to_be_bytes());
            let sent_at = epoch.elapsed().as_nanos() as u64;
            packet[8..16].copy_from_slice(&sent_at.to_be_bytes());
            // A full queue may refuse a packet (ENOBUFS): that is the link dropping it.
            let _ = socket.send_to(&packet, to);
        }
        count
    });
    let mut got = Vec::new();
    let mut arrived_at = Vec::new();
    let mut buf = vec![0u8; 2_048];
    loop {
        match receiver.recv(&mut buf) {
            Ok(n) if n >= 16 => {
                let now = epoch.elapsed();
                let seq = u64::from_be_bytes(buf[..8].try_into().unwrap());
                let sent = Duration::from_nanos(u64::from_be_bytes(buf[8..16].try_into().unwrap()));
                got.push((seq, now - sent));
                arrived_at.push((seq, now));
            }
            Ok(_) => {}
            Err(_) if sender.is_finished() => break,
            Err(_) => {}
        }
    }
    let sent = sender.join().unwrap();
    (Arrivals { sent, got }, arrived_at, epoch)
}

fn rate_between(arrived_at: &[(u64, Duration)], from: f64, to: f64) -> f64 {
    let n = arrived_at
        .iter()
        .filter(|(_, at)| at.as_secs_f64() >= from && at.as_secs_f64() < to)
        .count();
    (n * PACKET * 8) as f64 / (to - from) / 1_000.0
}

#[test]
fn a_capped_uplink_delivers_its_rate_and_drops_the_rest_and_shapes_only_the_device() {
    support::netns::require_loopback_only();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let link =
        Emulator::start(PORTS, Scenario::steady(Link::uplink(Shape::capped(1_000)))).unwrap();
    // The device's port and another one, at once, each at 2 Mbit/s.
    let other = std::thread::spawn(|| stream(46_000, 2_000, 3.0));
    let (shaped, shaped_at) = stream(*PORTS.start(), 2_000, 3.0);
    let (free, free_at) = other.join().unwrap();
    let (up, _) = link.counters().unwrap();
    let shaped_kbps = rate_between(&shaped_at, 1.0, 3.0);
    let free_kbps = rate_between(&free_at, 1.0, 3.0);
    println!(
        "  capped at 1000 kbit/s: {shaped_kbps:.0} kbit/s through, {} of {} packets lost, \
         {} dropped at the 40-packet queue; unshaped port: {free_kbps:.0} kbit/s",
        shaped.sent - shaped.got.len() as u64,
        shaped.sent,
        up.dropped
    );
    assert!((900.0..1_100.0).contains(&shaped_kbps), "{shaped_kbps}");
    assert!(up.dropped > 100, "{up:?}");
    assert!(
        free_kbps > 1_800.0,
        "the other port was shaped too: {free_kbps}"
    );
    assert_eq!(
        free.got.len() as u64,
        free.sent,
        "the other port lost packets"
    );
    // The queue bounds the delay: 40 packets of 1200 bytes at 1 Mbit/s is ~400 ms.
    let worst = shaped.got.iter().map(|(_, d)| *d).max().unwrap();
    assert!(worst < Duration::from_millis(480), "{worst:?}");
}

#[test]
fn delay_and_jitter_hold_packets_without_reordering_them() {
    support::netns::require_loopback_only();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let shape = Shape {
        delay: Duration::from_millis(40),
        jitter: Duration::from_millis(10),
        ..Shape::default()
    };
    let link = Emulator::start(PORTS, Scenario::steady(Link::uplink(shape))).unwrap();
    let (arrivals, _) = stream(*PORTS.start(), 500, 2.0);
    drop(link);
    let delays: Vec<Duration> = arrivals.got.iter().map(|(_, d)| *d).collect();
    let min = delays.iter().min().unwrap();
    let max = delays.iter().max().unwrap();
    println!("  40 ms + 10 ms jitter: one-way {min:?} to {max:?}");
    assert_eq!(arrivals.got.len() as u64, arrivals.sent, "nothing is lost");
    assert!(
        arrivals.got.windows(2).all(|w| w[0].0 < w[1].0),
        "packets were reordered"
    );
    assert!(*min >= Duration::from_millis(40), "{min:?}");
    assert!(*max < Duration::from_millis(58), "{max:?}");
}

#[test]
fn loss_replays_exactly_from_its_seed() {
    support::netns::require_loopback_only();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let lossy = || {
        let shape = Shape {
            loss: Loss::Random { fraction: 0.1 },
            ..Shape::default()
        };
        let link = Emulator::start(PORTS, Scenario::steady(Link::uplink(shape))).unwrap();
        let (arrivals, _) = stream(*PORTS.start(), 1_500, 2.0);
        let (up, _) = link.stage_counters();
        drop(link);
        let got: Vec<u64> = arrivals.got.iter().map(|(seq, _)| *seq).collect();
        (arrivals.sent, got, up)
    };
    let (sent, first, counted) = lossy();
    let (_, second, _) = lossy();
    let lost = sent - first.len() as u64;
    println!("  10 % random loss: {lost} of {sent} lost; the same packets both times");
    assert!((sent / 20..sent / 5).contains(&lost), "{lost} of {sent}");
    assert_eq!(counted.lost, lost);
    assert_eq!(first, second, "the same seed must lose the same packets");
}

#[test]
fn a_scenario_blacks_the_link_out_on_time_and_brings_it_back() {
    support::netns::require_loopback_only();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let scenario = Scenario::steady(Link::uplink(Shape::capped(2_000)))
        .then(Duration::from_secs(1), Link::uplink(Shape::blackout()))
        .then(Duration::from_secs(2), Link::uplink(Shape::capped(300)));
    let link = Emulator::start(PORTS, scenario).unwrap();
    let (_, arrived_at, epoch) = stream_with_epoch(*PORTS.start(), 600, 3.0);
    // Measured from when the steps took effect (on a busy machine the thread can be late),
    // in the stream's time (which starts a little after the emulator's).
    let applied: Vec<f64> = link
        .applied()
        .iter()
        .map(|t| t.saturating_duration_since(epoch).as_secs_f64())
        .collect();
    let late = [applied[0] - 1.0, applied[1] - 2.0];
    drop(link);
    let (dark, light) = (applied[0], applied[1]);
    let before = rate_between(&arrived_at, 0.2, 0.95);
    // A packet that left just before the blackout may still arrive 10 ms into it.
    let during = rate_between(&arrived_at, dark + 0.05, light);
    let after = rate_between(&arrived_at, light + 0.3, 3.0);
    println!(
        "  600 kbit/s offered: {before:.0} kbit/s, blackout {during:.0}, then capped at 300: \
         {after:.0} (steps took effect at {:.0} and {:.0} ms from their times)",
        late[0] * 1000.0,
        late[1] * 1000.0
    );
    assert!(before > 540.0, "{before}");
    assert_eq!(during, 0.0);
    assert!((250.0..340.0).contains(&after), "{after}");
}

#[test]
fn one_emulator_at_a_time_and_it_leaves_nothing_behind() {
    support::netns::require_loopback_only();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    {
        let _link = Emulator::start(
            PORTS,
            Scenario::steady(Link::uplink(Shape {
                delay: Duration::from_millis(5),
                ..Shape::capped(1_000)
            })),
        )
        .unwrap();
        assert!(matches!(
            Emulator::start(PORTS, Scenario::steady(Link::default())),
            Err(pipe_testkit::link::LinkError::Busy)
        ));
    }
    let qdisc = std::process::Command::new("tc")
        .args(["qdisc", "show", "dev", "lo"])
        .output()
        .unwrap();
    let qdisc = String::from_utf8_lossy(&qdisc.stdout);
    assert!(!qdisc.contains("htb"), "left behind: {qdisc}");
    let rules = std::process::Command::new("iptables-save")
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains("NFQUEUE"), "left behind: {rules}");
    // And a second one can start.
    drop(Emulator::start(PORTS, Scenario::steady(Link::default())).unwrap());
}

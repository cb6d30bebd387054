//! A viewer without TWCC behind a narrow uplink (issue 13). aiortc sends no transport-wide
//! congestion control feedback, only RTCP receiver reports; the device steers such a viewer by
//! those (loss, and the round trip's growth: `adapt::estimator`), so the shared encoder goes
//! below the link and aiortc keeps decoding. Before, such a viewer had no vote: the encoder
//! stayed at its configured 2 Mbit/s and the 1 Mbit/s link's queue overflowed for good.
//!
//! scripts/test makes the venv (tests/aiortc/requirements.txt) and sets PIPE_AIORTC_PYTHON.

mod support;

use pipe_testkit::link::{Emulator, Link, Scenario, Shape};
use support::device::{ConfigFile, Device, ice_ports};

const PORTS: std::ops::RangeInclusive<u16> = 47_300..=47_363;

#[test]
fn a_viewer_without_twcc_behind_a_1_mbit_uplink_brings_the_encoder_below_the_link() {
    support::netns::require_loopback_only();
    // The link first, so the first packets already meet it.
    let link =
        Emulator::start(PORTS, Scenario::steady(Link::uplink(Shape::capped(1_000)))).unwrap();
    let config = ConfigFile::new(&ice_ports(&PORTS)).unwrap();
    let device =
        Device::test_picture(1280, 720, &["--bitrate", "2000", "--config", config.arg()]).unwrap();
    let secret = device
        .claim_secret()
        .expect("a new device has a claim link");
    // 20 s of a 30 fps picture at most: receiver reports come about once a second, and each
    // can cut the estimate by a few percent to a quarter.
    let (_, report) = support::aiortc::view(&device, &secret, 600, 20);
    let log = device.log();
    let (up, _) = link.counters().unwrap();
    let lowest = log
        .lines()
        .filter(|l| l.contains("encoder bitrate follows the viewers' links"))
        .filter_map(|l| l.split("kbps=").nth(1)?.trim().parse::<u32>().ok())
        .min();
    println!(
        "  aiortc behind 1 Mbit/s: {} frames decoded; the encoder went down to {lowest:?} \
         kbit/s; the link sent {} packets and dropped {}",
        report["frames"], up.sent_packets, up.dropped
    );
    match lowest {
        Some(kbps) if kbps < 1_000 => {}
        other => panic!(
            "the encoder did not go below the link for a viewer without TWCC: {other:?}\n\
             aiortc: {report}\n--- device ---\n{log}"
        ),
    }
    // It kept watching: the picture got through, not just the votes.
    let frames = report["frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= 60,
        "aiortc decoded only {frames} frames: {report}\n--- device ---\n{log}"
    );
    assert_eq!(report["access"]["role"], "owner", "{report}");
    drop(link);
    device.stop().unwrap();
}

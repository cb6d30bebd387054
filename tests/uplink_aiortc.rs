//! A viewer without TWCC behind a narrow uplink (issue 13). aiortc sends no transport-wide
//! congestion control feedback, only RTCP receiver reports; the device steers such a viewer by
//! those (loss, and the round trip's growth: `adapt::estimator`), so the shared encoder goes
//! below the link and aiortc keeps decoding. Before, such a viewer had no vote: the encoder
//! stayed at its configured 2 Mbit/s and the 1 Mbit/s link's queue overflowed for good.
//!
//! scripts/test makes the venv (tests/aiortc/requirements.txt) and sets PIPE_AIORTC_PYTHON.

mod support;

use std::process::Command;

use pipe_testkit::link::{Emulator, Link, Scenario, Shape};
use support::device::{ConfigFile, Device, ice_ports};

const PORTS: std::ops::RangeInclusive<u16> = 47_300..=47_363;

fn python() -> String {
    std::env::var("PIPE_AIORTC_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PIPE_AIORTC_PYTHON is not set: run scripts/test, which makes the aiortc venv \
             (tests/aiortc/requirements.txt) and sets it"
        )
    })
}

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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aiortc/viewer.py");
    // 20 s of a 30 fps picture at most: receiver reports come about once a second, and each
    // can cut the estimate by a few percent to a quarter.
    let output = Command::new(python())
        .args([
            script,
            &device.signal_url(),
            &device.device_id,
            &secret,
            "600",
            "20",
        ])
        .output()
        .expect("run the aiortc viewer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let log = device.log();
    let report: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report from the aiortc viewer:\n{stdout}\n{}\n--- device ---\n{log}",
                String::from_utf8_lossy(&output.stderr),
            )
        });
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

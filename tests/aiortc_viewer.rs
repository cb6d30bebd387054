//! aiortc (Python, a WebRTC stack no one here wrote) as an honest viewer: it answers the
//! device's offer with its own SDP (three fingerprints, inline candidates), claims the device
//! over the `control` channel and decodes video. Interop with a non-browser stack, and the
//! answer checks (media/sdp/remote.rs) passing what a real third-party answerer writes.
//!
//! scripts/test makes the venv (tests/aiortc/requirements.txt) and sets PIPE_AIORTC_PYTHON.

mod support;

use std::process::Command;
use std::time::Duration;

use support::device::Device;

fn python() -> String {
    std::env::var("PIPE_AIORTC_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PIPE_AIORTC_PYTHON is not set: run scripts/test, which makes the aiortc venv \
             (tests/aiortc/requirements.txt) and sets it"
        )
    })
}

#[test]
fn aiortc_claims_the_device_and_decodes_its_video() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(320, 240, &["--bitrate", "300"]).unwrap();
    let secret = device
        .claim_secret()
        .expect("a new device has a claim link");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aiortc/viewer.py");
    let output = Command::new(python())
        .args([
            script,
            &device.signal_url(),
            &device.device_id,
            &secret,
            "60",
            "30",
        ])
        .output()
        .expect("run the aiortc viewer");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report from the aiortc viewer:\n{stdout}\n{}\n--- device ---\n{}",
                String::from_utf8_lossy(&output.stderr),
                device.log()
            )
        });
    println!("  aiortc: {report}");
    assert!(
        output.status.success(),
        "aiortc decoded too little: {report}\n{}\n--- device ---\n{}",
        String::from_utf8_lossy(&output.stderr),
        device.log()
    );
    assert_eq!(
        (report["width"].as_u64(), report["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(report["access"]["role"], "owner", "{report}");
    // The device saw a claim from a certificate that is not a browser's, and kept serving.
    std::thread::sleep(Duration::from_millis(200));
    assert!(!device.log().contains("panicked"));
}

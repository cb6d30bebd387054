//! aiortc (Python, a WebRTC stack no one here wrote) as an honest viewer: it answers the
//! device's offer with its own SDP (three fingerprints, inline candidates), claims the device
//! over the `control` channel and decodes video. Interop with a non-browser stack, and the
//! answer checks (media/sdp/remote.rs) passing what a real third-party answerer writes.
//!
//! scripts/test makes the venv (tests/aiortc/requirements.txt) and sets PIPE_AIORTC_PYTHON.

mod support;

use std::time::Duration;

use support::device::Device;

#[test]
fn aiortc_claims_the_device_and_decodes_its_video() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(320, 240, &["--bitrate", "300"]).unwrap();
    let secret = device
        .claim_secret()
        .expect("a new device has a claim link");
    let (output, report) = support::aiortc::view(&device, &secret, 60, 30);
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

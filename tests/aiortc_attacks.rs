//! The hostile-input attacks made by aiortc (tests/aiortc/attacker.py), a WebRTC stack no one
//! here wrote, with real DTLS and SCTP, one after another against one running device, which
//! must survive them all and keep serving: an answer with its m-sections reversed (it aborted
//! webrtcbin 1.22), a stranger guessing the claim secret, a stranger opening the proxy's
//! channels, and (once it has claimed) an owner moving its grant onto a key it does not hold.
//!
//! scripts/test makes the venv (tests/aiortc/requirements.txt) and sets PIPE_AIORTC_PYTHON.

mod support;

use serde_json::Value;
use support::device::Device;

fn attack(device: &Device, mode: &str, secret: &str) -> Value {
    let args = [mode, &device.signal_url(), &device.device_id, secret];
    let (_, report) = support::aiortc::run("attacker.py", &args, device);
    println!("  {mode}: {report}");
    report
}

fn messages<'a>(report: &'a Value, kind: &str) -> Vec<&'a Value> {
    report["control"]
        .as_array()
        .map(|all| all.iter().filter(|m| m["type"] == kind).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_survives_aiortc_attacking_it() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(320, 240, &["--bitrate", "300"]).unwrap();
    let secret = device
        .claim_secret()
        .expect("a new device has a claim link");
    let log = |what: String| format!("{what}\n--- device ---\n{}", device.log());

    // The answer that aborted webrtcbin: refused, the session ended, the device alive.
    let reorder = attack(&device, "reorder", "");
    assert_eq!(
        reorder["ended"]["type"],
        "end",
        "{}",
        log(format!("{reorder}"))
    );
    assert_eq!(reorder["frames"], 0);
    assert_eq!(device.status().await["pipeline"], "virtual-webcam");

    // Guessing claim secrets: three tries on a session, then refusals; closed after 10 s.
    let guess = attack(&device, "guess", "");
    let errors = messages(&guess, "error");
    assert_eq!(errors.len(), 8, "{}", log(format!("{guess}")));
    let tries = errors
        .iter()
        .filter(|e| e["message"].as_str().unwrap_or("").contains("attempts"))
        .count();
    assert_eq!(tries, 5, "only three attempts a session: {guess}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("wrong"),
        "an unclaimed device refuses a wrong secret: {guess}"
    );
    assert_eq!(guess["frames"], 0);
    assert!(
        guess["timed_out"].is_null(),
        "the stranger was not closed: {guess}"
    );

    // A stranger opening the proxy's channels: nothing served, no media, closed.
    let channels = attack(&device, "channels", "");
    assert_eq!(channels["frames"], 0, "{channels}");
    assert!(
        channels["timed_out"].is_null(),
        "the stranger was not closed: {channels}"
    );
    assert!(
        messages(&channels, "access")[0]["role"].is_null(),
        "{channels}"
    );
    let closed = channels["closed_by_device"].as_array().map_or(0, Vec::len);
    assert_eq!(
        closed, 3,
        "the device must close a stranger's channels: {channels}"
    );

    // Last (it claims the device): an owner renews onto a fingerprint whose key it does not hold: nothing moves.
    let renew = attack(&device, "renew", &secret);
    let grants = messages(&renew, "grants");
    let own = renew["own"].as_str().expect("aiortc's own fingerprint");
    assert_eq!(
        grants[0]["grants"][0]["fingerprint"].as_str(),
        Some(&own[..11]),
        "{}",
        log(format!("the grant moved to an unproven key: {renew}"))
    );
    assert!(
        renew["frames_after_renew"].as_u64().unwrap_or(0) > 0,
        "{}",
        log(format!("the owner's video stopped: {renew}"))
    );

    let status = device.status().await;
    assert_eq!(status["pipeline"], "virtual-webcam", "{status}");
    assert!(!device.log().contains("panicked"));
}

//! Claim secrets, invite tokens and private keys never reach the logs, the audit log or the
//! grants file, whatever happens: a claim, a failed claim, a lend, a redeem, a replay.

mod support;

use std::sync::Arc;
use std::time::Duration;

use pipe::signalling::protocol::DeviceId;
use pipe_testkit::receiver::{self, Options, PeerIdentity};
use support::device::Device;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_logs() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(320, 240, &[]).unwrap();
    let id = DeviceId::parse(&device.device_id).unwrap();
    let claim = device
        .claim_secret()
        .expect("a new device prints its claim link");
    let url = device.signal_url();
    let connect = |options| receiver::connect(&url, id.clone(), options);

    // A wrong claim first (it is logged as refused), then the real one.
    let intruder = connect(
        Options::new(Arc::new(PeerIdentity::generate().unwrap()), false)
            .claim("wrong-secret-guess"),
    )
    .await
    .unwrap();
    let owner = connect(device.owner(false)).await.unwrap();
    owner
        .wait_for(Duration::from_secs(15), |s| s.frames > 5)
        .await
        .expect("the owner watches");
    owner.control(r#"{"type":"lend","scope":"view","secs":900}"#);
    let lent = owner
        .wait_for(Duration::from_secs(10), |s| {
            s.control.iter().any(|m| m.contains(r#""type":"lent""#))
        })
        .await
        .expect("a lend link");
    let link = lent
        .control
        .iter()
        .find(|m| m.contains(r#""type":"lent""#))
        .unwrap()
        .clone();
    let token = link
        .split("&invite=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let borrower =
        connect(Options::new(Arc::new(PeerIdentity::generate().unwrap()), false).redeem(&token))
            .await
            .unwrap();
    borrower
        .wait_for(Duration::from_secs(15), |s| s.frames > 5)
        .await
        .expect("the borrower watches");
    let replay =
        connect(Options::new(Arc::new(PeerIdentity::generate().unwrap()), false).redeem(&token))
            .await
            .unwrap();
    replay
        .wait_for(Duration::from_secs(10), |s| {
            s.control.iter().any(|m| m.contains("error"))
        })
        .await
        .expect("refused");
    for viewer in [intruder, owner, borrower, replay] {
        viewer.close().await;
    }
    let state = device.state_dir().to_owned();
    let key = std::fs::read_to_string(state.join("device-key.pem")).unwrap();
    let audit = std::fs::read_to_string(state.join("audit.log")).unwrap();
    let grants = std::fs::read_to_string(state.join("grants.json")).unwrap();
    let logs = device.logger_output();
    drop(device);

    let key_lines: Vec<&str> = key
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .collect();
    assert!(!key_lines.is_empty());
    assert!(
        logs.contains("invite redeemed") && audit.contains("borrowed"),
        "the flows ran:\n{logs}"
    );
    for (name, text) in [
        ("the log", &logs),
        ("audit.log", &audit),
        ("grants.json", &grants),
    ] {
        for (what, secret) in [
            ("claim secret", claim.as_str()),
            ("invite token", token.as_str()),
            ("wrong guess", "wrong-secret-guess"),
        ] {
            assert!(!text.contains(secret), "{name} contains the {what}");
        }
        for line in &key_lines {
            assert!(!text.contains(line), "{name} contains the private key");
        }
    }
}

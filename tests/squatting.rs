//! Device-id squatting on a standalone `pipe rendezvous`: `register` used to need no proof, and
//! a squatter registered a device's id 52 times in 20 s, each time ending the device's sessions
//! and receiving its viewers' answers. Now a registration proves the device's key, for this
//! rendezvous and this connection (`signalling::proof`); the squatter is refused and the device
//! keeps its id and its viewers.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::device::Device;
use support::raw::Raw;
use support::rendezvous::Rendezvous;

fn device_on(url: &str) -> Device {
    Device::test_picture(320, 240, &["--bitrate", "300", "--rendezvous", url]).unwrap()
}

/// Waits until a viewer's `connect` to `device_id` at `url` is answered with a session.
async fn reachable(url: &str, device_id: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let mut viewer = Raw::open(url).await;
        viewer
            .send_json(json!({"type": "connect", "device_id": device_id}))
            .await;
        match viewer.next(Duration::from_secs(5)).await {
            Ok(m) if m["type"] == "session" => return Ok(()),
            Ok(m) if Instant::now() > deadline => return Err(format!("{m}")),
            Err(e) if Instant::now() > deadline => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatter_cannot_register_a_device_id() {
    support::netns::require_loopback_only();
    let rendezvous = Rendezvous::start().unwrap();
    let device = device_on(&rendezvous.url);
    let me = device.device_id.clone();
    let log = |what: &str| format!("{what}\n--- device log ---\n{}", device.log());
    if let Err(e) = reachable(&rendezvous.url, &me, Duration::from_secs(10)).await {
        panic!("{}", log(&format!("the device never registered: {e}")));
    }

    // A viewer in a session with the device, which a squatter's registration used to end.
    let mut viewer = Raw::open(&rendezvous.url).await;
    let session = viewer.connect_until_offer(&me).await;

    let mut squatter = Raw::open(&rendezvous.url).await;
    let forged = json!({
        "certificate": "MIIBkTCCATegAwIBAgIUQ",
        "counter": 1,
        "signature": "MEUCIQ",
    });
    for (what, register) in [
        ("no proof", json!({"type": "register", "device_id": me})),
        (
            "a forged proof",
            json!({"type": "register", "device_id": me, "proof": forged}),
        ),
    ] {
        for _ in 0..20 {
            squatter.send_json(register.clone()).await;
            let refused = squatter.expect_error("not-allowed", what).await;
            assert!(
                refused["message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot register"),
                "{refused}"
            );
        }
    }
    println!("  40 squatting registrations refused with not-allowed");

    // The device kept its id and its session: the viewer's session is alive (a `ping` on it is
    // answered, and no `end` came), and a new viewer still reaches the device.
    squatter.ping_pong().await;
    viewer.ping_pong().await;
    viewer
        .send_json(json!({"type": "end", "session_id": session}))
        .await;
    if let Err(e) = reachable(&rendezvous.url, &me, Duration::from_secs(5)).await {
        panic!("{}", log(&format!("the device lost its id: {e}")));
    }
    assert!(
        !device.log().contains("replaced by another registration"),
        "{}",
        log("the device was replaced")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_signed_for_the_public_url() {
    support::netns::require_loopback_only();
    // A rendezvous that says it is reached as another host: the device dials 127.0.0.1, so
    // its proof names 127.0.0.1:PORT and is refused (what a relaying rendezvous gets).
    let elsewhere =
        Rendezvous::start_with(&["--public-url", "wss://relay.example/signal"]).unwrap();
    match Device::test_picture(320, 240, &["--rendezvous", &elsewhere.url]) {
        Ok(device) => panic!(
            "registered with a proof for another host:\n{}",
            device.log()
        ),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("the rendezvous refused the registration"),
                "the device does not say why it is offline:\n{text}"
            );
        }
    }

    // The same with the public URL the device does dial: registered.
    let probe = Rendezvous::start().unwrap();
    let port = probe.port;
    drop(probe);
    let public = format!("ws://127.0.0.1:{port}/signal");
    let here = Rendezvous::start_with(&["--port", &port.to_string(), "--public-url", &public]);
    let Ok(here) = here else {
        // The freed port was taken in between: nothing to conclude.
        return;
    };
    let device = device_on(&here.url);
    if let Err(e) = reachable(&here.url, &device.device_id, Duration::from_secs(10)).await {
        panic!(
            "not registered with the right public URL: {e}\n{}",
            device.log()
        );
    }
}

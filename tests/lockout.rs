//! A stranger who knows the device id tries to keep the owner out (issue: "a stranger takes
//! every viewer slot"): two sockets x 8 `connect`s that never answer used to hold all 16 slots
//! for 30 s, and connect/end churn built a pipeline for every `connect`. Now the owner gets
//! video while the stranger keeps trying, parked sessions end within the answer deadline, and
//! one address's `connect`s are rate-limited at the rendezvous.

mod support;

use std::time::{Duration, Instant};

use pipe::signalling::protocol::DeviceId;
use pipe_testkit::receiver;
use serde_json::json;
use support::device::Device;
use support::raw::Raw;

/// The device's answer deadline (session::machine, `ANSWER_TIMEOUT`) plus the time to tear a pipeline down.
const PARKED_GONE: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_keep_the_owner_out() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(320, 240, &["--bitrate", "300"]).unwrap();
    let id = DeviceId::parse(&device.device_id).unwrap();
    let url = device.signal_url();
    let log = |what: &str| format!("{what}\n--- device log ---\n{}", device.log());

    // Two sockets, eight connects each, no answers: every one of them gets an offer (the
    // device evicts the oldest parked session for each new one).
    // The stranger is another machine than the owner's (127.0.0.1).
    let from = std::net::Ipv4Addr::new(127, 0, 66, 1);
    let mut strangers = vec![
        Raw::open_from(&url, from).await,
        Raw::open_from(&url, from).await,
    ];
    let mut parked = 0;
    for stranger in &mut strangers {
        for _ in 0..8 {
            stranger
                .send_json(json!({"type": "connect", "device_id": device.device_id}))
                .await;
            parked += 1;
        }
    }
    assert_eq!(parked, 16);
    let pipelines = device.status().await["viewer_pipelines"].as_u64().unwrap();
    assert!(pipelines <= 16, "{pipelines}");

    // The owner connects while the stranger's sessions are parked, and watches.
    let started = Instant::now();
    let owner = receiver::connect(&url, id.clone(), device.owner(false))
        .await
        .unwrap();
    if let Err(s) = owner
        .wait_for(Duration::from_secs(10), |s| s.frames >= 30)
        .await
    {
        panic!(
            "{}",
            log(&format!("the owner got no video past the stranger: {s:?}"))
        );
    }
    println!(
        "  owner receiving {} ms after connecting, 16 stranger connects parked",
        started.elapsed().as_millis()
    );

    // More parked connects from the stranger do not push the owner out.
    for stranger in &mut strangers {
        for _ in 0..8 {
            stranger
                .send_json(json!({"type": "connect", "device_id": device.device_id}))
                .await;
        }
    }
    let before = owner.stats().frames;
    if let Err(s) = owner
        .wait_for(Duration::from_secs(5), |s| s.frames >= before + 60)
        .await
    {
        panic!(
            "{}",
            log(&format!("the owner stalled under parked connects: {s:?}"))
        );
    }

    // Parked sessions end on their own within the answer deadline: only the owner's is left.
    let deadline = Instant::now() + PARKED_GONE;
    loop {
        let status = device.status().await;
        if status["viewer_pipelines"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            log(&format!(
                "parked sessions still there after {PARKED_GONE:?}: {status}"
            ))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("  parked sessions gone, owner still watching");

    // Churn from one address: connects beyond the rendezvous's burst are refused there,
    // before the device builds anything.
    let mut churner = Raw::open_from(&url, from).await;
    let mut refused = 0;
    let mut sessions = 0;
    for _ in 0..60 {
        churner
            .send_json(json!({"type": "connect", "device_id": device.device_id}))
            .await;
        loop {
            let message = churner.next(Duration::from_secs(5)).await.unwrap();
            match message["type"].as_str() {
                Some("session") => {
                    sessions += 1;
                    let sid = message["session_id"].clone();
                    churner
                        .send_json(json!({"type": "end", "session_id": sid}))
                        .await;
                    break;
                }
                Some("error") => {
                    assert_eq!(message["code"], "rate-limited", "{message}");
                    refused += 1;
                    break;
                }
                _ => continue, // offers and ends of earlier sessions
            }
        }
    }
    println!("  churn of 60 connects: {sessions} sessions, {refused} rate-limited");
    assert!(
        refused >= 20,
        "only {refused} of 60 rapid connects were rate-limited"
    );
    let after = owner.stats().frames;
    if let Err(s) = owner
        .wait_for(Duration::from_secs(5), |s| s.frames >= after + 60)
        .await
    {
        panic!("{}", log(&format!("the owner stalled under churn: {s:?}")));
    }
}

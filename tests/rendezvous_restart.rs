//! The rendezvous restarts or vanishes (a fault, not an attack): live video keeps playing,
//! because media is peer to peer; the device registers again with backoff once it is back,
//! and new viewers connect then. Before, the device ended every session when its link to the
//! rendezvous dropped.

mod support;

use std::time::{Duration, Instant};

use pipe::media::receiver;
use pipe::signalling::protocol::DeviceId;
use support::device::Device;
use support::rendezvous::Rendezvous;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_video_outlives_the_rendezvous_and_new_viewers_come_back() {
    support::netns::require_loopback_only();
    let rendezvous = Rendezvous::start().unwrap();
    let (url, port) = (rendezvous.url.clone(), rendezvous.port);
    let device =
        Device::test_picture(320, 240, &["--bitrate", "300", "--rendezvous", &url]).unwrap();
    let id = DeviceId::parse(&device.device_id).unwrap();
    let log = |what: &str| format!("{what}\n--- device log ---\n{}", device.log());

    let owner = receiver::connect(&url, id.clone(), device.owner(false))
        .await
        .unwrap();
    if let Err(s) = owner
        .wait_for(Duration::from_secs(15), |s| s.frames >= 30)
        .await
    {
        panic!("{}", log(&format!("no video: {s:?}")));
    }

    // The rendezvous dies: the picture goes on.
    drop(rendezvous);
    let killed = Instant::now();
    let before = owner.stats().frames;
    if let Err(s) = owner
        .wait_for(Duration::from_secs(8), |s| {
            s.frames >= before + 150 && killed.elapsed() >= Duration::from_secs(5)
        })
        .await
    {
        panic!(
            "{}",
            log(&format!("video stopped with the rendezvous: {s:?}"))
        );
    }
    assert!(owner.stats().ended.is_none(), "{:?}", owner.stats());
    println!(
        "  rendezvous down for {:.1} s: {} frames meanwhile",
        killed.elapsed().as_secs_f32(),
        owner.stats().frames - before
    );

    // It comes back on the same port: the device registers again, a new viewer watches.
    let back = Rendezvous::start_with(&["--port", &port.to_string()]).unwrap();
    let restarted = Instant::now();
    let newcomer = loop {
        match receiver::connect(&back.url, id.clone(), device.owner(false)).await {
            Ok(viewer)
                if viewer
                    .wait_for(Duration::from_secs(5), |s| s.frames >= 10)
                    .await
                    .is_ok() =>
            {
                break viewer;
            }
            _ if restarted.elapsed() > Duration::from_secs(20) => {
                panic!(
                    "{}",
                    log("no viewer through the restarted rendezvous within 20 s")
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    println!(
        "  a new viewer watches {:.1} s after the rendezvous came back",
        restarted.elapsed().as_secs_f32()
    );
    let before = owner.stats().frames;
    if let Err(s) = owner
        .wait_for(Duration::from_secs(3), |s| s.frames >= before + 30)
        .await
    {
        panic!("{}", log(&format!("the first viewer stopped: {s:?}")));
    }
    newcomer.kill();
}

//! The rendezvous restarts or vanishes (a fault, not an attack): live video keeps playing,
//! because media is peer to peer; the device registers again with backoff once it is back,
//! and new viewers connect then. Before, the device ended every session when its link to the
//! rendezvous dropped.

mod support;

use std::time::{Duration, Instant};

use anyhow::Context;
use pipe::signalling::protocol::DeviceId;
use pipe_testkit::receiver;
use serde_json::json;
use support::device::Device;
use support::rendezvous::Rendezvous;
use support::viewer::Viewer;

const PLAY: Duration = Duration::from_secs(20);

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

/// Wraps the page's WebSocket constructor so the test can close the signalling socket the way
/// a dropped connection would (the page's own `onclose` runs).
const RECORD_SOCKETS: &str = "window.__sockets = []; const Native = window.WebSocket; \
    window.WebSocket = class extends Native { constructor(...a) { super(...a); window.__sockets.push(this); } };";

/// The browser viewer keeps a connected session when its signalling goes away: the standalone
/// rendezvous dies and comes back while Chromium plays on in the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_keeps_playing_while_the_rendezvous_is_down() {
    support::netns::require_loopback_only();
    let rendezvous = Rendezvous::start().unwrap();
    let (url, port) = (rendezvous.url.clone(), rendezvous.port);
    let device =
        Device::test_picture(320, 240, &["--bitrate", "300", "--rendezvous", &url]).unwrap();
    let browser = Viewer::open(device.claim_link.as_deref().unwrap())
        .await
        .unwrap();
    let result: anyhow::Result<String> = async {
        browser.wait_role("owner", PLAY).await?;
        browser.watching(20, PLAY).await.context("the owner watches")?;
        let sessions = browser.eval("pipeViewer.sessions").await?;

        drop(rendezvous);
        let killed = Instant::now();
        browser
            .wait_for("pipeViewer.signalling === false", Duration::from_secs(5))
            .await
            .context("the page notices its socket closed")?;
        let frames = browser.watching(120, Duration::from_secs(10)).await.context("frames with the rendezvous down")?;
        let _back = Rendezvous::start_with(&["--port", &port.to_string()]).unwrap();
        browser.watching(30, PLAY).await.context("frames after it came back")?;
        anyhow::ensure!(browser.eval("pipeViewer.state").await? == "playing");
        anyhow::ensure!(
            browser.eval("pipeViewer.sessions").await? == sessions,
            "the page started a new session instead of keeping its own"
        );
        Ok(format!(
            "  the browser played on without signalling: {frames} frames presented by {:.1} s after the rendezvous died",
            killed.elapsed().as_secs_f32()
        ))
    }
    .await;
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => panic!(
            "{e:#}\n--- page ---\n{}\n--- device ---\n{}",
            browser.console(),
            device.log()
        ),
    }
    browser.close().await.unwrap();
}

/// Only the viewer's socket closes (the device's own link stays): the rendezvous tells the
/// device `viewer-gone`, and the session goes on because the page says `alive` on the control
/// channel; once the page is gone, the device ends the session within the alive timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_signalling_lives_while_its_viewer_does() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(320, 240, &["--bitrate", "300"]).unwrap();
    let browser = Viewer::open(device.claim_link.as_deref().unwrap())
        .await
        .unwrap();
    let result: anyhow::Result<String> = async {
        browser.wait_role("owner", PLAY).await?;
        browser
            .page
            .command(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": RECORD_SOCKETS }),
            )
            .await?;
        browser.goto("about:blank").await?; // a new document, not a fragment change
        browser.goto(&device.url).await?;
        browser.wait_role("owner", PLAY).await?;
        browser
            .watching(20, PLAY)
            .await
            .context("the owner watches")?;
        let sessions = browser.eval("pipeViewer.sessions").await?;

        browser
            .eval("window.__sockets.forEach((w) => w.close()); true")
            .await?;
        browser
            .wait_for("pipeViewer.signalling === false", Duration::from_secs(5))
            .await
            .context("the page's socket closed")?;
        browser
            .watching(200, Duration::from_secs(15))
            .await
            .context("the session goes on without its socket")?;
        anyhow::ensure!(browser.eval("pipeViewer.sessions").await? == sessions);
        anyhow::ensure!(
            device
                .log()
                .contains("signalling socket closed; the connected session goes on"),
            "the device did not keep the session on purpose"
        );

        // The page goes away without a word: the device ends the session by itself.
        let closed = Instant::now();
        browser.goto("about:blank").await?;
        loop {
            let pipelines = device.status().await["viewer_pipelines"]
                .as_u64()
                .unwrap_or(99);
            if pipelines == 0 {
                break;
            }
            anyhow::ensure!(
                closed.elapsed() < Duration::from_secs(40),
                "the session outlived its viewer by 40 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(format!(
            "  without signalling the session ended {:.1} s after its page went away",
            closed.elapsed().as_secs_f32()
        ))
    }
    .await;
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => panic!(
            "{e:#}\n--- page ---\n{}\n--- device ---\n{}",
            browser.console(),
            device.log()
        ),
    }
    browser.close().await.unwrap();
}

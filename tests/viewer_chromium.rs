//! End to end in a real browser: a device process streams to the viewer app in headless
//! Chromium, which claims it through its claim link and must then show a moving H.264 picture
//! of the configured size and receive audio.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::chromium::{Browser, Page};
use support::device::Device;

const WIDTH: u64 = 1280;
const HEIGHT: u64 = 720;
/// From opening the page to the last assertion. Setup takes 1-2 s on loopback and 60 frames
/// at 30 fps take 2 s, so 10 s leaves room for a loaded 2-core machine without hiding a stall.
const BUDGET: Duration = Duration::from_secs(10);
/// Two pictures this far apart must differ: the test chain scrolls its bars 4 px per frame.
const FRAME_GAP_MS: u64 = 400;

/// Counts the frames the `<video>` element presents (`requestVideoFrameCallback` fires once
/// per composited frame, unlike decoder stats) and how many had the configured size.
const COUNT_FRAMES: &str = r#"(() => {
  const video = window.pipeViewer.video;
  const t = window.__frames = { presented: 0, atSize: 0, width: 0, height: 0 };
  const onFrame = (_now, meta) => {
    t.presented += 1;
    t.width = meta.width;
    t.height = meta.height;
    if (meta.width === WIDTH && meta.height === HEIGHT) t.atSize += 1;
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return true;
})()"#;

/// Draws the video into a small canvas twice, FRAME_GAP_MS apart, and compares the pixels.
const COMPARE_PICTURES: &str = r#"(async () => {
  const video = window.pipeViewer.video;
  const canvas = document.createElement('canvas');
  canvas.width = 320;
  canvas.height = 180;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const grab = () => {
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    return ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  };
  const first = grab();
  const presentedBefore = window.__frames.presented;
  await new Promise((resolve) => setTimeout(resolve, GAP));
  const second = grab();
  let changed = 0;
  const colours = new Set();
  for (let i = 0; i < first.length; i += 4) {
    const d = Math.abs(first[i] - second[i]) + Math.abs(first[i + 1] - second[i + 1])
      + Math.abs(first[i + 2] - second[i + 2]);
    if (d > 48) changed += 1; // well above codec noise
    colours.add(((second[i] >> 5) << 6) | ((second[i + 1] >> 5) << 3) | (second[i + 2] >> 5));
  }
  return { changedFraction: changed / (first.length / 4), colours: colours.size,
    presentedBetween: window.__frames.presented - presentedBefore };
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_moving_h264_of_the_configured_size_with_audio() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(WIDTH, HEIGHT, &[]).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::launch(profile.path()).await.unwrap();
    // The device streams only to a browser it knows: this one claims it (becomes the owner).
    let claim = device
        .claim_link
        .clone()
        .expect("a fresh device prints a claim link");
    let opened = Instant::now();
    let page = browser.new_page(&claim).await.unwrap();

    match check_playback(&page, opened).await {
        Ok(report) => println!("{report}"),
        Err(e) => panic!(
            "{e:#}\n--- page console ---\n{}\n--- device log ---\n{}\n--- chromium errors ---\n{}",
            page.console_log().join("\n"),
            device.log(),
            chromium_errors(&browser.log())
        ),
    }
    page.close().await.unwrap();
    drop(browser);
    let status = device.stop().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

/// Every assertion, each waiting at most for what is left of BUDGET since `opened`.
async fn check_playback(page: &Page, opened: Instant) -> Result<String> {
    let deadline = opened + BUDGET;
    let left = || deadline.saturating_duration_since(Instant::now());
    let count_frames = COUNT_FRAMES
        .replace("WIDTH", &WIDTH.to_string())
        .replace("HEIGHT", &HEIGHT.to_string());
    page.eval(&count_frames).await?;

    let frames = page
        .wait_for("window.__frames.atSize >= 60 && window.__frames", left())
        .await
        .context("60 frames of the configured size presented")?;
    let sixty_frames_after = opened.elapsed();
    let size = page
        .eval("[pipeViewer.video.videoWidth, pipeViewer.video.videoHeight]")
        .await?;
    ensure!(
        size == serde_json::json!([WIDTH, HEIGHT]),
        "<video> is {size}, not {WIDTH}x{HEIGHT}; frames {frames}"
    );

    let compare = page
        .eval(&COMPARE_PICTURES.replace("GAP", &FRAME_GAP_MS.to_string()))
        .await?;
    // Measured at 400 ms: about 30 % of pixels change with the scrolling bars, 3 % with the
    // same chain standing still (coding noise), 0 % for one frame repeated.
    let changed = compare["changedFraction"].as_f64().unwrap_or(0.0);
    ensure!(
        changed >= 0.10,
        "the picture did not change in {FRAME_GAP_MS} ms (a frozen or repeated frame): {compare}"
    );
    ensure!(
        compare["colours"].as_u64().unwrap_or(0) >= 8,
        "the picture is nearly uniform (blank?): {compare}"
    );
    ensure!(
        compare["presentedBetween"].as_u64().unwrap_or(0) >= 5,
        "too few frames presented between the two pictures: {compare}"
    );

    let access = page.eval("pipeViewer.access").await?;
    ensure!(
        access["role"] == "owner",
        "playing, but not as the owner: {access}"
    );
    ensure!(
        !page
            .eval("location.hash")
            .await?
            .as_str()
            .unwrap_or("")
            .contains("claim="),
        "the spent claim secret is still in the address"
    );

    let stats = page.eval("pipeViewer.stats()").await?;
    let codec = &stats["video"]["codec"];
    ensure!(
        mime_is(&codec["mimeType"], "video/H264"),
        "video codec: {stats}"
    );
    let fmtp = codec["sdpFmtpLine"].as_str().unwrap_or("");
    ensure!(
        fmtp.contains("42e01f") && fmtp.contains("packetization-mode=1"),
        "H.264 fmtp {fmtp:?}: {stats}"
    );

    let first = audio_samples(page, left()).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = page.eval("pipeViewer.stats()").await?;
    let later = second["audio"]["totalSamplesReceived"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        later > first,
        "audio stopped: totalSamplesReceived {first} then {later}: {second}"
    );
    // The device's rtpmap says OPUS; Chromium reports the name as offered.
    ensure!(
        mime_is(&second["audio"]["codec"]["mimeType"], "audio/opus"),
        "audio codec: {second}"
    );
    ensure!(
        opened.elapsed() <= BUDGET,
        "took {:?}, over {BUDGET:?}",
        opened.elapsed()
    );
    Ok(format!(
        "60 frames at {WIDTH}x{HEIGHT} after {sixty_frames_after:?}, all checks after {:?}; \
         frames {frames}; pictures {compare}; fmtp {fmtp}; audio samples {first} -> {later}",
        opened.elapsed()
    ))
}

/// Waits until the audio inbound-rtp has received samples and returns how many.
async fn audio_samples(page: &Page, timeout: Duration) -> Result<u64> {
    let value: Value = page
        .wait_for(
            "pipeViewer.stats().then((s) => s.audio.totalSamplesReceived > 0 \
             && s.audio.totalSamplesReceived)",
            timeout,
        )
        .await
        .context("audio samples received")?;
    value.as_u64().context("totalSamplesReceived is a number")
}

/// MIME types compare without regard to case (RFC 6838).
fn mime_is(value: &Value, expected: &str) -> bool {
    value
        .as_str()
        .is_some_and(|m| m.eq_ignore_ascii_case(expected))
}

/// The end of Chromium's own log without the noise of a machine with no D-Bus and no sound
/// card; WebRTC errors (a rejected offer, say) show up here.
fn chromium_errors(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("dbus/") && !l.starts_with("ALSA lib"))
        .collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

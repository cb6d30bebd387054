//! A soak: one viewer watches while others come and go (half of them abruptly) and the attacks
//! of the hostile-input issue run in a loop: an answer that used to abort webrtcbin, a
//! squatter's `register`, half-sent HTTP headers, a mute signalling socket. The device's RSS,
//! descriptors, threads and GStreamer elements are sampled every 5 s and must end where they
//! started (after a warm-up), and the watcher must never stall.
//!
//! PIPE_SOAK_SECS (default 60: scripts/test); `scripts/soak` runs 30 minutes and prints the
//! samples as CSV (docs/benchmarks.md). PIPE_SOAK_SOURCES: how many attacker addresses the
//! attacks cycle through (default 50,000: a new one each cycle).

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use pipe::signalling::protocol::DeviceId;
use pipe_testkit::receiver;
use serde_json::json;
use support::device::Device;
use support::raw::Raw;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    threads: usize,
    elements: u64,
    pipelines: u64,
    /// This test process's own descriptors: its viewers come and go too, and a leak here once
    /// ended a 30-minute soak (a receiver's pipeline was kept alive by a reference cycle).
    harness_fds: usize,
}

fn own_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn sample(device: &Device, started: Instant) -> Sample {
    let status = device.status().await;
    Sample {
        at: started.elapsed(),
        rss_kib: rss_kib(device.pid()),
        fds: device.fds(),
        threads: device.threads(),
        elements: status["viewer_elements"].as_u64().unwrap_or(0),
        pipelines: status["viewer_pipelines"].as_u64().unwrap_or(0),
        harness_fds: own_fds(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soak_of_churn_and_attacks_leaves_the_device_where_it_was() {
    support::netns::require_loopback_only();
    let secs: u64 = std::env::var("PIPE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Distinct attacker addresses, cycled (the per-source tables are capped at 4,096 sources:
    // fewer than that shows whether memory is flat once every table is full).
    let sources: u64 = std::env::var("PIPE_SOAK_SOURCES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000)
        .clamp(1, 50_000);
    let device = Device::test_picture(320, 240, &["--bitrate", "300"]).unwrap();
    let id = DeviceId::parse(&device.device_id).unwrap();
    let (url, me, port) = (device.signal_url(), device.device_id.clone(), device.port);
    let log = |what: &str| format!("{what}\n--- device log ---\n{}", device.log());
    let hostile = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sdp/reordered_twofmt.sdp"
    ))
    .unwrap();

    let watcher = receiver::connect(&url, id.clone(), device.owner(false))
        .await
        .unwrap();
    if let Err(s) = watcher
        .wait_for(Duration::from_secs(15), |s| s.frames >= 30)
        .await
    {
        panic!("{}", log(&format!("no video: {s:?}")));
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let warm_up = Duration::from_secs(secs.min(600) / 6);
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = started;
    let (mut cycles, mut last_frames, mut last_progress) = (0u64, 0u64, Instant::now());
    println!("soak,seconds,rss_kib,fds,threads,viewer_elements,viewer_pipelines,harness_fds");
    while Instant::now() < deadline {
        // A viewer comes and goes, politely or not.
        let extra = receiver::connect(&url, id.clone(), device.owner(false))
            .await
            .unwrap();
        let _ = extra
            .wait_for(Duration::from_secs(5), |s| s.frames >= 10)
            .await;
        if cycles % 2 == 0 {
            extra.close().await;
        } else {
            extra.kill();
        }
        // The attacks, each from an address of its own.
        let n = cycles % sources;
        let source = Ipv4Addr::new(127, 2, (n / 200 % 250) as u8, (n % 200 + 1) as u8);
        let mut stranger = Raw::open_from(&url, source).await;
        let session = stranger.connect_until_offer(&me).await;
        stranger
            .send_json(json!({"type": "signal", "session_id": session,
                "data": {"sdp": {"type": "answer", "sdp": hostile}}}))
            .await;
        stranger.expect("end").await;
        stranger
            .send_json(json!({"type": "register", "device_id": me}))
            .await;
        stranger.expect_error("not-allowed", "a squatter").await;
        if let Ok(mut slow) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let _ = slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
        } // dropped half-sent
        let _mute = Raw::open_from(&url, source).await; // dropped without a word
        cycles += 1;

        let frames = watcher.stats().frames;
        if frames > last_frames {
            (last_frames, last_progress) = (frames, Instant::now());
        }
        assert!(
            last_progress.elapsed() < Duration::from_secs(3),
            "{}",
            log(&format!("the watcher stalled: {:?}", watcher.stats()))
        );
        if Instant::now() >= next_sample {
            let s = sample(&device, started).await;
            println!(
                "soak,{},{},{},{},{},{},{}",
                s.at.as_secs(),
                s.rss_kib,
                s.fds,
                s.threads,
                s.elements,
                s.pipelines,
                s.harness_fds
            );
            samples.push(s);
            next_sample += Duration::from_secs(5);
        }
    }
    // Settle: the last parked sessions time out, idle threads leave (/proc only: see
    // tests/bad_input.rs on why not to poll /api/status meanwhile).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let end = sample(&device, started).await;
    let base = samples
        .iter()
        .find(|s| s.at >= warm_up)
        .copied()
        .unwrap_or(samples[0]);
    println!(
        "  {cycles} cycles in {secs} s (each: a viewer joins and leaves, a hostile answer, a squatter, \
         half-sent headers, a mute socket)\n  after warm-up {base:?}\n  at the end    {end:?}"
    );
    assert_eq!(end.pipelines, 1, "{}", log("viewer pipelines left over"));
    assert_eq!(
        end.elements,
        base.elements,
        "{}",
        log("GStreamer elements grew")
    );
    // Fewer at the end is fine (idle pool threads leave); more is a leak.
    assert!(end.fds <= base.fds + 4, "{}", log("descriptors grew"));
    assert!(end.threads <= base.threads + 6, "{}", log("threads grew"));
    assert!(
        end.harness_fds <= base.harness_fds + 8,
        "the test's own viewers leak descriptors: {} -> {}",
        base.harness_fds,
        end.harness_fds
    );
    let grown = end.rss_kib.saturating_sub(base.rss_kib);
    assert!(
        grown < 16 * 1024 + base.rss_kib / 10,
        "{}",
        log(&format!("RSS grew by {grown} KiB"))
    );
    assert!(watcher.stats().ended.is_none(), "{:?}", watcher.stats());
}

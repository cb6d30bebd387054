//! The web-UI proxy against a direct connection, in one run (docs/benchmarks.md, "Web-UI
//! proxy"). Real headless Chromium makes the same requests to a camera UI on loopback twice:
//! from a tab on the UI's own origin (direct), and from the viewer's camera-UI frame, whose
//! service worker hands them to the viewer page, which sends them over the proxy datachannels
//! to the device, which forwards them to the same UI (proxied). Meanwhile the viewer plays the
//! 1280x720 stamped test picture on the same peer connection. The raw datachannel ceiling of
//! that connection is measured too: the device floods a `bench-ceiling` channel with 64 KiB
//! messages as fast as its `buffered-amount` allows (the hidden `--bench-datachannel` flag)
//! and the page counts bytes. Prints numbers next to the targets and asserts nothing.
//!
//! Environment: `PIPE_BENCH_RUNS` (scripts/bench), `PIPE_BENCH_BULK_MB` (proxied download,
//! default 200), `PIPE_BENCH_SECS` (ceiling and idle-video phases, default 10).
//!
//! With `PIPE_BENCH_LINK=<kbit/s>` the device's media (video and datachannels: one ICE
//! transport) goes through the link emulator (`pipe_testkit::link`, a 40-packet queue), and
//! the run is only: the video alone, then the video during a proxied download of
//! `PIPE_BENCH_BULK_MB` (default 512 KiB): a download must not freeze the picture (issue 13).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path as UrlPath;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{
    READ_BARCODES, TAKE_SAMPLES, VIDEO_STATS, clock_ticks_per_second, cpu_ticks, num, pct,
};
use pipe_testkit::link::{Emulator, Link, Scenario, Shape};
use serde_json::{Value, json};
use support::chromium::Page;
use support::device::{ConfigFile, Device, ice_ports};
use support::viewer::Viewer;

const PIPELINE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/pipelines/latency-probe.pipeline"
);
const DEVICE_BIN: &str = env!("CARGO_BIN_EXE_pipe");
/// As in glass_to_glass: 29.5 fps keeps frames from phase-locking to headless Chromium's
/// 60 Hz paints, so the latencies are comparable with that benchmark's.
const FRAMERATE: &str = "29.5";
/// Small requests per side; the first few of each warm connections and code paths up.
const SMALL_REQUESTS: usize = 300;
const SMALL_WARM_UP: usize = 20;
const PAGE_LOADS: usize = 20;
const PAGE_WARM_UP: usize = 3;
/// Enough for the direct side, which runs at loopback speed, to take a second or more.
const DIRECT_BULK_MB: u64 = 1000;
const CHUNK: usize = 64 << 10;
const SETUP: Duration = Duration::from_secs(30);

// Targets (issue 4), printed next to the numbers.
const TARGET_SMALL_OVERHEAD_MS: f64 = 3.0;
const TARGET_PAGE_RATIO: f64 = 1.3;
const TARGET_PAGE_EXTRA_MS: f64 = 50.0;
const TARGET_BULK_SHARE: f64 = 0.85;

// ---- the camera UI both sides load --------------------------------------------------------

/// A page shaped like a camera's settings UI: markup, a stylesheet, a script that fetches
/// JSON, an image. Every response is `no-store`, so both sides fetch everything every time.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Camera</title>
<link rel="stylesheet" href="/static/ui.css"><script src="/static/ui.js" defer></script></head>
<body><header><img id="logo" src="/static/logo.svg" alt="" width="64" height="64"><h1>Camera</h1></header>
<main id="main">Loading…</main></body></html>"#;

/// The script fetches the camera's state and renders it, then tells the frame that loaded the
/// page (the benchmark's, same origin) that it is ready.
const SCRIPT_HEAD: &str = r#"(() => {
  fetch('/api/state', { cache: 'no-store' }).then((r) => r.json()).then((state) => {
    document.getElementById('main').textContent = JSON.stringify(state);
    parent.postMessage({ ready: location.search }, location.origin);
  });
})();
"#;

fn upstream_app() -> Router {
    // ~60 kB of script and ~12 kB of style: a small camera UI's assets.
    let script = format!(
        "{SCRIPT_HEAD}{}",
        "// padding of a real UI's code\n".repeat(2000)
    );
    let style = "main { font: 14px sans-serif; margin: 1em; }\n".repeat(270);
    let logo = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">{}</svg>"#,
        (0..60)
            .map(|i| format!(
                r#"<circle cx="32" cy="32" r="{}" fill="none" stroke="teal"/>"#,
                i % 30 + 1
            ))
            .collect::<String>()
    );
    let no_store = |kind: &'static str, body: String| {
        move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, kind),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    body,
                )
            }
        }
    };
    Router::new()
        .route(
            "/",
            get(no_store("text/html; charset=utf-8", PAGE.to_owned())),
        )
        .route("/static/ui.js", get(no_store("text/javascript", script)))
        .route("/static/ui.css", get(no_store("text/css", style)))
        .route("/static/logo.svg", get(no_store("image/svg+xml", logo)))
        .route(
            "/api/state",
            get(no_store(
                "application/json",
                r#"{"overlay":"pipe","fps":29.5}"#.to_owned(),
            )),
        )
        .route("/ping", get(no_store("text/plain", "pong".to_owned())))
        .route("/bytes/{n}", get(bytes))
}

/// `n` bytes, streamed in 64 KiB chunks as the reader takes them (never whole in memory).
async fn bytes(UrlPath(n): UrlPath<u64>) -> Response {
    let chunk = Bytes::from(vec![0xa5_u8; CHUNK]);
    let stream = futures::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let take = left.min(CHUNK as u64);
                (
                    Ok::<_, std::io::Error>(chunk.slice(..take as usize)),
                    left - take,
                )
            })
        }
    });
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, n.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

// ---- what the pages run ---------------------------------------------------------------------

/// Round trips of `n` sequential small GETs, in ms.
fn small_requests(n: usize) -> String {
    format!(
        r#"(async () => {{
  const times = [];
  for (let i = 0; i < {n}; i++) {{
    const t = performance.now();
    const r = await fetch('/ping?i=' + i, {{ cache: 'no-store' }});
    await r.text();
    times.push(performance.now() - t);
  }}
  return times;
}})()"#
    )
}

/// Load times of `n` fresh loads of the UI's root page in a child frame (same origin, so the
/// same service worker serves it when there is one): from `src` set to both its `load` event
/// and its script's "ready" (state fetched and shown), in ms.
fn page_loads(n: usize) -> String {
    format!(
        r#"(async () => {{
  const times = [];
  for (let i = 0; i < {n}; i++) {{
    const f = document.createElement('iframe');
    f.style.cssText = 'position:absolute;width:400px;height:300px;left:-9999px';
    const search = '?load=' + i;
    const loaded = new Promise((resolve) => {{ f.onload = resolve; }});
    const ready = new Promise((resolve) => {{
      const on = (ev) => {{
        if (ev.source === f.contentWindow && ev.data?.ready === search) {{
          removeEventListener('message', on);
          resolve();
        }}
      }};
      addEventListener('message', on);
    }});
    const t = performance.now();
    f.src = '/' + search;
    document.body.appendChild(f);
    await Promise.all([loaded, ready]);
    times.push(performance.now() - t);
    f.remove();
  }}
  return times;
}})()"#
    )
}

/// Downloads `bytes` and returns `{ bytes, ms }` as the page read them.
fn bulk(bytes: u64) -> String {
    format!(
        r#"(async () => {{
  const t = performance.now();
  const r = await fetch('/bytes/{bytes}', {{ cache: 'no-store' }});
  const reader = r.body.getReader();
  let got = 0;
  for (;;) {{
    const {{ done, value }} = await reader.read();
    if (done) break;
    got += value.byteLength;
  }}
  return {{ bytes: got, ms: performance.now() - t }};
}})()"#
    )
}

/// Opens the device's `bench-ceiling` channel on the viewer's peer connection and counts what
/// arrives for `secs` after the first message; `{ bytes, ms }`.
fn ceiling(secs: u64) -> String {
    format!(
        r#"(async () => {{
  const dc = window.pipeViewer.pc.createDataChannel('bench-ceiling');
  dc.binaryType = 'arraybuffer';
  let got = 0, first = null;
  await new Promise((resolve, reject) => {{
    dc.onerror = reject;
    dc.onmessage = (ev) => {{
      const now = performance.now();
      if (first === null) first = now;
      else got += ev.data.byteLength;
      if (now - first >= {secs} * 1000) resolve();
    }};
  }});
  const ms = performance.now() - first;
  dc.close();
  return {{ bytes: got, ms }};
}})()"#
    )
}

// ---- the run ------------------------------------------------------------------------------

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

struct Video {
    latencies: Vec<f64>,
    freezes: f64,
    frames: f64,
    /// Seconds frozen (Chromium's `totalFreezesDuration`), and of the phase.
    frozen: f64,
    seconds: f64,
    bytes: f64,
}

/// What the video did while `work` ran: latency of every frame read, freezes, frames decoded.
async fn video_during<T>(
    viewer: &Page,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<(T, Video)> {
    viewer.eval(TAKE_SAMPLES).await?;
    let before = viewer.eval(VIDEO_STATS).await?;
    let start = Instant::now();
    let out = work.await?;
    let seconds = start.elapsed().as_secs_f64();
    let after = viewer.eval(VIDEO_STATS).await?;
    let taken = viewer.eval(TAKE_SAMPLES).await?;
    let latencies = taken["samples"]
        .as_array()
        .context("samples")?
        .iter()
        .filter_map(|s| s[1].as_f64())
        .collect();
    let delta = |key| num(&after, key) - num(&before, key);
    Ok((
        out,
        Video {
            latencies,
            freezes: delta("freezeCount"),
            frames: delta("framesDecoded"),
            frozen: delta("totalFreezesDuration"),
            seconds,
            bytes: delta("bytesReceived"),
        },
    ))
}

/// CPU of `pid` while `work` ran, in % of one core.
async fn cpu_during<T>(
    pid: u32,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<(T, f64)> {
    let before = cpu_ticks(pid)?;
    let start = Instant::now();
    let out = work.await?;
    let seconds = start.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid)?.saturating_sub(before);
    Ok((
        out,
        ticks as f64 / clock_ticks_per_second() / seconds * 100.0,
    ))
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn mb_per_s(v: &Value) -> f64 {
    num(v, "bytes") / 1e6 / (num(v, "ms") / 1000.0)
}

/// The device's ICE ports, which the link emulator shapes (`PIPE_BENCH_LINK`).
const LINK_PORTS: std::ops::RangeInclusive<u16> = 47_500..=47_563;

/// The video alone and during a proxied download, through the narrow link.
fn print_on_link(idle: &Video, during: &Video, bulk: &Value) {
    println!(
        "{:<44}{:>14}{:>14}   target (issue 13)",
        "metric", "video alone", "+ download"
    );
    let row = |name: &str, f: &dyn Fn(&Video) -> String, target: &str| {
        println!("{name:<44}{:>14}{:>14}   {target}", f(idle), f(during));
    };
    row(
        "frozen (totalFreezesDuration) / freezes",
        &|v| format!("{:.2} s / {:.0}", v.frozen, v.freezes),
        "no freeze from the download",
    );
    row(
        "frames decoded per second",
        &|v| format!("{:.1}", v.frames / v.seconds),
        "",
    );
    row(
        "latency p50 / p95",
        &|v| {
            format!(
                "{:.0} / {:.0} ms",
                pct(&v.latencies, 50.0),
                pct(&v.latencies, 95.0)
            )
        },
        "",
    );
    row(
        "video received",
        &|v| format!("{:.0} kbit/s", v.bytes * 8.0 / v.seconds / 1000.0),
        "",
    );
    println!(
        "{:<44}{:>28}",
        "proxied download",
        format!(
            "{:.1} MB in {:.1} s ({:.0} kbit/s)",
            num(bulk, "bytes") / 1e6,
            num(bulk, "ms") / 1000.0,
            num(bulk, "bytes") * 8.0 / num(bulk, "ms")
        )
    );
}

async fn run() -> Result<()> {
    support::netns::require_loopback_only();
    let secs = std::env::var("PIPE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let link_kbps: Option<u32> = std::env::var("PIPE_BENCH_LINK")
        .ok()
        .and_then(|s| s.parse().ok());
    // Through a narrow link the download must end within a page evaluation's 30 s: 512 KiB
    // is ~20 s at the data's share of 1 Mbit/s.
    let bulk_bytes: u64 = std::env::var("PIPE_BENCH_BULK_MB")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|mb| mb << 20)
        .unwrap_or(if link_kbps.is_some() {
            512 << 10
        } else {
            200 << 20
        });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let upstream = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, upstream_app()).await });

    println!(
        "web-UI proxy: headless Chromium -> pipe device -> camera UI, loopback (scripts/netns)"
    );
    println!("  device    {DEVICE_BIN}");
    println!(
        "  video     {PIPELINE}: 1280x720 @ {FRAMERATE} fps, 2000 kbit/s, on the same connection"
    );
    if !DEVICE_BIN.contains("/release/") {
        println!("  WARNING   the device is a debug build: run scripts/bench");
    }
    println!();

    let config = ConfigFile::new(&ice_ports(&LINK_PORTS))?;
    let mut args = vec![
        "--pipeline",
        PIPELINE,
        "--framerate",
        FRAMERATE,
        "--width",
        "1280",
        "--height",
        "720",
        "--ui-upstream",
        &upstream,
        "--bench-datachannel",
    ];
    // The link first, so the first packets already meet it.
    let emulator = match link_kbps {
        Some(kbps) => {
            println!("  link      {kbps} kbit/s up, 40-packet queue (device's media only)\n");
            args.extend(["--config", config.arg()]);
            Some(Emulator::start(
                LINK_PORTS,
                Scenario::steady(Link::uplink(Shape::capped(kbps))),
            )?)
        }
        None => None,
    };
    let device = Device::start(&args)?;
    let link = device.claim_link.clone().context("a claim link")?;
    let owner = Viewer::open(&link).await?;
    owner.wait_role("owner", SETUP).await?;
    owner
        .watching(30, SETUP)
        .await
        .context("the owner watches")?;
    owner
        .wait_for(
            "pipeViewer.proxy?.channels.every((c) => c.readyState === 'open')",
            SETUP,
        )
        .await
        .context("the proxy channels open")?;
    owner.eval("window.__g2gStampWidth = 1280; true").await?;
    owner.eval(READ_BARCODES).await?;
    owner
        .eval("document.getElementById('ui-open').click()")
        .await?;
    let ui_origin = format!("http://ui-{}.localhost:{}", device.device_id, device.port);
    let frame = owner.page.frame(&ui_origin, SETUP).await?;
    frame
        .wait_for(
            "document.readyState === 'complete' && !!document.getElementById('main')",
            SETUP,
        )
        .await
        .context("the camera UI in the frame")?;
    let direct = owner.browser.new_page(&format!("{upstream}/")).await?;
    direct
        .wait_for("document.readyState === 'complete'", SETUP)
        .await?;
    // The viewer's tab in front again: a hidden tab gets no video frame callbacks.
    owner.page.command("Page.bringToFront", json!({})).await?;
    owner
        .wait_for("document.visibilityState === 'visible'", SETUP)
        .await
        .context("the viewer's tab in front")?;
    let pid = device.pid();

    // Idle: the video alone, as the reference for the phases below.
    eprintln!("ui_proxy: video alone");
    let (_, idle) = video_during(&owner.page, async {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok(())
    })
    .await?;
    if emulator.is_some() {
        let (bulk, during) = video_during(&owner.page, frame.eval(&bulk(bulk_bytes))).await?;
        print_on_link(&idle, &during, &bulk);
        drop(emulator);
        owner.close().await?;
        device.stop()?;
        return Ok(());
    }
    let (_, idle_cpu) = cpu_during(pid, async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(())
    })
    .await?;

    // Small requests and page loads: direct, then proxied.
    eprintln!("ui_proxy: small requests, page loads");
    let small_direct = numbers(&direct.eval(&small_requests(SMALL_REQUESTS)).await?);
    eprintln!("ui_proxy: small direct done");
    let (small_proxied, small_cpu) =
        cpu_during(pid, frame.eval(&small_requests(SMALL_REQUESTS))).await?;
    let small_proxied = numbers(&small_proxied);
    eprintln!("ui_proxy: small proxied done");
    let pages_direct = numbers(&direct.eval(&page_loads(PAGE_LOADS)).await?);
    eprintln!("ui_proxy: pages direct done");
    let pages_proxied = numbers(&frame.eval(&page_loads(PAGE_LOADS)).await?);

    // Bulk: direct, then proxied with the video watched, then the raw ceiling likewise.
    eprintln!("ui_proxy: bulk downloads, raw ceiling");
    let bulk_direct = direct.eval(&bulk(DIRECT_BULK_MB << 20)).await?;
    let ((bulk_proxied, bulk_cpu), bulk_video) =
        video_during(&owner.page, cpu_during(pid, frame.eval(&bulk(bulk_bytes)))).await?;
    let ((raw, raw_cpu), raw_video) =
        video_during(&owner.page, cpu_during(pid, owner.eval(&ceiling(secs)))).await?;

    let small = |v: &[f64], p| pct(&v[SMALL_WARM_UP.min(v.len())..], p);
    let page = |v: &[f64], p| pct(&v[PAGE_WARM_UP.min(v.len())..], p);
    let verdict = common::verdict;
    println!("{:<52}{:>12}{:>12}   target", "metric", "direct", "proxied");
    let row = |name: &str, d: String, p: String, target: String| {
        println!("{name:<52}{d:>12}{p:>12}   {target}");
    };
    let (sd50, sp50) = (small(&small_direct, 50.0), small(&small_proxied, 50.0));
    row(
        "small GET round trip p50",
        format!("{sd50:.2} ms"),
        format!("{sp50:.2} ms"),
        format!(
            "overhead {:.2} ms <= {TARGET_SMALL_OVERHEAD_MS} ms {}",
            sp50 - sd50,
            verdict(sp50 - sd50 <= TARGET_SMALL_OVERHEAD_MS)
        ),
    );
    row(
        "small GET round trip p95",
        format!("{:.2} ms", small(&small_direct, 95.0)),
        format!("{:.2} ms", small(&small_proxied, 95.0)),
        String::new(),
    );
    let (pd, pp) = (page(&pages_direct, 50.0), page(&pages_proxied, 50.0));
    row(
        "UI page load (HTML, CSS, JS, SVG, JSON) p50",
        format!("{pd:.1} ms"),
        format!("{pp:.1} ms"),
        format!(
            "{:.2}x, +{:.1} ms: <= {TARGET_PAGE_RATIO}x or +{TARGET_PAGE_EXTRA_MS} ms {}",
            pp / pd,
            pp - pd,
            verdict(pp <= pd * TARGET_PAGE_RATIO || pp <= pd + TARGET_PAGE_EXTRA_MS)
        ),
    );
    row(
        "UI page load p95",
        format!("{:.1} ms", page(&pages_direct, 95.0)),
        format!("{:.1} ms", page(&pages_proxied, 95.0)),
        String::new(),
    );
    let (bd, bp, raw_rate) = (
        mb_per_s(&bulk_direct),
        mb_per_s(&bulk_proxied),
        mb_per_s(&raw),
    );
    row(
        "bulk download",
        format!("{bd:.1} MB/s"),
        format!("{bp:.1} MB/s"),
        format!(
            "{:.0} % of the raw ceiling >= {:.0} % {}",
            bp / raw_rate * 100.0,
            TARGET_BULK_SHARE * 100.0,
            verdict(bp >= raw_rate * TARGET_BULK_SHARE)
        ),
    );
    row(
        "raw datachannel ceiling (64 KiB messages)",
        String::new(),
        format!("{raw_rate:.1} MB/s"),
        format!(
            "{:.0} MB in {:.1} s",
            num(&raw, "bytes") / 1e6,
            num(&raw, "ms") / 1000.0
        ),
    );
    println!();
    println!(
        "{:<52}{:>12}{:>12}{:>12}",
        "live video (1280x720) while", "idle", "bulk", "ceiling"
    );
    let video_row = |name: &str, f: &dyn Fn(&Video) -> String| {
        println!(
            "{name:<52}{:>12}{:>12}{:>12}",
            f(&idle),
            f(&bulk_video),
            f(&raw_video)
        );
    };
    video_row("  latency p50 (glass to glass)", &|v| {
        format!("{:.1} ms", pct(&v.latencies, 50.0))
    });
    video_row("  latency p95", &|v| {
        format!("{:.1} ms", pct(&v.latencies, 95.0))
    });
    video_row("  frames decoded", &|v| format!("{:.0}", v.frames));
    video_row("  freezes (freezeCount)", &|v| format!("{:.0}", v.freezes));
    println!(
        "{:<52}{}",
        "  zero freezes during the proxied bulk download",
        verdict(bulk_video.freezes == 0.0)
    );
    println!();
    println!(
        "device CPU, % of one core: video only {idle_cpu:.1}, small requests {small_cpu:.1}, \
         bulk {bulk_cpu:.1}, raw ceiling {raw_cpu:.1}"
    );
    println!(
        "proxied bulk: {:.0} MB in {:.1} s; direct: {:.0} MB in {:.1} s",
        num(&bulk_proxied, "bytes") / 1e6,
        num(&bulk_proxied, "ms") / 1000.0,
        num(&bulk_direct, "bytes") / 1e6,
        num(&bulk_direct, "ms") / 1000.0
    );
    let expected = json!(bulk_bytes);
    if bulk_proxied["bytes"] != expected {
        println!(
            "WARNING: the proxied download brought {} bytes, not {expected}",
            bulk_proxied["bytes"]
        );
    }

    direct.close().await?;
    owner.close().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for line in device
        .log()
        .lines()
        .filter(|l| l.contains("datachannel ceiling"))
    {
        println!("device: {line}");
    }
    device
        .stop()
        .map_err(|e| anyhow!("stopping the device: {e}"))?;
    Ok(())
}

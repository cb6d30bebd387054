//! The camera's web UI through the proxy, in real headless Chromium (docs/ui-proxy-browser.md):
//! the owner opens "Camera settings" and the device's demo camera UI renders in a frame on the
//! UI origin, served by the frame's service worker over the viewer's proxy datachannels. A
//! form submitted in it (303) changes the live video, its status WebSocket updates the page,
//! its cookie comes back and shows in `document.cookie`, a stopped service worker recovers,
//! and the frame cannot reach the viewer page. A `view`-only borrower gets none of it. Against
//! the proxy tests' stand-in upstream: megabyte bodies both ways through the service worker,
//! a paused reader holding the device to its credit, a large WebSocket message, and more
//! requests at once than the 64-stream limit.

mod support;
#[path = "support/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::chromium::Page;
use support::device::Device;
use support::viewer::Viewer;

/// Opening a page to playing takes 1-3 s on loopback; generous for a loaded 2-core machine.
const PLAY: Duration = Duration::from_secs(20);
/// Boot page, service worker, first proxied page: a few round trips over the datachannels.
const UI: Duration = Duration::from_secs(20);

fn failure(e: anyhow::Error, device: &Device, pages: &[(&str, &Page)]) -> ! {
    let consoles: Vec<String> = pages
        .iter()
        .map(|(name, p)| format!("--- console of {name} ---\n{}", p.console_log().join("\n")))
        .collect();
    panic!(
        "{e:#}\n{}\n--- device log ---\n{}",
        consoles.join("\n"),
        device.log()
    );
}

/// `failure` with the owner's console and, if it is still there, the UI frame's.
async fn ui_failure(e: anyhow::Error, device: &Device, owner: &Viewer, ui_origin: &str) -> ! {
    let frame = owner
        .page
        .frame(ui_origin, Duration::from_secs(1))
        .await
        .ok();
    let mut pages = vec![("owner", &owner.page)];
    if let Some(f) = frame.as_ref() {
        pages.push(("UI frame", f));
    }
    failure(e, device, &pages)
}

async fn text(frame: &Page, id: &str) -> Result<String> {
    let v = frame
        .eval(&format!(
            "document.getElementById({}).textContent",
            json!(id)
        ))
        .await?;
    Ok(v.as_str().unwrap_or_default().trim().to_owned())
}

/// Waits until the frame shows the demo camera UI's settings page (not the boot page).
async fn settings_page(frame: &Page) -> Result<()> {
    frame
        .wait_for(
            "document.readyState === 'complete' && !!document.getElementById('settings-form')",
            UI,
        )
        .await
        .context("the settings page in the frame")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_uses_the_camera_ui_through_the_proxy_and_a_view_borrower_cannot() {
    support::netns::require_loopback_only();
    let started = Instant::now();
    let device = Device::test_picture(640, 360, &[]).unwrap();
    let link = device
        .claim_link
        .clone()
        .expect("a fresh device prints a claim link");
    let owner = Viewer::open(&link).await.unwrap();
    let ui_origin = format!("http://ui-{}.localhost:{}", device.device_id, device.port);
    let report = match owner_uses_the_ui(&owner, &ui_origin).await {
        Ok(report) => report,
        Err(e) => ui_failure(e, &device, &owner, &ui_origin).await,
    };
    let owner_done = started.elapsed();
    println!("owner: {report}");

    let lent = owner
        .control(json!({"type": "lend", "scope": "view", "secs": 900}))
        .await
        .unwrap();
    assert_eq!(lent["type"], "lent", "{lent}");
    let borrower = Viewer::open(lent["link"].as_str().unwrap()).await.unwrap();
    if let Err(e) = view_borrower_gets_no_ui(&borrower).await {
        failure(e, &device, &[("borrower", &borrower.page)]);
    }
    println!(
        "{report}; owner done after {owner_done:?}, borrower checked after {:?}",
        started.elapsed()
    );
    borrower.close().await.unwrap();
    owner.close().await.unwrap();
    assert!(device.stop().unwrap().success());
}

/// The same with the bodies' fallback for browsers that cannot transfer streams (Safari):
/// chunk messages over the MessagePorts, forced by the viewer's `?ui_chunks=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_camera_ui_works_with_chunked_bodies_where_streams_do_not_transfer() {
    support::netns::require_loopback_only();
    let started = Instant::now();
    let device = Device::test_picture(640, 360, &[]).unwrap();
    let link = device
        .claim_link
        .clone()
        .expect("a fresh device prints a claim link");
    let owner = Viewer::open(&link.replacen("/#", "/?ui_chunks=1#", 1))
        .await
        .unwrap();
    let ui_origin = format!("http://ui-{}.localhost:{}", device.device_id, device.port);
    // The camera-UI panel loads once the device has said what this browser may do.
    owner
        .wait_for("pipeViewer.ui", Duration::from_secs(10))
        .await
        .unwrap();
    let chunked = owner.eval("pipeViewer.ui.chunks").await.unwrap();
    assert_eq!(chunked, true, "the chunk fallback is not forced");
    match owner_uses_the_ui(&owner, &ui_origin).await {
        Ok(report) => println!("chunked: {report}; total {:?}", started.elapsed()),
        Err(e) => ui_failure(e, &device, &owner, &ui_origin).await,
    }
    owner.close().await.unwrap();
    assert!(device.stop().unwrap().success());
}

async fn owner_uses_the_ui(owner: &Viewer, ui_origin: &str) -> Result<String> {
    owner.wait_role("owner", PLAY).await?;
    owner
        .watching(10, PLAY)
        .await
        .context("the owner watches")?;
    // The UI origin rule as the page applies it: another site than the viewer's, always.
    let origins = owner
        .eval(
            "['https://cam.example.net:8443/', 'https://cam.example.net/', 'http://localhost:8080/', \
              'http://127.0.0.1:8080/'].map((u) => pipeUi.uiOrigin('abcdefghijklmn23', new URL(u), \
              u.includes('8443') ? 'Cam-UI.example.org' : null))",
        )
        .await?;
    ensure!(
        origins
            == json!([
                "https://ui-abcdefghijklmn23.cam-ui.example.org:8443",
                null,
                null,
                "http://ui-abcdefghijklmn23.localhost:8080"
            ]),
        "UI origins: {origins}"
    );
    let t0 = Instant::now();
    owner
        .wait_for(
            "pipeViewer.proxy?.channels.every((c) => c.readyState === 'open')",
            PLAY,
        )
        .await
        .context("the four proxy channels open")?;
    ensure!(
        owner
            .eval("document.getElementById('ui-open').hidden")
            .await?
            == false,
        "the owner has no Camera settings button"
    );
    owner
        .eval("document.getElementById('ui-open').click()")
        .await?;
    let frame = owner.page.frame(ui_origin, UI).await?;
    settings_page(&frame).await?;
    let first_page = t0.elapsed();

    // The page is the camera's, on the UI origin, in standards mode, with its assets.
    let facts = frame
        .eval(
            "({ origin: location.origin, mode: document.compatMode, shim: !!window.__pipeShim, \
               logo: (async () => { const img = document.getElementById('logo'); \
                 if (!img.complete) await new Promise((r) => { img.onload = img.onerror = r; }); \
                 return img.naturalWidth; })() })",
        )
        .await?;
    ensure!(facts["origin"] == ui_origin, "frame origin: {facts}");
    ensure!(
        facts["mode"] == "CSS1Compat",
        "the shim put the page in quirks mode: {facts}"
    );
    ensure!(facts["shim"] == true, "no shim in the page: {facts}");
    let viewer_origin = owner.eval("location.origin").await?;
    let told = frame.eval("self.__pipeViewerOrigins").await?;
    ensure!(told == json!([viewer_origin]), "the frame talks to {told}");
    let logo = frame
        .wait_for(
            "document.getElementById('logo').complete && document.getElementById('logo').naturalWidth",
            UI,
        )
        .await
        .context("the logo (an absolute-path image) loads")?;
    ensure!(logo.as_u64().unwrap_or(0) > 0, "logo width {logo}");

    // The status WebSocket (through the shim) updates the page.
    frame
        .wait_for(
            "document.getElementById('status-connection').textContent.trim() === 'live' && Number(document.getElementById('status-updates').textContent) >= 2",
            UI,
        )
        .await
        .context("status WebSocket updates")?;

    // The visit cookie: set by the camera, sent back on the next request, readable by script.
    let visits: u64 = text(&frame, "server-visits")
        .await?
        .parse()
        .context("server-visits")?;
    ensure!(
        text(&frame, "cookie-visits").await? == visits.to_string(),
        "document.cookie does not show the camera's cookie: server {visits}, cookie {}",
        text(&frame, "cookie-visits").await?
    );
    frame.eval("location.reload()").await.ok(); // the frame navigates away mid-call
    let again = format!(
        "document.getElementById('server-visits')?.textContent.trim() === '{}'",
        visits + 1
    );
    frame
        .wait_for(&again, UI)
        .await
        .context("the cookie came back on the next request")?;
    settings_page(&frame).await?;

    // The frame cannot reach the viewer page.
    for what in [
        "parent.document",
        "parent.pipeViewer",
        "top.document.cookie",
    ] {
        let js = format!(
            "(() => {{ try {{ return typeof {what} + ' (reached)'; }} catch (e) {{ return e.name; }} }})()"
        );
        let got = frame.eval(&js).await?;
        ensure!(got == "SecurityError", "{what} from the UI frame: {got}");
    }

    // A form submitted in the frame (POST, answered 303) changes the live video.
    let width = owner.eval("pipeViewer.video.videoWidth").await?;
    ensure!(width == 640, "video width before: {width}");
    frame
        .eval(
            "document.getElementById('resolution').value = '1280x720'; \
             document.getElementById('overlay-text').value = 'through the proxy'; \
             document.getElementById('save').click(); true",
        )
        .await?;
    frame
        .wait_for(
            "!!document.getElementById('saved-banner') && location.search === '?saved=1'",
            UI,
        )
        .await
        .context("the form's 303 lands on /?saved=1")?;
    owner
        .wait_for("pipeViewer.video.videoWidth === 1280", PLAY)
        .await
        .context("the live video changes to 1280 wide")?;
    let api = frame
        .eval("fetch('/api/settings').then((r) => r.json())")
        .await?;
    ensure!(
        api["overlay_text"] == "through the proxy",
        "settings: {api}"
    );
    ensure!(api["resolution"] == "1280x720", "settings: {api}");

    // The browser stops the service worker: the next request still works (the shim gives the
    // restarted worker a new port), and so does a navigation.
    owner
        .page
        .command("ServiceWorker.enable", json!({}))
        .await?;
    owner
        .page
        .command("ServiceWorker.stopAllWorkers", json!({}))
        .await?;
    let status = frame
        .eval("fetch('/api/status').then((r) => r.status)")
        .await?;
    ensure!(
        status == 200,
        "a request after the worker stopped: {status}"
    );
    ensure!(
        frame
            .console_log()
            .iter()
            .any(|l| l.contains("gave the restarted service worker a port")),
        "the worker did not restart (or did not ask for a port)"
    );
    owner
        .page
        .command("ServiceWorker.stopAllWorkers", json!({}))
        .await?;
    frame.eval("location.href = '/'").await.ok();
    frame
        .wait_for(
            "location.search === '' && document.readyState === 'complete' && !!document.getElementById('settings-form')",
            UI,
        )
        .await
        .context("a navigation after the worker stopped")?;

    // A PUT through the UI's own script (fetch with a JSON body).
    let applied = frame
        .eval("demoUi.apply({ overlay_text: 'via the API' })")
        .await?;
    ensure!(applied["overlay_text"] == "via the API", "apply: {applied}");
    frame
        .wait_for(
            "document.getElementById('status-overlay').textContent === 'via the API'",
            UI,
        )
        .await
        .context("the WebSocket reports the API's change")?;

    // A relative link (`api/settings`) stays on the UI origin, and back again.
    frame
        .eval("document.getElementById('api-link').click(); true")
        .await?;
    frame
        .wait_for(
            "location.pathname === '/api/settings' && document.body?.textContent.includes('overlay_text')",
            UI,
        )
        .await
        .context("the relative link")?;
    frame.eval("history.back(); true").await?;
    settings_page(&frame).await?;

    // Without the worker (unregistered; as on a first visit or a hard reload) a camera address
    // gets the device's boot page, which installs the worker and loads the same address.
    frame
        .eval(
            "navigator.serviceWorker.getRegistrations() \
               .then((all) => Promise.all(all.map((r) => r.unregister()))) \
               .then(() => { setTimeout(() => { location.href = '/?after=unregister'; }, 0); return true; })",
        )
        .await?; // navigating inside the evaluated promise raced its reply ("target navigated")
    frame
        .wait_for(
            "location.search === '?after=unregister' && !!document.getElementById('settings-form') \
               && !!navigator.serviceWorker.controller",
            UI,
        )
        .await
        .context("the same address again after the boot page")?;
    let boots = frame
        .console_log()
        .iter()
        .filter(|l| l.contains("service worker ready, loading /?after=unregister"))
        .count();
    ensure!(
        boots == 1,
        "the boot page did not load the address again ({boots})"
    );

    // Pages that went away closed their status sockets: only the current page's stays open
    // (each would hold one of the proxy's 64 streams).
    owner
        .wait_for("pipeViewer.proxy.open <= 1", Duration::from_secs(5))
        .await
        .context("streams left open by pages that went away")?;
    // A new session (the viewer reconnects): the frame stays, its requests wait for the new
    // session's proxy, and its status socket, dropped with the old one, reconnects.
    let sessions = owner
        .eval("pipeViewer.sessions")
        .await?
        .as_u64()
        .unwrap_or(0);
    owner
        .eval("window.dispatchEvent(new HashChangeEvent('hashchange')); true")
        .await?;
    let status = frame
        .eval("fetch('/api/status').then((r) => r.status)")
        .await?;
    ensure!(status == 200, "a request across the reconnect: {status}");
    let next = format!("pipeViewer.sessions > {sessions}");
    owner.wait_for(&next, PLAY).await.context("a new session")?;
    let updates: u64 = text(&frame, "status-updates").await?.parse().unwrap_or(0);
    let live_again = format!(
        "document.getElementById('status-connection').textContent.trim() === 'live' \
           && Number(document.getElementById('status-updates').textContent) > {}",
        updates + 1
    );
    frame
        .wait_for(&live_again, UI)
        .await
        .context("the status socket after the reconnect")?;

    let stats = owner.eval("pipeViewer.proxy.stats").await?;
    Ok(format!(
        "first UI page {first_page:?} after the channels opened; proxy {stats}"
    ))
}

async fn view_borrower_gets_no_ui(b: &Viewer) -> Result<()> {
    let access = b.wait_role("borrower", PLAY).await?;
    ensure!(access["scope"] == "view", "scope: {access}");
    b.watching(5, PLAY).await.context("the borrower watches")?;
    ensure!(
        b.eval("document.getElementById('ui-open').hidden").await? == true,
        "a view-only borrower sees Camera settings"
    );
    let proxy: Value = b.eval("pipeViewer.proxy").await?;
    ensure!(
        proxy.is_null(),
        "a view-only borrower opened proxy channels"
    );
    Ok(())
}

/// Megabytes through the service worker both ways, a reader that pauses, a WebSocket message
/// of several frames, and 100 requests at once (over the 64-stream limit): the contract's flow
/// control and stream queueing against the real device bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_under_flow_control_and_requests_queue_beyond_the_stream_limit() {
    support::netns::require_loopback_only();
    let started = Instant::now();
    let upstream = upstream::Upstream::start().await;
    let origin = upstream.origin();
    let device = Device::test_picture(640, 360, &["--ui-upstream", &origin]).unwrap();
    let link = device
        .claim_link
        .clone()
        .expect("a fresh device prints a claim link");
    let owner = Viewer::open(&link).await.unwrap();
    let ui_origin = format!("http://ui-{}.localhost:{}", device.device_id, device.port);
    match large_and_many(&owner, &ui_origin).await {
        Ok(report) => println!(
            "{report}; the upstream saw {} requests; total {:?}",
            upstream.requests(),
            started.elapsed()
        ),
        Err(e) => ui_failure(e, &device, &owner, &ui_origin).await,
    }
    owner.close().await.unwrap();
    assert!(device.stop().unwrap().success());
}

/// Reads a response body and checks it is `n` bytes of the stand-in's pattern.
const READ_PATTERN: &str = r#"async (body, n) => {
  const reader = body.getReader();
  let at = 0;
  let bad = -1;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (let i = 0; i < value.length && bad < 0; i++) if (value[i] !== (at + i) % 251) bad = at + i;
    at += value.length;
  }
  return { length: at, bad, ok: at === n && bad < 0 };
}"#;

async fn large_and_many(owner: &Viewer, ui_origin: &str) -> Result<String> {
    owner.wait_role("owner", PLAY).await?;
    owner
        .wait_for(
            "pipeViewer.proxy?.channels.every((c) => c.readyState === 'open')",
            PLAY,
        )
        .await
        .context("the four proxy channels open")?;
    owner
        .eval("document.getElementById('ui-open').click()")
        .await?;
    let frame = owner.page.frame(ui_origin, UI).await?;
    // The stand-in has no page at `/`: its 404 still comes through the worker.
    frame
        .wait_for(
            "document.readyState === 'complete' && !location.pathname.startsWith('/__pipe/') && navigator.serviceWorker.controller",
            UI,
        )
        .await
        .context("the frame is controlled by the worker")?;

    let t = Instant::now();
    let download = frame
        .eval(&format!(
            "fetch('/bytes/5000000').then((r) => ({READ_PATTERN})(r.body, 5000000))"
        ))
        .await?;
    ensure!(
        download["ok"] == true,
        "5 MB through the worker: {download}"
    );
    let download_took = t.elapsed();

    let t = Instant::now();
    let upload = frame
        .eval(
            "(async () => { const n = 3000000; const body = new Uint8Array(n); \
               for (let i = 0; i < n; i++) body[i] = i % 251; \
               const d = new Uint8Array(await crypto.subtle.digest('SHA-256', body)); \
               const hex = [...d].map((b) => b.toString(16).padStart(2, '0')).join(''); \
               const r = await fetch('/hash', { method: 'POST', body }); \
               return { got: await r.text(), want: `${n} ${hex}` }; })()",
        )
        .await?;
    ensure!(upload["got"] == upload["want"], "3 MB upload: {upload}");
    let upload_took = t.elapsed();

    // A reader that pauses: the device may run ahead of it by one window (1 MiB, the
    // device -> browser direction's), no more.
    let paused = owner
        .eval(
            "(async () => { const p = pipeViewer.proxy; \
               const res = await p.request({ method: 'GET', path: '/bytes/4000000', headers: [] }); \
               const before = p.stats.bytesIn; const reader = res.body.getReader(); \
               let got = 0; let bad = -1; \
               const check = (v) => { for (let i = 0; i < v.length && bad < 0; i++) \
                 if (v[i] !== (got + i) % 251) bad = got + i; got += v.length; }; \
               while (got < 300000) check((await reader.read()).value); \
               const read = got; \
               await new Promise((r) => setTimeout(r, 1500)); \
               const arrived = p.stats.bytesIn - before; \
               for (;;) { const { value, done } = await reader.read(); if (done) break; check(value); } \
               return { got: read, arrived, total: got, bad }; })()",
        )
        .await?;
    let (got, arrived) = (
        paused["got"].as_u64().unwrap_or(0),
        paused["arrived"].as_u64().unwrap_or(u64::MAX),
    );
    // The whole window beyond what was read, plus frame headers.
    ensure!(
        arrived <= got + 1_048_576 + 1024,
        "the device sent beyond its credit to a paused reader: {paused}"
    );
    ensure!(
        paused["bad"] == -1 && paused["total"] == 4_000_000,
        "the paused body: {paused}"
    );

    let ws = owner
        .eval(
            "(async () => { const p = pipeViewer.proxy; const got = []; let closed; \
               const done = new Promise((r) => { closed = r; }); \
               const s = await p.websocket({ path: '/ws', protocols: ['echo.v1'] }, \
                 { onmessage: (d) => got.push(d), onclose: (code, reason, clean) => closed({ code, reason, clean }) }); \
               const big = new Uint8Array(700000).map((_, i) => i % 251); \
               s.send('hello \\u2713'); s.send(big); \
               while (got.length < 2) await new Promise((r) => setTimeout(r, 50)); \
               s.close(1000, 'bye'); const close = await done; const back = new Uint8Array(got[1]); \
               return { protocol: s.protocol, text: got[0], \
                 same: back.length === big.length && back.every((b, i) => b === big[i]), close }; })()",
        )
        .await?;
    ensure!(
        ws["protocol"] == "echo.v1" && ws["text"] == "hello \u{2713}" && ws["same"] == true,
        "WebSocket echo: {ws}"
    );
    ensure!(
        ws["close"]["code"] == 1000 && ws["close"]["clean"] == true,
        "WebSocket close: {ws}"
    );

    let t = Instant::now();
    let many = owner
        .eval(
            "(async () => { const p = pipeViewer.proxy; const before = p.stats.streams; \
               const all = await Promise.all(Array.from({ length: 100 }, () => \
                 p.request({ method: 'GET', path: '/slow/300', headers: [] }) \
                   .then(async (r) => [r.status, await new Response(r.body).text()]))); \
               return { ok: all.every(([s, text]) => s === 200 && text === 'late'), \
                 streams: p.stats.streams - before, refused: p.stats.refused, open: p.open }; })()",
        )
        .await?;
    ensure!(
        many["ok"] == true && many["open"] == 0,
        "100 requests at once: {many}"
    );
    let many_took = t.elapsed();
    // 100 requests of 300 ms, at most 64 at a time: at least two rounds.
    ensure!(
        many_took >= Duration::from_millis(600),
        "100 slow requests finished in {many_took:?}: more than 64 ran at once"
    );
    Ok(format!(
        "5 MB down through the worker in {download_took:?}, 3 MB up in {upload_took:?}, \
         paused reader: {got} B read, {arrived} B arrived; 100 requests in {many_took:?} ({many})"
    ))
}

//! The relay path: with `?relay=1` the viewer may only use TURN relay candidates, so video that
//! plays in Chromium has crossed a real coturn server, configured on the device through its
//! TOML config and handed to the viewer by `/api/info`.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use support::chromium::{Browser, Page};
use support::coturn::{self, Coturn};
use support::device::{ConfigFile, Device};

/// From opening the page: TURN allocation, permissions and channel binds add a few round
/// trips on loopback; 15 s is generous on a loaded 2-core machine and still catches a hang.
const BUDGET: Duration = Duration::from_secs(15);

/// The selected candidate pair and every local candidate, from the viewer's own getStats.
const SELECTED_PAIR: &str = r#"(async () => {
  const pc = window.pipeViewer.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let pair = null;
  const locals = [];
  report.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId);
    if (r.type === 'local-candidate') locals.push(`${r.candidateType} ${r.address}:${r.port}`);
  });
  if (!pair) return null;
  const side = (id) => {
    const c = report.get(id);
    return c && { type: c.candidateType, address: c.address, port: c.port,
      relayProtocol: c.relayProtocol ?? null, url: c.url ?? null };
  };
  return { state: pair.state, bytesReceived: pair.bytesReceived,
    local: side(pair.localCandidateId), remote: side(pair.remoteCandidateId), locals };
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_through_a_turn_relay_when_forced_to() {
    support::netns::require_loopback_only();
    let turn = Coturn::start().unwrap();
    let config = ConfigFile::new(&format!(
        "[ice]\nturn_servers = [{{ url = \"{}\", username = \"{}\", credential = \"{}\" }}]\n",
        turn.url(),
        coturn::USER,
        coturn::PASSWORD
    ))
    .unwrap();
    let device = Device::test_picture(640, 360, &["--config", config.arg()]).unwrap();
    // The device streams only to a browser it knows: this one claims it through its link.
    // `?relay=1` goes before the fragment: http://127.0.0.1:PORT/?relay=1#device=ID&...
    let claim = device
        .claim_link
        .clone()
        .expect("a fresh device prints a claim link");
    let url = claim.replacen("/#device=", "/?relay=1#device=", 1);
    assert_ne!(url, claim, "the claim link has the form .../#device=ID&...");

    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::launch(profile.path()).await.unwrap();
    let opened = Instant::now();
    let page = browser.new_page(&url).await.unwrap();

    match check_relayed_playback(&page, &turn, opened).await {
        Ok(report) => println!("{report}"),
        Err(e) => panic!(
            "{e:#}\n--- page console ---\n{}\n--- device log ---\n{}\n--- coturn log ---\n{}",
            page.console_log().join("\n"),
            device.log(),
            turn.log()
        ),
    }
    page.close().await.unwrap();
    drop(browser);
    let status = device.stop().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

async fn check_relayed_playback(page: &Page, turn: &Coturn, opened: Instant) -> Result<String> {
    let deadline = opened + BUDGET;
    let left = || deadline.saturating_duration_since(Instant::now());

    let servers = page
        .eval("fetch('/api/info').then((r) => r.json()).then((i) => i.ice_servers)")
        .await?;
    ensure!(
        servers.as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["urls"][0] == turn.url().as_str() && s["username"] == coturn::USER)),
        "/api/info does not hand out the TURN server {}: {servers}",
        turn.url()
    );

    let decoded = page
        .wait_for(
            "pipeViewer.stats().then((s) => s.video.framesDecoded >= 30 && s.video.framesDecoded)",
            left(),
        )
        .await
        .context("30 frames decoded through the relay")?;
    let playing_after = opened.elapsed();

    let pair: Value = page
        .wait_for(SELECTED_PAIR, left())
        .await
        .context("a selected candidate pair")?;
    let local = &pair["local"];
    ensure!(
        local["type"] == "relay",
        "the selected pair's local candidate is not a relay: {pair}"
    );
    let port = local["port"].as_u64().unwrap_or(0);
    let (lo, hi) = turn.relay_ports;
    ensure!(
        local["address"] == coturn::ADDRESS.to_string().as_str()
            && (u64::from(lo)..=u64::from(hi)).contains(&port),
        "the relay candidate is not one of our coturn's ({lo}-{hi}): {pair}"
    );
    ensure!(
        pair["locals"].as_array().is_some_and(|l| l
            .iter()
            .all(|c| c.as_str().is_some_and(|c| c.starts_with("relay ")))),
        "iceTransportPolicy 'relay' must gather relay candidates only: {pair}"
    );
    ensure!(
        pair["bytesReceived"].as_u64().unwrap_or(0) > 10_000,
        "little media on the relayed pair: {pair}"
    );
    Ok(format!(
        "{decoded} frames decoded after {playing_after:?} through {}: {pair}",
        turn.url()
    ))
}

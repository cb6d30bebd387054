//! Certificate renewal in a real browser: a browser whose certificate is close to expiry (a
//! short-lived one, through the viewer's `?cert_ttl_ms=` test hook) makes a new one over its
//! authorised session and offers it with `renew`; it reconnects at once presenting the new
//! certificate, whose DTLS handshake proves the key, and the device moves the grant then (the
//! owner's list shows the new fingerprint, connected). Later sessions use it and still play.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;
use support::device::Device;
use support::viewer::{Viewer, short};

const PLAY: Duration = Duration::from_secs(15);
/// The first certificate lives an hour: well inside the 30 days that trigger renewal.
const SHORT_TTL_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// The stored certificate's expiry (ms since the epoch), straight from IndexedDB.
const STORED_EXPIRY: &str = r#"new Promise((resolve, reject) => {
  const open = indexedDB.open('pipe');
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    const get = open.result.transaction('identity').objectStore('identity').get('certificate');
    get.onsuccess = () => { resolve(get.result?.cert?.expires ?? null); open.result.close(); };
    get.onerror = () => reject(get.error);
  };
})"#;

fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_close_to_expiry_is_renewed_and_the_grant_follows_it() {
    support::netns::require_loopback_only();
    let started = Instant::now();
    let device = Device::test_picture(640, 360, &[]).unwrap();
    let claim = device.claim_link.clone().expect("a claim link");
    let url = claim.replacen("/#", &format!("/?cert_ttl_ms={SHORT_TTL_MS}#"), 1);
    let viewer = Viewer::open(&url).await.unwrap();
    match renews(&viewer, &device).await {
        Ok(report) => println!("{report}; total {:?}", started.elapsed()),
        Err(e) => panic!(
            "{e:#}\n--- page console ---\n{}\n--- device log ---\n{}",
            viewer.console(),
            device.log()
        ),
    }
    viewer.close().await.unwrap();
    assert!(device.stop().unwrap().success());
}

async fn renews(viewer: &Viewer, device: &Device) -> Result<String> {
    let first = viewer.fingerprint().await?;
    viewer.wait_role("owner", PLAY).await?;
    viewer
        .watching(10, PLAY)
        .await
        .context("the owner watches")?;

    let renewed = viewer
        .wait_for("pipeViewer.renewedTo", PLAY)
        .await
        .context("the viewer renews its short-lived certificate")?;
    let renewed = renewed.as_str().context("a fingerprint")?.to_owned();
    ensure!(
        renewed != first && renewed.len() == 95,
        "renewed to {renewed}, was {first}"
    );
    let expires = viewer
        .eval(STORED_EXPIRY)
        .await?
        .as_f64()
        .context("a stored certificate")? as u64;
    let left = expires.saturating_sub(epoch_ms());
    ensure!(
        (360 * DAY_MS..=366 * DAY_MS).contains(&left),
        "the new certificate expires in {} days, not a year",
        left / DAY_MS
    );

    // The grant moved: the owner's list names the new certificate, connected (the session
    // that proved it).
    let list = viewer.control(json!({"type": "grants"})).await?;
    let grants = list["grants"].as_array().context("a grants list")?;
    ensure!(
        grants.len() == 1
            && grants[0]["role"] == "owner"
            && grants[0]["fingerprint"] == short(&renewed).as_str()
            && grants[0]["connected"] == true,
        "after renewal to {}: {list}",
        short(&renewed)
    );
    ensure!(
        viewer.fingerprint().await? == renewed,
        "the session after the offer does not present the new certificate"
    );
    viewer
        .watching(10, PLAY)
        .await
        .context("the session goes on after renewal")?;
    let access = viewer.eval("pipeViewer.access").await?;
    ensure!(access["role"] == "owner", "access after renewal: {access}");

    // The next session presents the new certificate and still plays (no test hook now).
    viewer.goto("about:blank").await?;
    let reopened = Instant::now();
    viewer.goto(&device.url).await?;
    viewer.wait_role("owner", PLAY).await?;
    viewer
        .watching(10, PLAY)
        .await
        .context("the next session plays")?;
    let now = viewer.fingerprint().await?;
    ensure!(
        now == renewed,
        "the next session uses {now}, not the renewed {renewed}"
    );
    let list = viewer.control(json!({"type": "grants"})).await?;
    ensure!(
        list["grants"][0]["fingerprint"] == short(&renewed).as_str()
            && list["grants"][0]["connected"] == true,
        "{list}"
    );
    ensure!(
        viewer.eval("pipeViewer.renewedTo").await?.is_null(),
        "a fresh certificate was renewed again"
    );
    Ok(format!(
        "renewed {} -> {}; the next session played after {:?}",
        short(&first),
        short(&renewed),
        reopened.elapsed()
    ))
}

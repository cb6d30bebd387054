//! Claim, lend, borrow, revoke and expiry in real browsers, each its own Chromium profile (its
//! own certificate): the owner lends from the viewer's control channel, a borrower watches
//! through the lend link, a stranger with the plain link or a spent link gets nothing, and a
//! revoked or expired borrower's picture stops within a second.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use support::device::Device;
use support::viewer::{Viewer, ensure_flat, short};

/// Opening a page to playing takes 1-3 s on loopback; waits are generous for a loaded 2-core
/// machine and still fail well inside the test's minute.
const PLAY: Duration = Duration::from_secs(15);
/// How long a revoked or expired borrower's picture may keep going (docs/security.md).
const CUT: Duration = Duration::from_secs(1);

/// A device whose lends may be seconds long (`[grants] lend_min_secs = 1`).
fn device() -> (Device, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipe.toml");
    std::fs::write(&config, "[grants]\nlend_min_secs = 1\n").unwrap();
    let config = config.to_str().expect("temp paths are UTF-8");
    let device = Device::test_picture(640, 360, &["--config", config]).unwrap();
    (device, dir)
}

/// Now, in the browsers' clock (`Date.now()`: milliseconds since the epoch).
fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// The owner claims the device through its claim link (with `query` before the fragment) and
/// watches.
async fn owner(device: &Device, query: &str) -> Result<Viewer> {
    let link = device
        .claim_link
        .as_deref()
        .context("a fresh device prints a claim link")?;
    let a = Viewer::open(&link.replacen("/#", &format!("/{query}#"), 1)).await?;
    a.wait_role("owner", PLAY).await?;
    a.watching(10, PLAY).await.context("the owner watches")?;
    ensure!(
        !a.fragment().await?.contains("claim="),
        "the spent claim secret stayed in the address"
    );
    Ok(a)
}

async fn lend(owner: &Viewer, secs: u64) -> Result<Value> {
    let lent = owner
        .control(json!({"type": "lend", "scope": "view", "secs": secs}))
        .await?;
    ensure!(lent["type"] == "lent", "lend refused: {lent}");
    ensure!(
        lent["link"]
            .as_str()
            .is_some_and(|l| l.contains("&invite=")),
        "no invite link: {lent}"
    );
    ensure!(
        lent["qr_svg"].as_str().is_some_and(|q| q.contains("<svg")),
        "no QR code: {lent}"
    );
    println!(
        "lent reply: {} bytes of JSON, qr_svg {} bytes",
        lent.to_string().len(),
        lent["qr_svg"].as_str().map_or(0, str::len)
    );
    Ok(lent)
}

fn failure(e: anyhow::Error, device: &Device, viewers: &[(&str, &Viewer)]) -> ! {
    let consoles: Vec<String> = viewers
        .iter()
        .map(|(name, v)| format!("--- console of {name} ---\n{}", v.console()))
        .collect();
    panic!(
        "{e:#}\n{}\n--- device log ---\n{}",
        consoles.join("\n"),
        device.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_lends_borrower_watches_until_revoked_and_strangers_get_nothing() {
    support::netns::require_loopback_only();
    let started = Instant::now();
    let (device, _config) = device();
    let a = owner(&device, "").await.unwrap();
    let claimed = started.elapsed();

    let lent = lend(&a, 120).await.unwrap();
    let link = lent["link"].as_str().unwrap().to_owned();
    let b = Viewer::open(&link).await.unwrap();
    if let Err(e) = borrower_watches(&b, 120).await {
        failure(e, &device, &[("A", &a), ("B", &b)]);
    }
    let borrowing = started.elapsed();

    // A stranger with the plain viewer link, then with the spent lend link, sees nothing.
    let c = Viewer::open(&device.url).await.unwrap();
    if let Err(e) = stranger_gets_nothing(&c, &link).await {
        failure(e, &device, &[("A", &a), ("C", &c)]);
    }
    c.close().await.unwrap(); // stop its retries (unknown browsers are rate-limited per address)
    let strangers = started.elapsed();

    match revoke_cuts(&a, &b).await {
        Ok(report) => println!(
            "claimed after {claimed:?}, borrower watching after {borrowing:?}, strangers \
             checked after {strangers:?}; {report}; total {:?}",
            started.elapsed()
        ),
        Err(e) => failure(e, &device, &[("A", &a), ("B", &b)]),
    }
    b.close().await.unwrap();
    a.close().await.unwrap();
    assert!(device.stop().unwrap().success());
}

async fn borrower_watches(b: &Viewer, secs: u64) -> Result<()> {
    let access = b.wait_role("borrower", PLAY).await?;
    ensure!(access["scope"] == "view", "scope: {access}");
    let expires = access["expires_at"]
        .as_u64()
        .context("a borrower's access expires")?;
    let now = epoch_ms() / 1000;
    ensure!(
        (now + secs - 5..=now + secs + 1).contains(&expires),
        "expires_at {expires}, now {now}, lent for {secs} s"
    );
    b.watching(10, PLAY).await.context("the borrower watches")?;
    ensure!(
        !b.fragment().await?.contains("invite="),
        "the spent invite stayed in the address"
    );
    let who = b.eval("document.getElementById('who').textContent").await?;
    ensure!(
        who.as_str().is_some_and(|w| w.contains("access until")),
        "the borrower is not shown when access ends: {who}"
    );
    // Borrowers cannot lend, nor see who else has access.
    for request in [
        json!({"type": "lend", "scope": "view", "secs": 60}),
        json!({"type": "grants"}),
    ] {
        let reply = b.control(request.clone()).await?;
        ensure!(reply["type"] == "error", "a borrower's {request}: {reply}");
    }
    ensure!(
        b.eval("document.getElementById('share-open').hidden")
            .await?
            == true,
        "a borrower sees the owner's Share button"
    );
    Ok(())
}

async fn stranger_gets_nothing(c: &Viewer, spent_link: &str) -> Result<()> {
    c.wait_status("has no access to this camera", PLAY).await?;
    let access = c.eval("pipeViewer.access").await?;
    ensure!(
        access["role"].is_null() && access["claimed"] == true,
        "the stranger's access: {access}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (presented, _) = c.frames().await?;
    let decoded = c.frames_decoded().await?;
    ensure!(
        presented == 0 && decoded.as_u64().unwrap_or(0) == 0,
        "a stranger got frames: {presented} presented, {decoded} decoded"
    );
    ensure!(
        c.eval("document.getElementById('share-open').hidden")
            .await?
            == true,
        "a stranger sees the owner's Share button"
    );
    let reply = c.control(json!({"type": "grants"})).await?;
    ensure!(
        reply["type"] == "error",
        "a stranger asked for the grants: {reply}"
    );

    // The borrower's link again, in another browser: the invite is spent.
    c.goto(spent_link).await?;
    c.wait_status("invitation did not work", PLAY).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (presented, _) = c.frames().await?;
    ensure!(presented == 0, "a spent invite gave {presented} frames");
    ensure!(
        !c.fragment().await?.contains("invite="),
        "the refused invite stayed in the address"
    );
    Ok(())
}

async fn revoke_cuts(a: &Viewer, b: &Viewer) -> Result<String> {
    let b_fp = short(&b.fingerprint().await?);
    let a_fp = short(&a.fingerprint().await?);
    let list = a.control(json!({"type": "grants"})).await?;
    let grants = list["grants"].as_array().context("a grants list")?;
    let owner = grants
        .iter()
        .find(|g| g["role"] == "owner")
        .context("the owner's grant")?;
    ensure!(
        owner["fingerprint"] == a_fp.as_str() && owner["connected"] == true,
        "{list}"
    );
    let borrower = grants
        .iter()
        .find(|g| g["fingerprint"] == b_fp.as_str())
        .with_context(|| format!("B ({b_fp}) in the owner's list: {list}"))?;
    ensure!(
        borrower["role"] == "borrower"
            && borrower["scope"] == "view"
            && borrower["connected"] == true,
        "B in the list: {borrower}"
    );

    let id = borrower["id"].clone();
    let done = a.control(json!({"type": "revoke", "id": id})).await?;
    let revoked_at = epoch_ms();
    let revoked = Instant::now();
    ensure!(
        done == json!({"type": "done", "request": "revoke"}),
        "revoke: {done}"
    );

    tokio::time::sleep((revoked + CUT).saturating_duration_since(Instant::now())).await;
    let (first, _) = b.frames().await?;
    tokio::time::sleep((revoked + 3 * CUT).saturating_duration_since(Instant::now())).await;
    let (second, last_at) = b.frames().await?;
    ensure_flat("revoked borrower", first, second)?;
    ensure!(
        last_at <= revoked_at + CUT.as_millis() as u64,
        "the revoked borrower's last frame came {} ms after the revocation",
        last_at - revoked_at
    );
    b.wait_status("access to this camera has ended", PLAY)
        .await?;

    let list = a.control(json!({"type": "grants"})).await?;
    ensure!(
        list["grants"]
            .as_array()
            .is_some_and(|g| g.len() == 1 && g[0]["role"] == "owner"),
        "after the revocation: {list}"
    );
    Ok(format!(
        "revoked: last frame {} ms {} the revocation was confirmed, {first} = {second} frames at \
         +1 s and +3 s",
        last_at.abs_diff(revoked_at),
        if last_at > revoked_at {
            "after"
        } else {
            "before"
        }
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_borrower_is_cut_within_a_second_of_expiry() {
    support::netns::require_loopback_only();
    let started = Instant::now();
    let (device, _config) = device();
    // `?lend_secs=3` adds a 3 s choice to the owner's Share panel, which lends this time.
    let a = owner(&device, "?lend_secs=3").await.unwrap();
    let link = match lend_from_the_panel(&a, 3).await {
        Ok(link) => link,
        Err(e) => failure(e, &device, &[("A", &a)]),
    };
    let b2 = Viewer::open(&link).await.unwrap();
    match expiry_cuts(&b2).await {
        Ok(report) => println!("{report}; total {:?}", started.elapsed()),
        Err(e) => failure(e, &device, &[("A", &a), ("B2", &b2)]),
    }
    let list = a.control(json!({"type": "grants"})).await.unwrap();
    assert!(
        list["grants"].as_array().is_some_and(|g| g.len() == 1),
        "the expired grant is gone: {list}"
    );
    b2.close().await.unwrap();
    a.close().await.unwrap();
    assert!(device.stop().unwrap().success());
}

/// Lends through the owner's UI: Share, pick the duration and `view`, Lend; returns the link.
async fn lend_from_the_panel(a: &Viewer, secs: u64) -> Result<String> {
    let shown = a
        .wait_for("!document.getElementById('share-open').hidden", PLAY)
        .await;
    shown.context("the owner sees the Share button")?;
    a.eval(&format!(
        "document.getElementById('share-open').click();
         document.getElementById('lend-secs').value = '{secs}';
         document.getElementById('lend-scope').value = 'view';
         document.getElementById('lend-form').requestSubmit();"
    ))
    .await?;
    let link = a
        .wait_for("document.getElementById('lent-link').value", PLAY)
        .await
        .context("the panel shows the lend link")?;
    let link = link.as_str().unwrap_or_default().to_owned();
    ensure!(link.contains("&invite="), "lend link {link}");
    let panel = a
        .eval(
            "({ qr: document.getElementById('lent-qr').src.slice(0, 40),
                warning: document.getElementById('lent-warning').textContent,
                rows: [...document.querySelectorAll('#grants-body tr')].map((r) => r.textContent) })",
        )
        .await?;
    ensure!(
        panel["qr"]
            .as_str()
            .is_some_and(|q| q.starts_with("data:image/svg+xml")),
        "QR image: {panel}"
    );
    ensure!(
        panel["warning"].as_str().is_some_and(|w| w.contains("LAN")),
        "no public_url, so the panel warns the link works on the LAN only: {panel}"
    );
    let fp = short(&a.fingerprint().await?);
    let owner_row = |row: &Value| {
        row.as_str()
            .is_some_and(|r| r.starts_with("owner") && r.contains(&fp))
    };
    ensure!(
        panel["rows"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(owner_row)),
        "the owner's own grant in the list: {panel}"
    );
    Ok(link)
}

async fn expiry_cuts(b2: &Viewer) -> Result<String> {
    let access = b2.wait_role("borrower", PLAY).await?;
    let expires_ms = access["expires_at"].as_u64().context("expires_at")? * 1000;
    let playing = b2
        .watching(
            10,
            Duration::from_millis(expires_ms.saturating_sub(epoch_ms())),
        )
        .await
        .context("watching before the grant expires")?;
    let wait_until =
        |ms: u64| tokio::time::sleep(Duration::from_millis(ms.saturating_sub(epoch_ms())));
    wait_until(expires_ms + 1000).await;
    let (first, _) = b2.frames().await?;
    wait_until(expires_ms + 3000).await;
    let (second, last_at) = b2.frames().await?;
    ensure_flat("expired borrower", first, second)?;
    ensure!(
        last_at <= expires_ms + CUT.as_millis() as u64,
        "the last frame came {} ms after expiry",
        last_at.saturating_sub(expires_ms)
    );
    b2.wait_status("access to this camera has ended", PLAY)
        .await?;
    Ok(format!(
        "expiry: {playing} frames before, last frame {} ms {} expiry, {first} = {second} at +1 s and +3 s",
        last_at.abs_diff(expires_ms),
        if last_at > expires_ms {
            "after"
        } else {
            "before"
        }
    ))
}

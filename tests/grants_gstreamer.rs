//! Grants enforced on the real handshake, with in-process GStreamer viewers presenting their
//! own certificates: unknown certificates get nothing, the owner lends, borrowers watch within
//! their window and are cut off within a second of expiry or revocation, and a `view` grant
//! cannot open channels of its own.

mod support;

use std::time::{Duration, Instant};

use gst::prelude::*;
use pipe_testkit::receiver::Options;
use serde_json::{Value, json};
use support::grants::{device, ended_at, reply, stranger, viewer, watching};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_certificate_gets_no_media_no_channels_and_is_closed() {
    support::netns::require_loopback_only();
    let device = device();
    let nobody = viewer(&device, Options::new(stranger(), true)).await;
    let access = reply(&nobody, "access", 0, &device).await;
    assert_eq!(access["role"], Value::Null, "{access}");
    assert_eq!(access["claimed"], false);
    // Owner-only requests are refused; so is a channel of its own.
    assert!(nobody.control(r#"{"type":"grants"}"#));
    let refused = reply(&nobody, "error", 0, &device).await;
    assert!(
        refused["message"].as_str().unwrap().contains("no access"),
        "{refused}"
    );
    let channel = nobody.open_channel("ui").expect("connected");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = channel.property::<gst_webrtc::WebRTCDataChannelState>("ready-state");
    assert_ne!(
        state,
        gst_webrtc::WebRTCDataChannelState::Open,
        "the device closes it"
    );
    let stats = nobody.stats();
    assert_eq!(
        (stats.frames, stats.audio_buffers),
        (0, 0),
        "no media at all: {stats:?}"
    );
    // Closed after its 10 s pre-auth window.
    let ended = nobody
        .wait_for(Duration::from_secs(12), |s| s.ended.is_some())
        .await;
    let ended = ended.unwrap_or_else(|s| panic!("still open: {s:?}"));
    assert!(
        ended.ended.as_deref().unwrap().contains("no grant"),
        "{ended:?}"
    );
    assert_eq!(ended.frames, 0);
    assert!(device.log().contains("unknown browser: pre-auth session"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn borrowers_watch_within_their_window_and_are_cut_off_within_a_second() {
    support::netns::require_loopback_only();
    let device = device();
    let owner = viewer(&device, device.owner(false)).await;
    watching(&owner, &device).await;
    assert_eq!(reply(&owner, "done", 0, &device).await["request"], "claim");

    // Expiry: a 3 s lend.
    let seen = owner.stats().control.len();
    assert!(owner.control(r#"{"type":"lend","scope":"view","secs":3}"#));
    let lent = reply(&owner, "lent", seen, &device).await;
    let link = lent["link"].as_str().unwrap();
    assert!(lent["qr_svg"].as_str().unwrap().starts_with("<?xml"));
    let token = link.split("&invite=").nth(1).unwrap();
    let borrower = viewer(&device, Options::new(stranger(), false).redeem(token)).await;
    watching(&borrower, &device).await;
    let access = reply(&borrower, "access", 1, &device).await;
    assert_eq!(
        (access["role"].as_str(), access["scope"].as_str()),
        (Some("borrower"), Some("view")),
        "{access}"
    );
    let expires_at = access["expires_at"].as_u64().unwrap();
    let cut = ended_at(&borrower, Duration::from_secs(10))
        .await
        .expect("cut off at expiry");
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let late = now_unix.saturating_sub(Duration::from_secs(expires_at)) - cut.elapsed();
    println!("cut off {} ms after expiry", late.as_millis());
    assert!(
        late < Duration::from_millis(1000),
        "cut off {late:?} after expiry"
    );
    let frames = borrower.stats().frames;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(borrower.stats().frames, frames, "no frames after the cut");

    // The spent invite does not work again.
    let replay = viewer(&device, Options::new(stranger(), false).redeem(token)).await;
    let refused = reply(&replay, "error", 0, &device).await;
    assert_eq!(refused["request"], "redeem", "{refused}");
    replay.kill();

    // Revocation: a 2 minute `view` lend, revoked while watching.
    let seen = owner.stats().control.len();
    owner.control(r#"{"type":"lend","scope":"view","secs":120}"#);
    let lent = reply(&owner, "lent", seen, &device).await;
    let token = lent["link"]
        .as_str()
        .unwrap()
        .split("&invite=")
        .nth(1)
        .unwrap()
        .to_string();
    let borrower = viewer(&device, Options::new(stranger(), false).redeem(&token)).await;
    watching(&borrower, &device).await;

    // A `view` grant cannot open a channel of its own; the owner's (view+ui) can.
    let ui = borrower.open_channel("ui").expect("connected");
    let mine = owner.open_channel("ui").expect("connected");
    tokio::time::sleep(Duration::from_secs(2)).await;
    use gst_webrtc::WebRTCDataChannelState::Open;
    assert_ne!(
        ui.property::<gst_webrtc::WebRTCDataChannelState>("ready-state"),
        Open
    );
    assert_eq!(
        mine.property::<gst_webrtc::WebRTCDataChannelState>("ready-state"),
        Open
    );

    let seen = owner.stats().control.len();
    owner.control(r#"{"type":"grants"}"#);
    let list = reply(&owner, "grants", seen, &device).await;
    let grants = list["grants"].as_array().unwrap();
    let lent_grant = grants
        .iter()
        .find(|g| g["role"] == "borrower")
        .expect("the borrower's grant");
    assert_eq!(lent_grant["connected"], true, "{list}");
    let id = lent_grant["id"].as_str().unwrap();
    let seen = owner.stats().control.len();
    let revoked = Instant::now();
    owner.control(&format!(r#"{{"type":"revoke","id":"{id}"}}"#));
    assert_eq!(
        reply(&owner, "done", seen, &device).await["request"],
        "revoke"
    );
    let cut = ended_at(&borrower, Duration::from_secs(5))
        .await
        .expect("cut off at revocation");
    println!(
        "cut off {} ms after the revoke request",
        (cut - revoked).as_millis()
    );
    assert!(cut - revoked < Duration::from_millis(1000));
    assert!(owner.stats().ended.is_none(), "the owner keeps watching");
    let audit = std::fs::read_to_string(device.state_dir().join("audit.log")).unwrap();
    for event in [
        "claimed",
        "lent",
        "borrowed",
        "connected",
        "refused",
        "revoked",
        "expired",
    ] {
        assert!(
            audit.contains(&format!(r#""event":"{event}""#)),
            "audit has {event}:\n{audit}"
        );
    }
    owner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_from_the_command_line_cuts_a_live_session() {
    support::netns::require_loopback_only();
    let device = device();
    let owner = viewer(&device, device.owner(false)).await;
    watching(&owner, &device).await;
    let listing = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["grants", "list", "--json", "--state-dir"])
        .arg(device.state_dir())
        .output()
        .unwrap();
    let listing: Value = serde_json::from_slice(&listing.stdout).expect("grants list --json");
    let id = listing["grants"][0]["id"]
        .as_str()
        .expect("the owner's grant")
        .to_string();
    let revoked = Instant::now();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["grants", "revoke", &id, "--state-dir"])
        .arg(device.state_dir())
        .status()
        .unwrap();
    assert!(status.success());
    let cut = ended_at(&owner, Duration::from_secs(5))
        .await
        .expect("cut off");
    println!(
        "cut off {} ms after `pipe grants revoke`",
        (cut - revoked).as_millis()
    );
    assert!(
        cut - revoked < Duration::from_millis(1000),
        "the device polls the file every 250 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessing_stranger_gets_three_tries_a_session_and_a_short_audit_log() {
    support::netns::require_loopback_only();
    let device = device();
    let owner = viewer(&device, device.owner(false)).await;
    watching(&owner, &device).await;
    let audit = device.state_dir().join("audit.log");
    let lines = || {
        std::fs::read_to_string(&audit)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = lines();

    // Two sessions of a stranger, 20 wrong claim secrets each.
    for _ in 0..2 {
        let guesser = viewer(&device, Options::new(stranger(), false)).await;
        reply(&guesser, "access", 0, &device).await;
        for n in 0..20 {
            assert!(guesser.control(&format!(
                r#"{{"type":"claim","secret":"guess{n:04}aaaaaaaaaaaaaaaaaaaaaaaa"}}"#
            )));
        }
        let answered = guesser
            .wait_for(Duration::from_secs(10), |s| {
                s.control
                    .iter()
                    .filter(|m| m.contains(r#""type":"error""#))
                    .count()
                    >= 20
                    || s.ended.is_some()
            })
            .await
            .unwrap_or_else(|s| s);
        let errors: Vec<&String> = answered
            .control
            .iter()
            .filter(|m| m.contains(r#""type":"error""#))
            .collect();
        let capped = errors
            .iter()
            .filter(|m| m.contains("attempts on this connection"))
            .count();
        println!(
            "  20 claims: {} errors, {capped} of them the attempt cap (session ended: {:?})",
            errors.len(),
            answered.ended
        );
        assert!(capped >= errors.len().saturating_sub(3), "{errors:?}");
        guesser.kill();
    }
    // Three audited attempts per session, aggregated by kind: a line or two, not a hundred.
    let added = lines() - before;
    println!("  audit.log grew by {added} lines for 40 wrong claims");
    assert!(added <= 4, "audit.log grew by {added} lines");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&audit).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "audit.log is {mode:o}");
}

/// `renew` only names the next certificate: the grant moves when a session proves that key
/// (its DTLS handshake), and the old certificate's session ends then. It used to move at once
/// to any fingerprint, with the old session streaming on beside the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_moves_the_grant_only_to_a_certificate_that_proves_its_key() {
    support::netns::require_loopback_only();
    let device = device();
    let options = device.owner(false);
    let before = options.identity.fingerprint;
    let owner = viewer(&device, options).await;
    watching(&owner, &device).await;

    // A fingerprint whose key the renewer does not hold: the offer is taken, nothing moves.
    let elsewhere = stranger();
    let seen = owner.stats().control.len();
    assert!(owner.control(
        &json!({"type": "renew", "fingerprint": elsewhere.fingerprint.to_string()}).to_string()
    ));
    reply(&owner, "done", seen, &device).await;
    let seen = owner.stats().control.len();
    assert!(owner.control(r#"{"type":"grants"}"#));
    let list = reply(&owner, "grants", seen, &device).await;
    assert_eq!(
        list["grants"][0]["fingerprint"],
        before.short(),
        "the grant moved to a certificate no one has shown: {list}"
    );
    let frames = owner.stats().frames;
    owner
        .wait_for(Duration::from_secs(5), |s| s.frames > frames + 10)
        .await
        .unwrap_or_else(|s| panic!("the owner stopped streaming: {s:?}\n{}", device.log()));

    // The browser's real next certificate: offered, then shown in a session of its own.
    let next = stranger();
    let seen = owner.stats().control.len();
    assert!(owner.control(
        &json!({"type": "renew", "fingerprint": next.fingerprint.to_string()}).to_string()
    ));
    reply(&owner, "done", seen, &device).await;
    let renewed = viewer(&device, Options::new(next.clone(), false)).await;
    let shown = Instant::now();
    watching(&renewed, &device).await;
    let access = reply(&renewed, "access", 0, &device).await;
    assert_eq!(access["role"], "owner", "{access}");
    let ended = ended_at(&owner, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("the old certificate's session streams on\n{}", device.log()));
    println!(
        "old session ended {} ms after the new certificate connected",
        (ended - shown).as_millis()
    );
    let seen = renewed.stats().control.len();
    assert!(renewed.control(r#"{"type":"grants"}"#));
    let list = reply(&renewed, "grants", seen, &device).await;
    let grants = list["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 1, "{list}");
    assert_eq!(grants[0]["fingerprint"], next.fingerprint.short(), "{list}");

    // The first offer was replaced by the second: that key still gets nothing.
    let late = viewer(&device, Options::new(elsewhere, false)).await;
    let access = reply(&late, "access", 0, &device).await;
    assert!(access["role"].is_null(), "{access}");
}

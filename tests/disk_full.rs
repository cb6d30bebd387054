//! A full disk must not keep anyone in (issue: "fill the disk, and revocation and expiry stop
//! working"): with the state directory on a real, small tmpfs that is then filled, the owner
//! keeps watching, a revocation still cuts its borrower within a second, an expiry still bites
//! on time, new grants are refused with a clear error, and once there is room again the disk
//! catches up with what memory decided (the revoked grant does not come back).

mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use pipe_testkit::receiver::Options;
use support::device::Device;
use support::grants::{ended_at, reply, stranger, viewer, watching};

/// Mounts a tmpfs of `size` on a new temporary directory (scripts/netns gives the tests a
/// mount namespace of their own, so nothing outside sees it).
fn small_state_dir(size: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
        ])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "cannot mount a tmpfs: run this test through scripts/netns (a mount namespace)"
    );
    dir
}

/// Fills the file system holding `dir` with `dir/filler`; returns how many bytes it took.
fn fill(dir: &std::path::Path) -> u64 {
    let mut file = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match file.write(&block) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n as u64,
        }
    }
    // Byte by byte to the last one: not even an audit line fits now.
    while let Ok(1) = file.write(&[0]) {
        written += 1;
    }
    let _ = file.sync_all();
    written
}

/// Lends `secs` of `view` and returns the invite token.
async fn lend(owner: &pipe_testkit::receiver::Receiver, secs: u64, device: &Device) -> String {
    let seen = owner.stats().control.len();
    assert!(owner.control(&format!(
        r#"{{"type":"lend","scope":"view","secs":{secs}}}"#
    )));
    let lent = reply(owner, "lent", seen, device).await;
    lent["link"]
        .as_str()
        .unwrap()
        .split("&invite=")
        .nth(1)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_keeps_nobody_in() {
    support::netns::require_loopback_only();
    let state = small_state_dir("2m");
    let state_path = state.path().to_owned();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("pipe.toml");
    std::fs::write(&config, "[grants]\nlend_min_secs = 1\n").unwrap();
    let device = Device::start_in(
        state,
        &[
            "--pipeline",
            "virtual-webcam",
            "--width",
            "320",
            "--height",
            "240",
            "--config",
            config.to_str().unwrap(),
        ],
    )
    .unwrap();

    let owner = viewer(&device, device.owner(false)).await;
    watching(&owner, &device).await;
    assert_eq!(reply(&owner, "done", 0, &device).await["request"], "claim");

    // Two borrowers: one to revoke, one whose lend runs out while the disk is full.
    let token = lend(&owner, 120, &device).await;
    let revoked = viewer(&device, Options::new(stranger(), false).redeem(&token)).await;
    watching(&revoked, &device).await;
    let token = lend(&owner, 8, &device).await;
    let expiring = viewer(&device, Options::new(stranger(), false).redeem(&token)).await;
    watching(&expiring, &device).await;
    let access = reply(&expiring, "access", 1, &device).await;
    let expires_at = access["expires_at"].as_u64().unwrap();

    let seen = owner.stats().control.len();
    owner.control(r#"{"type":"grants"}"#);
    let list = reply(&owner, "grants", seen, &device).await;
    let revoked_id = list["grants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["role"] == "borrower" && g["expires_at"].as_u64() != Some(expires_at))
        .expect("the 120 s borrower")["id"]
        .as_str()
        .unwrap()
        .to_string();

    let filled = fill(&state_path);
    println!("  state directory filled with {} KiB", filled / 1024);

    // Revocation with a full disk: the borrower is cut within a second, the owner told done.
    let seen = owner.stats().control.len();
    let asked = Instant::now();
    owner.control(&format!(r#"{{"type":"revoke","id":"{revoked_id}"}}"#));
    let cut = ended_at(&revoked, Duration::from_secs(5))
        .await
        .unwrap_or_else(|| panic!("a revoke on a full disk did not cut:\n{}", device.log()));
    println!(
        "  revoked on a full disk: cut {} ms after the request",
        (cut - asked).as_millis()
    );
    assert!(cut - asked < Duration::from_secs(1));
    assert_eq!(
        reply(&owner, "done", seen, &device).await["request"],
        "revoke"
    );

    // Expiry with a full disk: on time.
    let cut = ended_at(&expiring, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("a lend on a full disk did not expire:\n{}", device.log()));
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let late = now_unix.saturating_sub(Duration::from_secs(expires_at)) - cut.elapsed();
    println!(
        "  expired on a full disk: cut {} ms after expiry",
        late.as_millis()
    );
    assert!(late < Duration::from_secs(1), "cut {late:?} after expiry");

    // A new grant cannot be written: refused, saying why.
    let seen = owner.stats().control.len();
    owner.control(r#"{"type":"lend","scope":"view","secs":60}"#);
    let refused = reply(&owner, "error", seen, &device).await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("No space left") || message.contains("cannot"),
        "{refused}"
    );
    println!("  a new lend on a full disk: {message}");

    // The owner watched through all of it.
    let before = owner.stats().frames;
    if let Err(s) = owner
        .wait_for(Duration::from_secs(3), |s| s.frames >= before + 30)
        .await
    {
        panic!("the owner stalled on a full disk: {s:?}\n{}", device.log());
    }

    // Room again: the disk catches up with memory, and the revoked grant stays revoked.
    std::fs::remove_file(state_path.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let on_disk = std::fs::read_to_string(state_path.join("grants.json")).unwrap();
        if !on_disk.contains(&revoked_id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "grants.json still holds the revoked grant:\n{on_disk}\n{}",
            device.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let seen = owner.stats().control.len();
    owner.control(r#"{"type":"grants"}"#);
    let list = reply(&owner, "grants", seen, &device).await;
    assert!(
        !list.to_string().contains(&revoked_id),
        "the revoked grant came back: {list}"
    );
    println!("  room again: grants.json caught up, the revoked grant stays revoked");
}

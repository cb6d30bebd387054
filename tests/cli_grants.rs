//! `pipe grants list|revoke` and `pipe reset-owner`, run as the real binary against a state
//! directory prepared through the store, as a device would leave it. No network, no device.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use pipe::grants::model::{LendPolicy, LendRequest, Scope};
use pipe::grants::secret::Secret;
use pipe::grants::store::Store;
use pipe::identity::{DeviceIdentity, Fingerprint};
use serde_json::Value;

/// How long the borrower in `prepared()` may watch: `list` shows it as "in 2h 13m".
const LEND_SECS: u64 = 2 * 3600 + 13 * 60 + 30;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A state directory as a device leaves it: its identity, an owner (`owner-1`), a borrower
/// (`borrower-1`) and a pending invite (`invite-2`).
fn prepared() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    DeviceIdentity::load_or_create(dir.path()).unwrap();
    let store = Store::new(dir.path());
    store.load_or_init().unwrap();
    let secret = store
        .claim_secret()
        .unwrap()
        .expect("a new device is unclaimed");
    let owner = Fingerprint::of_der(b"owner");
    let at = now();
    store
        .update(|g| g.claim(&secret, owner, "owner-1".into(), at).map(|_| ()))
        .unwrap()
        .unwrap();
    let lend = |id: &str, token: &Secret| {
        let request = LendRequest {
            invite_id: id.into(),
            scope: Scope::View,
            secs: LEND_SECS,
        };
        store
            .update(|g| {
                g.lend(&owner, token, request, LendPolicy::default(), at)
                    .map(|_| ())
            })
            .unwrap()
            .unwrap();
    };
    let token = Secret::generate();
    lend("invite-1", &token);
    store
        .update(|g| {
            g.redeem(
                &token,
                Fingerprint::of_der(b"borrower"),
                "borrower-1".into(),
                at,
            )
            .map(|_| ())
        })
        .unwrap()
        .unwrap();
    lend("invite-2", &Secret::generate());
    dir
}

/// Runs `pipe ARGS --state-dir DIR`, with an empty config file and none of the `PIPE_*`
/// variables of whoever runs the tests.
fn pipe(dir: &Path, args: &[&str]) -> Output {
    let config = tempfile::NamedTempFile::new().unwrap();
    command(config.path())
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .output()
        .expect("the pipe binary runs")
}

fn command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pipe"));
    command.arg("--config").arg(config).env("TZ", "UTC");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PIPE_") {
            command.env_remove(key);
        }
    }
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

fn audit_lines(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn list_shows_grants_and_pending_invites() {
    let dir = prepared();
    let text = ok(pipe(dir.path(), &["grants", "list"]));
    assert!(text.starts_with("Claimed."), "{text}");
    let owner = text.lines().find(|l| l.contains("owner-1")).unwrap();
    assert!(owner.contains("owner") && owner.contains("view+ui") && owner.contains("never"));
    assert!(
        owner.contains(&Fingerprint::of_der(b"owner").short()),
        "{owner}"
    );
    let borrower = text.lines().find(|l| l.contains("borrower-1")).unwrap();
    assert!(borrower.contains("borrower") && borrower.contains(" view "));
    assert!(borrower.contains("(in 2h 13m)"), "{borrower}");
    let invite = text.lines().find(|l| l.contains("invite-2")).unwrap();
    assert!(invite.contains("2h 13m"), "{invite}");
    assert!(
        invite.contains("(in 23h 59m)") || invite.contains("(in 1d)"),
        "redeemable for a day: {invite}"
    );
    assert!(!text.contains("invite-1"), "a redeemed invite is spent");
}

#[test]
fn list_json_parses() {
    let dir = prepared();
    let json: Value = serde_json::from_str(&ok(pipe(dir.path(), &["grants", "list", "--json"])))
        .expect("valid JSON");
    assert_eq!(json["claimed"], true);
    assert_eq!(json["claimable"], false);
    let grants = json["grants"].as_array().unwrap();
    let ids: Vec<&str> = grants.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["owner-1", "borrower-1"]);
    assert_eq!(grants[1]["role"], "borrower");
    assert_eq!(grants[1]["scope"], "view");
    let expires = grants[1]["expires_at"].as_u64().unwrap();
    assert!(expires.abs_diff(now() + LEND_SECS) < 60, "{expires}");
    assert_eq!(json["invites"][0]["id"], "invite-2");
    assert_eq!(json["invites"][0]["lend_secs"], LEND_SECS);
    assert!(json["invites"][0].get("token_hash").is_none(), "no hashes");
}

#[test]
fn list_says_unclaimed() {
    let dir = tempfile::tempdir().unwrap();
    Store::new(dir.path()).load_or_init().unwrap();
    let text = ok(pipe(dir.path(), &["grants", "list"]));
    assert!(text.starts_with("Unclaimed"), "{text}");
    assert!(text.contains("No grants.") && text.contains("No pending invites."));
}

#[test]
fn revoke_removes_one_grant_and_is_audited() {
    let dir = prepared();
    let before = audit_lines(dir.path()).len();
    let text = ok(pipe(dir.path(), &["grants", "revoke", "borrower-1"]));
    assert!(text.contains("Revoked grant borrower-1"), "{text}");
    let grants = Store::new(dir.path()).reload().unwrap().unwrap();
    let ids: Vec<&str> = grants.grants.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["owner-1"]);
    let audit = audit_lines(dir.path());
    assert_eq!(audit.len(), before + 1);
    let last = audit.last().unwrap();
    assert_eq!(last["event"], "revoked");
    assert_eq!(last["grant"], "borrower-1");
    assert_eq!(last["detail"], "by the command line");
    assert_eq!(
        last["fingerprint"],
        Fingerprint::of_der(b"borrower").to_sdp()
    );
}

#[test]
fn revoke_cancels_a_pending_invite() {
    let dir = prepared();
    let text = ok(pipe(dir.path(), &["grants", "revoke", "invite-2"]));
    assert!(text.contains("Cancelled invite invite-2"), "{text}");
    let grants = Store::new(dir.path()).reload().unwrap().unwrap();
    assert!(grants.invites.is_empty());
    assert_eq!(grants.grants.len(), 2);
}

#[test]
fn revoking_an_unknown_id_fails_clearly_and_changes_nothing() {
    let dir = prepared();
    let grants_json = std::fs::read(dir.path().join("grants.json")).unwrap();
    let output = pipe(dir.path(), &["grants", "revoke", "nope"]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("no grant or pending invite has the id `nope`")
            && err.contains("pipe grants list"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("grants.json")).unwrap(),
        grants_json
    );
}

#[test]
fn reset_owner_prints_a_claim_link_that_matches_the_store_and_the_identity() {
    let dir = prepared();
    let text = ok(pipe(dir.path(), &["reset-owner", "--port", "8123"]));
    let link = text
        .split_whitespace()
        .find(|w| w.contains("#device="))
        .unwrap_or_else(|| panic!("no link in {text}"));
    let (origin, fragment) = link.split_once("/#").unwrap();
    assert_eq!(origin, "http://127.0.0.1:8123");
    let field = |name: &str| {
        fragment
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {link}"))
    };
    let identity = DeviceIdentity::load_or_create(dir.path()).unwrap();
    assert_eq!(field("device"), identity.device_id.as_str());
    assert_eq!(
        field("fp"),
        identity
            .fingerprint
            .to_sdp()
            .replace(':', "")
            .to_lowercase()
    );
    let store = Store::new(dir.path());
    let secret = Secret::presented(field("claim"));
    assert_eq!(
        store.claim_secret().unwrap().unwrap().expose(),
        secret.expose()
    );
    let grants = store.reload().unwrap().unwrap();
    assert!(grants.claim.expect("unclaimed").matches(&secret));
    assert!(grants.grants.is_empty() && grants.invites.is_empty());
    assert!(
        text.contains('\u{2580}') || text.contains('\u{2584}'),
        "a QR code"
    );
    assert!(text.contains("/local"), "{text}");
    let last = audit_lines(dir.path()).pop().unwrap();
    assert_eq!(last["event"], "reset");
}

#[test]
fn reset_owner_uses_the_public_url() {
    let dir = prepared();
    let text = ok(pipe(
        dir.path(),
        &["reset-owner", "--public-url", "https://cam.example.net"],
    ));
    assert!(text.contains("https://cam.example.net/#device="), "{text}");
    let output = pipe(
        dir.path(),
        &["reset-owner", "--public-url", "cam.example.net"],
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("device.public_url"));
}

#[test]
fn a_corrupt_grants_file_is_a_clear_error_and_is_left_alone() {
    let dir = prepared();
    let path = dir.path().join("grants.json");
    std::fs::write(&path, b"{ half a file").unwrap();
    let secret = std::fs::read(dir.path().join("claim-secret")).ok();
    for args in [
        &["grants", "list"][..],
        &["grants", "list", "--json"],
        &["grants", "revoke", "owner-1"],
        &["reset-owner"],
    ] {
        let output = pipe(dir.path(), args);
        assert!(!output.status.success(), "{args:?}");
        let err = stderr(&output);
        assert!(err.contains("grants.json is corrupt"), "{args:?}: {err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"{ half a file", "{args:?}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("claim-secret")).ok(),
        secret,
        "no new claim secret either"
    );
}

#[test]
fn a_state_dir_without_grants_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let output = pipe(dir.path(), &["grants", "list"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("grants.json does not exist"),
        "{}",
        stderr(&output)
    );
    let missing = dir.path().join("nope");
    let output = pipe(&missing, &["grants", "list"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("does not exist"));
    assert!(
        !missing.exists(),
        "nothing is created for a mistyped directory"
    );
}

#[test]
fn the_state_dir_comes_from_the_environment_then_the_config_file() {
    let dir = prepared();
    let config = dir.path().join("with-state-dir.toml");
    std::fs::write(
        &config,
        format!(
            "[device]\nstate_dir = {:?}\n",
            dir.path().display().to_string()
        ),
    )
    .unwrap();
    let list = |command: &mut Command| ok(command.args(["grants", "list"]).output().unwrap());
    assert!(list(&mut command(&config)).contains("owner-1"));
    let empty = tempfile::tempdir().unwrap();
    Store::new(empty.path()).load_or_init().unwrap();
    let text = list(command(&config).env("PIPE_STATE_DIR", empty.path()));
    assert!(text.starts_with("Unclaimed"), "the variable wins: {text}");
}

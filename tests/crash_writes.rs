//! `kill -9` at random moments while grants are written (a fault, not an attack): 200
//! `pipe grants revoke` processes killed after a random delay each. The state always loads, no
//! grant is lost (those not revoked are all there), none comes back once it was seen gone, and
//! no temporary file piles up. Seeded (PIPE_CRASH_SEED, default 1); the delays scale with how
//! long a whole revoke takes on the machine, so a slow or loaded one still splits the write.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pipe::grants::model::{LendPolicy, LendRequest, Scope};
use pipe::grants::secret::Secret;
use pipe::grants::store::Store;
use pipe::identity::{DeviceIdentity, Fingerprint};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const INVITES: usize = 200;
/// Whole revokes timed first, to spread the kills over the time one takes on this machine.
const CALIBRATION: usize = 3;

/// The ids of the invites and grants on disk now; the state must load.
fn on_disk(dir: &Path) -> BTreeSet<String> {
    let grants = Store::new(dir)
        .reload()
        .unwrap_or_else(|e| panic!("the state does not load after a kill: {e}"))
        .expect("grants.json exists");
    grants
        .grants
        .iter()
        .map(|g| g.id.clone())
        .chain(grants.invites.iter().map(|i| i.id.clone()))
        .collect()
}

#[test]
fn grants_survive_kill_9_at_random_moments() {
    let seed: u64 = std::env::var("PIPE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    DeviceIdentity::load_or_create(dir.path()).unwrap();
    let store = Store::new(dir.path());
    store.load_or_init().unwrap();
    let secret = store.claim_secret().unwrap().unwrap();
    let owner = Fingerprint::of_der(b"owner");
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    store
        .update(|g| g.claim(&secret, owner, "owner-1".into(), at).map(|_| ()))
        .unwrap()
        .unwrap();
    let ids = (0..INVITES)
        .map(|n| format!("invite-{n}"))
        .chain((0..CALIBRATION).map(|n| format!("calibration-{n}")));
    for id in ids {
        let request = LendRequest {
            invite_id: id,
            scope: Scope::View,
            secs: 3600,
        };
        store
            .update(|g| {
                g.lend(
                    &owner,
                    &Secret::generate(),
                    request,
                    LendPolicy::default(),
                    at,
                )
                .map(|_| ())
            })
            .unwrap()
            .unwrap();
    }
    let config = tempfile::NamedTempFile::new().unwrap();
    let revoke = |id: &str| {
        Command::new(env!("CARGO_BIN_EXE_pipe"))
            .arg("--config")
            .arg(config.path())
            .args(["grants", "revoke", id, "--state-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long a whole revoke takes here (a loaded or slow machine takes longer): the kills
    // are spread over 1.5 times that, so some land before the write and some after.
    let whole = (0..CALIBRATION)
        .map(|n| {
            let started = std::time::Instant::now();
            let status = revoke(&format!("calibration-{n}")).wait().unwrap();
            assert!(status.success(), "a revoke failed: {status}");
            started.elapsed()
        })
        .max()
        .unwrap();
    let spread = (whole.as_micros() as u64 * 3 / 2).max(2_000);
    let files_before = std::fs::read_dir(dir.path()).unwrap().count();

    let mut gone: BTreeSet<String> = BTreeSet::new();
    let (mut killed_before, mut revoked) = (0, 0);
    for n in 0..INVITES {
        let id = format!("invite-{n}");
        let mut child = revoke(&id);
        std::thread::sleep(Duration::from_micros(rng.random_range(0..spread)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let now = on_disk(dir.path());
        assert!(
            now.contains("owner-1"),
            "the owner's grant was lost (case {n})"
        );
        for later in n + 1..INVITES {
            assert!(
                now.contains(&format!("invite-{later}")),
                "invite-{later} lost at case {n}"
            );
        }
        for earlier in &gone {
            assert!(!now.contains(earlier), "{earlier} came back at case {n}");
        }
        if now.contains(&id) {
            killed_before += 1;
        } else {
            revoked += 1;
            gone.insert(id);
        }
    }
    let files_after = std::fs::read_dir(dir.path()).unwrap().count();
    println!(
        "  {INVITES} revokes killed at random over 0-{} ms (seed {seed}; a whole revoke took {} ms): {revoked} took effect, {killed_before} were killed first; files {files_before} -> {files_after}",
        spread / 1000,
        whole.as_millis()
    );
    assert!(
        revoked > 0 && killed_before > 0,
        "the delays never split the write: tune them"
    );
    assert!(
        files_after <= files_before + 2,
        "temporary files pile up: {:?}",
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
}

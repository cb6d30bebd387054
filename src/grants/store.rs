//! Grants on disk: `grants.json` (the whole state, replaced atomically), `claim-secret` (the
//! claim secret while the device is unclaimed, mode 0600, so the link can be shown again after
//! a restart) and `audit.log` (one JSON line per event, appended and synced).
//!
//! The device and the `pipe grants` / `pipe reset-owner` commands change the same files, so
//! every change is a read-modify-write under an exclusive lock on `grants.lock`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::model::{Grants, Time};
use super::secret::Secret;
use crate::identity::Fingerprint;
use crate::persist;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is corrupt ({message}); it was left as it is: restore it from a backup, or move it away to start unclaimed"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("{path} does not exist: has `pipe device` run with this state directory?")]
    Missing { path: PathBuf },
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent<'a> {
    pub at: Time,
    /// `claimed`, `lent`, `borrowed`, `connected`, `refused`, `revoked`, `expired`, `renewed`, `reset`.
    pub event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<&'a str>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub detail: &'a str,
}

/// The audit log is rotated past this size: `audit.log` becomes `audit.log.1` (the one before
/// is dropped). Refusals are aggregated before they get here (`audit::AuditLimiter`), so this
/// holds months of a normal device's events and bounds what a flood can take.
pub const AUDIT_MAX_BYTES: u64 = 1 << 20;

pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.to_owned(),
        }
    }

    fn grants_path(&self) -> PathBuf {
        self.dir.join("grants.json")
    }

    fn claim_path(&self) -> PathBuf {
        self.dir.join("claim-secret")
    }

    fn io(action: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> StoreError {
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }

    /// Reads the grants, creating an unclaimed state (with a new claim secret) on first start.
    /// A state directory or files made readable by others (older versions, a hand-made
    /// directory) are tightened to the owner alone: they hold the audit trail and the key.
    pub fn load_or_init(&self) -> Result<Grants, StoreError> {
        let _lock = self.lock()?;
        self.tighten();
        match self.read()? {
            Some(grants) => Ok(grants),
            None => {
                let secret = Secret::generate();
                let grants = Grants::unclaimed(secret.hash());
                self.write_claim_secret(&secret)?;
                self.write(&grants)?;
                Ok(grants)
            }
        }
    }

    /// Applies `change` to the current state on disk and writes the result, all under the
    /// lock. Nothing is written if `change` fails.
    pub fn update<T, E>(
        &self,
        change: impl FnOnce(&mut Grants) -> Result<T, E>,
    ) -> Result<Result<(Grants, T), E>, StoreError> {
        let _lock = self.lock()?;
        // A missing file is not "no grants": writing an empty state would leave the device
        // unclaimable. Only `load_or_init` creates it.
        let mut grants = self.read()?.ok_or_else(|| StoreError::Missing {
            path: self.grants_path(),
        })?;
        match change(&mut grants) {
            Ok(value) => {
                self.write(&grants)?;
                if grants.claim.is_none() {
                    let _ = std::fs::remove_file(self.claim_path());
                }
                Ok(Ok((grants, value)))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    /// The state as on disk now (for the device to notice changes made by the CLI).
    pub fn reload(&self) -> Result<Option<Grants>, StoreError> {
        let _lock = self.lock()?;
        self.read()
    }

    /// The unused claim secret, if the device is unclaimed.
    pub fn claim_secret(&self) -> Result<Option<Secret>, StoreError> {
        match std::fs::read_to_string(self.claim_path()) {
            Ok(text) => Ok(Some(Secret::presented(text.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::io("read", self.claim_path())(e)),
        }
    }

    /// Back to unclaimed with a fresh claim secret (for `pipe reset-owner`).
    pub fn reset_owner(&self) -> Result<(Secret, usize), StoreError> {
        let secret = Secret::generate();
        self.write_claim_secret(&secret)?;
        let hash = secret.hash();
        let (_, dropped) = self
            .update(|g| Ok::<_, std::convert::Infallible>(g.reset_owner(hash).len()))?
            .expect("infallible");
        Ok((secret, dropped))
    }

    pub fn audit(&self, event: &AuditEvent<'_>) -> Result<(), StoreError> {
        let path = self.dir.join("audit.log");
        if std::fs::metadata(&path).is_ok_and(|m| m.len() >= AUDIT_MAX_BYTES) {
            let old = self.dir.join("audit.log.1");
            std::fs::rename(&path, &old).map_err(Self::io("rotate", path.clone()))?;
        }
        let mut line = serde_json::to_string(event).expect("audit events serialise");
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(Self::io("open", path.clone()))?;
        file.write_all(line.as_bytes())
            .map_err(Self::io("append to", path.clone()))?;
        file.sync_data().map_err(Self::io("sync", path))
    }

    fn tighten(&self) {
        use std::os::unix::fs::PermissionsExt;
        let set = |path: PathBuf, mode: u32| {
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.permissions().mode() & 0o077 != 0
            {
                let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
            }
        };
        set(self.dir.clone(), 0o700);
        for file in ["audit.log", "audit.log.1", "grants.lock", "grants.json"] {
            set(self.dir.join(file), 0o600);
        }
    }

    /// Writes `grants` as the state on disk, whatever is there (the device catching up with
    /// changes it could only make in memory, the disk having been full).
    pub fn replace(&self, grants: &Grants) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        self.write(grants)?;
        if grants.claim.is_none() {
            let _ = std::fs::remove_file(self.claim_path());
        }
        Ok(())
    }

    fn read(&self) -> Result<Option<Grants>, StoreError> {
        let path = self.grants_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io("read", path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    fn write(&self, grants: &Grants) -> Result<(), StoreError> {
        let text = serde_json::to_string_pretty(grants).expect("grants serialise");
        persist::write_atomic(&self.grants_path(), text.as_bytes(), 0o600)
            .map_err(Self::io("write", self.grants_path()))
    }

    fn write_claim_secret(&self, secret: &Secret) -> Result<(), StoreError> {
        persist::ensure_dir(&self.dir).map_err(Self::io("create", self.dir.clone()))?;
        persist::write_atomic(&self.claim_path(), secret.expose().as_bytes(), 0o600)
            .map_err(Self::io("write", self.claim_path()))
    }

    fn lock(&self) -> Result<File, StoreError> {
        persist::ensure_dir(&self.dir).map_err(Self::io("create", self.dir.clone()))?;
        let path = self.dir.join("grants.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(Self::io("open", path.clone()))?;
        file.lock().map_err(Self::io("lock", path))?;
        // A writer killed mid-write (power loss, kill -9) leaves its temporary file; with the
        // lock held no other writer is using one.
        persist::remove_stale_temporaries(&self.dir, &["grants.json", "claim-secret"]);
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::model::{LendPolicy, LendRequest, Scope};

    #[test]
    fn first_start_is_unclaimed_with_a_readable_claim_secret() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let grants = store.load_or_init().unwrap();
        let secret = store.claim_secret().unwrap().expect("unclaimed");
        assert!(grants.claim.unwrap().matches(&secret));
        assert!(
            !std::fs::read_to_string(dir.path().join("grants.json"))
                .unwrap()
                .contains(secret.expose())
        );
        // A restart shows the same secret.
        store.load_or_init().unwrap();
        assert_eq!(
            store.claim_secret().unwrap().unwrap().expose(),
            secret.expose()
        );
    }

    #[test]
    fn changes_persist_and_claiming_removes_the_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.load_or_init().unwrap();
        let secret = store.claim_secret().unwrap().unwrap();
        let owner = Fingerprint::of_der(b"owner");
        store
            .update(|g| g.claim(&secret, owner, "o".into(), 10).map(|_| ()))
            .unwrap()
            .unwrap();
        assert!(store.claim_secret().unwrap().is_none());
        let token = Secret::generate();
        let req = LendRequest {
            invite_id: "i".into(),
            scope: Scope::View,
            secs: 900,
        };
        store
            .update(|g| {
                g.lend(&owner, &token, req, LendPolicy::default(), 20)
                    .map(|_| ())
            })
            .unwrap()
            .unwrap();
        let again = Store::new(dir.path()).reload().unwrap().unwrap();
        assert!(again.is_claimed());
        assert_eq!(again.invites.len(), 1);
        // A failed change writes nothing.
        let before = std::fs::read(dir.path().join("grants.json")).unwrap();
        assert!(store.update(|g| g.revoke("nope")).unwrap().is_err());
        assert_eq!(
            std::fs::read(dir.path().join("grants.json")).unwrap(),
            before
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("grants.json"), b"{ half a file").unwrap();
        let store = Store::new(dir.path());
        let err = store.load_or_init().unwrap_err();
        assert!(err.to_string().contains("grants.json is corrupt"), "{err}");
        assert!(store.update(|_| Ok::<_, ()>(())).is_err());
        assert_eq!(
            std::fs::read(dir.path().join("grants.json")).unwrap(),
            b"{ half a file"
        );
    }

    #[test]
    fn reset_owner_makes_a_new_claim_secret() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        store.load_or_init().unwrap();
        let first = store.claim_secret().unwrap().unwrap();
        store
            .update(|g| {
                g.claim(&first, Fingerprint::of_der(b"o"), "o".into(), 1)
                    .map(|_| ())
            })
            .unwrap()
            .unwrap();
        let (second, dropped) = store.reset_owner().unwrap();
        assert_eq!(dropped, 1);
        assert_ne!(first.expose(), second.expose());
        assert!(
            store
                .reload()
                .unwrap()
                .unwrap()
                .claim
                .unwrap()
                .matches(&second)
        );
    }

    #[test]
    fn audit_lines_append() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        for event in ["claimed", "lent"] {
            store
                .audit(&AuditEvent {
                    at: 1,
                    event,
                    fingerprint: None,
                    grant: Some("g"),
                    detail: "",
                })
                .unwrap();
        }
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert_eq!(log.lines().count(), 2);
        assert!(
            log.starts_with(r#"{"at":1,"event":"claimed","grant":"g"}"#),
            "{log}"
        );
    }

    #[test]
    fn the_audit_log_rotates_and_loose_modes_are_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let store = Store::new(dir.path());
        std::fs::write(
            dir.path().join("audit.log"),
            vec![b'x'; AUDIT_MAX_BYTES as usize],
        )
        .unwrap();
        std::fs::set_permissions(
            dir.path().join("audit.log"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        store.load_or_init().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join("audit.log")), 0o600);
        let event = AuditEvent {
            at: 1,
            event: "revoked",
            fingerprint: None,
            grant: None,
            detail: "",
        };
        store.audit(&event).unwrap();
        let rotated = std::fs::metadata(dir.path().join("audit.log.1"))
            .unwrap()
            .len();
        assert_eq!(rotated, AUDIT_MAX_BYTES);
        let fresh = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert_eq!(fresh.lines().count(), 1);
        assert_eq!(mode(&dir.path().join("audit.log")), 0o600);
    }
}

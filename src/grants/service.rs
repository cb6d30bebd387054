//! The device's grants at run time: the state in memory, every change written through the
//! store (on a blocking thread), each change announced to the sessions so they re-check their
//! peer within a second, expiry on time, and edits made by the CLI picked up from disk.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::audit::AuditLimiter;
use super::model::{Access, Grant, GrantError, Grants, LendPolicy, LendRequest, Scope, Time};
use super::renewal::Renewals;
use super::secret::Secret;
use super::store::{AuditEvent, Store, StoreError};
use crate::identity::Fingerprint;

/// How often expiry and the file on disk are checked: revocation and expiry cut sessions
/// within a second.
const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct GrantsService {
    store: Store,
    state: Mutex<Grants>,
    policy: LendPolicy,
    changed: watch::Sender<u64>,
    /// Memory holds a revocation or expiry the disk does not have yet (the write failed):
    /// the disk is not read back over it, and the write is retried every tick.
    unsaved: AtomicBool,
    /// Held across every change and refresh, so memory and disk move in one order: a refresh
    /// never reads the disk back over a change made in memory first (a revocation the disk
    /// could not take yet), and no change starts from a disk that is behind memory. Taken
    /// before `state`, never while holding it.
    writing: Mutex<()>,
    audit: Mutex<AuditLimiter>,
    /// Certificates named by `renew`, waiting for a session to prove them (memory only).
    renewals: Mutex<Renewals>,
}

pub fn now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn new_id() -> String {
    data_encoding::HEXLOWER.encode(&rand::random::<[u8; 6]>())
}

impl GrantsService {
    /// Loads (or creates) the grants in `state_dir`; a corrupt file is an error.
    pub fn open(state_dir: &std::path::Path, policy: LendPolicy) -> Result<Arc<Self>, StoreError> {
        let store = Store::new(state_dir);
        let state = store.load_or_init()?;
        Ok(Arc::new(Self {
            store,
            state: Mutex::new(state),
            policy,
            changed: watch::channel(0).0,
            unsaved: AtomicBool::new(false),
            writing: Mutex::new(()),
            audit: Mutex::new(AuditLimiter::default()),
            renewals: Mutex::new(Renewals::default()),
        }))
    }

    /// Starts the thread that expires grants and notices the CLI's edits; it ends with
    /// `shutdown`. A thread of its own (not tokio's blocking pool): it reads and syncs files
    /// four times a second for the device's whole life.
    pub fn spawn_watch(self: &Arc<Self>, shutdown: watch::Receiver<bool>) {
        let service = self.clone();
        let spawned = std::thread::Builder::new()
            .name("pipe-grants".into())
            .spawn(move || {
                // A full disk fails every tick: say so when it starts and every 30 s.
                let mut warned: Option<std::time::Instant> = None;
                while !*shutdown.borrow() {
                    match service.refresh() {
                        Err(error)
                            if warned.is_none_or(|t| t.elapsed() > Duration::from_secs(30)) =>
                        {
                            warn!(%error, "cannot refresh grants");
                            warned = Some(std::time::Instant::now());
                        }
                        Err(_) => {}
                        Ok(()) => warned = None,
                    }
                    std::thread::sleep(TICK);
                }
            });
        if let Err(error) = spawned {
            warn!(%error, "cannot start the grants watcher: expiry and CLI edits will go unnoticed");
        }
    }

    /// A receiver that changes whenever any grant does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn check(&self, fingerprint: &Fingerprint) -> Option<Access> {
        self.state().check(fingerprint, now())
    }

    pub fn is_claimed(&self) -> bool {
        self.state().is_claimed()
    }

    pub fn list(&self) -> Vec<Grant> {
        self.state().grants.clone()
    }

    pub fn claim_secret(&self) -> Result<Option<Secret>, StoreError> {
        self.store.claim_secret()
    }

    pub fn claim(&self, secret: &Secret, fingerprint: Fingerprint) -> Result<Grant, ServiceError> {
        let at = now();
        let result = self.change(|g| g.claim(secret, fingerprint, new_id(), at).cloned());
        let grant = self.audited(result, "claimed", fingerprint)?;
        info!(grant = %grant.id, fingerprint = %fingerprint.short(), "device claimed");
        Ok(grant)
    }

    /// Mints an invite: the token is returned once and only its hash is kept.
    pub fn lend(&self, by: Fingerprint, scope: Scope, secs: u64) -> Result<Secret, ServiceError> {
        let token = Secret::generate();
        let request = LendRequest {
            invite_id: new_id(),
            scope,
            secs,
        };
        let (at, policy) = (now(), self.policy);
        let result = self.change(|g| {
            g.lend(&by, &token, request, policy, at)
                .map(|i| i.id.clone())
        });
        let id = self.audited(result, "lent", by)?;
        info!(invite = %id, ?scope, secs, "invite minted");
        Ok(token)
    }

    pub fn redeem(&self, token: &Secret, fingerprint: Fingerprint) -> Result<Grant, ServiceError> {
        let at = now();
        let result = self.change(|g| g.redeem(token, fingerprint, new_id(), at).cloned());
        let grant = self.audited(result, "borrowed", fingerprint)?;
        info!(grant = %grant.id, fingerprint = %fingerprint.short(), "invite redeemed");
        Ok(grant)
    }

    /// Revokes grant `id`; `by` is the owner asking from a browser (`None`: the CLI). It takes
    /// effect in memory (and so on live sessions) first, whether or not the disk takes it.
    pub fn revoke(&self, by: Option<Fingerprint>, id: &str) -> Result<Grant, ServiceError> {
        let at = now();
        let result = self.change_first_in_memory(|g| {
            if let Some(by) = by {
                g.check(&by, at)
                    .filter(|a| a.role == super::Role::Owner)
                    .ok_or(GrantError::NotOwner)?;
                // From a browser the last owner cannot go: the camera would be unclaimable
                // without a shell (where `pipe grants revoke` + `pipe reset-owner` remain).
                if g.is_last_owner(id) {
                    return Err(GrantError::LastOwner);
                }
            }
            g.revoke(id)
        });
        let grant = self.audited(
            result,
            "revoked",
            by.unwrap_or_else(|| Fingerprint::of_der(b"cli")),
        )?;
        info!(grant = %grant.id, "grant revoked");
        Ok(grant)
    }

    /// Step one of a renewal: the session of `old`'s grant names the certificate that will
    /// replace it. Nothing moves until a session proves `new` (`complete_renewal`).
    pub fn offer_renewal(&self, old: Fingerprint, new: Fingerprint) -> Result<(), ServiceError> {
        let at = now();
        {
            let state = self.state();
            state
                .check(&old, at)
                .ok_or_else(|| GrantError::UnknownGrant(old.short()))?;
            if state.check(&new, at).is_some() {
                return Err(GrantError::AlreadyGranted.into());
            }
        }
        self.renewals().offer(old, new, at);
        info!(from = %old.short(), to = %new.short(), "renewal offered: waiting for the new certificate");
        Ok(())
    }

    /// Is `new` an offered renewal still in time? Memory only: a session asks this before it
    /// spends a blocking thread on `complete_renewal`.
    pub fn renewal_offered(&self, new: &Fingerprint) -> bool {
        self.renewals().is_offered(new, now())
    }

    /// Step two: a session's DTLS handshake showed `new`, so its key is proven; the grant of
    /// the certificate that offered it moves to `new` (written, audited, announced: sessions
    /// still on the old certificate lose their access within a second). None when `new` was
    /// not offered or came too late.
    pub fn complete_renewal(&self, new: Fingerprint) -> Option<Result<Grant, ServiceError>> {
        let old = self.renewals().take(&new, now())?;
        let at = now();
        let result = self.change(|g| g.renew(&old, new, at).cloned());
        let grant = self.audited(result, "renewed", new);
        if let Ok(grant) = &grant {
            info!(grant = %grant.id, from = %old.short(), to = %new.short(), "certificate renewed");
        }
        Some(grant)
    }

    fn renewals(&self) -> MutexGuard<'_, Renewals> {
        self.renewals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a connection or a refusal in the audit log.
    pub fn record(&self, event: &str, fingerprint: Fingerprint, detail: &str) {
        let grant = self
            .state()
            .grant_of(&fingerprint, now())
            .map(|g| g.id.clone());
        self.write_audit(&AuditEvent {
            at: now(),
            event,
            fingerprint: Some(fingerprint),
            grant: grant.as_deref(),
            detail,
        });
        if event == "connected" {
            // Persisted like any change, so the refresh from disk does not undo it.
            let at = now();
            if let Err(error) = self.change(|g| {
                g.touch(&fingerprint, at);
                Ok(())
            }) {
                warn!(%error, "cannot record when the grant was last seen");
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, Grants> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writing(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a change through the store and, if it succeeded, to memory; announces it. If
    /// memory is ahead of the disk, the disk catches up first (or the change is refused): the
    /// change starts from what is on disk, and that must not bring back what memory took away.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut Grants) -> Result<T, GrantError>,
    ) -> Result<T, ServiceError> {
        let _writing = self.writing();
        self.catch_up()?;
        let (grants, value) = self.store.update(change)??;
        *self.state() = grants;
        self.changed.send_modify(|n| *n += 1);
        Ok(value)
    }

    fn audited<T>(
        &self,
        result: Result<T, ServiceError>,
        event: &str,
        fingerprint: Fingerprint,
    ) -> Result<T, ServiceError> {
        let detail = match &result {
            Ok(_) => String::new(),
            Err(e) => format!("refused: {e}"),
        };
        let event = if result.is_ok() {
            event.to_string()
        } else {
            format!("{event}-refused")
        };
        self.write_audit(&AuditEvent {
            at: now(),
            event: &event,
            fingerprint: Some(fingerprint),
            grant: None,
            detail: &detail,
        });
        result
    }

    /// Writes an audit event, unless it is one more refusal of a kind already written this
    /// minute (`audit`); summaries of the minutes that are over go first.
    fn write_audit(&self, entry: &AuditEvent<'_>) {
        self.write_summaries(entry.at);
        let admitted = self.audit.lock().unwrap_or_else(|p| p.into_inner()).admit(
            entry.event,
            entry.detail,
            entry.at,
        );
        if admitted && let Err(error) = self.store.audit(entry) {
            warn!(%error, "cannot write the audit log");
        }
    }

    /// One line for each minute of refusals that is over: how many were not written.
    fn write_summaries(&self, at: Time) {
        let due = self.audit.lock().unwrap_or_else(|p| p.into_inner()).due(at);
        for summary in due {
            let detail = format!(
                "{} more like this since {} ({}), not written one by one",
                summary.count, summary.since, summary.detail
            );
            let line = AuditEvent {
                at,
                event: &summary.event,
                fingerprint: None,
                grant: None,
                detail: &detail,
            };
            if let Err(error) = self.store.audit(&line) {
                warn!(%error, "cannot write the audit log");
            }
        }
    }

    /// A change that takes access away (revoke, expiry): applied to memory and announced to
    /// the sessions first, then written through the store. A failed write is loud and retried
    /// (`refresh`), and never keeps anyone in.
    fn change_first_in_memory<T>(
        &self,
        change: impl Fn(&mut Grants) -> Result<T, GrantError>,
    ) -> Result<T, ServiceError> {
        let _writing = self.writing();
        self.first_in_memory(change)
    }

    /// `change_first_in_memory` for a caller that holds `writing` already.
    fn first_in_memory<T>(
        &self,
        change: impl Fn(&mut Grants) -> Result<T, GrantError>,
    ) -> Result<T, ServiceError> {
        let value = change(&mut self.state())?;
        self.changed.send_modify(|n| *n += 1);
        let written = if self.unsaved.load(Ordering::Relaxed) {
            // The disk is behind by more than this change: write all of memory.
            self.catch_up()
        } else {
            // `Ok(Err(_))`: the disk had it already (the CLI made the same change). Fine.
            self.store.update(|g| change(g)).map(|_| ())
        };
        if let Err(error) = written {
            error!(%error, "cannot write grants: the change holds in memory and is retried");
            self.unsaved.store(true, Ordering::Relaxed);
        }
        Ok(value)
    }

    /// If memory is ahead of the disk (a write failed), writes memory over it. The caller
    /// holds `writing`.
    fn catch_up(&self) -> Result<(), StoreError> {
        if !self.unsaved.load(Ordering::Relaxed) {
            return Ok(());
        }
        let current = self.state().clone();
        self.store.replace(&current)?;
        self.unsaved.store(false, Ordering::Relaxed);
        info!("grants written to disk again");
        Ok(())
    }

    /// Expires lapsed grants and picks up edits made on disk by the CLI.
    fn refresh(&self) -> Result<(), StoreError> {
        let _writing = self.writing();
        let at = now();
        // Summaries of refusal floods are written when their minute is over, even if no
        // further event comes.
        self.write_summaries(at);
        let due = self.state().next_expiry().is_some_and(|t| t <= at)
            || self.state().invites.iter().any(|i| i.redeem_by <= at);
        if due {
            let lapsed = self
                .first_in_memory(|g| Ok(g.expire(at)))
                .expect("expire cannot fail");
            for grant in &lapsed {
                info!(grant = %grant.id, "grant expired");
                self.write_audit(&AuditEvent {
                    at,
                    event: "expired",
                    fingerprint: Some(grant.fingerprint),
                    grant: Some(&grant.id),
                    detail: "",
                });
            }
            return Ok(());
        }
        if self.unsaved.load(Ordering::Relaxed) {
            // Memory is ahead of the disk: write it, and do not read the disk back over it
            // (that would undo a revocation) until that worked.
            return self.catch_up();
        }
        if let Some(on_disk) = self.store.reload()? {
            let differs = {
                let state = self.state();
                on_disk.grants != state.grants
                    || on_disk.invites.len() != state.invites.len()
                    || on_disk.claim.is_some() != state.claim.is_some()
            };
            if differs {
                *self.state() = on_disk;
                self.changed.send_modify(|n| *n += 1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

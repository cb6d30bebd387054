//! `pipe grants list|revoke` and `pipe reset-owner`: the device owner's tools for a shell on
//! the device. They change the device's state directory through the same store (and lock) as
//! the device, which notices the change on disk within a second.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::cli::{GrantsCommand, ResetOwnerArgs, StateDirArg};
use crate::config::Config;
use crate::grants::links::{Links, qr_terminal};
use crate::grants::model::{Grant, Grants, Invite, Role, Scope, Time};
use crate::grants::service::now;
use crate::grants::store::{AuditEvent, Store, StoreError};
use crate::identity::{DeviceIdentity, Fingerprint};

pub fn run(command: GrantsCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        GrantsCommand::List(args) => list(&state_dir(args.state, config)?, args.json),
        GrantsCommand::Revoke(args) => revoke(&state_dir(args.state, config)?, &args.id),
    }
}

fn list(dir: &Path, json: bool) -> anyhow::Result<()> {
    let grants = load(dir)?;
    let text = if json {
        let mut text = serde_json::to_string_pretty(&Listing::of(dir, &grants))
            .context("cannot serialise the grants")?;
        text.push('\n');
        text
    } else {
        render(&grants, now(), &local_time)
    };
    print(&text)
}

fn revoke(dir: &Path, id: &str) -> anyhow::Result<()> {
    let store = Store::new(dir);
    load(dir)?;
    refuse_other_users(&dir.join("grants.json"))?;
    let outcome = store
        .update(|g| match g.revoke(id) {
            Ok(grant) => Ok(Revoked::Grant(grant)),
            // A pending invite is cancelled the same way (its link may have leaked).
            Err(e) => match g.invites.iter().position(|i| i.id == id) {
                Some(index) => Ok(Revoked::Invite(g.invites.remove(index))),
                None => Err(e),
            },
        })
        .with_context(|| format!("state directory {}", dir.display()))?;
    let (grants, revoked) = match outcome {
        Ok(done) => done,
        Err(_) => bail!(
            "no grant or pending invite has the id `{id}` in {}; `pipe grants list` shows them",
            dir.join("grants.json").display()
        ),
    };
    let (fingerprint, detail, message) = match &revoked {
        Revoked::Grant(g) => (
            Some(g.fingerprint),
            "by the command line",
            format!(
                "Revoked grant {} ({}, {}, {}). A running device closes its sessions within a second.",
                g.id,
                role_name(g.role),
                scope_name(g.scope),
                g.fingerprint.short()
            ),
        ),
        Revoked::Invite(i) => (
            None,
            "pending invite, by the command line",
            format!("Cancelled invite {}: its link no longer works.", i.id),
        ),
    };
    audit(&store, "revoked", fingerprint, Some(id), detail);
    let mut text = message + "\n";
    if !grants.is_claimed() && grants.claim.is_none() {
        text.push_str(
            "The device now has no owner and no claim link: run `pipe reset-owner` to make one.\n",
        );
    }
    print(&text)
}

enum Revoked {
    Grant(Grant),
    Invite(Invite),
}

pub fn reset_owner(args: ResetOwnerArgs, mut config: Config) -> anyhow::Result<()> {
    let dir = state_dir(args.state, &config)?;
    if args.public_url.is_some() {
        config.device.public_url = args.public_url;
    }
    if let Some(port) = args.port {
        config.device.port = port;
    }
    config.validate()?;
    let origin = match &config.device.public_url {
        Some(url) => url.clone(),
        None if config.device.port == 0 => {
            bail!("with port 0 the device picks a free port: give the one it uses with --port")
        }
        None => format!("http://127.0.0.1:{}", config.device.port),
    };
    // Nothing changes unless the grants are readable and the identity is in place.
    load(&dir)?;
    refuse_other_users(&dir.join("grants.json"))?;
    let identity = DeviceIdentity::load_or_create(&dir)
        .with_context(|| format!("state directory {}", dir.display()))?;
    let store = Store::new(&dir);
    let (secret, dropped) = store
        .reset_owner()
        .with_context(|| format!("state directory {}", dir.display()))?;
    let detail = format!("by the command line; {dropped} grant(s) dropped");
    audit(&store, "reset", None, None, &detail);

    let public = config.device.public_url.is_some();
    let links = Links::new(
        &origin,
        identity.device_id.clone(),
        identity.fingerprint,
        public,
    );
    let link = links.claim(&secret);
    let mut text = format!(
        "Device {} is unclaimed: {dropped} grant(s) and every pending invite dropped.\n\n\
         Claim link (whoever opens it first becomes the owner; show it only to them):\n\n  {link}\n\n{}\n",
        identity.device_id,
        qr_terminal(&link)
    );
    if !public {
        text.push_str(&format!(
            "The link's origin is {origin}: open it in a browser on this device (or through \
             `ssh -L {port}:127.0.0.1:{port}`), or set device.public_url.\n",
            port = config.device.port
        ));
    }
    text.push_str(
        "A running device picks this up at once: it closes every session and shows this link \
         on its local page (/local).\n",
    );
    print(&text)
}

/// `--state-dir`, else `PIPE_STATE_DIR` (both through clap), else the config file's
/// `device.state_dir` (whose default is /var/lib/pipe): the same rule as `pipe device`.
fn state_dir(arg: StateDirArg, config: &Config) -> anyhow::Result<PathBuf> {
    let dir = arg
        .state_dir
        .unwrap_or_else(|| config.device.state_dir.clone());
    match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => Ok(dir),
        Ok(_) => bail!("state directory {} is not a directory", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "state directory {} does not exist: has `pipe device` run with it? Choose another \
             with --state-dir, PIPE_STATE_DIR or device.state_dir in the config",
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("state directory {}", dir.display())),
    }
}

/// The grants as on disk; a missing or corrupt file is an error that names it.
fn load(dir: &Path) -> anyhow::Result<Grants> {
    let store = Store::new(dir);
    let grants = store.reload().and_then(|g| {
        g.ok_or_else(|| StoreError::Missing {
            path: dir.join("grants.json"),
        })
    });
    grants.with_context(|| format!("state directory {}", dir.display()))
}

/// Refuses to rewrite the device's files as another user: each write replaces the file with
/// one owned by the writer (mode 0600), so `sudo pipe grants revoke` on a device that runs as
/// its own user would leave it unable to read its grants.
fn refuse_other_users(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // On Linux, /proc/self belongs to the process's effective user.
    let (Ok(file), Ok(me)) = (std::fs::metadata(path), std::fs::metadata("/proc/self")) else {
        return Ok(());
    };
    if file.uid() != me.uid() {
        bail!(
            "{} belongs to user id {}, but this command runs as user id {}; files it rewrote \
             would belong to the wrong user and the device could no longer read them. Run it as \
             the files' owner, e.g. `sudo -u '#{}' pipe ...`",
            path.display(),
            file.uid(),
            me.uid(),
            file.uid()
        );
    }
    Ok(())
}

/// The change is made: a failure to log it is reported but does not undo it.
fn audit(
    store: &Store,
    event: &str,
    fingerprint: Option<Fingerprint>,
    grant: Option<&str>,
    detail: &str,
) {
    let entry = AuditEvent {
        at: now(),
        event,
        fingerprint,
        grant,
        detail,
    };
    if let Err(error) = store.audit(&entry) {
        eprintln!("pipe: warning: the change is made, but the audit log was not written: {error}");
    }
}

fn print(text: &str) -> anyhow::Result<()> {
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write to standard output")
}

/// `pipe grants list --json`: no hashes, times as Unix seconds.
#[derive(Serialize)]
struct Listing<'a> {
    state_dir: &'a Path,
    claimed: bool,
    /// Whether a claim link works now (false when claimed, or after the owner was revoked).
    claimable: bool,
    grants: &'a [Grant],
    invites: Vec<InviteView<'a>>,
}

#[derive(Serialize)]
struct InviteView<'a> {
    id: &'a str,
    scope: Scope,
    lend_secs: u64,
    redeem_by: Time,
    created_by: &'a str,
}

impl<'a> Listing<'a> {
    fn of(dir: &'a Path, g: &'a Grants) -> Self {
        Self {
            state_dir: dir,
            claimed: g.is_claimed(),
            claimable: g.claim.is_some(),
            grants: &g.grants,
            invites: g
                .invites
                .iter()
                .map(|i| InviteView {
                    id: &i.id,
                    scope: i.scope,
                    lend_secs: i.lend_secs,
                    redeem_by: i.redeem_by,
                    created_by: &i.created_by,
                })
                .collect(),
        }
    }
}

/// The table `pipe grants list` prints; `local` formats a time as local wall-clock time.
fn render(g: &Grants, now: Time, local: &dyn Fn(Time) -> String) -> String {
    let mut out = String::new();
    if g.is_claimed() {
        out.push_str("Claimed.\n");
    } else if g.claim.is_some() {
        out.push_str(
            "Unclaimed: no one owns this device yet. Its claim link is in the device's log and on \
             its local page (/local); `pipe reset-owner` makes a new one.\n",
        );
    } else {
        out.push_str(
            "Unclaimed, and no claim link works (the owner was revoked): run `pipe reset-owner` \
             to make one.\n",
        );
    }
    let at = |t: Time| format!("{} ({})", local(t), relative(t, now));
    if g.grants.is_empty() {
        out.push_str("\nNo grants.\n");
    } else {
        let rows = g.grants.iter().map(|grant| {
            vec![
                grant.id.clone(),
                role_name(grant.role).into(),
                scope_name(grant.scope).into(),
                grant.fingerprint.short(),
                local(grant.granted_at),
                match grant.expires_at {
                    None => "never".into(),
                    Some(t) if t <= now => format!("{} (expired {} ago)", local(t), span(now - t)),
                    Some(t) => at(t),
                },
                grant.last_seen.map_or("never".into(), |t| relative(t, now)),
            ]
        });
        out.push_str(&format!("\nGrants ({}):\n", g.grants.len()));
        out.push_str(&table(
            &[
                "ID",
                "ROLE",
                "SCOPE",
                "FINGERPRINT",
                "GRANTED",
                "EXPIRES",
                "LAST SEEN",
            ],
            rows,
        ));
    }
    if g.invites.is_empty() {
        out.push_str("\nNo pending invites.\n");
    } else {
        let rows = g.invites.iter().map(|i| {
            vec![
                i.id.clone(),
                scope_name(i.scope).into(),
                span(i.lend_secs),
                if i.redeem_by <= now {
                    format!("{} (lapsed)", local(i.redeem_by))
                } else {
                    at(i.redeem_by)
                },
            ]
        });
        out.push_str(&format!("\nPending invites ({}):\n", g.invites.len()));
        out.push_str(&table(&["ID", "SCOPE", "LENDS FOR", "REDEEM BY"], rows));
    }
    out
}

/// Left-aligned columns, two spaces apart, indented by two.
fn table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(rows)
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(&format!("  {}\n", cells.join("  ").trim_end()));
    }
    out
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::Borrower => "borrower",
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::View => "view",
        Scope::ViewUi => "view+ui",
    }
}

/// `in 2h 13m`, `5m ago`, `now`.
fn relative(t: Time, now: Time) -> String {
    match t.cmp(&now) {
        std::cmp::Ordering::Greater => format!("in {}", span(t - now)),
        std::cmp::Ordering::Less => format!("{} ago", span(now - t)),
        std::cmp::Ordering::Equal => "now".into(),
    }
}

/// A length of time in its two largest units: `45s`, `13m`, `2h 13m`, `6d 23h`.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let pair = |big: u64, bu: &str, small: u64, su: &str| {
        if small == 0 {
            format!("{big}{bu}")
        } else {
            format!("{big}{bu} {small}{su}")
        }
    };
    match () {
        _ if d > 0 => pair(d, "d", h, "h"),
        _ if h > 0 => pair(h, "h", m, "m"),
        _ if m > 0 => format!("{m}m"),
        _ => format!("{s}s"),
    }
}

/// `time` as local wall-clock time (the system time zone), `YYYY-MM-DD HH:MM`.
fn local_time(t: Time) -> String {
    let zone = jiff::tz::TimeZone::system();
    match i64::try_from(t)
        .ok()
        .and_then(|t| jiff::Timestamp::from_second(t).ok())
    {
        Some(ts) => ts
            .to_zoned_datetime(zone)
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
        None => "?".into(),
    }
}

/// `YYYY-MM-DD HH:MM` of Unix seconds in UTC.
#[cfg(test)]
fn wall_clock(t: Time) -> String {
    let ts =
        jiff::Timestamp::from_second(i64::try_from(t).expect("test times fit")).expect("in range");
    ts.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::model::{LendPolicy, LendRequest};
    use crate::grants::secret::Secret;

    #[test]
    fn spans_and_relative_times_read_like_a_person_would_say_them() {
        assert_eq!(span(45), "45s");
        assert_eq!(span(13 * 60 + 59), "13m");
        assert_eq!(span(2 * 3600 + 13 * 60 + 30), "2h 13m");
        assert_eq!(span(2 * 3600), "2h");
        assert_eq!(span(6 * 86_400 + 23 * 3600 + 59 * 60), "6d 23h");
        assert_eq!(relative(1000 + 2 * 3600 + 13 * 60, 1000), "in 2h 13m");
        assert_eq!(relative(1000, 1300), "5m ago");
        assert_eq!(relative(7, 7), "now");
    }

    #[test]
    fn wall_clock_dates_are_gregorian() {
        assert_eq!(wall_clock(0), "1970-01-01 00:00");
        assert_eq!(wall_clock(951_782_400 + 3600 + 120), "2000-02-29 01:02");
        assert_eq!(wall_clock(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(wall_clock(4_107_542_399), "2100-02-28 23:59");
        assert!(local_time(1_700_000_000).starts_with("2023-11-1"));
    }

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of_der(&[n])
    }

    #[test]
    fn the_table_shows_grants_and_invites_or_says_unclaimed() {
        let utc = |t: Time| wall_clock(t);
        let secret = Secret::generate();
        let mut g = Grants::unclaimed(secret.hash());
        let text = render(&g, 1000, &utc);
        assert!(text.starts_with("Unclaimed: no one owns"), "{text}");
        assert!(text.contains("No grants.") && text.contains("No pending invites."));

        g.claim(&secret, fp(1), "own1".into(), 1000).unwrap();
        let token = Secret::generate();
        let request = |id: &str| LendRequest {
            invite_id: id.into(),
            scope: Scope::View,
            secs: 2 * 3600 + 13 * 60,
        };
        g.lend(&fp(1), &token, request("inv1"), LendPolicy::default(), 1000)
            .unwrap();
        g.redeem(&token, fp(2), "bor1".into(), 1000).unwrap();
        g.lend(
            &fp(1),
            &Secret::generate(),
            request("inv2"),
            LendPolicy::default(),
            1000,
        )
        .unwrap();
        let text = render(&g, 1000, &utc);
        assert!(text.starts_with("Claimed."), "{text}");
        let owner = text.lines().find(|l| l.contains("own1")).unwrap();
        assert!(owner.contains("owner") && owner.contains("view+ui") && owner.contains("never"));
        assert!(owner.contains(&fp(1).short()), "{owner}");
        let borrower = text.lines().find(|l| l.contains("bor1")).unwrap();
        assert!(
            borrower.contains("1970-01-01 02:29 (in 2h 13m)"),
            "{borrower}"
        );
        let invite = text.lines().find(|l| l.contains("inv2")).unwrap();
        assert!(
            invite.contains("2h 13m") && invite.contains("(in 1d)"),
            "{invite}"
        );

        let later = render(&g, 1000 + 3 * 3600, &utc);
        assert!(later.contains("(expired 47m ago)"), "{later}");

        g.revoke("own1").unwrap();
        assert!(render(&g, 1000, &utc).starts_with("Unclaimed, and no claim link works"));
    }

    #[test]
    fn json_has_no_hashes() {
        let secret = Secret::generate();
        let g = Grants::unclaimed(secret.hash());
        let text = serde_json::to_string(&Listing::of(Path::new("/x"), &g)).unwrap();
        assert_eq!(
            text,
            r#"{"state_dir":"/x","claimed":false,"claimable":true,"grants":[],"invites":[]}"#
        );
    }
}

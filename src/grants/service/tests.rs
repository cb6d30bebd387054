//! Memory before disk: a revocation that the disk cannot take holds, whatever the disk and
//! the watcher thread do meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use super::*;
use crate::grants::model::Role;

/// A device with an owner and one borrower, in a fresh state directory.
struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    service: Arc<GrantsService>,
    owner: Fingerprint,
    borrower: Fingerprint,
    borrowed: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let service = GrantsService::open(dir.path(), LendPolicy::default()).unwrap();
    let owner = Fingerprint::of_der(b"owner");
    let borrower = Fingerprint::of_der(b"borrower");
    let secret = service.claim_secret().unwrap().expect("unclaimed");
    service.claim(&secret, owner).unwrap();
    let token = service.lend(owner, Scope::View, 3600).unwrap();
    let borrowed = service.redeem(&token, borrower).unwrap().id;
    Fixture {
        dir: dir.path().to_owned(),
        _dir: dir,
        service,
        owner,
        borrower,
        borrowed,
    }
}

/// Makes every write of grants.json fail, as a full disk does (even for root): a directory
/// stands where `persist::write_atomic` puts its temporary file.
struct BrokenDisk(PathBuf);

impl BrokenDisk {
    fn new(dir: &Path) -> Self {
        let tmp = dir.join(format!(".grants.json.tmp-{}", std::process::id()));
        std::fs::create_dir(&tmp).unwrap();
        Self(tmp)
    }
}

impl Drop for BrokenDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn on_disk(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("grants.json")).unwrap()
}

#[test]
fn a_revocation_the_disk_cannot_take_holds_in_memory_and_reaches_the_disk_later() {
    let f = fixture();
    let broken = BrokenDisk::new(&f.dir);
    f.service.revoke(Some(f.owner), &f.borrowed).unwrap();
    assert_eq!(f.service.check(&f.borrower), None);
    assert!(
        on_disk(&f.dir).contains(&f.borrowed),
        "the write should fail"
    );

    // While the disk is broken, the watcher must not read it back over memory.
    assert!(f.service.refresh().is_err());
    assert_eq!(f.service.check(&f.borrower), None);

    drop(broken);
    f.service.refresh().unwrap();
    assert!(!on_disk(&f.dir).contains(&f.borrowed));
    assert_eq!(f.service.check(&f.borrower), None);
}

#[test]
fn a_change_after_a_failed_write_does_not_bring_the_revoked_grant_back() {
    let f = fixture();
    let broken = BrokenDisk::new(&f.dir);
    f.service.revoke(Some(f.owner), &f.borrowed).unwrap();

    // Still broken: a change that must be written first is refused, saying why.
    let refused = f.service.lend(f.owner, Scope::View, 3600);
    assert!(
        matches!(refused, Err(ServiceError::Store(_))),
        "{refused:?}"
    );
    assert_eq!(f.service.check(&f.borrower), None);

    // Room again, and the owner lends before the watcher's next tick: the change starts from
    // memory, not from the disk that still holds the revoked grant.
    drop(broken);
    f.service.lend(f.owner, Scope::View, 3600).unwrap();
    assert_eq!(f.service.check(&f.borrower), None);
    assert!(!on_disk(&f.dir).contains(&f.borrowed));
    let owner = f.service.check(&f.owner).expect("the owner stays");
    assert_eq!(owner.role, Role::Owner);
}

/// The watcher thread refreshes four times a second while revocations fail to write: not one
/// refresh may read the old disk back between the change in memory and the failed write.
#[test]
fn the_watcher_never_undoes_a_revocation_the_disk_could_not_take() {
    for round in 0..100 {
        let f = fixture();
        let broken = BrokenDisk::new(&f.dir);
        let stop = Arc::new(AtomicBool::new(false));
        let refreshes = Arc::new(AtomicUsize::new(0));
        let watcher = {
            let (service, stop, refreshes) = (f.service.clone(), stop.clone(), refreshes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = service.refresh();
                    refreshes.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Revoke while the watcher is in full swing.
        while refreshes.load(Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        f.service.revoke(Some(f.owner), &f.borrowed).unwrap();
        // Let the watcher run a while over the failed write.
        std::thread::sleep(Duration::from_millis(5));
        stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        assert_eq!(
            f.service.check(&f.borrower),
            None,
            "round {round}: the revoked borrower is back in"
        );
        drop(broken);
    }
}

//! Owner, lends and borrowers with in-process viewers: shared by grants_gstreamer.rs and
//! disk_full.rs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pipe::signalling::protocol::DeviceId;
use pipe_testkit::receiver::{self, Options, PeerIdentity, Receiver};
use serde_json::Value;

use super::device::Device;

/// A device whose lends may be seconds long.
pub fn device() -> Device {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipe.toml");
    std::fs::write(&config, "[grants]\nlend_min_secs = 1\n").unwrap();
    let device = Device::test_picture(320, 240, &["--config", config.to_str().unwrap()]).unwrap();
    std::mem::forget(dir); // the config file must outlive the test's device
    device
}

pub async fn viewer(device: &Device, options: Options) -> Receiver {
    let id = DeviceId::parse(&device.device_id).unwrap();
    receiver::connect(&device.signal_url(), id, options)
        .await
        .unwrap()
}

pub fn stranger() -> Arc<PeerIdentity> {
    Arc::new(PeerIdentity::generate().unwrap())
}

/// The first control message of `kind` the device sent after `skip` earlier ones.
pub async fn reply(viewer: &Receiver, kind: &str, skip: usize, device: &Device) -> Value {
    let found = viewer
        .wait_for(Duration::from_secs(10), |s| {
            s.control
                .iter()
                .skip(skip)
                .any(|m| m.contains(&format!(r#""type":"{kind}""#)))
        })
        .await;
    let stats = found.unwrap_or_else(|s| panic!("no {kind} reply: {s:?}\n{}", device.log()));
    let text = stats
        .control
        .iter()
        .skip(skip)
        .find(|m| m.contains(&format!(r#""type":"{kind}""#)))
        .unwrap();
    serde_json::from_str(text).unwrap()
}

pub async fn watching(viewer: &Receiver, device: &Device) {
    let got = viewer
        .wait_for(Duration::from_secs(15), |s| s.frames >= 10)
        .await;
    got.unwrap_or_else(|s| panic!("no frames: {s:?}\n{}", device.log()));
}

/// Waits for the session to end; returns when it did.
pub async fn ended_at(viewer: &Receiver, limit: Duration) -> Option<Instant> {
    viewer
        .wait_for(limit, |s| s.ended.is_some())
        .await
        .ok()
        .map(|_| Instant::now())
}

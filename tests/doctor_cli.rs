//! `pipe doctor` on this machine: it has GStreamer with every plugin pipe needs and no camera,
//! so the virtual webcam is chosen and the exit status is 0; a state directory it cannot
//! write makes it fail. `--health` checks a running device's /healthz.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn doctor(args: &[&str], state_dir: &Path) -> Output {
    doctor_as(None, args, state_dir)
}

/// Runs `pipe doctor` on a free loopback port, as another user when `uid` is given (root
/// writes anywhere, so an unwritable directory needs another user to be unwritable).
fn doctor_as(uid: Option<u32>, args: &[&str], state_dir: &Path) -> Output {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let pipe = env!("CARGO_BIN_EXE_pipe");
    let mut command = match uid {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            let id = uid.to_string();
            c.args(["--reuid", &id, "--regid", &id, "--clear-groups", pipe]);
            c
        }
        None => Command::new(pipe),
    };
    command
        .args(["doctor", "--listen", "127.0.0.1", "--port", &port])
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        // No /etc/pipe/pipe.toml or PIPE_* of this machine's own device.
        .env("PIPE_CONFIG", "/dev/null")
        .env_remove("PIPE_PIPELINE")
        .env_remove("PIPE_VIDEO_DEVICE")
        .env_remove("PIPE_RENDEZVOUS")
        .env_remove("PIPE_RTSP_URL");
    command.output().expect("running pipe doctor")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn this_machine_streams_the_virtual_webcam() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let output = doctor(&[], &state);
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("pipe "), "{all}");
    assert!(stdout.contains("GStreamer 1."), "{all}");
    assert!(stdout.contains("ok      webrtcbin"), "{all}");
    assert!(
        stdout.contains("auto-selection chooses: virtual-webcam"),
        "{all}"
    );
    assert!(
        stdout.contains("does not exist yet; pipe device creates it"),
        "{all}"
    );
    assert!(
        stdout.contains("OK: pipe can stream here (virtual-webcam)."),
        "{all}"
    );
    assert!(!state.exists(), "doctor creates nothing");

    let output = doctor(&["--json"], &state);
    assert!(output.status.success(), "{}", text(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    assert_eq!(report["can_stream"], true);
    assert_eq!(report["pipeline"]["auto_selected"], "virtual-webcam");
    assert_eq!(report["rendezvous"]["mode"], "embedded");
    assert_eq!(report["rendezvous"]["reachable"], true);
    let webrtcbin = report["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["element"] == "webrtcbin")
        .expect("webrtcbin is listed");
    assert_eq!(webrtcbin["present"], true);
    assert_eq!(webrtcbin["debian"], "gstreamer1.0-plugins-bad");
}

#[test]
fn an_unwritable_state_directory_fails() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let output = if root {
        // Readable and searchable by everyone, writable by root only: run as nobody.
        for path in [dir.path(), state.as_path()] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        doctor_as(Some(65534), &[], &state)
    } else {
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o555)).unwrap();
        doctor(&[], &state)
    };
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("exists but is not writable"), "{all}");
    assert!(
        stdout.contains("NOT OK: pipe cannot stream here (1 problem(s) above)."),
        "{all}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("pipe cannot stream on this machine"),
        "{all}"
    );
}

#[test]
fn health_checks_a_running_device() {
    let device = support::device::Device::test_picture(320, 240, &[]).expect("device starts");
    let url = format!("http://127.0.0.1:{}/healthz", device.port);
    let state = tempfile::tempdir().unwrap();
    let output = doctor(&["--health", &url], state.path());
    assert!(output.status.success(), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("healthy"));

    // The full report on the device's own port: in use, by a healthy device, so no problem.
    let port = device.port.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_pipe"))
        .args(["doctor", "--listen", "127.0.0.1", "--port", &port])
        .arg("--state-dir")
        .arg(device.state_dir())
        .env("PIPE_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let all = text(&output);
    assert!(output.status.success(), "{all}");
    assert!(all.contains("in use by a running pipe device"), "{all}");
    assert!(
        all.contains("identity: present, private key mode 0600"),
        "{all}"
    );

    device.stop().unwrap();
    let output = doctor(&["--health", &url], state.path());
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

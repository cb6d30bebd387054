//! Runs the aiortc scripts (tests/aiortc/): a WebRTC stack no one here wrote, as a viewer or an
//! attacker. scripts/test makes the venv (tests/aiortc/requirements.txt) and sets
//! PIPE_AIORTC_PYTHON.

use std::process::{Command, Output};

use serde_json::Value;

use super::device::Device;

/// The venv's Python, or a panic saying how to get it.
pub fn python() -> String {
    std::env::var("PIPE_AIORTC_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PIPE_AIORTC_PYTHON is not set: run scripts/test, which makes the aiortc venv \
             (tests/aiortc/requirements.txt) and sets it"
        )
    })
}

/// Runs `tests/aiortc/<script>` with `args` and returns its process output and the JSON report
/// it prints last; a missing report fails the test with its output and `device`'s log.
pub fn run(script: &str, args: &[&str], device: &Device) -> (Output, Value) {
    let path = format!("{}/tests/aiortc/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report from {script} {args:?}:\n{stdout}\n{}\n--- device ---\n{}",
                String::from_utf8_lossy(&output.stderr),
                device.log()
            )
        });
    (output, report)
}

/// Runs the honest viewer (tests/aiortc/viewer.py): it claims `device` with `secret` and
/// decodes until `frames` frames or `timeout_s` seconds.
pub fn view(device: &Device, secret: &str, frames: u32, timeout_s: u32) -> (Output, Value) {
    let (frames, timeout_s) = (frames.to_string(), timeout_s.to_string());
    let url = device.signal_url();
    let args = [
        url.as_str(),
        device.device_id.as_str(),
        secret,
        &frames,
        &timeout_s,
    ];
    run("viewer.py", &args, device)
}

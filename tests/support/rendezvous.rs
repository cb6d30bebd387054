//! A standalone `pipe rendezvous` for the tests that need one (mitm_chromium.rs,
//! squatting.rs).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

/// `pipe rendezvous` on a free loopback port.
pub struct Rendezvous {
    child: Child,
    /// `ws://127.0.0.1:PORT/signal`
    pub url: String,
    pub port: u16,
}

impl Rendezvous {
    pub fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// With more `pipe rendezvous` flags (`--public-url ...`).
    pub fn start_with(extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args(["rendezvous", "--listen", "127.0.0.1"])
            .args(if extra.contains(&"--port") {
                &[][..]
            } else {
                &["--port", "0"][..]
            })
            .args(extra)
            .env_remove("PIPE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pipe rendezvous")?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // "pipe rendezvous: signalling at ws://127.0.0.1:PORT/signal, viewer at ..."
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .context("the rendezvous printed nothing")?;
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .map(|w| w.trim_end_matches(',').to_owned())
            .with_context(|| format!("no ws:// URL in {line:?}"))?;
        let port = url
            .trim_start_matches("ws://127.0.0.1:")
            .trim_end_matches("/signal")
            .parse()
            .with_context(|| format!("no port in {url}"))?;
        Ok(Self { child, url, port })
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

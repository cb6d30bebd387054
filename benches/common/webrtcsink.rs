//! The comparison system of the link benchmarks (`PIPE_BENCH_COMPARE`): GStreamer's
//! `webrtcsink` (crate gst-plugin-webrtc 0.15) with GCC from gst-plugin-rtp, run as the
//! separate `pipe-bench-webrtcsink` process (benches/webrtcsink-sender, built by scripts/bench)
//! sending the same stamped zone plate at the same size, rate and bitrate ceiling as pipe's
//! chain.
//!
//! Its viewer is a page of the same browser that speaks the gst-plugin-webrtc-signalling
//! protocol to the sender's in-process server (what gstwebrtc-api does, in 60 lines), shows
//! the video filling the window as pipe's viewer does, and offers the benchmark the same
//! handle (`window.pipeViewer`: the `<video>`, the peer connection, `stats()`, `sessions`), so
//! the same barcode reader and the same stats measure both systems.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::support::chromium::{Browser, Page};

/// The sender's signalling port (TCP, not shaped: only its ICE ports are).
const SIGNALLING_PORT: u16 = 8443;

/// Which of webrtcsink's controllers (`congestion-control`): `gcc` is its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Gcc,
    Homegrown,
}

impl Controller {
    /// `PIPE_BENCH_COMPARE`: `webrtcsink` (GCC) or `webrtcsink-homegrown`.
    pub fn from_env() -> Option<Controller> {
        match std::env::var("PIPE_BENCH_COMPARE").ok()?.as_str() {
            "" => None,
            "webrtcsink" | "webrtcsink-gcc" => Some(Controller::Gcc),
            "webrtcsink-homegrown" => Some(Controller::Homegrown),
            other => panic!("PIPE_BENCH_COMPARE={other}: webrtcsink or webrtcsink-homegrown"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Controller::Gcc => "webrtcsink (GCC)",
            Controller::Homegrown => "webrtcsink (homegrown)",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Controller::Gcc => "gcc",
            Controller::Homegrown => "homegrown",
        }
    }
}

/// The running sender; killed when dropped.
pub struct Sender {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Sender {
    /// Starts the sender and returns once its pipeline plays.
    pub fn start(
        controller: Controller,
        ice_ports: &std::ops::RangeInclusive<u16>,
        bitrate_kbps: u32,
        audio: bool,
    ) -> Result<Sender> {
        let bin = binary();
        let mut command = Command::new(&bin);
        command
            .args(["--port", &SIGNALLING_PORT.to_string()])
            .args([
                "--ice-ports",
                &format!("{}-{}", ice_ports.start(), ice_ports.end()),
            ])
            .args(["--bitrate", &bitrate_kbps.to_string()])
            .args(["--congestion-control", controller.arg()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if audio {
            command.arg("--audio");
        }
        let mut child = command.spawn().with_context(|| {
            format!(
                "starting {} (scripts/bench builds it when PIPE_BENCH_COMPARE is set)",
                bin.display()
            )
        })?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the webrtcsink sender did not start: {line:?}");
        }
        Ok(Sender { child, stdin })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Opens a viewer page and returns once it plays, with the page's time from its start to
    /// the first frame read.
    pub async fn open_viewer(&self, browser: &Browser, reader: &str) -> Result<(Page, f64)> {
        // A page of a loopback origin: Chromium's local network access checks keep a page of
        // no origin (about:blank) from opening the loopback signalling socket.
        let origin = blank_page_server().await?;
        let page = browser.new_page(&origin).await?;
        page.eval(&CLIENT.replace("{PORT}", &SIGNALLING_PORT.to_string()))
            .await?;
        page.eval(reader).await?;
        if let Err(e) = page
            .wait_for("window.__g2g.firstShown", Duration::from_secs(20))
            .await
        {
            let state = page
                .eval("JSON.stringify({ log: window.__wskLog, pc: window.pipeViewer.pc.connectionState })")
                .await;
            bail!("no stamped frame from webrtcsink was shown ({e}): {state:?}");
        }
        let shown = page
            .eval("window.__g2g.firstShown - window.__wskStart")
            .await?
            .as_f64()
            .unwrap_or(f64::NAN);
        Ok((page, shown))
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Closing stdin asks it to stop; then it is not waited for long.
        drop(self.stdin.take());
        for _ in 0..20 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves an empty HTML page on a loopback port, for as long as the process runs, and
/// returns its URL.
async fn blank_page_server() -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let body = "<!doctype html><title>webrtcsink viewer</title><body></body>";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(url)
}

/// `PIPE_BENCH_WEBRTCSINK`, or where scripts/bench builds it.
fn binary() -> PathBuf {
    std::env::var_os("PIPE_BENCH_WEBRTCSINK").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/pipe-bench-webrtcsink"),
        PathBuf::from,
    )
}

/// The viewer: a consumer of the gst-plugin-webrtc-signalling protocol (welcome, list,
/// startSession, then the producer's offer and both sides' candidates as `peer` messages).
const CLIENT: &str = r#"(() => {
  window.__wskStart = performance.now();
  const log = window.__wskLog = [];
  document.body.style.margin = '0';
  document.body.style.background = 'black';
  const video = document.createElement('video');
  Object.assign(video, { autoplay: true, muted: true, playsInline: true });
  Object.assign(video.style, { width: '100vw', height: '100vh', objectFit: 'contain', display: 'block' });
  document.body.appendChild(video);
  const pc = new RTCPeerConnection();
  const viewer = window.pipeViewer = { video, pc, sessions: 0,
    async stats() {
      const video = {};
      (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') Object.assign(video, r); });
      return { video };
    } };
  const ws = new WebSocket('ws://127.0.0.1:{PORT}');
  let session = null;
  const send = (m) => ws.send(JSON.stringify(m));
  pc.ontrack = (e) => { if (e.track.kind === 'video') video.srcObject = new MediaStream([e.track]); };
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate && session)
      send({ type: 'peer', sessionId: session, ice: { candidate: e.candidate.candidate, sdpMLineIndex: e.candidate.sdpMLineIndex } });
  };
  ws.onclose = (e) => log.push(`closed ${e.code}`);
  ws.onmessage = async (event) => {
    const m = JSON.parse(event.data);
    log.push(m.type + (m.sdp ? ' sdp' : m.ice ? ' ice' : ''));
    if (m.type === 'welcome') {
      send({ type: 'list' });
    } else if (m.type === 'list') {
      if (m.producers.length) send({ type: 'startSession', peerId: m.producers[0].id });
      else setTimeout(() => send({ type: 'list' }), 50);
    } else if (m.type === 'sessionStarted') {
      session = m.sessionId;
      viewer.sessions += 1;
    } else if (m.type === 'peer' && m.sdp) {
      await pc.setRemoteDescription(m.sdp);
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      send({ type: 'peer', sessionId: session, sdp: { type: 'answer', sdp: answer.sdp } });
    } else if (m.type === 'peer' && m.ice) {
      await pc.addIceCandidate({ candidate: m.ice.candidate, sdpMLineIndex: m.ice.sdpMLineIndex });
    } else if (m.type === 'error') {
      log.push(m.details);
    }
  };
  return true;
})()"#;

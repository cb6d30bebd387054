//! Starts a real `pipe device` process for a test and reads what it prints.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A `pipe.toml` for a test's device, in a directory of its own that goes when this does.
pub struct ConfigFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl ConfigFile {
    pub fn new(toml: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("pipe.toml");
        std::fs::write(&path, toml)?;
        Ok(Self { _dir: dir, path })
    }

    /// The path, for `--config`.
    pub fn arg(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }
}

/// The `[ice]` keys that pin the device's ICE ports: what the link emulator shapes.
pub fn ice_ports(ports: &std::ops::RangeInclusive<u16>) -> String {
    format!(
        "[ice]\nport_min = {}\nport_max = {}\n",
        ports.start(),
        ports.end()
    )
}

pub struct Device {
    child: Child,
    /// The loopback viewer URL the device printed.
    pub url: String,
    /// The one-time claim link, if the device printed one (it has no owner).
    pub claim_link: Option<String>,
    /// The certificate `owner()` receivers present.
    owner: std::sync::Arc<pipe_testkit::receiver::PeerIdentity>,
    pub device_id: String,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    _state: tempfile::TempDir,
}

impl Device {
    /// `pipe device` on a free port with a fresh state directory and `extra` arguments.
    pub fn start(extra: &[&str]) -> Result<Device> {
        let state = tempfile::tempdir()?;
        Self::start_in(state, extra)
    }

    /// `pipe device` streaming the virtual webcam at `width`x`height`, plus `extra` arguments.
    pub fn test_picture(width: u64, height: u64, extra: &[&str]) -> Result<Device> {
        let (w, h) = (width.to_string(), height.to_string());
        let mut args = vec![
            "--pipeline",
            "virtual-webcam",
            "--width",
            w.as_str(),
            "--height",
            h.as_str(),
        ];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    pub fn start_in(state: tempfile::TempDir, extra: &[&str]) -> Result<Device> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args([
                "--log",
                "info,pipe=debug",
                "device",
                "--listen",
                "127.0.0.1",
                "--port",
                "0",
            ])
            .arg("--state-dir")
            .arg(state.path())
            .args(extra)
            .env_remove("PIPE_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting pipe device")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        for (stream, is_stdout) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, true),
            (Box::new(stderr), false),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let text = line.trim();
                    if is_stdout
                        && (text.starts_with("http://127.0.0.1:")
                            || text.starts_with("This camera has an owner"))
                    {
                        let _ = tx.send(text.to_string());
                    }
                    // The logger writes to stderr; stdout carries only what the device prints
                    // for people (URLs, the claim link).
                    log.lock().unwrap().push(if is_stdout {
                        format!("[stdout] {line}")
                    } else {
                        line
                    });
                }
            });
        }
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "the device printed no URL within 30 s:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        // The claim link follows the viewer link, or a line saying there is an owner.
        let claim_link = match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(line) if line.contains("&claim=") => Some(line),
            _ => None,
        };
        // Viewers can connect once the device has registered with its rendezvous.
        let registered = Instant::now();
        while !log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("registered with the rendezvous"))
        {
            if registered.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                bail!(
                    "the device did not register within 10 s:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (base, fragment) = url.split_once("/#device=").context("URL has #device=")?;
        let device_id = fragment.split('&').next().unwrap_or_default();
        let port = base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("URL has a port")?;
        Ok(Device {
            child,
            device_id: device_id.to_string(),
            claim_link,
            owner: std::sync::Arc::new(pipe_testkit::receiver::PeerIdentity::generate()?),
            port,
            url,
            log,
            _state: state,
        })
    }

    /// The claim secret from the printed claim link.
    pub fn claim_secret(&self) -> Option<String> {
        let link = self.claim_link.as_deref()?;
        Some(link.split("&claim=").nth(1)?.to_string())
    }

    /// Receiver options for the device's owner: one certificate shared by every receiver a
    /// test makes, which claims the device on first use (later claims are refused, harmlessly).
    pub fn owner(&self, decode: bool) -> pipe_testkit::receiver::Options {
        let options = pipe_testkit::receiver::Options::new(self.owner.clone(), decode);
        match self.claim_secret() {
            Some(secret) => options.claim(&secret),
            None => options,
        }
    }

    pub fn signal_url(&self) -> String {
        format!("ws://127.0.0.1:{}/signal", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Only what the logger wrote (stderr).
    pub fn logger_output(&self) -> String {
        let lines = self.log.lock().unwrap();
        lines
            .iter()
            .filter(|l| !l.starts_with("[stdout] "))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn state_dir(&self) -> &Path {
        self._state.path()
    }

    /// GLib criticals in the device's log: each is a programming error in the device (or in
    /// how it drives GStreamer), harmless until it is not, and fatal under
    /// G_DEBUG=fatal-criticals.
    pub fn glib_criticals(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.contains("-CRITICAL **"))
            .map(str::to_owned)
            .collect()
    }

    /// `GET /api/status` over a plain TCP stream (HTTP/1.0: no chunking, closed at the end).
    pub async fn status(&self) -> serde_json::Value {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = self.port;
        let fetch = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream
                .write_all(b"GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                .await?;
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await?;
            std::io::Result::Ok(response)
        };
        let response = tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .expect("/api/status answers within 5 s")
            .expect("/api/status is reachable");
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not an HTTP response: {text}"));
        assert!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "{head}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("/api/status body {body:?}: {e}"))
    }

    pub fn threads(&self) -> usize {
        count_entries(&format!("/proc/{}/task", self.pid()))
    }

    /// The names of the device's threads, counted (`tokio-runtime-w x4, gstglcontext x1`), for
    /// failure messages about a thread count.
    pub fn thread_names(&self) -> String {
        let mut names = std::collections::BTreeMap::<String, usize>::new();
        if let Ok(entries) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) {
            for entry in entries.flatten() {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                *names.entry(comm.trim().to_string()).or_default() += 1;
            }
        }
        names
            .iter()
            .map(|(name, n)| format!("{name} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn fds(&self) -> usize {
        count_entries(&format!("/proc/{}/fd", self.pid()))
    }

    /// Waits until `f` holds, polling; returns the last value on timeout.
    pub fn settle<T: PartialEq + Copy>(
        &self,
        timeout: Duration,
        f: impl Fn(&Self) -> T,
        ok: impl Fn(T) -> bool,
    ) -> T {
        let start = Instant::now();
        loop {
            let value = f(self);
            if ok(value) || start.elapsed() > timeout {
                return value;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asks the device to stop (SIGTERM) and waits for it.
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!(
                    "the device did not stop within 10 s of SIGTERM:\n{}\n--- its threads ---\n{}",
                    self.log(),
                    self.stacks()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Device {
    /// Every thread's stack, from gdb when it is installed: what a hung device waits on.
    pub fn stacks(&self) -> String {
        let pid = self.pid().to_string();
        let args = ["-p", &pid, "-batch", "-ex", "thread apply all bt 30"];
        match Command::new("gdb").args(args).output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => format!("(no stacks: gdb: {e})"),
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count_entries(dir: &str) -> usize {
    std::fs::read_dir(Path::new(dir))
        .map(|d| d.count())
        .unwrap_or(0)
}

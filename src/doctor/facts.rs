//! Gathers `Facts` on this machine: the GStreamer probe (through `media`), the chains, `cam
//! -l`, the state directory, the rendezvous. Read-only: nothing here creates the state
//! directory or an identity, and a write test leaves no file behind.

use std::io::Read as _;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{Facts, RendezvousFacts, StateDirFacts};
use crate::chains::pipeline;
use crate::config::Config;
use crate::identity::{CERT_FILE, KEY_FILE};
use crate::media::probe;

/// How long each network check and `cam -l` may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn gather(config: &Config) -> anyhow::Result<Facts> {
    crate::media::init()?;
    // Probing opens every V4L2 node: blocking work, off the runtime's threads.
    let probe = tokio::task::spawn_blocking(probe::probe)
        .await
        .context("the probe task failed")??;
    let dir = Some(config.device.pipelines_dir.as_path());
    let configured = &config.device.pipeline;
    let cam_list = tokio::task::spawn_blocking(cam_list)
        .await
        .context("the `cam -l` task failed")?;
    Ok(Facts {
        gstreamer_version: crate::media::gstreamer_version(),
        probe,
        templates: pipeline::candidates(dir).map_err(|e| e.to_string()),
        configured_pipeline: configured.clone(),
        configured_template: (configured != "auto")
            .then(|| pipeline::resolve(configured, dir).map_err(|e| e.to_string())),
        rtsp_url: config.video.rtsp_url.clone(),
        cam_list,
        state_dir: state_dir(&config.device.state_dir),
        rendezvous: rendezvous(config).await,
    })
}

/// The state directory as the device would find it, without changing it.
pub fn state_dir(path: &Path) -> StateDirFacts {
    let meta = std::fs::metadata(path);
    let exists = meta.is_ok();
    let is_dir = meta.as_ref().is_ok_and(|m| m.is_dir());
    let write_error = if is_dir {
        can_create_in(path).err()
    } else {
        Some("not a directory".to_string())
    };
    let creatable = !exists && nearest_ancestor(path).is_some_and(|a| can_create_in(&a).is_ok());
    let key = path.join(KEY_FILE);
    let key_mode = std::fs::metadata(&key).ok().map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    });
    StateDirFacts {
        path: path.to_owned(),
        exists,
        is_dir,
        creatable,
        write_error,
        cert_present: path.join(CERT_FILE).exists(),
        key_present: key_mode.is_some(),
        key_mode,
    }
}

/// Whether this user can create a file in `dir`, by creating one and removing it (this also
/// catches read-only file systems, which permission bits do not show).
fn can_create_in(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!(".pipe-doctor-{}", std::process::id()));
    match std::fs::File::create_new(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The nearest existing directory above `path` (where `mkdir -p` would start).
fn nearest_ancestor(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    absolute
        .ancestors()
        .skip(1)
        .find(|a| a.is_dir())
        .map(Path::to_owned)
}

async fn rendezvous(config: &Config) -> RendezvousFacts {
    if let Some(url) = &config.device.rendezvous {
        let started = Instant::now();
        let connect = tokio::time::timeout(CHECK_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| format!("no answer within {} s", CHECK_TIMEOUT.as_secs()))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map(|_| started.elapsed().as_millis());
        return RendezvousFacts::Remote {
            url: url.clone(),
            connect,
        };
    }
    let addr = SocketAddr::new(config.device.listen, config.device.port);
    let bind = TcpListener::bind(addr).map(drop).map_err(|e| e.to_string());
    let healthy_device = match bind {
        Ok(()) => false,
        Err(_) => health(&local_health_url(config.device.listen, addr.port()))
            .await
            .is_ok(),
    };
    RendezvousFacts::Embedded {
        addr,
        bind,
        healthy_device,
    }
}

/// `http://HOST:PORT/healthz` of a device on this machine listening on `listen`.
pub fn local_health_url(listen: IpAddr, port: u16) -> String {
    let host = if listen.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        listen
    };
    format!("http://{}/healthz", SocketAddr::new(host, port))
}

/// A GET of `url` (plain http) that must answer 200 within `CHECK_TIMEOUT`: a health check
/// with nothing but the binary (no curl in the container image).
pub async fn health(url: &str) -> Result<(), HealthError> {
    let url = url::Url::parse(url).map_err(|e| HealthError::Url(url.into(), e))?;
    if url.scheme() != "http" {
        return Err(HealthError::NotHttp(url));
    }
    let host = url
        .host_str()
        .ok_or_else(|| HealthError::NoHost(url.clone()))?
        .to_string();
    let port = url.port_or_known_default().unwrap_or(80);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        &url[url::Position::BeforePath..url::Position::AfterQuery],
        &url[url::Position::BeforeHost..url::Position::AfterPort],
    );
    let exchange = async {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.write_all(request.as_bytes()).await?;
        // The status line is all that is needed; a device's answer is a few bytes.
        let mut head = vec![0u8; 256];
        let mut filled = 0;
        while filled < head.len() {
            let n = stream.read(&mut head[filled..]).await?;
            if n == 0 || head[..filled + n].contains(&b'\n') {
                filled += n;
                break;
            }
            filled += n;
        }
        head.truncate(filled);
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(CHECK_TIMEOUT, exchange)
        .await
        .map_err(|_| HealthError::Timeout(url.clone()))?
        .map_err(|e| HealthError::Io(url.clone(), e))?;
    let status = String::from_utf8_lossy(&head);
    let status = status.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(HealthError::Status(url, status.to_string())),
    }
}

/// Why `health` failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("{0}: {1}")]
    Url(String, url::ParseError),
    #[error("{0}: only http:// is supported")]
    NotHttp(url::Url),
    #[error("{0}: no host")]
    NoHost(url::Url),
    #[error("{0}: no answer within {secs} s", secs = CHECK_TIMEOUT.as_secs())]
    Timeout(url::Url),
    #[error("{0}: {1}")]
    Io(url::Url, std::io::Error),
    #[error("{0}: answered `{1}`")]
    Status(url::Url, String),
}

/// libcamera's own list of cameras, when its `cam` tool is installed.
fn cam_list() -> Option<Result<Vec<String>, String>> {
    let cam = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("cam"))
            .find(|p| p.is_file())
    })?;
    Some(run_with_timeout(Command::new(cam).arg("-l")).map(|out| parse_cam_list(&out)))
}

/// Runs `command`, killing it after `CHECK_TIMEOUT`; its stdout when it exits 0.
fn run_with_timeout(command: &mut Command) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let text = reader.join().unwrap_or_default();
    if status.success() {
        Ok(text)
    } else {
        Err(format!("exited with {status}"))
    }
}

/// The cameras in `cam -l`'s output: its `N: 'model' (id)` lines, without the number.
pub fn parse_cam_list(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let (number, rest) = line.trim().split_once(':')?;
            (!number.is_empty() && number.chars().all(|c| c.is_ascii_digit()))
                .then(|| rest.trim().to_string())
        })
        .collect()
}

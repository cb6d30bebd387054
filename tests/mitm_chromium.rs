//! A man in the middle of signalling cannot make a paired browser watch anything else. The
//! device registers with a real standalone rendezvous (`--rendezvous`); after the browser has
//! claimed the device through the real path, it is restarted with a host-resolver rule that
//! sends its connections to that rendezvous to a malicious proxy instead (what a hijacked DNS
//! name or a hostile network does), while the device keeps its own direct connection. The
//! proxy forwards faithfully, then: rewrites the fingerprint in the device's offer; connects
//! the browser to another device (the attacker's own); and connects it to the other device
//! while announcing the real device's fingerprint. The browser refuses the first two before
//! answering and fails the third in the DTLS handshake: no frames in any case, and the page
//! says the camera's identity changed.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use support::device::Device;
use support::rendezvous::Rendezvous;
use support::viewer::Viewer;

const PLAY: Duration = Duration::from_secs(15);
/// How long a refused page is watched for frames that must not come.
const WATCH: Duration = Duration::from_secs(3);

/// What the proxy does to the connections that reach it (chosen when a connection opens).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Attack {
    /// Forward everything unchanged.
    None,
    /// Announce `fake` instead of the device's fingerprint in its offers.
    RewriteFingerprint,
    /// Connect the browser to the impostor device instead.
    OtherDevice,
    /// Connect it to the impostor, whose offer announces the real device's fingerprint.
    OtherDeviceClaimingToBeReal,
}

#[derive(Clone)]
struct Target {
    device_id: String,
    /// SDP form, `AB:CD:...`.
    fingerprint: String,
}

/// A malicious signalling proxy: a WebSocket server that relays each browser connection to
/// `upstream`, rewriting messages according to the current `Attack`.
struct Proxy {
    port: u16,
    /// The impostor's fingerprint, SDP form.
    impostor_fp: String,
    attack: Arc<Mutex<Attack>>,
    /// What it saw and did, one line per event.
    log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String, real: Target, impostor: Target) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let attack = Arc::new(Mutex::new(Attack::None));
        let log = Arc::new(Mutex::new(Vec::new()));
        let impostor_fp = impostor.fingerprint.clone();
        let (a, l) = (attack.clone(), log.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let attack = *a.lock().unwrap();
                let (upstream, real, impostor, log) =
                    (upstream.clone(), real.clone(), impostor.clone(), l.clone());
                tokio::spawn(async move {
                    if let Err(e) = relay(tcp, &upstream, attack, &real, &impostor, &log).await {
                        log.lock().unwrap().push(format!("relay error: {e:#}"));
                    }
                });
            }
        });
        Ok(Self {
            port,
            impostor_fp,
            attack,
            log,
            task,
        })
    }

    fn set(&self, attack: Attack) {
        *self.attack.lock().unwrap() = attack;
        self.log
            .lock()
            .unwrap()
            .push(format!("--- attack {attack:?}"));
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Log lines since the last `set`.
    fn since_set(&self) -> Vec<String> {
        let log = self.log();
        let start = log
            .iter()
            .rposition(|l| l.starts_with("--- attack"))
            .map_or(0, |i| i + 1);
        log[start..].to_vec()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    tcp: tokio::net::TcpStream,
    upstream: &str,
    attack: Attack,
    real: &Target,
    impostor: &Target,
    log: &Mutex<Vec<String>>,
) -> Result<()> {
    let browser = tokio_tungstenite::accept_async(tcp).await?;
    let (server, _) = tokio_tungstenite::connect_async(upstream).await?;
    log.lock()
        .unwrap()
        .push(format!("browser connected ({attack:?})"));
    let (mut to_browser, mut from_browser) = browser.split();
    let (mut to_server, mut from_server) = server.split();
    let swap = matches!(
        attack,
        Attack::OtherDevice | Attack::OtherDeviceClaimingToBeReal
    );
    let up = async {
        while let Some(Ok(msg)) = from_browser.next().await {
            let Message::Text(text) = msg else { continue };
            let mut m: Value = serde_json::from_str(text.as_str())?;
            match m["type"].as_str() {
                Some("connect") if swap && m["device_id"] == real.device_id.as_str() => {
                    m["device_id"] = impostor.device_id.as_str().into();
                    log.lock()
                        .unwrap()
                        .push("connect redirected to the impostor".into());
                }
                Some("signal") if m["data"]["sdp"]["type"] == "answer" => {
                    log.lock().unwrap().push("the browser answered".into());
                }
                Some("signal") if m["data"]["ice"].is_object() => {
                    let candidate = m["data"]["ice"]["candidate"].as_str().unwrap_or("");
                    log.lock()
                        .unwrap()
                        .push(format!("browser candidate: {candidate}"));
                }
                _ => {}
            }
            to_server.send(Message::text(m.to_string())).await?;
        }
        anyhow::Ok(())
    };
    let down = async {
        while let Some(Ok(msg)) = from_server.next().await {
            let Message::Text(text) = msg else { continue };
            let mut m: Value = serde_json::from_str(text.as_str())?;
            if swap && m["type"] == "session" {
                m["device_id"] = real.device_id.as_str().into(); // keep up appearances
            }
            if m["type"] == "signal" && m["data"]["sdp"]["type"] == "offer" {
                let sdp = m["data"]["sdp"]["sdp"].as_str().unwrap_or("").to_owned();
                let announce = match attack {
                    Attack::RewriteFingerprint => Some(&impostor.fingerprint),
                    Attack::OtherDeviceClaimingToBeReal => Some(&real.fingerprint),
                    Attack::None | Attack::OtherDevice => None,
                };
                if let Some(fp) = announce {
                    m["data"]["sdp"]["sdp"] = set_fingerprint(&sdp, fp).into();
                }
                log.lock().unwrap().push(format!(
                    "offer announcing {}",
                    fingerprint_in(m["data"]["sdp"]["sdp"].as_str().unwrap_or(""))
                ));
            }
            to_browser.send(Message::text(m.to_string())).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = up => r?,
        r = down => r?,
    }
    log.lock().unwrap().push("connection closed".into());
    Ok(())
}

fn set_fingerprint(sdp: &str, fp: &str) -> String {
    sdp.split_inclusive('\n')
        .map(|line| {
            if line.starts_with("a=fingerprint:") {
                format!("a=fingerprint:sha-256 {fp}\r\n")
            } else {
                line.to_owned()
            }
        })
        .collect()
}

fn fingerprint_in(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.strip_prefix("a=fingerprint:sha-256 "))
        .map_or("nothing".into(), |fp| fp.chars().take(11).collect())
}

/// The device id and fingerprint (SDP form) from a device's printed link.
fn target(device: &Device) -> Target {
    let fp = device.url.split("&fp=").nth(1).expect("the link has fp=");
    let fp: String = fp.chars().take(64).collect();
    let colons = fp
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(":");
    Target {
        device_id: device.device_id.clone(),
        fingerprint: colons,
    }
}

fn start_device(rendezvous: &Rendezvous) -> Device {
    Device::start(&[
        "--rendezvous",
        &rendezvous.url,
        "--pipeline",
        "virtual-webcam",
        "--width",
        "640",
        "--height",
        "360",
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paired_browser_refuses_a_relay_that_swaps_the_camera() {
    support::netns::require_loopback_only();
    let started = Instant::now();
    let rendezvous = Rendezvous::start().unwrap();
    let device = start_device(&rendezvous);
    let impostor = start_device(&rendezvous);
    let proxy = Proxy::start(rendezvous.url.clone(), target(&device), target(&impostor))
        .await
        .unwrap();
    let profile = tempfile::tempdir().unwrap();

    let result = run(&rendezvous, &device, &proxy, profile.path(), started).await;
    match result {
        Ok(report) => println!("{report}\ntotal {:?}", started.elapsed()),
        Err(e) => panic!(
            "{e:#}\n--- proxy ---\n{}\n--- device log ---\n{}\n--- impostor log ---\n{}",
            proxy.log().join("\n"),
            device.log(),
            impostor.log()
        ),
    }
    assert!(device.stop().unwrap().success());
    assert!(impostor.stop().unwrap().success());
}

async fn run(
    rendezvous: &Rendezvous,
    device: &Device,
    proxy: &Proxy,
    profile: &std::path::Path,
    started: Instant,
) -> Result<String> {
    let mut report = Vec::new();
    // 1. Claim through the real path: the browser pairs with the device's fingerprint.
    let claim = device.claim_link.as_deref().context("a claim link")?;
    let owner = Viewer::open_in(profile, claim, &[]).await?;
    let signal = owner
        .eval("fetch('/api/info').then((r) => r.json())")
        .await?;
    ensure!(
        signal["signal_path"] == rendezvous.url.as_str()
            && signal["device_id"] == device.device_id.as_str(),
        "the device's page does not point at its rendezvous: {signal}"
    );
    check(
        &owner,
        owner.wait_role("owner", PLAY).await.map(drop),
        "claiming through the real rendezvous",
    )
    .await?;
    check(
        &owner,
        owner.watching(10, PLAY).await.map(drop),
        "watching through the real rendezvous",
    )
    .await?;
    let fingerprint = owner.fingerprint().await?;
    report.push(format!(
        "claimed and watched through {} after {:?}",
        rendezvous.url,
        started.elapsed()
    ));
    check(
        &owner,
        forged_links(&owner, device, proxy).await,
        "forged links",
    )
    .await?;
    owner.close().await?;

    // 2. The same browser, restarted: its connections to the rendezvous now reach the proxy.
    let rule = format!(
        "--host-resolver-rules=MAP 127.0.0.1:{} 127.0.0.1:{}",
        rendezvous.port, proxy.port
    );
    let viewer = Viewer::open_in(profile, "about:blank", &[&rule]).await?;
    for attack in [
        Attack::None,
        Attack::RewriteFingerprint,
        Attack::OtherDevice,
        Attack::OtherDeviceClaimingToBeReal,
        Attack::None,
    ] {
        proxy.set(attack);
        let t = Instant::now();
        viewer.goto("about:blank").await?;
        viewer.goto(&device.url).await?;
        let outcome = match attack {
            Attack::None => plays(&viewer, &fingerprint).await,
            _ => refused(&viewer, attack, proxy).await,
        };
        let seen = proxy.since_set();
        ensure!(
            seen.iter().any(|l| l.starts_with("browser connected")),
            "{attack:?}: the browser did not come through the proxy: {seen:?}"
        );
        check(&viewer, outcome, &format!("{attack:?}")).await?;
        report.push(format!(
            "{attack:?}: as expected after {:?}; proxy saw {seen:?}",
            t.elapsed()
        ));
    }
    viewer.close().await?;
    Ok(report.join("\n"))
}

/// Adds the page's console to a failure.
async fn check(viewer: &Viewer, outcome: Result<()>, what: &str) -> Result<()> {
    outcome.with_context(|| format!("{what}\n--- page console ---\n{}", viewer.console()))
}

/// Links that pair wrongly are refused before any connection: one whose fingerprint is not the
/// device id's, and (with the pairing seeded, as forging one needs an 80-bit collision) one
/// whose fingerprint is not the paired one.
async fn forged_links(viewer: &Viewer, device: &Device, proxy: &Proxy) -> Result<()> {
    let (origin, fragment) = device.url.split_once('#').context("a fragment")?;
    let real_fp = fragment.split("&fp=").nth(1).context("fp=")?;
    let other_fp = proxy_impostor_hex(proxy);
    let sessions = viewer.eval("pipeViewer.sessions").await?;

    viewer
        .goto(&format!(
            "{origin}#device={}&fp={other_fp}",
            device.device_id
        ))
        .await?;
    let status = viewer.wait_status("This link is damaged", PLAY).await?;
    ensure!(
        viewer.eval("pipeViewer.problem").await? == "bad-link",
        "forged fp: {status}"
    );

    let key = format!("pipe.paired.{}", device.device_id);
    viewer
        .eval(&format!("localStorage.setItem('{key}', '{other_fp}')"))
        .await?;
    viewer.goto(&device.url).await?;
    let refused = viewer
        .wait_status("different identity for this camera", PLAY)
        .await;
    viewer
        .eval(&format!("localStorage.setItem('{key}', '{real_fp}')"))
        .await?;
    refused?;
    ensure!(
        viewer.eval("pipeViewer.sessions").await? == sessions,
        "a refused link still started a session"
    );
    Ok(())
}

fn proxy_impostor_hex(proxy: &Proxy) -> String {
    proxy.impostor_fp.replace(':', "").to_ascii_lowercase()
}

async fn plays(viewer: &Viewer, fingerprint: &str) -> Result<()> {
    viewer.wait_role("owner", PLAY).await?;
    viewer.watching(10, PLAY).await?;
    ensure!(
        viewer.fingerprint().await? == fingerprint,
        "the browser's identity changed across restarts"
    );
    Ok(())
}

async fn refused(viewer: &Viewer, attack: Attack, proxy: &Proxy) -> Result<()> {
    let message = match attack {
        Attack::OtherDeviceClaimingToBeReal => "could not prove its identity",
        _ => "its identity changed",
    };
    viewer.wait_status("This is not your camera", PLAY).await?;
    let status = viewer.status().await?;
    ensure!(status.contains(message), "status: {status:?}");
    tokio::time::sleep(WATCH).await;
    let (presented, _) = viewer.frames().await?;
    ensure!(
        presented == 0,
        "{presented} frames through a relay that {attack:?}"
    );
    let state = viewer
        .eval("[pipeViewer.state, pipeViewer.problem, pipeViewer.access]")
        .await?;
    ensure!(
        state[0] == "stopped" && state[1] == "identity-changed" && state[2].is_null(),
        "viewer state: {state}"
    );
    let answered = proxy
        .since_set()
        .iter()
        .any(|l| l == "the browser answered");
    match attack {
        Attack::OtherDeviceClaimingToBeReal => {
            ensure!(answered, "expected an answer, then a failed handshake")
        }
        _ => ensure!(
            !answered,
            "the browser answered an offer it should have refused"
        ),
    }
    if attack != Attack::RewriteFingerprint {
        ensure!(
            proxy
                .since_set()
                .iter()
                .any(|l| l == "connect redirected to the impostor"),
            "the proxy did not redirect"
        );
    }
    Ok(())
}

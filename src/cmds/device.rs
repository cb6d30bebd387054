//! `pipe device`: the camera supervisor. It starts the shared capture chain, serves the viewer
//! app (with an embedded rendezvous unless a remote one is configured), keeps the outbound
//! signalling connection, and runs one task per viewer session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::chains::pipeline::{self, Params, PipelineTemplate};
use crate::chains::plugins::{CORE, MissingElements};
use crate::chains::select;
use crate::config::{Config, UiConfig};
use crate::demo_ui::{self, CaptureCamera, DemoUi};
use crate::grants::links::{Links, qr_terminal};
use crate::grants::{GrantsService, LendPolicy};
use crate::identity::DeviceIdentity;
use crate::media::capture::{CameraState, Capture};
use crate::media::{plugins, probe};
use crate::session::adapt::Adaptation;
use crate::session::admission::{Admission, Decision, Limits};
use crate::session::{self, Command, SessionContext, SessionHandle};
use crate::signalling::client::{self, Event};
use crate::signalling::protocol::{self, ClientMessage, SessionId};
use crate::signalling::server::Rendezvous;
use crate::web::{self, ApiInfo, IceServer};

/// How long sessions get to close on shutdown before the pipelines are dropped anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(3);

pub async fn run(config: Config) -> anyhow::Result<()> {
    crate::media::init()?;
    let missing = plugins::missing(CORE)?;
    if !missing.is_empty() {
        bail!("{}", MissingElements(missing));
    }
    let identity = DeviceIdentity::load_or_create(&config.device.state_dir)
        .with_context(|| format!("state directory {}", config.device.state_dir.display()))?;
    info!(device_id = %identity.device_id, fingerprint = %identity.fingerprint.to_sdp(), "device identity");
    let identity = Arc::new(identity);
    // The port first: a busy port fails the start before the camera is opened.
    let listener = super::bind(SocketAddr::new(config.device.listen, config.device.port)).await?;
    let port = listener.local_addr()?.port();
    let policy = LendPolicy::from(&config.grants);
    let grants = GrantsService::open(&config.device.state_dir, policy)?;
    let shutdown = super::shutdown_signal();
    grants.spawn_watch(shutdown.clone());

    tokio::task::spawn_blocking(crate::media::webrtc::warm_up_dtls).await?;
    let (template, params) = choose_pipeline(&config)?;
    let description = template.full_description(&params)?;
    info!(pipeline = %template.name, "starting the capture chain");
    tracing::debug!(%description, "capture chain");
    let capture = Capture::start(
        description,
        template.meta.audio,
        config.video.low_rendition(),
    )
    .await
    .with_context(|| format!("pipeline {}", template.name))?;
    let (ui_upstream, demo_ui) =
        effective_ui_upstream(&config, &template.name, &capture, shutdown.clone()).await?;
    info!(%ui_upstream, "camera UI upstream");

    let (rendezvous, signal_url) = match &config.device.rendezvous {
        Some(url) => (None, url.clone()),
        None => {
            let host = if config.device.listen.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                config.device.listen
            };
            let name = concat!("pipe-device/", env!("CARGO_PKG_VERSION"));
            (
                Some(Rendezvous::new(name)),
                format!("ws://{}/signal", SocketAddr::new(host, port)),
            )
        }
    };
    let info = ApiInfo {
        device_id: Some(identity.device_id.to_string()),
        ice_servers: IceServer::from_config(&config.ice),
        signal_path: if rendezvous.is_some() {
            "/signal".into()
        } else {
            signal_url.clone()
        },
        public_ui: public_ui(&config),
    };
    let registry = session::Registry::default();
    let status: web::StatusFn = {
        let (capture, registry, name) = (capture.clone(), registry.clone(), template.name.clone());
        Arc::new(move || {
            let (pipelines, elements) = registry.live();
            serde_json::json!({
                "pipeline": name,
                "viewers": capture.viewer_count(),
                "camera": match capture.camera_state() {
                    CameraState::Live => "live",
                    CameraState::Lost => "lost",
                },
                "viewer_pipelines": pipelines,
                "viewer_elements": elements,
                // Encoded frames since start: a stalled chain shows here (scripts/fresh-check).
                "video_frames": capture.video_output().frames,
            })
        })
    };
    let links = canonical_links(&config, port, &identity);
    let local_page: web::LocalFn = {
        let (grants, links, id) = (
            grants.clone(),
            links.clone(),
            identity.device_id.to_string(),
        );
        Arc::new(move || {
            let claim = match grants.claim_secret() {
                Ok(Some(secret)) if !grants.is_claimed() => Some(links.claim(&secret)),
                _ => None,
            };
            web::local::page(&id, &links.viewer(), claim.as_deref())
        })
    };
    let routes = web::DeviceRoutes { status, local_page };
    let app = web::app(info, rendezvous.as_ref(), Some(routes));
    let server = tokio::spawn(web::serve::serve(
        listener,
        app,
        web::serve::Limits::DEVICE,
        shutdown.clone(),
        SHUTDOWN_DEADLINE,
    ));
    print_urls(&config, port, &links, &grants);
    if let Some(demo) = &demo_ui {
        // Not through the logger alone: a person trying pipe on this machine wants it.
        println!("  demo camera UI (on this machine only): {}", demo.url);
    }

    let signal_url = url::Url::parse(&signal_url).context("rendezvous URL")?;
    // The embedded rendezvous serves this device alone, and only a registration signed with
    // its key (`signalling::proof`) gets its id.
    if let Some(r) = &rendezvous {
        r.only_device(identity.device_id.clone());
    }
    let client = client::spawn(signal_url, identity.clone(), shutdown.clone());
    // The camera UI the web-UI proxy forwards to.
    let upstream = crate::proxy::upstream::Upstream::new(ui_upstream.as_str(), &config.ui)?;
    let context = SessionContext {
        upstream: Arc::new(upstream),
        #[cfg(feature = "bench-hooks")]
        bench_datachannel: config.ui.bench_datachannel,
        capture: capture.clone(),
        ice: config.ice.clone(),
        playout: config.video.playout_delay,
        outgoing: client.outgoing.clone(),
        registry,
        identity: identity.clone(),
        grants: grants.clone(),
        links,
        connected: Default::default(),
        admission: Arc::new(Mutex::new(Admission::new(Limits::for_max(
            config.device.max_sessions,
        )))),
        adaptation: Adaptation::start(capture.clone(), config.video.bitrate_kbps, shutdown.clone()),
    };
    supervise(client.events, context, config.device.max_sessions, shutdown).await;

    capture.stop().await;
    let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, server).await;
    if let Some(demo) = demo_ui {
        let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, demo.task).await;
    }
    info!("stopped");
    Ok(())
}

/// The signalling loop: one entry per live session, each served by its own task.
async fn supervise(
    mut events: mpsc::Receiver<Event>,
    context: SessionContext,
    max_sessions: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sessions: HashMap<SessionId, SessionHandle> = HashMap::new();
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::SessionRequest(id, source)) => {
                    info!(session = %id, "viewer asks for a session");
                    sessions.retain(|_, handle| !handle.task.is_finished());
                    let decision = context.admission.lock().unwrap_or_else(|p| p.into_inner()).request(id.clone(), source);
                    match decision {
                        Decision::Refuse => {
                            warn!(session = %id, max_sessions, "refusing a session: every slot has a granted viewer");
                            let end = ClientMessage::End { session_id: id, reason: Some("the camera has too many viewers".into()) };
                            let _ = context.outgoing.try_send(end);
                            continue;
                        }
                        Decision::Admit { evict: Some(old) } => {
                            info!(session = %old, "closing an unanswered or unverified session to make room");
                            if let Some(handle) = sessions.remove(&old) {
                                let reason = "closed to make room: no answer or no grant in time";
                                let _ = handle.commands.try_send(Command::Close(reason.into()));
                            }
                        }
                        Decision::Admit { evict: None } => {}
                    }
                    let handle = session::spawn(id.clone(), context.clone());
                    if let Some(old) = sessions.insert(id, handle) {
                        let _ = old.commands.try_send(Command::End("replaced".into()));
                    }
                }
                Some(Event::Signal(id, data)) => match sessions.get(&id) {
                    Some(handle) => {
                        if handle.commands.try_send(Command::Remote(data)).is_err() {
                            warn!(session = %id, "session is not keeping up with signalling; ending it");
                            if let Some(handle) = sessions.remove(&id) { handle.task.abort(); }
                        }
                    }
                    None => warn!(session = %id, "signal for an unknown session"),
                },
                // The handle stays until the task ends (reaped below): a connected session
                // whose viewer only lost its socket goes on (`session`, `alive`).
                Some(Event::End(id, reason)) => {
                    if let Some(handle) = sessions.get(&id) {
                        let reason = protocol::printable_reason(&reason);
                        let _ = handle.commands.try_send(Command::End(reason));
                    }
                }
                Some(Event::Online) => info!("online: viewers can connect"),
                // Connected sessions outlive the rendezvous link (media is peer to peer); they
                // stay in the map until their task ends (reaped below).
                Some(Event::Offline) => {
                    for handle in sessions.values() {
                        let _ = handle.commands.try_send(Command::RendezvousLost);
                    }
                }
                None => break,
            },
            _ = reap.tick() => sessions.retain(|_, handle| !handle.task.is_finished()),
            _ = shutdown.wait_for(|stop| *stop) => break,
        }
    }
    let tasks: Vec<_> = sessions
        .drain()
        .map(|(_, handle)| {
            let _ = handle
                .commands
                .try_send(Command::End("device shutting down".into()));
            handle.task
        })
        .collect();
    if tokio::time::timeout(SHUTDOWN_DEADLINE, futures::future::join_all(tasks))
        .await
        .is_err()
    {
        warn!("some sessions did not close in time");
    }
}

/// The one HTTP origin the camera-UI proxy forwards to: `ui.upstream` when set; else, for
/// the test picture, the built-in demo camera UI, started here on 127.0.0.1; else
/// `http://127.0.0.1:80`, where a camera's own UI usually listens.
async fn effective_ui_upstream(
    config: &Config,
    chain: &str,
    capture: &Arc<Capture>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(url::Url, Option<DemoUi>)> {
    if let Some(url) = configured_ui_upstream(&config.ui, chain)? {
        return Ok((url, None));
    }
    let camera = Arc::new(CaptureCamera(capture.clone()));
    let demo = demo_ui::start(config.ui.demo_port, camera, shutdown).await?;
    Ok((demo.url.clone(), Some(demo)))
}

/// The upstream the config decides, or `None` when the demo camera UI is to be it.
fn configured_ui_upstream(ui: &UiConfig, chain: &str) -> anyhow::Result<Option<url::Url>> {
    Ok(match &ui.upstream {
        Some(url) => Some(url::Url::parse(url).context("ui.upstream")?),
        None if chain == "virtual-webcam" => None,
        None => {
            Some(url::Url::parse(crate::proxy::upstream::DEFAULT_UPSTREAM).expect("a valid URL"))
        }
    })
}

/// The configured chain, or the one auto-selection picks, with its parameters.
fn choose_pipeline(config: &Config) -> anyhow::Result<(PipelineTemplate, Params)> {
    let framerate = config.framerate();
    let mut params = Params {
        device: config.video.device.clone(),
        width: config.video.width,
        height: config.video.height,
        framerate: (framerate.num, framerate.den),
        bitrate_kbps: config.video.bitrate_kbps,
        rtsp_url: config.video.rtsp_url.clone(),
    };
    let dir = Some(config.device.pipelines_dir.as_path());
    let template = if config.device.pipeline == "auto" {
        let probe = probe::probe()?;
        let templates = pipeline::candidates(dir)?;
        let selection = select::select(&probe, &templates, config.video.rtsp_url.as_deref())?;
        info!(pipeline = %selection.pipeline, reason = %selection.reason, "auto-selected the capture chain");
        if params.device.is_none() {
            params.device = selection.device.clone();
        }
        templates
            .into_iter()
            .find(|t| t.name == selection.pipeline)
            .context("the selected pipeline vanished")?
    } else {
        pipeline::resolve(&config.device.pipeline, dir)?
    };
    let requires: Vec<&str> = template.meta.requires.iter().map(String::as_str).collect();
    let missing = plugins::missing(&requires)?;
    if !missing.is_empty() {
        bail!(
            "pipeline {} cannot run here:\n{}",
            template.name,
            MissingElements(missing)
        );
    }
    Ok((template, params))
}

/// Where the camera UI's origins live for a viewer on HTTPS (validated with the config).
fn public_ui(config: &Config) -> Option<web::ui::PublicUi> {
    let viewer = url::Url::parse(config.device.public_url.as_deref()?).ok()?;
    match &config.device.ui_domain {
        Some(domain) => Some(web::ui::PublicUi::new(&viewer, domain)),
        None => {
            if viewer.scheme() == "https" {
                warn!(
                    "no device.ui_domain: viewers at {} get no camera UI (docs/config.md)",
                    viewer.origin().ascii_serialization()
                );
            }
            None
        }
    }
}

/// Links for the one canonical origin: `public_url`, else the address the device listens on
/// (loopback when it listens everywhere).
fn canonical_links(config: &Config, port: u16, identity: &DeviceIdentity) -> Links {
    let (origin, public) = match &config.device.public_url {
        Some(url) => (url.clone(), true),
        None => {
            let listen = config.device.listen;
            let host = if listen.is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                listen
            };
            (format!("http://{}", SocketAddr::new(host, port)), false)
        }
    };
    Links::new(
        &origin,
        identity.device_id.clone(),
        identity.fingerprint,
        public,
    )
}

/// Prints where to watch and, while the device has no owner, the one-time claim link and its
/// QR code (on stdout, so it reaches a terminal or the journal; never through the logger).
fn print_urls(config: &Config, port: u16, links: &Links, grants: &GrantsService) {
    println!("pipe device is streaming. Open in a browser:");
    println!("  {}", links.viewer());
    if config.device.listen.is_unspecified()
        && config.device.public_url.is_none()
        && let Ok(interfaces) = if_addrs::get_if_addrs()
    {
        let others: Vec<String> = interfaces
            .iter()
            .map(|i| i.ip())
            .filter(|ip| ip.is_ipv4() && !ip.is_loopback())
            .map(|ip| format!("http://{}/", SocketAddr::new(ip, port)))
            .collect();
        if !others.is_empty() {
            println!(
                "  also on this network: {} (another origin: a browser there has another identity)",
                others.join(" ")
            );
        }
    }
    if let Some(url) = &config.device.rendezvous {
        println!("  (signalling through {url})");
    }
    match grants.claim_secret() {
        Ok(Some(secret)) if !grants.is_claimed() => {
            let link = links.claim(&secret);
            println!(
                "This camera has no owner yet. The first browser to open this link becomes its owner:"
            );
            println!("  {link}");
            println!("{}", qr_terminal(&link));
        }
        Ok(_) => {
            println!("This camera has an owner. `pipe reset-owner` on the device starts over.")
        }
        Err(error) => warn!(%error, "cannot read the claim secret"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_ui_is_the_upstream_only_for_the_test_picture_without_one_configured() {
        let mut ui = UiConfig::default();
        assert_eq!(configured_ui_upstream(&ui, "virtual-webcam").unwrap(), None);
        let default = configured_ui_upstream(&ui, "v4l2-x264").unwrap().unwrap();
        assert_eq!(
            default.as_str(),
            "http://127.0.0.1/",
            "port 80 is http's default"
        );
        ui.upstream = Some("http://192.168.1.20:8081".into());
        for chain in ["virtual-webcam", "rtsp"] {
            let url = configured_ui_upstream(&ui, chain).unwrap().unwrap();
            assert_eq!(url.as_str(), "http://192.168.1.20:8081/");
        }
    }
}

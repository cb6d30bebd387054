//! `pipe doctor`: what this machine has for pipe, and whether pipe can stream here.
//!
//! The report is a pure function of facts (`Facts`): the GStreamer probe, the chains, the
//! state directory's and the rendezvous' checks. `facts` gathers them on the real machine;
//! the judging here is tested with hand-made facts, without hardware or sockets.

pub mod facts;
mod render;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::chains::machine::{Backend, Probe};
use crate::chains::pipeline::PipelineTemplate;
use crate::chains::plugins::{self, CORE, REQUIREMENTS};
use crate::chains::select;

/// Everything the report is built from.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `GStreamer 1.22.0`, as GStreamer says it.
    pub gstreamer_version: String,
    pub probe: Probe,
    /// The chains auto-selection chooses from (builtins, with an integrator's overrides), or
    /// why they could not be read.
    pub templates: Result<Vec<PipelineTemplate>, String>,
    /// `device.pipeline`: `auto`, a name or a path.
    pub configured_pipeline: String,
    /// The configured chain when it is not `auto`, or why it cannot be found.
    pub configured_template: Option<Result<PipelineTemplate, String>>,
    /// Whether `video.rtsp_url` is set (its value may carry a password: never reported).
    pub rtsp_url: Option<String>,
    /// `cam -l`'s camera lines; `None` when `cam` is not installed.
    pub cam_list: Option<Result<Vec<String>, String>>,
    pub state_dir: StateDirFacts,
    pub rendezvous: RendezvousFacts,
}

/// What `facts::state_dir` found; judged by `StateDirReport::judge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateDirFacts {
    pub path: PathBuf,
    pub exists: bool,
    pub is_dir: bool,
    /// For a missing directory: whether it could be created (its nearest existing ancestor
    /// is a writable directory).
    pub creatable: bool,
    /// `None` when a file can be created in it, else why not.
    pub write_error: Option<String>,
    pub cert_present: bool,
    pub key_present: bool,
    /// The private key's permission bits, e.g. `0o600` (reported in octal by the report).
    #[serde(skip_serializing)]
    pub key_mode: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RendezvousFacts {
    /// The device embeds the rendezvous on its own port.
    Embedded {
        addr: SocketAddr,
        /// `Err` says why the port cannot be bound.
        bind: Result<(), String>,
        /// When it cannot: whether a pipe device there answers `/healthz`.
        healthy_device: bool,
    },
    /// A remote rendezvous: the outcome of a WebSocket connect with a short timeout.
    Remote {
        url: String,
        connect: Result<u128, String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub pipe_version: String,
    pub gstreamer: String,
    pub board: String,
    pub elements: Vec<ElementReport>,
    pub cameras: CameraReport,
    pub pipeline: PipelineReport,
    pub state_dir: StateDirReport,
    pub rendezvous: RendezvousReport,
    /// Each of these stops pipe from streaming; the exit status is non-zero when any is here.
    pub problems: Vec<String>,
    /// Worth fixing, but pipe streams anyway.
    pub warnings: Vec<String>,
    pub can_stream: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ElementReport {
    pub element: &'static str,
    pub what: &'static str,
    pub present: bool,
    /// `pipe` for the elements every viewer needs, else the chains that use it.
    pub needed_by: Vec<String>,
    pub debian: &'static str,
    pub yocto: &'static str,
    pub buildroot: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct CameraReport {
    /// Found by GStreamer's V4L2 device provider.
    pub v4l2: Vec<Camera>,
    pub libcamera: LibcameraReport,
    /// Found by other providers (PipeWire, ...).
    pub other: Vec<Camera>,
    /// What went wrong while probing.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Camera {
    pub provider: String,
    pub path: Option<String>,
    pub name: String,
    pub driver: Option<String>,
    pub formats: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LibcameraReport {
    /// How libcamera cameras were looked for, or why they were not.
    pub searched_with: Vec<String>,
    /// From libcamerasrc's device provider.
    pub cameras: Vec<String>,
    /// From `cam -l`, when it is installed.
    pub cam_list: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// `device.pipeline` (`auto`, a name or a file).
    pub configured: String,
    /// What auto-selection would choose here.
    pub auto_selected: Option<String>,
    pub device: Option<String>,
    /// Why (or why nothing can run).
    pub reason: String,
    pub rejected: Vec<RejectedChain>,
    pub not_cameras: Vec<String>,
    /// The chain `pipe device` would run: the configured one, else the auto-selected one.
    pub will_run: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedChain {
    pub pipeline: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StateDirReport {
    #[serde(flatten)]
    pub facts: StateDirFacts,
    /// One line: the directory's state.
    pub summary: String,
    /// `present`, `absent` (made on first start) or `incomplete`.
    pub identity: &'static str,
    pub key_mode: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RendezvousReport {
    /// `embedded` or `remote`.
    pub mode: &'static str,
    /// The address or URL checked.
    pub target: String,
    pub reachable: bool,
    pub detail: String,
}

impl Report {
    pub fn build(facts: &Facts) -> Report {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let templates = facts.templates.as_deref().unwrap_or_default();

        let elements = elements(&facts.probe, templates);
        let missing_core = plugins::missing_in(CORE, |e| facts.probe.has_element(e));
        if !missing_core.is_empty() {
            problems.push(format!(
                "GStreamer elements every viewer needs are missing:\n{}",
                plugins::MissingElements(missing_core)
            ));
        }

        let pipeline = pipeline(facts, templates, &mut problems);
        let cameras = cameras(facts);
        let state_dir = StateDirReport::judge(&facts.state_dir, &mut problems, &mut warnings);
        let rendezvous = RendezvousReport::judge(&facts.rendezvous, &mut problems, &mut warnings);

        Report {
            pipe_version: env!("CARGO_PKG_VERSION").to_string(),
            gstreamer: facts.gstreamer_version.clone(),
            board: facts.probe.board.to_string(),
            elements,
            cameras,
            pipeline,
            state_dir,
            rendezvous,
            can_stream: problems.is_empty(),
            problems,
            warnings,
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        render::text(self)
    }
}

/// Every element in the package table, present or not, and who needs it.
fn elements(probe: &Probe, templates: &[PipelineTemplate]) -> Vec<ElementReport> {
    REQUIREMENTS
        .iter()
        .map(|r| {
            let mut needed_by = Vec::new();
            if CORE.contains(&r.element) {
                needed_by.push("pipe".to_string());
            }
            needed_by.extend(
                templates
                    .iter()
                    .filter(|t| t.meta.requires.iter().any(|e| e == r.element))
                    .map(|t| t.name.clone()),
            );
            ElementReport {
                element: r.element,
                what: r.what,
                present: probe.has_element(r.element),
                needed_by,
                debian: r.debian,
                yocto: r.yocto,
                buildroot: r.buildroot,
            }
        })
        .collect()
}

fn pipeline(
    facts: &Facts,
    templates: &[PipelineTemplate],
    problems: &mut Vec<String>,
) -> PipelineReport {
    let mut report = PipelineReport {
        configured: facts.configured_pipeline.clone(),
        auto_selected: None,
        device: None,
        reason: String::new(),
        rejected: Vec::new(),
        not_cameras: Vec::new(),
        will_run: None,
    };
    let auto = facts.configured_pipeline == "auto";
    match &facts.templates {
        Err(e) => {
            report.reason = format!("the chains cannot be read: {e}");
            if auto {
                problems.push(report.reason.clone());
            }
        }
        Ok(_) => match select::select(&facts.probe, templates, facts.rtsp_url.as_deref()) {
            Ok(selection) => {
                report.auto_selected = Some(selection.pipeline.clone());
                report.device = selection.device;
                report.reason = selection.reason;
                report.rejected = selection
                    .rejected
                    .into_iter()
                    .map(|r| RejectedChain {
                        pipeline: r.pipeline,
                        why: r.why.to_string(),
                    })
                    .collect();
                report.not_cameras = selection.ignored_devices;
            }
            Err(e) => {
                report.reason = e.to_string();
                if auto {
                    problems.push(format!("no capture chain can run: {e}"));
                }
            }
        },
    }
    report.will_run = match &facts.configured_template {
        None => report.auto_selected.clone(),
        Some(Err(e)) => {
            problems.push(format!(
                "the configured pipeline `{}` cannot be used: {e}",
                facts.configured_pipeline
            ));
            None
        }
        Some(Ok(template)) => {
            let requires: Vec<&str> = template.meta.requires.iter().map(String::as_str).collect();
            let missing = plugins::missing_in(&requires, |e| facts.probe.has_element(e));
            if missing.is_empty() {
                Some(template.name.clone())
            } else {
                problems.push(format!(
                    "the configured pipeline {} cannot run here:\n{}",
                    template.name,
                    plugins::MissingElements(missing)
                ));
                None
            }
        }
    };
    report
}

fn cameras(facts: &Facts) -> CameraReport {
    let camera = |d: &crate::chains::machine::VideoDevice| Camera {
        provider: match &d.backend {
            Backend::V4l2 => "v4l2".to_string(),
            Backend::Libcamera => "libcamera".to_string(),
            Backend::PipeWire => "pipewire".to_string(),
            Backend::Other(name) => name.clone(),
        },
        path: d.path.clone(),
        name: d.name.clone(),
        driver: d.driver.clone(),
        formats: d.formats.iter().map(ToString::to_string).collect(),
    };
    let probe = &facts.probe;
    let mut searched_with = Vec::new();
    if probe.has_element("libcamerasrc") {
        searched_with.push("GStreamer's libcamera device provider (libcamerasrc)".to_string());
    } else {
        searched_with.push(
            "not with GStreamer: libcamerasrc is not installed (Debian: gstreamer1.0-libcamera)"
                .to_string(),
        );
    }
    let cam_list = match &facts.cam_list {
        None => {
            searched_with.push("not with `cam -l`: libcamera's `cam` is not installed".into());
            None
        }
        Some(Ok(lines)) => {
            searched_with.push("`cam -l`".to_string());
            Some(lines.clone())
        }
        Some(Err(e)) => {
            searched_with.push(format!("`cam -l` failed: {e}"));
            None
        }
    };
    CameraReport {
        v4l2: probe.v4l2_devices().map(camera).collect(),
        libcamera: LibcameraReport {
            searched_with,
            cameras: probe.libcamera_cameras().map(|d| d.label()).collect(),
            cam_list,
        },
        other: probe
            .devices
            .iter()
            .filter(|d| !matches!(d.backend, Backend::V4l2 | Backend::Libcamera))
            .map(camera)
            .collect(),
        notes: probe.notes.clone(),
    }
}

impl StateDirReport {
    fn judge(
        facts: &StateDirFacts,
        problems: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> StateDirReport {
        let path = facts.path.display();
        let summary = if !facts.exists {
            if facts.creatable {
                "does not exist yet; pipe device creates it on first start".to_string()
            } else {
                problems.push(format!(
                    "state directory {path} does not exist and cannot be created (its parent is \
                     not writable by this user)"
                ));
                "does not exist and cannot be created".to_string()
            }
        } else if !facts.is_dir {
            problems.push(format!("state directory {path} is not a directory"));
            "is not a directory".to_string()
        } else {
            match &facts.write_error {
                None => "exists and is writable".to_string(),
                Some(e) => {
                    problems.push(format!("state directory {path} is not writable: {e}"));
                    format!("exists but is not writable: {e}")
                }
            }
        };
        let identity = match (facts.cert_present, facts.key_present) {
            (true, true) => "present",
            (false, false) => "absent",
            _ => {
                problems.push(format!(
                    "state directory {path} holds half an identity (device-cert.pem and \
                     device-key.pem go together): restore the missing file, or remove both for \
                     a new identity (every grant is lost)"
                ));
                "incomplete"
            }
        };
        if let Some(mode) = facts.key_mode
            && mode & 0o077 != 0
        {
            warnings.push(format!(
                "the device's private key {}/device-key.pem has mode {mode:04o}: others can \
                 read it; chmod 600 it",
                path
            ));
        }
        StateDirReport {
            facts: facts.clone(),
            summary,
            identity,
            key_mode: facts.key_mode.map(|m| format!("{m:04o}")),
        }
    }
}

impl RendezvousReport {
    fn judge(
        facts: &RendezvousFacts,
        problems: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) -> RendezvousReport {
        match facts {
            RendezvousFacts::Embedded {
                addr,
                bind,
                healthy_device,
            } => {
                let (reachable, detail) = match (bind, healthy_device) {
                    (Ok(()), _) => (true, format!("port {} is free to bind", addr.port())),
                    (Err(_), true) => (
                        true,
                        format!(
                            "port {} is in use by a running pipe device that answers /healthz",
                            addr.port()
                        ),
                    ),
                    (Err(e), false) => {
                        problems.push(format!(
                            "pipe device cannot listen on {addr}: {e} (choose another port with \
                             --port)"
                        ));
                        (false, format!("cannot bind {addr}: {e}"))
                    }
                };
                RendezvousReport {
                    mode: "embedded",
                    target: addr.to_string(),
                    reachable,
                    detail,
                }
            }
            RendezvousFacts::Remote { url, connect } => {
                let (reachable, detail) = match connect {
                    Ok(ms) => (true, format!("WebSocket connected in {ms} ms")),
                    Err(e) => {
                        warnings.push(format!(
                            "the rendezvous {url} cannot be reached ({e}); the device keeps \
                             retrying, and no viewer can connect until it answers"
                        ));
                        (false, format!("WebSocket connect failed: {e}"))
                    }
                };
                RendezvousReport {
                    mode: "remote",
                    target: url.clone(),
                    reachable,
                    detail,
                }
            }
        }
    }
}

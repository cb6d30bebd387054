//! Which chain to run on this machine: a pure function of the probe and the templates.
//!
//! Preference, best first: the RTSP chain when a URL is configured; a libcamera camera on the
//! board its chain is made for; a V4L2 camera sending H.264 in a profile browsers decode
//! (passed through); a raw V4L2 camera, board-specific (hardware) encoders before generic ones;
//! a V4L2 camera sending H.264 of unknown profile; the test picture. Chains are matched by
//! their `source:` and `board:` headers, so integrators' own files take part too. A chain
//! whose `requires:` elements are not all present is skipped, and the reason says which.

use std::fmt::Write as _;

use crate::chains::machine::{Board, Probe, VideoDevice};
use crate::chains::pipeline::{PipelineTemplate, Profile, SourceKind};
use crate::chains::plugins;

/// V4L2 drivers whose nodes are not cameras: the Pi exposes its codec, ISP and CSI receivers
/// as capture-capable /dev/video nodes. The CSI receivers carry raw Bayer for libcamera.
const NOT_CAMERAS: &[(&str, &str)] = &[
    ("bcm2835-codec", "the Raspberry Pi hardware codec"),
    ("bcm2835-isp", "the Raspberry Pi 4 ISP"),
    ("pispbe", "the Raspberry Pi 5 ISP"),
    ("rpivid", "the Raspberry Pi HEVC decoder"),
    (
        "unicam",
        "the Raspberry Pi 4 CSI receiver, which libcamera drives",
    ),
    (
        "rp1-cfe",
        "the Raspberry Pi 5 CSI receiver, which libcamera drives",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Name of the chosen template.
    pub pipeline: String,
    /// The V4L2 node for `{device}`, when the chain reads one.
    pub device: Option<String>,
    /// One paragraph: why this chain, and why not each better one.
    pub reason: String,
    /// Better-ranked chains that were passed over, with why.
    pub rejected: Vec<Rejected>,
    /// V4L2 nodes that are not cameras, with what they are.
    pub ignored_devices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub pipeline: String,
    pub why: Unfit,
}

/// Why a chain cannot run here, or has nothing to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("made for {made_for}, this is {this}")]
    OtherBoard { made_for: Board, this: Board },
    #[error("it emits profile '{0}', which browsers may not decode")]
    Undecodable(&'static str),
    /// Elements missing, each with the Debian package that has it when known.
    #[error("this machine lacks {}", .0.join(", "))]
    Lacks(Vec<String>),
    #[error("no RTSP URL is configured")]
    NoRtspUrl,
    #[error("no libcamera camera found")]
    NoLibcamera,
    #[error("no V4L2 camera found")]
    NoV4l2,
    #[error("no V4L2 camera gives H.264")]
    NoH264,
    /// Cameras give H.264, but none in a profile browsers decode: what each gives.
    #[error("{}", .0.join(", "))]
    NoDecodableH264(Vec<String>),
    /// No camera gives raw video: what each gives.
    #[error("no V4L2 camera gives raw video ({})", .0.join("; "))]
    NoRaw(Vec<String>),
    #[error("no V4L2 camera gives H.264 of unknown profile")]
    NoUnverifiedH264,
}

/// `pipeline: why; ...`, or that there were no templates.
fn list(rejected: &[Rejected]) -> String {
    if rejected.is_empty() {
        return "no pipeline templates were given".to_string();
    }
    let parts: Vec<String> = rejected
        .iter()
        .map(|r| format!("{}: {}", r.pipeline, r.why))
        .collect();
    parts.join("; ")
}

impl Selection {
    /// A multi-line account for `pipe doctor`.
    pub fn explain(&self) -> String {
        let mut out = format!("selected pipeline: {}\n", self.pipeline);
        if let Some(device) = &self.device {
            let _ = writeln!(out, "device: {device}");
        }
        for rejected in &self.rejected {
            let _ = writeln!(out, "not chosen: {}: {}", rejected.pipeline, rejected.why);
        }
        for ignored in &self.ignored_devices {
            let _ = writeln!(out, "not a camera: {ignored}");
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("an RTSP URL is configured but no RTSP pipeline can run: {}", list(.0))]
    RtspUnusable(Vec<Rejected>),
    #[error("no pipeline can run on this machine: {}", list(.0))]
    NothingUsable(Vec<Rejected>),
}

/// Picks the chain; see the module documentation for the order.
pub fn select(
    probe: &Probe,
    templates: &[PipelineTemplate],
    rtsp_url: Option<&str>,
) -> Result<Selection, SelectError> {
    let mut s = Selector::new(probe, templates);

    if rtsp_url.is_some() {
        if let Some(found) = s.first(SourceKind::Rtsp, rtsp_stream) {
            return Ok(s.finish(found));
        }
        return Err(SelectError::RtspUnusable(s.rejected));
    }
    s.reject_all(SourceKind::Rtsp, Unfit::NoRtspUrl);

    let tiers: [(SourceKind, Finder); 5] = [
        (SourceKind::Libcamera, libcamera_camera),
        (SourceKind::V4l2H264, decodable_h264_camera),
        (SourceKind::V4l2Raw, raw_camera),
        (SourceKind::V4l2H264, unverified_h264_camera),
        (SourceKind::Test, test_picture),
    ];
    for (source, finder) in tiers {
        if let Some(found) = s.first(source, finder) {
            return Ok(s.finish(found));
        }
    }
    Err(SelectError::NothingUsable(s.rejected))
}

/// What a chain found to read from: the device for `{device}` and the sentence saying why.
type Found = (Option<String>, String);
type Finder = fn(&Cameras, &PipelineTemplate) -> Result<Found, Unfit>;

struct Cameras<'a> {
    board: &'a Board,
    /// V4L2 capture nodes that are cameras, in node order.
    v4l2: Vec<&'a VideoDevice>,
    libcamera: Vec<&'a VideoDevice>,
    ignored: Vec<String>,
}

struct Selector<'a> {
    probe: &'a Probe,
    templates: &'a [PipelineTemplate],
    cameras: Cameras<'a>,
    rejected: Vec<Rejected>,
}

impl<'a> Selector<'a> {
    fn new(probe: &'a Probe, templates: &'a [PipelineTemplate]) -> Self {
        let mut v4l2 = Vec::new();
        let mut ignored = Vec::new();
        for device in probe.v4l2_devices() {
            let not_camera = NOT_CAMERAS
                .iter()
                .find(|(driver, _)| device.driver.as_deref() == Some(*driver))
                .map(|(_, what)| *what)
                .or(device
                    .is_m2m()
                    .then_some("a memory-to-memory codec or converter"))
                .or(device
                    .path
                    .is_none()
                    .then_some("a device without a /dev node"));
            match not_camera {
                Some(what) => ignored.push(format!("{}: {what}", device.label())),
                None => v4l2.push(device),
            }
        }
        v4l2.sort_by_key(|d| node_order(d.path.as_deref().unwrap_or_default()));
        // libcamera also lists USB (UVC) cameras; the V4L2 chains handle those better, as
        // they can use the camera's own H.264.
        let libcamera = probe
            .libcamera_cameras()
            .filter(|d| !d.name.contains("usb"))
            .collect();
        let cameras = Cameras {
            board: &probe.board,
            v4l2,
            libcamera,
            ignored,
        };
        Selector {
            probe,
            templates,
            cameras,
            rejected: Vec::new(),
        }
    }

    /// The first template of this source that can run, trying board-specific ones first;
    /// the others are recorded as rejected.
    fn first(&mut self, source: SourceKind, find: Finder) -> Option<(&'a PipelineTemplate, Found)> {
        let mut candidates: Vec<&'a PipelineTemplate> = self
            .templates
            .iter()
            .filter(|t| t.meta.source == source)
            .collect();
        candidates.sort_by_key(|t| t.meta.board.is_none());
        for template in candidates {
            match self
                .check(template)
                .and_then(|()| find(&self.cameras, template))
            {
                Ok(found) => {
                    // A pass-through chain is tried twice (verified profile, then unverified);
                    // its first rejection no longer applies once it is chosen.
                    self.rejected.retain(|r| r.pipeline != template.name);
                    return Some((template, found));
                }
                Err(why) => {
                    if !self.rejected.iter().any(|r| r.pipeline == template.name) {
                        self.rejected.push(Rejected {
                            pipeline: template.name.clone(),
                            why,
                        });
                    }
                }
            }
        }
        None
    }

    fn check(&self, template: &PipelineTemplate) -> Result<(), Unfit> {
        if let Some(board) = &template.meta.board
            && *board != self.probe.board
        {
            return Err(Unfit::OtherBoard {
                made_for: board.clone(),
                this: self.probe.board.clone(),
            });
        }
        let meta = &template.meta;
        let passes_through = matches!(meta.source, SourceKind::V4l2H264 | SourceKind::Rtsp);
        if !passes_through && !meta.profile.browser_decodable() {
            return Err(Unfit::Undecodable(meta.profile.as_str()));
        }
        let requires: Vec<&str> = meta.requires.iter().map(String::as_str).collect();
        let missing = plugins::missing_in(&requires, |e| self.probe.has_element(e));
        if missing.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = missing
            .iter()
            .map(|m| match m.requirement {
                Some(r) => format!("{} (Debian package {})", m.element, r.debian),
                None => m.element.clone(),
            })
            .collect();
        Err(Unfit::Lacks(list))
    }

    fn reject_all(&mut self, source: SourceKind, why: Unfit) {
        for template in self.templates.iter().filter(|t| t.meta.source == source) {
            self.rejected.push(Rejected {
                pipeline: template.name.clone(),
                why: why.clone(),
            });
        }
    }

    fn finish(self, (template, (device, why)): (&PipelineTemplate, Found)) -> Selection {
        let mut reason = format!("{}: {why}.", template.name);
        if !self.rejected.is_empty() {
            let _ = write!(reason, " Not chosen: {}.", list(&self.rejected));
        }
        Selection {
            pipeline: template.name.clone(),
            device,
            reason,
            rejected: self.rejected,
            ignored_devices: self.cameras.ignored,
        }
    }
}

fn rtsp_stream(_: &Cameras, _: &PipelineTemplate) -> Result<Found, Unfit> {
    Ok((
        None,
        "an RTSP URL is configured and its H.264 is passed through as the camera sends it"
            .to_string(),
    ))
}

fn test_picture(_: &Cameras, template: &PipelineTemplate) -> Result<Found, Unfit> {
    let why = format!(
        "no usable camera, so a test picture with a clock is streamed, encoded by {}",
        encoder(template)
    );
    Ok((None, why))
}

fn libcamera_camera(cameras: &Cameras, template: &PipelineTemplate) -> Result<Found, Unfit> {
    let camera = cameras.libcamera.first().ok_or(Unfit::NoLibcamera)?;
    Ok((
        None,
        format!(
            "libcamera camera {} on this {}, encoded by {}",
            camera.label(),
            cameras.board,
            encoder(template)
        ),
    ))
}

fn decodable_h264_camera(cameras: &Cameras, _: &PipelineTemplate) -> Result<Found, Unfit> {
    for camera in &cameras.v4l2 {
        let profiles = camera.h264_profiles().unwrap_or_default();
        if let Some(profile) = profiles
            .iter()
            .find(|p| Profile::parse(p).is_some_and(Profile::browser_decodable))
        {
            return Ok((
                camera.path.clone(),
                format!(
                    "{} gives H.264 in profile {profile}, which browsers decode, so it is \
                         passed through without re-encoding",
                    camera.label()
                ),
            ));
        }
    }
    let h264: Vec<String> = cameras
        .v4l2
        .iter()
        .filter_map(|c| c.h264_profiles().map(|p| (c, p)))
        .map(|(c, p)| match p.is_empty() {
            true => format!("{} gives H.264 without saying its profile", c.label()),
            false => format!(
                "{} gives H.264 only in {}, which browsers are not offered",
                c.label(),
                p.join(", ")
            ),
        })
        .collect();
    if h264.is_empty() {
        Err(Unfit::NoH264)
    } else {
        Err(Unfit::NoDecodableH264(h264))
    }
}

fn raw_camera(cameras: &Cameras, template: &PipelineTemplate) -> Result<Found, Unfit> {
    match cameras.v4l2.iter().find(|c| c.has_raw()) {
        Some(camera) => Ok((
            camera.path.clone(),
            format!(
                "{} gives raw video, encoded by {}",
                camera.label(),
                encoder(template)
            ),
        )),
        None if cameras.v4l2.is_empty() => Err(Unfit::NoV4l2),
        None => {
            let offers: Vec<String> = cameras
                .v4l2
                .iter()
                .map(|c| {
                    let formats: Vec<String> = c.formats.iter().map(ToString::to_string).collect();
                    format!(
                        "{} gives {}",
                        c.label(),
                        if formats.is_empty() {
                            "nothing".into()
                        } else {
                            formats.join(", ")
                        }
                    )
                })
                .collect();
            Err(Unfit::NoRaw(offers))
        }
    }
}

fn unverified_h264_camera(cameras: &Cameras, _: &PipelineTemplate) -> Result<Found, Unfit> {
    let camera = cameras
        .v4l2
        .iter()
        .find(|c| c.h264_profiles().is_some_and(|p| p.is_empty()))
        .ok_or(Unfit::NoUnverifiedH264)?;
    Ok((
        camera.path.clone(),
        format!(
            "{} gives H.264 without saying its profile and no camera gives raw video, so it \
                 is passed through unverified (browsers decode it only in constrained-baseline, \
                 baseline or main)",
            camera.label()
        ),
    ))
}

/// How a chain encodes, for the reason.
fn encoder(template: &PipelineTemplate) -> String {
    let has = |e: &str| template.meta.requires.iter().any(|r| r == e);
    let board = template
        .meta
        .board
        .as_ref()
        .map(|b| format!("the {b} "))
        .unwrap_or_default();
    if has("v4l2h264enc") {
        format!("{board}hardware encoder (v4l2h264enc)")
    } else if has("openh264enc") {
        "OpenH264 in software".to_string()
    } else if has("x264enc") {
        "x264 in software".to_string()
    } else {
        "its own encoder".to_string()
    }
}

/// Sort key putting /dev/video2 before /dev/video10.
fn node_order(path: &str) -> (String, u64) {
    let digits = path.len() - path.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, number) = path.split_at(path.len() - digits);
    (stem.to_string(), number.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests;

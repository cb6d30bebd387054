//! Capture + encode chains as text: the `pipelines/*.pipeline` files.
//!
//! A file is a header of `# key: value` lines, free `#` comments, then a gst-launch description
//! that links its H.264 output to `video.` (and its Opus output to `audio.` when it has audio).
//! Parsing checks everything that can be checked without GStreamer, so a broken integrator file
//! fails at start-up with its file name and line, not later as a GStreamer negotiation error.
//! The format is documented for integrators in `docs/pipelines.md`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::chains::machine::Board;

mod catalog;
mod launch;
pub use catalog::{builtin, candidates, resolve};
use launch::{check_body, is_element_name, launch_safe, placeholder_at, redact_url};

/// Name of the appsink pipe prepends for the video output; chains link to `video.`.
pub const VIDEO_SINK: &str = "video";
/// Name of the appsink pipe prepends for the audio output; chains link to `audio.`.
pub const AUDIO_SINK: &str = "audio";
/// Caps of the video appsink: what every chain must deliver.
pub const VIDEO_CAPS: &str = "video/x-h264,stream-format=byte-stream,alignment=au";
/// Caps of the audio appsink.
pub const AUDIO_CAPS: &str = "audio/x-opus";
/// Neither sink syncs to the clock (the latency target leaves no room for it). Two buffers
/// absorb jitter between the streaming thread and the puller without building a queue.
const SINK_PROPS: &str = "sync=false async=false emit-signals=false max-buffers=2 drop=false";

/// Every `{placeholder}` a description may use.
pub const PLACEHOLDERS: &[&str] = &[
    "device",
    "width",
    "height",
    "framerate",
    "bitrate",
    "bitrate_bps",
    "keyint",
    "rtsp_url",
];

const KEYS: &[&str] = &[
    "pipeline",
    "source",
    "requires",
    "board",
    "profile",
    "force-key-unit",
    "audio",
];

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: the header lacks `# {key}: ...`")]
    MissingKey { file: String, key: &'static str },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("pipeline '{pipeline}' uses {{{placeholder}}} but no {what} is configured")]
    MissingParam {
        pipeline: String,
        placeholder: &'static str,
        what: &'static str,
    },
    #[error("invalid {param}: {reason}")]
    InvalidParam { param: &'static str, reason: String },
    #[error("cannot read pipeline file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no pipeline named '{name}'{searched}; the builtin pipelines are {builtins}")]
    NotFound {
        name: String,
        searched: String,
        builtins: String,
    },
}

/// Where the video comes from; auto-selection matches it against the cameras found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Test,
    V4l2Raw,
    V4l2H264,
    Libcamera,
    Rtsp,
}

impl SourceKind {
    const ALL: [SourceKind; 5] = [
        SourceKind::Test,
        SourceKind::V4l2Raw,
        SourceKind::V4l2H264,
        SourceKind::Libcamera,
        SourceKind::Rtsp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Test => "test",
            SourceKind::V4l2Raw => "v4l2-raw",
            SourceKind::V4l2H264 => "v4l2-h264",
            SourceKind::Libcamera => "libcamera",
            SourceKind::Rtsp => "rtsp",
        }
    }
}

/// The H.264 profile a chain emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    ConstrainedBaseline,
    Baseline,
    Main,
    /// Pass-through: whatever the camera or stream sends.
    Camera,
}

impl Profile {
    const ALL: [Profile; 4] = [
        Profile::ConstrainedBaseline,
        Profile::Baseline,
        Profile::Main,
        Profile::Camera,
    ];

    /// Parses a header value, which is also how GStreamer caps spell the H.264 profiles.
    pub fn parse(value: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::ConstrainedBaseline => "constrained-baseline",
            Profile::Baseline => "baseline",
            Profile::Main => "main",
            Profile::Camera => "camera",
        }
    }

    /// Whether every browser pipe targets can be offered it over WebRTC. `Camera` is unknown
    /// until the stream runs, so it is not.
    pub fn browser_decodable(self) -> bool {
        !matches!(self, Profile::Camera)
    }
}

/// The header of a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub source: SourceKind,
    /// Every element factory the chain uses; all must be present for it to be selected.
    pub requires: Vec<String>,
    /// Only auto-selected on this board.
    pub board: Option<Board>,
    pub profile: Profile,
    /// Whether the chain turns an upstream GstForceKeyUnit event into a keyframe.
    pub force_key_unit: bool,
    pub audio: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineTemplate {
    pub name: String,
    pub meta: Meta,
    /// The description with `{placeholders}` unfilled, lines joined with spaces.
    pub description: String,
    /// The file it was read from; `None` for builtins and text parsed directly.
    pub file: Option<PathBuf>,
}

/// Values for the placeholders.
#[derive(Clone, PartialEq, Eq)]
pub struct Params {
    /// V4L2 device path, for `{device}`. No default: selection or config provides it.
    pub device: Option<String>,
    /// Default 1280.
    pub width: u32,
    /// Default 720.
    pub height: u32,
    /// Numerator and denominator. Default 30/1.
    pub framerate: (i32, i32),
    /// Encoder target in kbit/s. Default 2000.
    pub bitrate_kbps: u32,
    /// For `{rtsp_url}`; may carry credentials, so `Debug` hides its password.
    pub rtsp_url: Option<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            device: None,
            width: 1280,
            height: 720,
            framerate: (30, 1),
            bitrate_kbps: 2000,
            rtsp_url: None,
        }
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Params")
            .field("device", &self.device)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("framerate", &self.framerate)
            .field("bitrate_kbps", &self.bitrate_kbps)
            .field("rtsp_url", &self.rtsp_url.as_deref().map(redact_url))
            .finish()
    }
}

/// The periodic key frame's interval, in seconds (`{keyint}`).
const KEYINT_SECS: i64 = 10;

impl Params {
    /// Frames in about ten seconds. Every chain that uses it honours key-unit requests, so a
    /// joining viewer, or one that lost a packet, gets its key frame on demand; the periodic
    /// one is only a safety net. Key frames are the costliest frames on a narrow uplink: at
    /// 1 Mbit/s one every 2 s (the value before) held the video at about 440 kbit/s and each
    /// one queued at the link (docs/adaptation.md).
    pub fn keyint(&self) -> u32 {
        let (num, den) = self.framerate;
        if num <= 0 || den <= 0 {
            return 1;
        }
        let frames = (KEYINT_SECS * i64::from(num) + i64::from(den) / 2) / i64::from(den);
        u32::try_from(frames.max(1)).unwrap_or(u32::MAX)
    }

    fn validate(&self) -> Result<(), PipelineError> {
        let invalid = |param, reason: &str| {
            Err(PipelineError::InvalidParam {
                param,
                reason: reason.to_string(),
            })
        };
        if !(1..=16384).contains(&self.width) {
            return invalid("width", "must be between 1 and 16384");
        }
        if !(1..=16384).contains(&self.height) {
            return invalid("height", "must be between 1 and 16384");
        }
        if self.framerate.0 <= 0 || self.framerate.1 <= 0 {
            return invalid("framerate", "numerator and denominator must be positive");
        }
        // openh264enc takes bit/s as a u32; 1 Gbit/s is far beyond any camera anyway.
        if !(1..=1_000_000).contains(&self.bitrate_kbps) {
            return invalid("bitrate", "must be between 1 and 1000000 kbit/s");
        }
        Ok(())
    }
}

impl PipelineTemplate {
    /// Parses the text of `NAME.pipeline`; errors name that file.
    pub fn parse(name: &str, text: &str) -> Result<Self, PipelineError> {
        parse_labelled(name, text, &format!("{name}.pipeline"))
    }

    /// Reads and parses a file; the name is the file stem.
    pub fn from_file(path: &Path) -> Result<Self, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|source| PipelineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let mut template = parse_labelled(name, &text, &path.display().to_string())?;
        template.file = Some(path.to_path_buf());
        Ok(template)
    }

    /// The placeholders the description uses.
    pub fn placeholders(&self) -> BTreeSet<&str> {
        let mut found = BTreeSet::new();
        let mut rest = self.description.as_str();
        while let Some(start) = rest.find('{') {
            rest = &rest[start + 1..];
            if let Some(name) = placeholder_at(rest) {
                found.insert(name);
            }
        }
        found
    }

    /// The description with placeholders filled.
    pub fn render(&self, params: &Params) -> Result<String, PipelineError> {
        params.validate()?;
        let mut out = String::with_capacity(self.description.len() + 64);
        let mut rest = self.description.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            rest = &rest[start + 1..];
            match placeholder_at(rest) {
                Some(name) => {
                    out.push_str(&self.value(name, params)?);
                    rest = &rest[name.len() + 1..];
                }
                None => out.push('{'),
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The complete launch string: pipe's appsinks, then the rendered chain.
    pub fn full_description(&self, params: &Params) -> Result<String, PipelineError> {
        let chain = self.render(params)?;
        let mut out = format!("appsink name={VIDEO_SINK} caps=\"{VIDEO_CAPS}\" {SINK_PROPS} ");
        if self.meta.audio {
            out.push_str(&format!(
                "appsink name={AUDIO_SINK} caps=\"{AUDIO_CAPS}\" {SINK_PROPS} "
            ));
        }
        out.push_str(&chain);
        Ok(out)
    }

    fn value(&self, name: &str, params: &Params) -> Result<String, PipelineError> {
        let missing = |placeholder, what| PipelineError::MissingParam {
            pipeline: self.name.clone(),
            placeholder,
            what,
        };
        Ok(match name {
            "device" => {
                let device = params
                    .device
                    .as_deref()
                    .ok_or_else(|| missing("device", "V4L2 device"))?;
                launch_safe("device", device)?.to_string()
            }
            "rtsp_url" => {
                let url = params
                    .rtsp_url
                    .as_deref()
                    .ok_or_else(|| missing("rtsp_url", "RTSP URL"))?;
                launch_safe("rtsp_url", url)?.to_string()
            }
            "width" => params.width.to_string(),
            "height" => params.height.to_string(),
            "framerate" => format!("{}/{}", params.framerate.0, params.framerate.1),
            "bitrate" => params.bitrate_kbps.to_string(),
            "bitrate_bps" => (u64::from(params.bitrate_kbps) * 1000).to_string(),
            "keyint" => params.keyint().to_string(),
            other => {
                return Err(PipelineError::Invalid {
                    file: format!("{}.pipeline", self.name),
                    message: format!("unknown placeholder {{{other}}}"),
                });
            }
        })
    }
}

fn parse_labelled(name: &str, text: &str, file: &str) -> Result<PipelineTemplate, PipelineError> {
    let syntax = |line, message: String| PipelineError::Syntax {
        file: file.to_string(),
        line,
        message,
    };

    let mut header: Vec<(usize, &str, &str)> = Vec::new();
    let mut body: Vec<(usize, &str)> = Vec::new();
    let mut in_header = true;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if in_header {
                let comment = comment.trim();
                if comment.is_empty() {
                    in_header = false;
                    continue;
                }
                match comment.split_once(':') {
                    Some((key, value)) if is_key(key) => header.push((line_no, key, value.trim())),
                    _ => {
                        return Err(syntax(
                            line_no,
                            "expected `# key: value` in the header; put a line holding only `#` \
                             between the header and free comments"
                                .to_string(),
                        ));
                    }
                }
            }
            continue;
        }
        in_header = false;
        if !line.is_empty() {
            body.push((line_no, line));
        }
    }

    let meta = parse_header(name, file, &header)?;
    check_body(file, &meta, &body)?;
    let description = body
        .iter()
        .map(|(_, line)| *line)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(PipelineTemplate {
        name: name.to_string(),
        meta,
        description,
        file: None,
    })
}

fn is_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '-')
}

fn parse_header(
    name: &str,
    file: &str,
    header: &[(usize, &str, &str)],
) -> Result<Meta, PipelineError> {
    let syntax = |line, message: String| PipelineError::Syntax {
        file: file.to_string(),
        line,
        message,
    };
    let yes_no = |line, key: &str, value: &str| match value {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(syntax(
            line,
            format!("{key}: expected yes or no, found '{value}'"),
        )),
    };

    let mut seen = BTreeSet::new();
    let (mut source, mut requires, mut board, mut profile, mut force_key_unit, mut audio) =
        (None, None, None, None, None, None);
    let mut named = false;
    for &(line, key, value) in header {
        if !seen.insert(key) {
            return Err(syntax(line, format!("`{key}` is given twice")));
        }
        match key {
            "pipeline" => {
                if value != name {
                    return Err(syntax(
                        line,
                        format!("pipeline: '{value}' must equal the file name '{name}'"),
                    ));
                }
                named = true;
            }
            "source" => {
                let kind = SourceKind::ALL.into_iter().find(|k| k.as_str() == value);
                source = Some(kind.ok_or_else(|| {
                    let known: Vec<_> = SourceKind::ALL.iter().map(|k| k.as_str()).collect();
                    syntax(
                        line,
                        format!("source: '{value}' is not one of {}", known.join(", ")),
                    )
                })?);
            }
            "requires" => {
                let elements: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                if elements.is_empty() {
                    return Err(syntax(line, "requires: lists no element".to_string()));
                }
                if let Some(bad) = elements.iter().find(|e| !is_element_name(e)) {
                    return Err(syntax(
                        line,
                        format!("requires: '{bad}' is not an element name"),
                    ));
                }
                requires = Some(elements);
            }
            "board" => {
                board = Some(match value {
                    "rpi4" => Board::RaspberryPi4,
                    "rpi5" => Board::RaspberryPi5,
                    _ => {
                        return Err(syntax(
                            line,
                            format!("board: '{value}' is not rpi4 or rpi5"),
                        ));
                    }
                });
            }
            "profile" => {
                profile = Some(Profile::parse(value).ok_or_else(|| {
                    let known: Vec<_> = Profile::ALL.iter().map(|p| p.as_str()).collect();
                    syntax(
                        line,
                        format!("profile: '{value}' is not one of {}", known.join(", ")),
                    )
                })?);
            }
            "force-key-unit" => force_key_unit = Some(yes_no(line, key, value)?),
            "audio" => audio = Some(yes_no(line, key, value)?),
            _ => {
                return Err(syntax(
                    line,
                    format!("unknown header key '{key}' (known: {})", KEYS.join(", ")),
                ));
            }
        }
    }
    let missing = |key| PipelineError::MissingKey {
        file: file.to_string(),
        key,
    };
    if !named {
        return Err(missing("pipeline"));
    }
    Ok(Meta {
        source: source.ok_or_else(|| missing("source"))?,
        requires: requires.ok_or_else(|| missing("requires"))?,
        board,
        profile: profile.ok_or_else(|| missing("profile"))?,
        force_key_unit: force_key_unit.ok_or_else(|| missing("force-key-unit"))?,
        audio: audio.ok_or_else(|| missing("audio"))?,
    })
}

#[cfg(test)]
mod tests;

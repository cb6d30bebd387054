//! Where chains come from: the builtin ones embedded in the binary, and `NAME.pipeline` files
//! in the pipelines directory, which override them by name.

use std::path::Path;

use super::{PipelineError, PipelineTemplate};

/// The builtin chains, embedded at build time, in the order auto-selection prefers them.
const BUILTIN: &[(&str, &str)] = &[
    ("rtsp", include_str!("../../../pipelines/rtsp.pipeline")),
    (
        "rpi-libcamera",
        include_str!("../../../pipelines/rpi-libcamera.pipeline"),
    ),
    (
        "rpi5-openh264",
        include_str!("../../../pipelines/rpi5-openh264.pipeline"),
    ),
    (
        "v4l2-h264",
        include_str!("../../../pipelines/v4l2-h264.pipeline"),
    ),
    (
        "rpi-v4l2h264enc",
        include_str!("../../../pipelines/rpi-v4l2h264enc.pipeline"),
    ),
    (
        "v4l2-x264",
        include_str!("../../../pipelines/v4l2-x264.pipeline"),
    ),
    (
        "virtual-webcam",
        include_str!("../../../pipelines/virtual-webcam.pipeline"),
    ),
];

/// The builtin chains, in the order auto-selection prefers them.
pub fn builtin() -> Vec<PipelineTemplate> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            PipelineTemplate::parse(name, text)
                .expect("builtin pipelines parse: the builtin_pipelines_parse test checks them")
        })
        .collect()
}

/// The chains auto-selection chooses from: every builtin, each replaced by `DIR/NAME.pipeline`
/// where an integrator has overridden it. A broken override is an error naming its file and
/// line, not silently the builtin.
pub fn candidates(dir: Option<&Path>) -> Result<Vec<PipelineTemplate>, PipelineError> {
    builtin()
        .into_iter()
        .map(|t| resolve(&t.name, dir))
        .collect()
}

/// Finds a chain by name or path. A value containing '/' or ending in `.pipeline` is a file;
/// otherwise `DIR/NAME.pipeline` (an integrator's override) wins over the builtin of that name.
pub fn resolve(name_or_path: &str, dir: Option<&Path>) -> Result<PipelineTemplate, PipelineError> {
    if name_or_path.contains('/') || name_or_path.ends_with(".pipeline") {
        return PipelineTemplate::from_file(Path::new(name_or_path));
    }
    let valid_name = !name_or_path.is_empty()
        && name_or_path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid_name && let Some(dir) = dir {
        let path = dir.join(format!("{name_or_path}.pipeline"));
        if path.is_file() {
            return PipelineTemplate::from_file(&path);
        }
    }
    if let Some(template) = builtin().into_iter().find(|t| t.name == name_or_path) {
        return Ok(template);
    }
    let names: Vec<&str> = BUILTIN.iter().map(|(name, _)| *name).collect();
    Err(PipelineError::NotFound {
        name: name_or_path.to_string(),
        searched: dir
            .map(|d| format!(" (looked for {}/{name_or_path}.pipeline)", d.display()))
            .unwrap_or_default(),
        builtins: names.join(", "),
    })
}

//! What this machine has: element factories, cameras and the board.
//!
//! The data types are plain data so `select` is tested with hand-built probes; only `probe()`
//! and `formats_from_caps` read GStreamer, and they only translate what it reports.

use std::collections::BTreeSet;
use std::fmt;

use gst::prelude::*;

/// V4L2 `device_caps` bits that mark a node as a memory-to-memory codec or converter, not a
/// camera (from `linux/videodev2.h`).
const V4L2_CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
const V4L2_CAP_VIDEO_M2M: u32 = 0x0000_8000;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(#[from] gst::glib::Error),
}

/// Everything selection needs to know about the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// Names of every element factory in the GStreamer registry.
    pub elements: BTreeSet<String>,
    /// Video capture devices, from every device provider (duplicates included: the same USB
    /// camera can appear through V4L2, libcamera and PipeWire).
    pub devices: Vec<VideoDevice>,
    pub board: Board,
    /// Things that went wrong while probing, for `pipe doctor`.
    pub notes: Vec<String>,
}

impl Probe {
    pub fn has_element(&self, name: &str) -> bool {
        self.elements.contains(name)
    }

    /// Cameras driven by libcamera.
    pub fn libcamera_cameras(&self) -> impl Iterator<Item = &VideoDevice> {
        self.devices
            .iter()
            .filter(|d| d.backend == Backend::Libcamera)
    }

    /// Devices listed by the V4L2 provider.
    pub fn v4l2_devices(&self) -> impl Iterator<Item = &VideoDevice> {
        self.devices.iter().filter(|d| d.backend == Backend::V4l2)
    }
}

/// Which GStreamer device provider listed a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    V4l2,
    Libcamera,
    PipeWire,
    /// Another provider, by the device's GType name (e.g. `GstUvcH264Device`).
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoDevice {
    pub backend: Backend,
    /// The V4L2 node (`/dev/video0`) when there is one.
    pub path: Option<String>,
    /// Display name: the V4L2 card name, or the libcamera camera id.
    pub name: String,
    /// V4L2 driver name (`uvcvideo`, `bcm2835-isp`, ...).
    pub driver: Option<String>,
    /// V4L2 `device_caps` bits.
    pub capabilities: Option<u32>,
    pub formats: Vec<VideoFormat>,
}

impl VideoDevice {
    /// `/dev/video0 (HD Webcam)`, or the name alone when there is no node.
    pub fn label(&self) -> String {
        match &self.path {
            Some(path) => format!("{path} ({})", self.name),
            None => format!("'{}'", self.name),
        }
    }

    pub fn has_raw(&self) -> bool {
        self.formats.contains(&VideoFormat::Raw)
    }

    /// H.264 profiles advertised in the caps; `Some(empty)` when H.264 is offered without one.
    pub fn h264_profiles(&self) -> Option<Vec<&str>> {
        let mut found = None;
        for format in &self.formats {
            if let VideoFormat::H264 { profiles } = format {
                found
                    .get_or_insert_with(Vec::new)
                    .extend(profiles.iter().map(String::as_str));
            }
        }
        found
    }

    /// Whether the V4L2 capabilities say this is a memory-to-memory codec/converter node.
    pub fn is_m2m(&self) -> bool {
        self.capabilities
            .is_some_and(|caps| caps & (V4L2_CAP_VIDEO_M2M | V4L2_CAP_VIDEO_M2M_MPLANE) != 0)
    }
}

/// What a device can deliver, per caps structure name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoFormat {
    /// `video/x-raw`.
    Raw,
    /// `video/x-h264`, with the `profile` values the caps list (often none).
    H264 { profiles: Vec<String> },
    /// `image/jpeg` (MJPEG).
    Jpeg,
    /// Anything else, by caps name (`video/x-bayer`, ...).
    Other(String),
}

impl fmt::Display for VideoFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VideoFormat::Raw => f.write_str("raw"),
            VideoFormat::H264 { profiles } if profiles.is_empty() => f.write_str("H.264"),
            VideoFormat::H264 { profiles } => write!(f, "H.264 ({})", profiles.join(", ")),
            VideoFormat::Jpeg => f.write_str("MJPEG"),
            VideoFormat::Other(name) => f.write_str(name),
        }
    }
}

/// The board, from `/proc/device-tree/model`. Families share an encoder: a Pi 400 or Compute
/// Module 4 is a Pi 4 here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Board {
    RaspberryPi4,
    RaspberryPi5,
    /// Another device-tree board, by its model string.
    Other(String),
    /// No device-tree model (x86 and most VMs).
    #[default]
    Unknown,
}

impl Board {
    pub fn from_model(model: &str) -> Board {
        let model = model.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        let family = |names: &[&str]| names.iter().any(|n| model.starts_with(n));
        if model.is_empty() {
            Board::Unknown
        } else if family(&[
            "Raspberry Pi 4",
            "Raspberry Pi 400",
            "Raspberry Pi Compute Module 4",
        ]) {
            Board::RaspberryPi4
        } else if family(&[
            "Raspberry Pi 5",
            "Raspberry Pi 500",
            "Raspberry Pi Compute Module 5",
        ]) {
            Board::RaspberryPi5
        } else {
            Board::Other(model.to_string())
        }
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Board::RaspberryPi4 => f.write_str("Raspberry Pi 4"),
            Board::RaspberryPi5 => f.write_str("Raspberry Pi 5"),
            Board::Other(model) => f.write_str(model),
            Board::Unknown => f.write_str("an unknown board"),
        }
    }
}

/// Reads the registry, the video device providers and the board model. Device probing opens
/// each V4L2 node briefly; it takes well under a second on a Pi.
pub fn probe() -> Result<Probe, ProbeError> {
    gst::init()?;
    let elements = gst::Registry::get()
        .features(gst::ElementFactory::static_type())
        .iter()
        .map(|feature| feature.name().to_string())
        .collect();

    let mut notes = Vec::new();
    let monitor = gst::DeviceMonitor::new();
    // Providers hide each other's duplicates (libcamera and PipeWire hide V4L2); selection
    // wants to see the V4L2 nodes too, to know which camera offers H.264.
    monitor.set_show_all_devices(true);
    if monitor.add_filter(Some("Video/Source"), None).is_none() {
        notes.push("no GStreamer device provider lists video sources".to_string());
    }
    // Without start(), devices() probes synchronously and leaves no monitoring thread behind.
    let devices = monitor.devices().iter().map(video_device).collect();

    let board = match std::fs::read_to_string("/proc/device-tree/model") {
        Ok(model) => Board::from_model(&model),
        Err(_) => Board::Unknown,
    };
    Ok(Probe {
        elements,
        devices,
        board,
        notes,
    })
}

fn video_device(device: &gst::Device) -> VideoDevice {
    let props = device.properties();
    let prop = |key: &str| props.as_ref().and_then(|p| p.get::<String>(key).ok());
    let backend = match device.type_().name() {
        "GstV4l2Device" => Backend::V4l2,
        "GstLibcameraDevice" => Backend::Libcamera,
        "GstPipeWireDevice" => Backend::PipeWire,
        other => Backend::Other(other.to_string()),
    };
    VideoDevice {
        backend,
        path: prop("device.path").or_else(|| prop("api.v4l2.path")),
        name: device.display_name().to_string(),
        driver: prop("v4l2.device.driver"),
        capabilities: props
            .as_ref()
            .and_then(|p| p.get::<u32>("v4l2.device.device_caps").ok()),
        formats: device
            .caps()
            .map(|caps| formats_from_caps(&caps))
            .unwrap_or_default(),
    }
}

/// One entry per kind of format the caps offer; H.264 profiles merged and deduplicated.
pub fn formats_from_caps(caps: &gst::CapsRef) -> Vec<VideoFormat> {
    let mut formats: Vec<VideoFormat> = Vec::new();
    let mut h264: Option<BTreeSet<String>> = None;
    for structure in caps.iter() {
        let format = match structure.name().as_str() {
            "video/x-raw" => VideoFormat::Raw,
            "image/jpeg" => VideoFormat::Jpeg,
            "video/x-h264" => {
                let profiles = h264.get_or_insert_with(BTreeSet::new);
                if let Ok(profile) = structure.get::<String>("profile") {
                    profiles.insert(profile);
                } else if let Ok(list) = structure.get::<gst::List>("profile") {
                    profiles.extend(list.iter().filter_map(|v| v.get::<String>().ok()));
                }
                continue;
            }
            other => VideoFormat::Other(other.to_string()),
        };
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    if let Some(profiles) = h264 {
        formats.push(VideoFormat::H264 {
            profiles: profiles.into_iter().collect(),
        });
    }
    formats
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn board_from_device_tree_model() {
        assert_eq!(
            Board::from_model("Raspberry Pi 4 Model B Rev 1.4\0"),
            Board::RaspberryPi4
        );
        assert_eq!(
            Board::from_model("Raspberry Pi 400 Rev 1.0\0"),
            Board::RaspberryPi4
        );
        assert_eq!(
            Board::from_model("Raspberry Pi Compute Module 4 Rev 1.0"),
            Board::RaspberryPi4
        );
        assert_eq!(
            Board::from_model("Raspberry Pi 5 Model B Rev 1.0\0"),
            Board::RaspberryPi5
        );
        assert_eq!(
            Board::from_model("Raspberry Pi 3 Model B Plus Rev 1.3\0"),
            Board::Other("Raspberry Pi 3 Model B Plus Rev 1.3".to_string())
        );
        assert_eq!(Board::from_model("\0"), Board::Unknown);
    }

    #[test]
    fn formats_from_device_caps() {
        gst::init().expect("GStreamer initialises");
        let caps = gst::Caps::from_str(
            "video/x-raw, format=YUY2, width=640, height=480; \
             image/jpeg, width=1280, height=720; \
             video/x-h264, stream-format=byte-stream, profile=main; \
             video/x-h264, profile={ constrained-baseline, main }; \
             video/x-bayer, format=rggb; video/x-raw, format=NV12",
        )
        .expect("caps parse");
        assert_eq!(
            formats_from_caps(&caps),
            vec![
                VideoFormat::Raw,
                VideoFormat::Jpeg,
                VideoFormat::Other("video/x-bayer".to_string()),
                VideoFormat::H264 {
                    profiles: vec!["constrained-baseline".to_string(), "main".to_string()]
                },
            ]
        );
        let no_profile =
            gst::Caps::from_str("video/x-h264, stream-format=byte-stream").expect("caps");
        assert_eq!(
            formats_from_caps(&no_profile),
            vec![VideoFormat::H264 { profiles: vec![] }]
        );
    }

    #[test]
    fn device_helpers() {
        let device = VideoDevice {
            backend: Backend::V4l2,
            path: Some("/dev/video11".to_string()),
            name: "bcm2835-codec-encode".to_string(),
            driver: Some("bcm2835-codec".to_string()),
            capabilities: Some(0x8420_4000),
            formats: vec![VideoFormat::H264 { profiles: vec![] }, VideoFormat::Raw],
        };
        assert!(device.is_m2m());
        assert!(device.has_raw());
        assert_eq!(device.h264_profiles(), Some(vec![]));
        assert_eq!(device.label(), "/dev/video11 (bcm2835-codec-encode)");
    }

    /// A real run of the builtin test chain: H.264 constrained baseline byte-stream on `video`,
    /// starting with a keyframe, and Opus on `audio`.
    #[test]
    fn virtual_webcam_runs() {
        use crate::media::pipeline::{self, Params};
        gst::init().expect("GStreamer initialises");
        let template = pipeline::resolve("virtual-webcam", None).expect("builtin");
        let params = Params {
            width: 320,
            height: 240,
            ..Params::default()
        };
        let description = template.full_description(&params).expect("renders");
        let pipeline = gst::parse::launch(&description)
            .expect("the description parses")
            .downcast::<gst::Pipeline>()
            .expect("a pipeline");
        let sink = |name| {
            pipeline
                .by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .expect("pipe's appsink is in the description")
        };
        let (video, audio) = (sink("video"), sink("audio"));
        pipeline.set_state(gst::State::Playing).expect("plays");
        let pull = |sink: &gst_app::AppSink| {
            sink.try_pull_sample(gst::ClockTime::from_seconds(10))
                .unwrap_or_else(|| {
                    let mut errors = Vec::new();
                    let bus = pipeline.bus().expect("a pipeline has a bus");
                    while let Some(message) = bus.pop() {
                        if let gst::MessageView::Error(e) = message.view() {
                            errors.push(e.error().to_string());
                        }
                    }
                    panic!(
                        "no sample from {} within 10 s; bus errors: {errors:?}",
                        sink.name()
                    )
                })
        };
        for index in 0..10 {
            let sample = pull(&video);
            let caps = sample.caps().expect("samples carry caps");
            let s = caps.structure(0).expect("one structure");
            assert_eq!(s.name().as_str(), "video/x-h264");
            assert_eq!(s.get::<&str>("stream-format"), Ok("byte-stream"));
            assert_eq!(s.get::<&str>("alignment"), Ok("au"));
            assert_eq!(s.get::<&str>("profile"), Ok("constrained-baseline"));
            let buffer = sample.buffer().expect("samples carry a buffer");
            if index == 0 {
                assert!(
                    !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    "starts with a keyframe"
                );
            }
        }
        // force-key-unit: yes means a forced key frame arrives well before the natural one
        // (frame 60 at 30/1).
        let event = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        assert!(
            video.send_event(event),
            "the chain accepts the key-unit request"
        );
        let keyframe_after = (0..20).position(|_| {
            let sample = pull(&video);
            let buffer = sample.buffer().expect("samples carry a buffer");
            !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT)
        });
        assert!(
            keyframe_after.is_some(),
            "no key frame within 20 frames of the request"
        );
        let sample = pull(&audio);
        let caps = sample.caps().expect("samples carry caps");
        assert_eq!(
            caps.structure(0).map(|s| s.name().as_str()),
            Some("audio/x-opus")
        );
        pipeline.set_state(gst::State::Null).expect("stops");
    }

    /// Every builtin whose elements exist here parses with GStreamer: element names, property
    /// names and values, caps and links are right. Nothing is started, so no device is opened.
    #[test]
    fn builtin_descriptions_parse_with_gstreamer() {
        use crate::media::pipeline::{self, Params};
        gst::init().expect("GStreamer initialises");
        let identity = gst::ElementFactory::find("identity")
            .and_then(|f| f.load().ok())
            .map(|f| f.element_type());
        // Another test registers identity under hardware names; those stand-ins lack the real
        // properties, so chains using them are skipped like absent ones.
        let real = |name: &str| {
            gst::ElementFactory::find(name)
                .and_then(|f| f.load().ok())
                .is_some_and(|f| name == "identity" || Some(f.element_type()) != identity)
        };
        let params = Params {
            device: Some("/dev/video0".into()),
            rtsp_url: Some("rtsp://127.0.0.1:1/stream".into()),
            ..Params::default()
        };
        let mut parsed = Vec::new();
        for template in pipeline::builtin() {
            if !template.meta.requires.iter().all(|e| real(e)) {
                continue;
            }
            let description = template.full_description(&params).expect("renders");
            if let Err(e) = gst::parse::launch(&description) {
                panic!("{} does not parse: {e}\n{description}", template.name);
            }
            parsed.push(template.name);
        }
        // Development and CI machines have plugins base, good, bad and ugly.
        assert_eq!(parsed, ["rtsp", "v4l2-h264", "v4l2-x264", "virtual-webcam"]);
    }

    /// v4l2h264enc is absent here, so at least check its extra-controls are a valid structure
    /// carrying the bcm2835-codec control names and values the Pi chains intend.
    #[test]
    fn pi_extra_controls_are_a_structure() {
        use crate::media::pipeline::{self, Params};
        gst::init().expect("GStreamer initialises");
        let params = Params {
            device: Some("/dev/video0".into()),
            ..Params::default()
        };
        for name in ["rpi-v4l2h264enc", "rpi-libcamera"] {
            let rendered = pipeline::resolve(name, None)
                .expect("builtin")
                .render(&params)
                .expect("renders");
            let value = rendered
                .split("extra-controls=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("extra-controls is set");
            let controls = gst::Structure::from_str(value).expect("a structure");
            assert_eq!(controls.name().as_str(), "controls");
            for (field, expected) in [
                ("video_bitrate", 2_000_000),
                ("h264_i_frame_period", 60),
                ("h264_profile", 1),
                ("h264_level", 11),
                ("repeat_sequence_header", 1),
            ] {
                assert_eq!(controls.get::<i32>(field), Ok(expected), "{name}: {field}");
            }
        }
    }

    #[test]
    fn probe_reads_this_machine() {
        let probe = probe().expect("probe runs");
        // Core elements ship with GStreamer itself, so they are present wherever tests run.
        assert!(probe.has_element("identity"));
        assert!(probe.has_element("fakesink"));
    }
}

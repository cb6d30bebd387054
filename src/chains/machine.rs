//! What this machine has, as plain data: element factories, cameras and the board.
//! `media::probe` fills it from GStreamer; `select` is tested with hand-built ones.

use std::collections::BTreeSet;
use std::fmt;

/// V4L2 `device_caps` bits that mark a node as a memory-to-memory codec or converter, not a
/// camera (from `linux/videodev2.h`).
const V4L2_CAP_VIDEO_M2M_MPLANE: u32 = 0x0000_4000;
const V4L2_CAP_VIDEO_M2M: u32 = 0x0000_8000;

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

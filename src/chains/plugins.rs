//! Which package provides each GStreamer element pipe uses, so a missing plugin is reported
//! with the line that installs it instead of a bare "no element x264enc".

use std::fmt;

/// Elements pipe itself always needs, whatever the capture chain: the viewer pipelines
/// (appsrc -> payloader -> capsfilter -> webrtcbin) and what webrtcbin creates inside.
pub const CORE: &[&str] = &[
    "webrtcbin",
    "rtpbin",
    "nicesrc",
    "nicesink",
    "dtlssrtpenc",
    "dtlssrtpdec",
    "srtpenc",
    "srtpdec",
    "sctpenc",
    "sctpdec",
    "rtph264pay",
    "rtpopuspay",
    "appsrc",
    "appsink",
    "capsfilter",
];

/// Where an element comes from on each distribution pipe is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    pub element: &'static str,
    /// What it is, for humans.
    pub what: &'static str,
    /// Debian / Ubuntu / Raspberry Pi OS package.
    pub debian: &'static str,
    /// Yocto recipe, with the PACKAGECONFIG that builds the element.
    pub yocto: &'static str,
    /// Buildroot option.
    pub buildroot: &'static str,
}

const fn req(
    element: &'static str,
    what: &'static str,
    debian: &'static str,
    yocto: &'static str,
    buildroot: &'static str,
) -> Requirement {
    Requirement {
        element,
        what,
        debian,
        yocto,
        buildroot,
    }
}

const CORE_DEB: &str = "libgstreamer1.0-0";
const BASE: &str = "gstreamer1.0-plugins-base";
const GOOD: &str = "gstreamer1.0-plugins-good";
const BAD: &str = "gstreamer1.0-plugins-bad";

/// Every element pipe or a builtin chain uses.
#[rustfmt::skip]
pub const REQUIREMENTS: &[Requirement] = &[
    // WebRTC
    req("webrtcbin", "WebRTC peer connection", BAD,
        "gstreamer1.0-plugins-bad (PACKAGECONFIG webrtc)", "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_WEBRTC"),
    req("rtpbin", "RTP session manager (used inside webrtcbin and rtspsrc)", GOOD,
        "gstreamer1.0-plugins-good", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_RTPMANAGER"),
    req("nicesrc", "ICE transport (libnice)", "gstreamer1.0-nice",
        "libnice (PACKAGECONFIG gstreamer)", "BR2_PACKAGE_LIBNICE with BR2_PACKAGE_GSTREAMER1"),
    req("nicesink", "ICE transport (libnice)", "gstreamer1.0-nice",
        "libnice (PACKAGECONFIG gstreamer)", "BR2_PACKAGE_LIBNICE with BR2_PACKAGE_GSTREAMER1"),
    req("dtlssrtpenc", "DTLS handshake for SRTP", BAD,
        "gstreamer1.0-plugins-bad (PACKAGECONFIG dtls)", "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_DTLS"),
    req("dtlssrtpdec", "DTLS handshake for SRTP", BAD,
        "gstreamer1.0-plugins-bad (PACKAGECONFIG dtls)", "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_DTLS"),
    req("srtpenc", "SRTP encryption", BAD,
        "gstreamer1.0-plugins-bad (PACKAGECONFIG srtp)", "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_SRTP"),
    req("srtpdec", "SRTP decryption", BAD,
        "gstreamer1.0-plugins-bad (PACKAGECONFIG srtp)", "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_SRTP"),
    req("sctpenc", "SCTP for data channels", BAD,
        "gstreamer1.0-plugins-bad (PACKAGECONFIG sctp)", "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_SCTP"),
    req("sctpdec", "SCTP for data channels", BAD,
        "gstreamer1.0-plugins-bad (PACKAGECONFIG sctp)", "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_SCTP"),
    req("rtph264pay", "H.264 RTP payloader", GOOD,
        "gstreamer1.0-plugins-good", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_RTP"),
    req("rtpopuspay", "Opus RTP payloader", GOOD,
        "gstreamer1.0-plugins-good", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_RTP"),
    req("appsrc", "application source", BASE,
        "gstreamer1.0-plugins-base", "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_APP"),
    req("appsink", "application sink", BASE,
        "gstreamer1.0-plugins-base", "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_APP"),
    // GStreamer core
    req("capsfilter", "caps filter (core)", CORE_DEB, "gstreamer1.0", "BR2_PACKAGE_GSTREAMER1"),
    req("queue", "queue (core)", CORE_DEB, "gstreamer1.0", "BR2_PACKAGE_GSTREAMER1"),
    req("tee", "tee (core)", CORE_DEB, "gstreamer1.0", "BR2_PACKAGE_GSTREAMER1"),
    req("identity", "identity (core)", CORE_DEB, "gstreamer1.0", "BR2_PACKAGE_GSTREAMER1"),
    req("fakesink", "fake sink (core)", CORE_DEB, "gstreamer1.0", "BR2_PACKAGE_GSTREAMER1"),
    // Sources
    req("v4l2src", "V4L2 camera source", GOOD,
        "gstreamer1.0-plugins-good (PACKAGECONFIG v4l2)", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_V4L2"),
    req("libcamerasrc", "libcamera camera source (Raspberry Pi camera modules)", "gstreamer1.0-libcamera",
        "libcamera (PACKAGECONFIG gst; meta-multimedia, or meta-raspberrypi for the Pi fork)",
        "BR2_PACKAGE_LIBCAMERA with BR2_PACKAGE_GST1_PLUGINS_BASE"),
    req("rtspsrc", "RTSP client", GOOD,
        "gstreamer1.0-plugins-good", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_RTSP"),
    req("udpsrc", "UDP source (used inside rtspsrc)", GOOD,
        "gstreamer1.0-plugins-good", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_UDP"),
    req("rtph264depay", "H.264 RTP depayloader", GOOD,
        "gstreamer1.0-plugins-good", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_RTP"),
    req("videotestsrc", "test picture", BASE,
        "gstreamer1.0-plugins-base", "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_VIDEOTESTSRC"),
    req("audiotestsrc", "test sound", BASE,
        "gstreamer1.0-plugins-base", "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_AUDIOTESTSRC"),
    req("clockoverlay", "clock drawn over video (pango)", "gstreamer1.0-x",
        "gstreamer1.0-plugins-base (PACKAGECONFIG pango)", "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_PANGO"),
    req("videobalance", "brightness and colour (the demo UI's brightness control)", GOOD,
        "gstreamer1.0-plugins-good", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_VIDEOFILTER"),
    // Conversion
    req("videoconvert", "pixel format converter", BASE, "gstreamer1.0-plugins-base",
        "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_VIDEOCONVERTSCALE (before 1.22: _VIDEOCONVERT)"),
    req("videoscale", "video scaler", BASE, "gstreamer1.0-plugins-base",
        "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_VIDEOCONVERTSCALE (before 1.22: _VIDEOSCALE)"),
    req("v4l2convert", "V4L2 hardware converter (Raspberry Pi ISP)", GOOD,
        "gstreamer1.0-plugins-good (PACKAGECONFIG v4l2)", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_V4L2"),
    req("audioconvert", "audio format converter", BASE,
        "gstreamer1.0-plugins-base", "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_AUDIOCONVERT"),
    req("audioresample", "audio resampler", BASE,
        "gstreamer1.0-plugins-base", "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_AUDIORESAMPLE"),
    // Encoders and parsers
    req("h264parse", "H.264 parser", BAD,
        "gstreamer1.0-plugins-bad", "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_VIDEOPARSERS"),
    req("x264enc", "x264 software H.264 encoder", "gstreamer1.0-plugins-ugly",
        "gstreamer1.0-plugins-ugly (PACKAGECONFIG x264; needs LICENSE_FLAGS_ACCEPTED commercial)",
        "BR2_PACKAGE_GST1_PLUGINS_UGLY_PLUGIN_X264"),
    req("openh264enc", "OpenH264 software H.264 encoder", BAD,
        "gstreamer1.0-plugins-bad (PACKAGECONFIG openh264; openh264 from meta-multimedia)",
        "BR2_PACKAGE_GST1_PLUGINS_BAD_PLUGIN_OPENH264"),
    req("v4l2h264enc",
        "V4L2 hardware H.264 encoder (Raspberry Pi 4: bcm2835-codec; registered only when the kernel exposes one)",
        GOOD, "gstreamer1.0-plugins-good (PACKAGECONFIG v4l2)", "BR2_PACKAGE_GST1_PLUGINS_GOOD_PLUGIN_V4L2"),
    req("opusenc", "Opus audio encoder", BASE,
        "gstreamer1.0-plugins-base (PACKAGECONFIG opus)", "BR2_PACKAGE_GST1_PLUGINS_BASE_PLUGIN_OPUS"),
];

/// The table entry for an element.
pub fn requirement(element: &str) -> Option<&'static Requirement> {
    REQUIREMENTS.iter().find(|r| r.element == element)
}

/// An element that is not installed, with where to get it when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub element: String,
    pub requirement: Option<&'static Requirement>,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missing GStreamer element '{}' ", self.element)?;
        match self.requirement {
            Some(r) => write!(f, "(Debian: apt install {})", r.debian),
            None => f.write_str(
                "(no package known; look it up with gst-inspect-1.0 on a machine that has it)",
            ),
        }
    }
}

/// Missing elements, one line each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MissingElements(pub Vec<Missing>);

impl fmt::Display for MissingElements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, missing) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{missing}")?;
        }
        Ok(())
    }
}

/// The elements for which `present` says no, in the order given, without duplicates.
pub fn missing_in(elements: &[&str], present: impl Fn(&str) -> bool) -> Vec<Missing> {
    let mut out: Vec<Missing> = Vec::new();
    for &element in elements {
        if !present(element) && !out.iter().any(|m| m.element == element) {
            out.push(Missing {
                element: element.to_string(),
                requirement: requirement(element),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chains::pipeline;

    #[test]
    fn every_element_pipe_uses_has_an_entry() {
        for element in CORE {
            assert!(requirement(element).is_some(), "{element} has no entry");
        }
        for template in pipeline::builtin() {
            for element in &template.meta.requires {
                assert!(
                    requirement(element).is_some(),
                    "{element} ({}) has no entry",
                    template.name
                );
            }
        }
    }

    #[test]
    fn entries_are_unique_and_complete() {
        for (i, r) in REQUIREMENTS.iter().enumerate() {
            assert!(
                REQUIREMENTS[i + 1..].iter().all(|o| o.element != r.element),
                "{} listed twice",
                r.element
            );
            assert!(!r.what.is_empty() && !r.debian.is_empty() && !r.yocto.is_empty());
            assert!(r.buildroot.starts_with("BR2_PACKAGE_"), "{}", r.element);
        }
    }

    #[test]
    fn display_names_the_package_one_line_per_element() {
        let missing = missing_in(&["x264enc", "appsink", "frobnicate", "x264enc"], |e| {
            e == "appsink"
        });
        let text = MissingElements(missing).to_string();
        assert_eq!(
            text,
            "missing GStreamer element 'x264enc' (Debian: apt install gstreamer1.0-plugins-ugly)\n\
             missing GStreamer element 'frobnicate' (no package known; look it up with \
             gst-inspect-1.0 on a machine that has it)"
        );
    }
}

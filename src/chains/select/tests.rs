use super::*;
use crate::chains::machine::{Backend, VideoFormat};
use crate::chains::pipeline::builtin;

const EVERYTHING: &[&str] = &[
    "v4l2src",
    "videoscale",
    "videoconvert",
    "x264enc",
    "h264parse",
    "videotestsrc",
    "clockoverlay",
    "capsfilter",
    "videobalance",
    "audiotestsrc",
    "audioconvert",
    "audioresample",
    "opusenc",
    "rtspsrc",
    "rtpbin",
    "udpsrc",
    "rtph264depay",
    "openh264enc",
];

fn machine(board: Board, extra: &[&str]) -> Probe {
    Probe {
        elements: EVERYTHING
            .iter()
            .chain(extra)
            .map(|e| e.to_string())
            .collect(),
        devices: Vec::new(),
        board,
        notes: Vec::new(),
    }
}

fn v4l2(path: &str, name: &str, driver: &str, formats: Vec<VideoFormat>) -> VideoDevice {
    VideoDevice {
        backend: Backend::V4l2,
        path: Some(path.to_string()),
        name: name.to_string(),
        driver: Some(driver.to_string()),
        capabilities: Some(0x0420_0001),
        formats,
    }
}

fn libcamera(id: &str) -> VideoDevice {
    VideoDevice {
        backend: Backend::Libcamera,
        path: None,
        name: id.to_string(),
        driver: None,
        capabilities: None,
        formats: vec![VideoFormat::Raw],
    }
}

fn h264(profiles: &[&str]) -> VideoFormat {
    VideoFormat::H264 {
        profiles: profiles.iter().map(|p| p.to_string()).collect(),
    }
}

/// The ISP and codec nodes a Raspberry Pi 4 shows next to its cameras.
fn pi_nodes() -> Vec<VideoDevice> {
    vec![
        v4l2(
            "/dev/video13",
            "bcm2835-isp",
            "bcm2835-isp",
            vec![VideoFormat::Raw],
        ),
        v4l2(
            "/dev/video0",
            "unicam",
            "unicam",
            vec![VideoFormat::Other("video/x-bayer".into())],
        ),
    ]
}

fn pick(probe: &Probe, rtsp: Option<&str>) -> Selection {
    select(probe, &builtin(), rtsp).expect("a pipeline is selected")
}

#[test]
fn rtsp_url_wins_over_everything() {
    let mut probe = machine(Board::RaspberryPi4, &["v4l2h264enc", "libcamerasrc"]);
    probe
        .devices
        .push(libcamera("/base/soc/i2c0mux/i2c@1/imx708@1a"));
    let s = pick(&probe, Some("rtsp://cam/stream"));
    assert_eq!((s.pipeline.as_str(), s.device.as_deref()), ("rtsp", None));
    assert!(
        s.reason.starts_with("rtsp: an RTSP URL is configured"),
        "{}",
        s.reason
    );
}

#[test]
fn rtsp_url_without_rtspsrc_is_an_error_naming_the_package() {
    let mut probe = machine(Board::Unknown, &[]);
    probe.elements.remove("rtspsrc");
    let err = select(&probe, &builtin(), Some("rtsp://cam/x")).expect_err("rtsp cannot run");
    let text = err.to_string();
    assert!(
        text.contains("rtspsrc (Debian package gstreamer1.0-plugins-good)"),
        "{text}"
    );
}

#[test]
fn pi4_libcamera_camera_uses_the_hardware_encoder() {
    let mut probe = machine(Board::RaspberryPi4, &["v4l2h264enc", "libcamerasrc"]);
    probe.devices = pi_nodes();
    probe
        .devices
        .push(libcamera("/base/soc/i2c0mux/i2c@1/imx708@1a"));
    let s = pick(&probe, None);
    assert_eq!(
        (s.pipeline.as_str(), s.device.as_deref()),
        ("rpi-libcamera", None)
    );
    assert!(
        s.reason.contains(
            "imx708@1a' on this Raspberry Pi 4, encoded by the Raspberry Pi 4 \
                               hardware encoder (v4l2h264enc)"
        ),
        "{}",
        s.reason
    );
    assert_eq!(s.ignored_devices.len(), 2, "{:?}", s.ignored_devices);
}

#[test]
fn pi5_libcamera_camera_uses_openh264() {
    let mut probe = machine(Board::RaspberryPi5, &["libcamerasrc"]);
    probe
        .devices
        .push(libcamera("/base/axi/pcie@120000/rp1/i2c@88000/imx219@10"));
    probe.devices.push(v4l2(
        "/dev/video0",
        "rp1-cfe",
        "rp1-cfe",
        vec![VideoFormat::Raw],
    ));
    let s = pick(&probe, None);
    assert_eq!(s.pipeline, "rpi5-openh264");
    assert!(
        s.reason
            .contains("rpi-libcamera: made for Raspberry Pi 4, this is Raspberry Pi 5"),
        "{}",
        s.reason
    );
}

#[test]
fn pi4_without_v4l2h264enc_says_what_is_missing() {
    let mut probe = machine(Board::RaspberryPi4, &["libcamerasrc"]);
    probe
        .devices
        .push(libcamera("/base/soc/i2c0mux/i2c@1/imx219@10"));
    let s = pick(&probe, None);
    assert_eq!(s.pipeline, "virtual-webcam");
    assert!(
        s.reason.contains(
            "rpi-libcamera: this machine lacks v4l2h264enc (Debian package \
                               gstreamer1.0-plugins-good)"
        ),
        "{}",
        s.reason
    );
}

#[test]
fn decodable_h264_camera_is_passed_through() {
    let mut probe = machine(Board::Unknown, &[]);
    probe.devices.push(v4l2(
        "/dev/video2",
        "H264 Cam",
        "uvcvideo",
        vec![VideoFormat::Raw, h264(&["constrained-baseline"])],
    ));
    let s = pick(&probe, None);
    assert_eq!(
        (s.pipeline.as_str(), s.device.as_deref()),
        ("v4l2-h264", Some("/dev/video2"))
    );
    assert!(
        s.reason
            .contains("/dev/video2 (H264 Cam) gives H.264 in profile constrained-baseline"),
        "{}",
        s.reason
    );
}

#[test]
fn high_profile_camera_is_encoded_from_raw_instead() {
    let mut probe = machine(Board::Unknown, &[]);
    probe.devices.push(v4l2(
        "/dev/video0",
        "Cam",
        "uvcvideo",
        vec![VideoFormat::Raw, h264(&["high"])],
    ));
    let s = pick(&probe, None);
    assert_eq!(
        (s.pipeline.as_str(), s.device.as_deref()),
        ("v4l2-x264", Some("/dev/video0"))
    );
    assert!(
        s.reason
            .contains("v4l2-h264: /dev/video0 (Cam) gives H.264 only in high"),
        "{}",
        s.reason
    );
}

#[test]
fn raw_camera_on_pi4_with_v4l2h264enc_uses_the_hardware_encoder() {
    let mut probe = machine(Board::RaspberryPi4, &["v4l2h264enc"]);
    probe.devices = pi_nodes();
    probe.devices.push(v4l2(
        "/dev/video1",
        "USB Camera",
        "uvcvideo",
        vec![VideoFormat::Jpeg, VideoFormat::Raw],
    ));
    let s = pick(&probe, None);
    assert_eq!(
        (s.pipeline.as_str(), s.device.as_deref()),
        ("rpi-v4l2h264enc", Some("/dev/video1"))
    );
    assert_eq!(
        s.reason.split(" Not chosen").next(),
        Some(
            "rpi-v4l2h264enc: /dev/video1 (USB Camera) gives raw video, encoded by the \
              Raspberry Pi 4 hardware encoder (v4l2h264enc)."
        )
    );
    assert!(
        s.reason.contains(
            "rpi-libcamera: this machine lacks libcamerasrc (Debian package \
                               gstreamer1.0-libcamera)"
        ),
        "{}",
        s.reason
    );
}

#[test]
fn raw_camera_elsewhere_uses_x264() {
    let mut probe = machine(Board::Unknown, &["v4l2h264enc"]);
    probe.devices.push(v4l2(
        "/dev/video10",
        "Later",
        "uvcvideo",
        vec![VideoFormat::Raw],
    ));
    probe.devices.push(v4l2(
        "/dev/video2",
        "First",
        "uvcvideo",
        vec![VideoFormat::Raw],
    ));
    let s = pick(&probe, None);
    assert_eq!(
        (s.pipeline.as_str(), s.device.as_deref()),
        ("v4l2-x264", Some("/dev/video2"))
    );
    assert!(
        s.reason
            .contains("rpi-v4l2h264enc: made for Raspberry Pi 4, this is an unknown board"),
        "{}",
        s.reason
    );
}

#[test]
fn h264_of_unknown_profile_only_without_raw() {
    let mut probe = machine(Board::Unknown, &[]);
    probe
        .devices
        .push(v4l2("/dev/video0", "Cam", "uvcvideo", vec![h264(&[])]));
    let s = pick(&probe, None);
    assert_eq!(s.pipeline, "v4l2-h264");
    assert!(
        s.reason.contains("passed through unverified"),
        "{}",
        s.reason
    );

    probe.devices[0].formats.push(VideoFormat::Raw);
    assert_eq!(pick(&probe, None).pipeline, "v4l2-x264");
}

#[test]
fn nothing_found_streams_the_test_picture() {
    let mut probe = machine(Board::Unknown, &[]);
    probe.devices.push(v4l2(
        "/dev/video0",
        "Bayer",
        "uvcvideo",
        vec![VideoFormat::Jpeg],
    ));
    let s = pick(&probe, None);
    assert_eq!(
        (s.pipeline.as_str(), s.device.as_deref()),
        ("virtual-webcam", None)
    );
    assert!(
        s.reason.contains(
            "v4l2-x264: no V4L2 camera gives raw video (/dev/video0 (Bayer) gives MJPEG)"
        ),
        "{}",
        s.reason
    );
    assert!(
        s.explain()
            .contains("not chosen: rtsp: no RTSP URL is configured")
    );
}

#[test]
fn codec_nodes_are_not_cameras() {
    let mut probe = machine(Board::Unknown, &[]);
    let mut m2m = v4l2(
        "/dev/video20",
        "some-m2m",
        "vendor-codec",
        vec![VideoFormat::Raw],
    );
    m2m.capabilities = Some(0x0420_8000);
    probe.devices.push(m2m);
    probe.devices.push(v4l2(
        "/dev/video11",
        "enc",
        "bcm2835-codec",
        vec![VideoFormat::Raw],
    ));
    let s = pick(&probe, None);
    assert_eq!(s.pipeline, "virtual-webcam");
    assert_eq!(s.ignored_devices.len(), 2);
}

#[test]
fn usb_cameras_listed_by_libcamera_go_to_the_v4l2_chains() {
    let mut probe = machine(Board::RaspberryPi4, &["v4l2h264enc", "libcamerasrc"]);
    probe.devices.push(libcamera(
        "/base/scb/pcie@7d500000/pci@0,0/usb@0,0-1.2:1.0-046d:0825",
    ));
    probe.devices.push(v4l2(
        "/dev/video0",
        "Webcam",
        "uvcvideo",
        vec![VideoFormat::Raw],
    ));
    assert_eq!(pick(&probe, None).pipeline, "rpi-v4l2h264enc");
}

#[test]
fn nothing_usable_is_an_error() {
    let probe = Probe::default();
    let err = select(&probe, &builtin(), None).expect_err("nothing can run");
    assert!(
        err.to_string()
            .contains("virtual-webcam: this machine lacks videotestsrc"),
        "{err}"
    );
}

#[test]
fn node_order_is_numeric() {
    assert!(node_order("/dev/video2") < node_order("/dev/video10"));
}

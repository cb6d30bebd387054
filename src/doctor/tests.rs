//! The report judged from hand-made facts: no hardware, no sockets, no GStreamer.

use std::path::PathBuf;

use super::*;
use crate::chains::machine::{Backend, Board, VideoDevice, VideoFormat};
use crate::chains::pipeline::builtin;

/// Every element in the package table: a machine with all of GStreamer's plugins.
fn everything() -> Probe {
    Probe {
        elements: REQUIREMENTS.iter().map(|r| r.element.to_string()).collect(),
        ..Probe::default()
    }
}

fn without(mut probe: Probe, gone: &[&str]) -> Probe {
    for element in gone {
        probe.elements.remove(*element);
    }
    probe
}

fn good_state_dir() -> StateDirFacts {
    StateDirFacts {
        path: PathBuf::from("/var/lib/pipe"),
        exists: true,
        is_dir: true,
        creatable: false,
        write_error: None,
        cert_present: true,
        key_present: true,
        key_mode: Some(0o600),
    }
}

fn facts(probe: Probe) -> Facts {
    Facts {
        gstreamer_version: "GStreamer 1.22.0".into(),
        probe,
        templates: Ok(builtin()),
        configured_pipeline: "auto".into(),
        configured_template: None,
        rtsp_url: None,
        cam_list: None,
        state_dir: good_state_dir(),
        rendezvous: RendezvousFacts::Embedded {
            addr: "0.0.0.0:8080".parse().unwrap(),
            bind: Ok(()),
            healthy_device: false,
        },
    }
}

fn webcam(path: &str, formats: Vec<VideoFormat>) -> VideoDevice {
    VideoDevice {
        backend: Backend::V4l2,
        path: Some(path.into()),
        name: "HD Webcam".into(),
        driver: Some("uvcvideo".into()),
        capabilities: Some(0x0420_0001),
        formats,
    }
}

#[test]
fn a_machine_without_a_camera_streams_the_test_picture() {
    let report = Report::build(&facts(everything()));
    assert!(report.can_stream, "{:?}", report.problems);
    assert!(report.problems.is_empty() && report.warnings.is_empty());
    assert_eq!(
        report.pipeline.auto_selected.as_deref(),
        Some("virtual-webcam")
    );
    assert_eq!(report.pipeline.will_run.as_deref(), Some("virtual-webcam"));
    assert!(report.pipeline.reason.contains("no usable camera"));
    assert!(
        report
            .pipeline
            .rejected
            .iter()
            .any(|r| r.pipeline == "v4l2-x264" && r.why == "no V4L2 camera found")
    );
    let text = report.to_text();
    assert!(
        text.contains("auto-selection chooses: virtual-webcam"),
        "{text}"
    );
    assert!(
        text.trim_end()
            .ends_with("OK: pipe can stream here (virtual-webcam)."),
        "{text}"
    );
}

#[test]
fn every_element_is_listed_with_its_packages_and_users() {
    let report = Report::build(&facts(without(everything(), &["x264enc"])));
    assert_eq!(report.elements.len(), REQUIREMENTS.len());
    let x264 = report
        .elements
        .iter()
        .find(|e| e.element == "x264enc")
        .unwrap();
    assert!(!x264.present);
    assert_eq!(x264.debian, "gstreamer1.0-plugins-ugly");
    assert!(x264.yocto.contains("x264") && x264.buildroot.contains("X264"));
    assert!(x264.needed_by.contains(&"virtual-webcam".to_string()));
    let webrtcbin = report
        .elements
        .iter()
        .find(|e| e.element == "webrtcbin")
        .unwrap();
    assert_eq!(webrtcbin.needed_by, ["pipe"]);
    let text = report.to_text();
    assert!(text.contains("MISSING x264enc"), "{text}");
    assert!(
        text.contains("Buildroot: BR2_PACKAGE_GST1_PLUGINS_UGLY_PLUGIN_X264"),
        "{text}"
    );
}

#[test]
fn without_webrtc_elements_pipe_cannot_stream() {
    for gone in ["webrtcbin", "nicesrc", "dtlssrtpenc", "srtpdec", "sctpenc"] {
        let report = Report::build(&facts(without(everything(), &[gone])));
        assert!(!report.can_stream, "{gone}");
        assert_eq!(report.problems.len(), 1, "{gone}: {:?}", report.problems);
        assert!(report.problems[0].contains(gone), "{:?}", report.problems);
        assert!(
            report.problems[0].contains("apt install"),
            "{:?}",
            report.problems
        );
        let text = report.to_text();
        assert!(text.contains("NOT OK: pipe cannot stream here"), "{text}");
    }
}

#[test]
fn without_any_usable_chain_pipe_cannot_stream() {
    // No encoder at all: neither a camera chain nor the test picture can run.
    let report = Report::build(&facts(without(everything(), &["x264enc", "openh264enc"])));
    assert!(!report.can_stream);
    assert_eq!(report.pipeline.auto_selected, None);
    assert!(
        report.problems[0].starts_with("no capture chain can run"),
        "{:?}",
        report.problems
    );
    assert!(
        report.pipeline.reason.contains("x264enc"),
        "{}",
        report.pipeline.reason
    );
}

#[test]
fn a_raw_webcam_is_chosen_and_its_formats_listed() {
    let mut probe = everything();
    probe.devices.push(webcam(
        "/dev/video0",
        vec![VideoFormat::Raw, VideoFormat::Jpeg],
    ));
    let report = Report::build(&facts(probe));
    assert!(report.can_stream);
    assert_eq!(report.pipeline.auto_selected.as_deref(), Some("v4l2-x264"));
    assert_eq!(report.pipeline.device.as_deref(), Some("/dev/video0"));
    assert_eq!(report.cameras.v4l2.len(), 1);
    assert_eq!(report.cameras.v4l2[0].formats, ["raw", "MJPEG"]);
    let text = report.to_text();
    assert!(
        text.contains("/dev/video0 (HD Webcam), driver uvcvideo: raw, MJPEG"),
        "{text}"
    );
}

#[test]
fn libcamera_cameras_say_how_they_were_found() {
    let mut probe = everything();
    probe.board = Board::RaspberryPi5;
    probe.devices.push(VideoDevice {
        backend: Backend::Libcamera,
        path: None,
        name: "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a".into(),
        driver: None,
        capabilities: None,
        formats: vec![VideoFormat::Raw],
    });
    let mut facts = facts(probe);
    facts.cam_list = Some(Ok(vec!["'imx708' (/base/axi/...)".into()]));
    let report = Report::build(&facts);
    let lc = &report.cameras.libcamera;
    assert_eq!(lc.cameras.len(), 1);
    assert!(
        lc.searched_with[0].contains("libcamerasrc"),
        "{:?}",
        lc.searched_with
    );
    assert_eq!(lc.searched_with[1], "`cam -l`");
    assert_eq!(
        report.pipeline.auto_selected.as_deref(),
        Some("rpi5-openh264")
    );

    let mut facts = facts_without_libcamerasrc();
    facts.cam_list = Some(Err("exited with exit status: 1".into()));
    let lc = Report::build(&facts).cameras.libcamera;
    assert!(
        lc.searched_with[0].contains("gstreamer1.0-libcamera"),
        "{:?}",
        lc.searched_with
    );
    assert!(
        lc.searched_with[1].contains("`cam -l` failed"),
        "{:?}",
        lc.searched_with
    );
}

fn facts_without_libcamerasrc() -> Facts {
    facts(without(everything(), &["libcamerasrc"]))
}

#[test]
fn cam_list_output_is_parsed() {
    let out = "Available cameras:\n1: 'imx219' (/base/soc/i2c0mux/i2c@1/imx219@10)\n\
               2: External camera 'HD Webcam' (\\_SB_.PCI0-2:1.0-0c45:6366)\n";
    assert_eq!(
        facts::parse_cam_list(out),
        [
            "'imx219' (/base/soc/i2c0mux/i2c@1/imx219@10)",
            "External camera 'HD Webcam' (\\_SB_.PCI0-2:1.0-0c45:6366)"
        ]
    );
    assert!(facts::parse_cam_list("Available cameras:\n").is_empty());
}

#[test]
fn an_unusable_state_directory_stops_pipe() {
    let cases = [
        (
            StateDirFacts {
                write_error: Some("Permission denied (os error 13)".into()),
                ..good_state_dir()
            },
            "is not writable",
        ),
        (
            StateDirFacts {
                is_dir: false,
                write_error: Some("not a directory".into()),
                ..good_state_dir()
            },
            "is not a directory",
        ),
        (
            StateDirFacts {
                exists: false,
                is_dir: false,
                creatable: false,
                cert_present: false,
                key_present: false,
                key_mode: None,
                ..good_state_dir()
            },
            "cannot be created",
        ),
        (
            StateDirFacts {
                cert_present: false,
                ..good_state_dir()
            },
            "half an identity",
        ),
    ];
    for (state_dir, problem) in cases {
        let mut facts = facts(everything());
        facts.state_dir = state_dir;
        let report = Report::build(&facts);
        assert!(!report.can_stream, "{problem}");
        assert!(
            report.problems[0].contains(problem),
            "{:?}",
            report.problems
        );
    }
}

#[test]
fn a_fresh_or_loose_state_directory_is_not_a_problem() {
    let mut f = facts(everything());
    f.state_dir = StateDirFacts {
        exists: false,
        is_dir: false,
        creatable: true,
        write_error: Some("not a directory".into()),
        cert_present: false,
        key_present: false,
        key_mode: None,
        ..good_state_dir()
    };
    let report = Report::build(&f);
    assert!(report.can_stream, "{:?}", report.problems);
    assert_eq!(report.state_dir.identity, "absent");

    f.state_dir = StateDirFacts {
        key_mode: Some(0o644),
        ..good_state_dir()
    };
    let report = Report::build(&f);
    assert!(report.can_stream);
    assert_eq!(report.state_dir.key_mode.as_deref(), Some("0644"));
    assert!(
        report.warnings[0].contains("chmod 600"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn rendezvous_checks() {
    let addr: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let mut f = facts(everything());
    f.rendezvous = RendezvousFacts::Embedded {
        addr,
        bind: Err("Address already in use (os error 98)".into()),
        healthy_device: true,
    };
    let report = Report::build(&f);
    assert!(
        report.can_stream,
        "a running device's own port is no problem"
    );
    assert!(report.rendezvous.detail.contains("running pipe device"));

    f.rendezvous = RendezvousFacts::Embedded {
        addr,
        bind: Err("Address already in use (os error 98)".into()),
        healthy_device: false,
    };
    let report = Report::build(&f);
    assert!(!report.can_stream);
    assert!(
        report.problems[0].contains("--port"),
        "{:?}",
        report.problems
    );

    f.rendezvous = RendezvousFacts::Remote {
        url: "wss://relay.example/signal".into(),
        connect: Err("no answer within 5 s".into()),
    };
    let report = Report::build(&f);
    assert!(report.can_stream, "the device retries a remote rendezvous");
    assert!(!report.rendezvous.reachable);
    assert_eq!(report.rendezvous.mode, "remote");
    assert!(
        report.warnings[0].contains("relay.example"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn a_configured_chain_is_checked_too() {
    let mut f = facts(without(everything(), &["v4l2src"]));
    let template = crate::chains::pipeline::resolve("v4l2-x264", None).unwrap();
    f.configured_pipeline = "v4l2-x264".into();
    f.configured_template = Some(Ok(template));
    let report = Report::build(&f);
    assert!(!report.can_stream);
    assert_eq!(report.pipeline.will_run, None);
    assert_eq!(
        report.pipeline.auto_selected.as_deref(),
        Some("virtual-webcam")
    );
    assert!(
        report.problems[0].contains("v4l2src"),
        "{:?}",
        report.problems
    );

    f.configured_pipeline = "nope".into();
    f.configured_template = Some(Err("no pipeline `nope`".into()));
    assert!(!Report::build(&f).can_stream);
}

#[test]
fn json_has_every_section() {
    let report = Report::build(&facts(everything()));
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "gstreamer",
        "elements",
        "cameras",
        "pipeline",
        "state_dir",
        "rendezvous",
        "problems",
        "can_stream",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert_eq!(json["state_dir"]["path"], "/var/lib/pipe");
    assert_eq!(json["state_dir"]["key_mode"], "0600");
    assert_eq!(json["elements"][0]["element"], "webrtcbin");
    assert_eq!(json["pipeline"]["auto_selected"], "virtual-webcam");
}

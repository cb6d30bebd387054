//! Reading what this machine has from GStreamer (element factories, cameras) and the board
//! model, into the plain data of `chains::machine`, which `chains::select` decides on.

use std::collections::BTreeSet;

use gst::prelude::*;

use crate::chains::machine::{Backend, Board, Probe, VideoDevice, VideoFormat};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(#[from] gst::glib::Error),
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
        use crate::chains::pipeline::{self, Params};
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
        use crate::chains::pipeline::{self, Params};
        gst::init().expect("GStreamer initialises");
        // Another test registers stand-ins under hardware names; they lack the real
        // properties, so chains using them are skipped like absent ones.
        let real = |name: &str| {
            gst::ElementFactory::find(name)
                .and_then(|f| f.load().ok())
                .is_some_and(|f| f.element_type().name() != "PipeTestStandIn")
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
        use crate::chains::pipeline::{self, Params};
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
                ("h264_i_frame_period", 300),
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

    /// Stand-ins registered under the hardware element names make this machine look like a
    /// Pi 4 to `probe()`, which must then report them and lead to the hardware chain.
    #[test]
    fn stand_in_hardware_elements_are_probed_and_selected() {
        use gst::prelude::*;
        gst::init().expect("GStreamer initialises");
        for name in ["v4l2h264enc", "libcamerasrc"] {
            if gst::ElementFactory::find(name).is_none() {
                gst::Element::register(
                    None,
                    name,
                    gst::Rank::NONE,
                    stand_in::StandIn::static_type(),
                )
                .expect("registers");
            }
        }
        let mut probe = probe().expect("probe runs");
        assert!(probe.has_element("v4l2h264enc") && probe.has_element("libcamerasrc"));

        probe.board = crate::chains::machine::Board::RaspberryPi4;
        probe.devices = vec![VideoDevice {
            backend: Backend::V4l2,
            path: Some("/dev/video0".into()),
            name: "USB Camera".into(),
            driver: Some("uvcvideo".into()),
            capabilities: Some(0x0420_0001),
            formats: vec![VideoFormat::Raw],
        }];
        let s = crate::chains::select::select(&probe, &crate::chains::pipeline::builtin(), None)
            .expect("selects");
        assert_eq!(
            (s.pipeline.as_str(), s.device.as_deref()),
            ("rpi-v4l2h264enc", Some("/dev/video0"))
        );
    }

    /// An element type of its own for the stand-ins, so that no other test's `identity` (or any
    /// real element) is mistaken for hardware, whatever order the tests run in.
    mod stand_in {
        use gst::glib;
        use gst::subclass::prelude::*;
        use std::sync::LazyLock;

        glib::wrapper! {
            pub struct StandIn(ObjectSubclass<imp::StandIn>) @extends gst::Element, gst::Object;
        }

        mod imp {
            use super::*;

            #[derive(Default)]
            pub struct StandIn;

            #[glib::object_subclass]
            impl ObjectSubclass for StandIn {
                const NAME: &'static str = "PipeTestStandIn";
                type Type = super::StandIn;
                type ParentType = gst::Element;
            }

            impl ObjectImpl for StandIn {}
            impl GstObjectImpl for StandIn {}
            impl ElementImpl for StandIn {
                fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
                    static METADATA: LazyLock<gst::subclass::ElementMetadata> =
                        LazyLock::new(|| {
                            gst::subclass::ElementMetadata::new(
                                "pipe test stand-in",
                                "Testing",
                                "Stands in for a hardware element this machine lacks",
                                "pipe",
                            )
                        });
                    Some(&METADATA)
                }
            }
        }
    }
}

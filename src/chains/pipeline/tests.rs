use super::launch::{Token, launch_tokens};
use super::*;

const MINIMAL: &str = "\
# pipeline: mine
# source: test
# requires: videotestsrc x264enc
# profile: main
# force-key-unit: yes
# audio: no
#
# Free comments: anything goes here, even a: colon.
videotestsrc is-live=true
  ! video/x-raw,width={width},height={height},framerate={framerate}
  ! x264enc bitrate={bitrate} key-int-max={keyint}
  ! video.
";

fn parse_err(text: &str) -> String {
    PipelineTemplate::parse("mine", text)
        .expect_err("parse fails")
        .to_string()
}

/// MINIMAL with one line replaced.
fn with(from: &str, to: &str) -> String {
    assert!(MINIMAL.contains(from), "{from}");
    MINIMAL.replacen(from, to, 1)
}

#[test]
fn builtin_pipelines_parse() {
    let all = builtin();
    let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rtsp",
            "rpi-libcamera",
            "rpi5-openh264",
            "v4l2-h264",
            "rpi-v4l2h264enc",
            "v4l2-x264",
            "virtual-webcam"
        ]
    );
    let by_name = |n: &str| all.iter().find(|t| t.name == n).expect("builtin exists");
    let webcam = by_name("virtual-webcam");
    assert_eq!(webcam.meta.source, SourceKind::Test);
    assert!(webcam.meta.audio && webcam.meta.force_key_unit);
    assert_eq!(webcam.meta.profile, Profile::ConstrainedBaseline);
    assert_eq!(
        by_name("rpi-v4l2h264enc").meta.board,
        Some(Board::RaspberryPi4)
    );
    assert_eq!(
        by_name("rpi-libcamera").meta.board,
        Some(Board::RaspberryPi4)
    );
    assert_eq!(
        by_name("rpi5-openh264").meta.board,
        Some(Board::RaspberryPi5)
    );
    assert_eq!(by_name("rtsp").meta.profile, Profile::Camera);
    assert_eq!(by_name("v4l2-h264").meta.profile, Profile::Camera);
    assert!(!by_name("v4l2-h264").meta.force_key_unit);
    for t in &all {
        assert!(
            !t.description.contains('#'),
            "{}: a comment leaked into the description",
            t.name
        );
        assert!(
            t.render(&Params {
                device: Some("/dev/video0".into()),
                rtsp_url: Some("rtsp://h/s".into()),
                ..Params::default()
            })
            .is_ok()
        );
    }
}

#[test]
fn parse_reads_header_and_joins_the_description() {
    let t = PipelineTemplate::parse("mine", MINIMAL).expect("parses");
    assert_eq!(t.meta.requires, ["videotestsrc", "x264enc"]);
    assert_eq!((&t.meta.board, t.meta.profile), (&None, Profile::Main));
    assert!(
        t.description
            .starts_with("videotestsrc is-live=true ! video/x-raw,")
    );
    assert!(t.description.ends_with("! video."));
    assert_eq!(
        t.placeholders().into_iter().collect::<Vec<_>>(),
        ["bitrate", "framerate", "height", "keyint", "width"]
    );
}

#[test]
fn header_errors_name_file_line_and_key() {
    assert_eq!(
        parse_err(&with("# profile: main\n", "")),
        "mine.pipeline: the header lacks `# profile: ...`"
    );
    assert_eq!(
        parse_err(&with("# audio: no\n", "# audio: no\n# audio: yes\n")),
        "mine.pipeline:7: `audio` is given twice"
    );
    assert_eq!(
        parse_err(&with("# profile: main", "# profile: high")),
        "mine.pipeline:4: profile: 'high' is not one of constrained-baseline, baseline, main, camera"
    );
    assert_eq!(
        parse_err(&with("# pipeline: mine", "# pipeline: yours")),
        "mine.pipeline:1: pipeline: 'yours' must equal the file name 'mine'"
    );
    assert!(
        parse_err(&with("# audio: no", "# audio: maybe")).contains(":6: audio: expected yes or no")
    );
    assert!(
        parse_err(&with("# audio: no", "# audio: no\n# colour: red"))
            .contains(":7: unknown header key 'colour'")
    );
    assert!(
        parse_err(&with("# source: test", "# source: usb"))
            .contains("source: 'usb' is not one of test, v4l2-raw")
    );
    assert!(
        parse_err(&with("# audio: no", "# audio: no\n# board: rpi3"))
            .contains("board: 'rpi3' is not rpi4 or rpi5")
    );
    assert!(
        parse_err(&with("videotestsrc x264enc", "")).contains(":3: requires: lists no element")
    );
    // Free comments must be separated from the header by a lone `#`.
    assert!(
        parse_err(&with("#\n# Free", "# Free"))
            .contains(":7: expected `# key: value` in the header")
    );
}

#[test]
fn description_errors_name_the_line() {
    assert_eq!(
        parse_err(&with("{bitrate}", "{bitrate_kbps}")),
        "mine.pipeline:11: unknown placeholder {bitrate_kbps} (known: device, width, height, \
         framerate, bitrate, bitrate_bps, keyint, rtsp_url)"
    );
    assert_eq!(
        parse_err(&with("  ! video.", "  ! h264parse ! video.")),
        "mine.pipeline:12: the description uses 'h264parse' but `requires:` does not list it"
    );
    assert!(
        parse_err(&with("  ! video.", "  ! videotestsrc"))
            .ends_with("never links its output to `video.`")
    );
    assert!(parse_err(&with("# audio: no", "# audio: yes")).contains("never links to `audio.`"));
    assert!(
        parse_err(&with("  ! video.", "  ! video. videotestsrc ! audio."))
            .contains("says `audio: no`")
    );
    assert!(
        parse_err(&with("is-live=true", "is-live=true sync=true")).contains(":9: sync=true makes")
    );
    assert!(
        parse_err(&with("  ! video.", "  ! clocksync ! video."))
            .contains(":12: clocksync holds frames")
    );
    assert!(
        parse_err(&with("is-live=true", "is-live=\"true")).contains(":9: a quote is not closed")
    );
    let holding = with("  ! video.", "  ! queue min-threshold-time=100 ! video.")
        .replace("x264enc\n", "x264enc queue\n");
    assert!(parse_err(&holding).contains(":12: min-threshold-time holds frames"));
    let header_only = MINIMAL
        .split("videotestsrc is-live")
        .next()
        .expect("header");
    assert!(parse_err(header_only).ends_with("there is no description after the header"));
}

#[test]
fn tokens_skip_caps_strings_and_uris() {
    let mut in_caps = false;
    let tokens = launch_tokens(
        "a name=x ! \"video/x-raw, format=I420\" ! b.sink c location=rtsp://h/p!x d!e. f caps=video/x-h264 \
         ! video/x-raw,format={ I420, NV12 },width=2 ! g ! video/x-raw, width=1",
        &mut in_caps,
    )
    .expect("tokenizes");
    assert!(in_caps, "caps at the end of a line continue on the next");
    let elements: Vec<&str> = tokens
        .iter()
        .filter_map(|t| {
            if let Token::Element(e) = t {
                Some(*e)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(elements, ["a", "c", "d", "f", "g"]);
    assert!(
        tokens.contains(&Token::Reference("b.sink")) && tokens.contains(&Token::Reference("e."))
    );
    assert!(tokens.contains(&Token::Property("location", "rtsp://h/p!x")));
    // Caps lists are not placeholders.
    assert!(
        PipelineTemplate::parse(
            "mine",
            &with("framerate}", "framerate},format={ I420, NV12 }")
        )
        .is_ok()
    );
}

#[test]
fn render_fills_placeholders() {
    let t = PipelineTemplate::parse("mine", MINIMAL).expect("parses");
    let params = Params {
        framerate: (30000, 1001),
        bitrate_kbps: 1500,
        ..Params::default()
    };
    assert_eq!(
        t.render(&params).expect("renders"),
        "videotestsrc is-live=true ! video/x-raw,width=1280,height=720,framerate=30000/1001 \
         ! x264enc bitrate=1500 key-int-max=300 ! video."
    );
}

#[test]
fn keyint_is_about_ten_seconds() {
    let keyint = |framerate| {
        Params {
            framerate,
            ..Params::default()
        }
        .keyint()
    };
    assert_eq!(keyint((30, 1)), 300);
    assert_eq!(keyint((59, 2)), 295);
    assert_eq!(keyint((30000, 1001)), 300);
    assert_eq!(keyint((1, 10)), 1);
    assert_eq!(keyint((0, 1)), 1);
}

#[test]
fn render_rejects_missing_and_unsafe_values() {
    let webcam = resolve("v4l2-x264", None).expect("builtin");
    assert_eq!(
        webcam
            .render(&Params::default())
            .expect_err("no device")
            .to_string(),
        "pipeline 'v4l2-x264' uses {device} but no V4L2 device is configured"
    );
    let rtsp = resolve("rtsp", None).expect("builtin");
    assert!(rtsp.render(&Params::default()).is_err());
    let secret = Params {
        rtsp_url: Some("rtsp://u:pa ss@h/x".into()),
        ..Params::default()
    };
    let err = rtsp.render(&secret).expect_err("space").to_string();
    assert!(
        err.starts_with("invalid rtsp_url:") && !err.contains("pa ss"),
        "{err}"
    );
    let ok = Params {
        rtsp_url: Some("rtsp://u:p%20w!@h:554/a?b=c&d".into()),
        ..Params::default()
    };
    assert!(
        rtsp.render(&ok)
            .expect("renders")
            .contains("location=rtsp://u:p%20w!@h:554/a?b=c&d latency=0")
    );

    let bad = |p: Params| {
        webcam
            .render(&Params {
                device: Some("/dev/video0".into()),
                ..p
            })
            .is_err()
    };
    assert!(bad(Params {
        width: 0,
        ..Params::default()
    }));
    assert!(bad(Params {
        framerate: (30, 0),
        ..Params::default()
    }));
    assert!(bad(Params {
        bitrate_kbps: 0,
        ..Params::default()
    }));
    assert!(
        webcam
            .render(&Params {
                device: Some("/dev/video0\"x".into()),
                ..Params::default()
            })
            .is_err()
    );
    assert!(
        webcam
            .render(&Params {
                device: Some("/dev/vid eo0".into()),
                ..Params::default()
            })
            .is_err()
    );
}

#[test]
fn bitrate_bps_is_in_bits() {
    let t = resolve("rpi-v4l2h264enc", None).expect("builtin");
    let out = t
        .render(&Params {
            device: Some("/dev/video0".into()),
            ..Params::default()
        })
        .expect("renders");
    assert!(
        out.contains("video_bitrate=2000000,h264_i_frame_period=300,"),
        "{out}"
    );
}

#[test]
fn full_description_prepends_the_appsinks() {
    let params = Params {
        device: Some("/dev/video0".into()),
        ..Params::default()
    };
    let video_only = resolve("v4l2-x264", None)
        .expect("builtin")
        .full_description(&params)
        .expect("renders");
    assert!(video_only.starts_with(
        "appsink name=video caps=\"video/x-h264,stream-format=byte-stream,alignment=au\" \
         sync=false async=false emit-signals=false max-buffers=2 drop=false v4l2src device=/dev/video0 "
    ), "{video_only}");
    assert!(!video_only.contains("name=audio"));
    let with_audio = resolve("virtual-webcam", None)
        .expect("builtin")
        .full_description(&params)
        .expect("renders");
    assert!(
        with_audio.contains(" appsink name=audio caps=\"audio/x-opus\" sync=false async=false ")
    );
}

#[test]
fn resolve_prefers_the_integrators_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let custom = with("# pipeline: mine", "# pipeline: virtual-webcam");
    std::fs::write(dir.path().join("virtual-webcam.pipeline"), &custom).expect("write");
    let t = resolve("virtual-webcam", Some(dir.path())).expect("override");
    assert_eq!(t.meta.profile, Profile::Main);
    assert_eq!(
        t.file.as_deref(),
        Some(dir.path().join("virtual-webcam.pipeline").as_path())
    );
    // Not overridden: the builtin.
    let builtin = resolve("v4l2-x264", Some(dir.path())).expect("builtin");
    assert_eq!(builtin.file, None);
    // A path is read as a file, named by its stem.
    std::fs::write(dir.path().join("mine.pipeline"), MINIMAL).expect("write");
    let path = dir.path().join("mine.pipeline");
    assert_eq!(
        resolve(path.to_str().expect("utf-8"), None)
            .expect("path")
            .name,
        "mine"
    );
}

#[test]
fn resolve_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("v4l2-x264.pipeline"),
        "# pipeline: v4l2-x264\n# bogus\n",
    )
    .expect("write");
    let err = resolve("v4l2-x264", Some(dir.path()))
        .expect_err("broken override")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "{}:2: expected",
            dir.path().join("v4l2-x264.pipeline").display()
        )),
        "{err}"
    );

    let err = resolve("nope", Some(dir.path()))
        .expect_err("unknown")
        .to_string();
    assert!(
        err.starts_with("no pipeline named 'nope' (looked for ") && err.contains("virtual-webcam"),
        "{err}"
    );
    let err = resolve("/no/such/file.pipeline", None)
        .expect_err("missing file")
        .to_string();
    assert!(
        err.starts_with("cannot read pipeline file /no/such/file.pipeline:"),
        "{err}"
    );
}

#[test]
fn profiles_browsers_decode() {
    assert!(Profile::ConstrainedBaseline.browser_decodable());
    assert!(Profile::Baseline.browser_decodable());
    assert!(Profile::Main.browser_decodable());
    assert!(!Profile::Camera.browser_decodable());
    assert_eq!(Profile::parse("high"), None);
}

#[test]
fn debug_hides_the_rtsp_password() {
    let params = Params {
        rtsp_url: Some("rtsp://admin:hunter2@10.0.0.5:554/live".into()),
        ..Params::default()
    };
    let debug = format!("{params:?}");
    assert!(
        debug.contains("rtsp://admin:***@10.0.0.5:554/live") && !debug.contains("hunter2"),
        "{debug}"
    );
    assert_eq!(redact_url("rtsp://cam/live"), "rtsp://cam/live");
}

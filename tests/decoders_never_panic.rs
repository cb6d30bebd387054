//! Every decoder that takes bytes from outside, fed arbitrary and mutated input: it returns an
//! error or a value, never panics (issue: "property tests or a fuzzer over every decoder that
//! takes outside bytes"). Signalling JSON (any stranger), control-channel requests (any peer
//! that got a pre-auth session), pipeline files and the config file (integrators, operators).
//! The SDP checks and the proxy framing have their own property tests next to their code
//! (media/sdp/remote/tests.rs, proxy/frame/tests.rs).

use pipe::chains::pipeline::PipelineTemplate;
use pipe::config::Config;
use pipe::grants::control;
use pipe::signalling::protocol;
use proptest::prelude::*;

const SIGNALLING: &[&str] = &[
    r#"{"type":"register","device_id":"aaaaaaaaaaaaaaaa","proof":{"certificate":"AA==","counter":1,"signature":"AA=="}}"#,
    r#"{"type":"connect","device_id":"aaaaaaaaaaaaaaaa"}"#,
    r#"{"type":"signal","session_id":"s-1","data":{"sdp":{"type":"answer","sdp":"v=0"}}}"#,
    r#"{"type":"signal","session_id":"s-1","data":{"ice":{"candidate":"candidate:1 1 UDP 1 127.0.0.1 9 typ host","sdp_m_line_index":0}}}"#,
    r#"{"type":"end","session_id":"s-1","reason":"bye"}"#,
    r#"{"type":"ping"}"#,
];

const CONTROL: &[&str] = &[
    r#"{"type":"claim","secret":"abcdefghijklmnopqrstuvwxyz"}"#,
    r#"{"type":"redeem","token":"abcdefghijklmnopqrstuvwxyz"}"#,
    r#"{"type":"lend","scope":"view","secs":3600}"#,
    r#"{"type":"grants"}"#,
    r#"{"type":"revoke","id":"abc"}"#,
    r#"{"type":"renew","fingerprint":"AB:CD"}"#,
];

const CONFIG: &str = r#"
[device]
port = 8080
max_sessions = 16
[grants]
lend_min_secs = 60
[ice]
stun_servers = ["stun:127.0.0.1:3478"]
port_min = 50000
port_max = 50100
[video]
playout_delay = "lan"
"#;

fn pipeline_file() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/virtual-webcam.pipeline"
    ))
    .unwrap()
}

/// `base` with one of a few structural edits at a byte position: a cut, a duplicated span, a
/// replaced span, or an inserted string.
fn mutated(base: &str, at: usize, op: u8, text: &str) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    let at = at % (chars.len() + 1);
    let end = (at + text.chars().count().max(1)).min(chars.len());
    match op % 4 {
        0 => chars.truncate(at),
        1 => {
            let span: Vec<char> = chars[at..end].to_vec();
            chars.splice(at..at, span);
        }
        2 => {
            chars.splice(at..end, text.chars());
        }
        _ => {
            chars.splice(at..at, text.chars());
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn signalling_messages(raw in ".{0,300}", base in 0..SIGNALLING.len(), at in 0usize..400, op in 0u8..4, text in r#"[{}\[\]":,a-z0-9 \\\u{0}-\u{1f}\u{7f}-\u{10ffff}]{0,12}"#) {
        let _ = protocol::decode_client(&raw);
        let _ = protocol::decode_client(&mutated(SIGNALLING[base], at, op, &text));
    }

    #[test]
    fn control_requests(raw in ".{0,200}", base in 0..CONTROL.len(), at in 0usize..200, op in 0u8..4, text in r#"[{}\[\]":,a-z0-9 \\-]{0,12}"#) {
        let _ = control::decode(&raw);
        let _ = control::decode(&mutated(CONTROL[base], at, op, &text));
    }

    #[test]
    fn config_files(raw in ".{0,300}", at in 0usize..400, op in 0u8..4, text in r#"[\[\]=".a-z0-9_ \n-]{0,16}"#) {
        for text in [raw, mutated(CONFIG, at, op, &text)] {
            if let Ok(config) = Config::from_toml(&text) {
                let _ = config.validate();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn pipeline_files(raw in "(?s).{0,400}", at in 0usize..3000, op in 0u8..4, text in r#"[#:{}!=,. a-z0-9_\n-]{0,16}"#) {
        let _ = PipelineTemplate::parse("fuzz", &raw);
        if let Ok(template) = PipelineTemplate::parse("fuzz", &mutated(&pipeline_file(), at, op, &text)) {
            let _ = template.description.len();
        }
    }
}

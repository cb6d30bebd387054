//! The proxy's wire format as the device writes it, in a file the browser's codec is tested
//! against (`tests/js/proxy.test.mjs`, run by `scripts/test` with `node --test`), so that
//! `web/proxy.js` and `src/proxy/{frame,flow}.rs` cannot drift apart: every frame type both
//! ways as bytes with what they mean, frames the device refuses, and the shared limits.
//!
//! The file is checked, not written: after a deliberate change of the format, run
//! `PIPE_UPDATE_FIXTURES=1 cargo test --test proxy_fixtures` and commit the new file.

use pipe::proxy::flow::{ACCEPTOR_WINDOW, DEFAULT_MAX_STREAMS, OPENER_WINDOW};
use pipe::proxy::frame::{
    self, Body, Data, Frame, HEADER_LEN, Headers, MAX_CLOSE_REASON, MAX_DATA, MAX_FRAME,
    MAX_HEAD_JSON, MAX_HEADERS, MAX_WS_FRAGMENT, MAX_WS_MESSAGE, RequestHead, Reset, ResetCode,
    ResponseHead, StreamId, WsClose, WsKind, WsMessage,
};
use serde_json::{Value, json};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/proxy-frames.json");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    Headers::new(
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
    .unwrap()
}

/// A frame, encoded by the device, with what a decoder must make of it.
fn entry(name: &str, stream: u32, body: Body, meaning: Value) -> Value {
    let frame = Frame {
        stream: StreamId::new(stream).unwrap(),
        body,
    };
    let bytes = frame::encode(&frame);
    // The device's own decoder agrees with its encoder.
    assert_eq!(frame::decode(&bytes).unwrap(), frame, "{name}");
    json!({ "name": name, "hex": hex(&bytes), "meaning": meaning })
}

fn fixtures() -> Value {
    let id = 7;
    let request = RequestHead::new(
        "POST",
        "/settings?x=1",
        headers(&[("content-type", "application/json"), ("x-note", "é")]),
        false,
    )
    .unwrap();
    let upgrade = RequestHead::new("GET", "/ws", headers(&[]), true).unwrap();
    let response = ResponseHead::new(303, headers(&[("location", "/?saved=1")])).unwrap();
    let frames = vec![
        entry(
            "request-head",
            id,
            Body::RequestHead(request),
            json!({"type": 1, "id": id, "method": "POST", "path": "/settings?x=1",
                   "headers": [["content-type", "application/json"], ["x-note", "é"]], "websocket": false}),
        ),
        entry(
            "request-head websocket",
            9,
            Body::RequestHead(upgrade),
            json!({"type": 1, "id": 9, "method": "GET", "path": "/ws", "headers": [], "websocket": true}),
        ),
        entry(
            "response-head",
            id,
            Body::ResponseHead(response),
            json!({"type": 2, "id": id, "status": 303, "headers": [["location", "/?saved=1"]]}),
        ),
        entry(
            "data",
            id,
            Body::Data(Data::new(b"hello".to_vec()).unwrap()),
            json!({"type": 3, "id": id, "data": hex(b"hello"), "cost": 5}),
        ),
        entry("end", id, Body::End, json!({"type": 4, "id": id})),
        entry(
            "credit",
            0x0102_0304,
            Body::Credit(std::num::NonZeroU32::new(65_536).unwrap()),
            json!({"type": 5, "id": 0x0102_0304, "credit": 65_536}),
        ),
        entry(
            "reset",
            id,
            Body::Reset(Reset::new(ResetCode::Upstream, "no answer")),
            json!({"type": 6, "id": id, "code": "upstream", "message": "no answer"}),
        ),
        entry(
            "ws-message text, more to come",
            9,
            Body::WsMessage(WsMessage::new(WsKind::Text, true, "hé".as_bytes().to_vec()).unwrap()),
            json!({"type": 7, "id": 9, "kind": 1, "more": true, "data": hex("hé".as_bytes()), "cost": 4}),
        ),
        entry(
            "ws-message binary",
            9,
            Body::WsMessage(WsMessage::new(WsKind::Binary, false, vec![0, 255]).unwrap()),
            json!({"type": 7, "id": 9, "kind": 2, "more": false, "data": "00ff", "cost": 3}),
        ),
        entry(
            "ws-close",
            9,
            Body::WsClose(WsClose::new(4000, "bye").unwrap()),
            json!({"type": 8, "id": 9, "code": 4000, "reason": "bye"}),
        ),
    ];
    // Frames the device refuses; a browser must refuse them too.
    let refused: Vec<Value> = [
        ("stream id 0", "0300000000ff"),
        ("unknown type", "0900000001"),
        ("empty data", "0300000001"),
        ("end with a payload", "040000000100"),
        ("zero credit", "050000000100000000"),
        ("short credit", "0500000001000001"),
        ("close code under 1000", "080000000103e7"),
        ("too short for a header", "03000000"),
        ("ws-message of no kind", "0700000001"),
        ("ws-message of kind 3", "070000000103"),
    ]
    .iter()
    .map(|(name, bytes)| {
        let raw: Vec<u8> = (0..bytes.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&bytes[i..i + 2], 16).unwrap())
            .collect();
        assert!(frame::decode(&raw).is_err(), "the device accepts {name}");
        json!({ "name": name, "hex": bytes })
    })
    .collect();
    json!({
        "limits": {
            "MAX_FRAME": MAX_FRAME, "HEADER_LEN": HEADER_LEN, "MAX_DATA": MAX_DATA,
            "MAX_WS_FRAGMENT": MAX_WS_FRAGMENT, "MAX_JSON": MAX_HEAD_JSON, "MAX_HEADERS": MAX_HEADERS,
            "MAX_CLOSE_REASON": MAX_CLOSE_REASON, "MAX_WS_MESSAGE": MAX_WS_MESSAGE,
            "CHANNELS": pipe::proxy::CHANNELS,
            "SEND_WINDOW": OPENER_WINDOW, "RECV_WINDOW": ACCEPTOR_WINDOW,
            "MAX_STREAMS": DEFAULT_MAX_STREAMS,
        },
        "frames": frames,
        "refused": refused,
    })
}

#[test]
fn the_fixture_file_is_what_the_device_writes() {
    let want = serde_json::to_string_pretty(&fixtures()).unwrap() + "\n";
    if std::env::var_os("PIPE_UPDATE_FIXTURES").is_some() {
        std::fs::write(FILE, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(FILE).unwrap_or_default();
    assert!(
        have == want,
        "{FILE} is not what the device writes: the wire format changed. If on purpose, run \
         PIPE_UPDATE_FIXTURES=1 cargo test --test proxy_fixtures, and check web/proxy.js \
         against it (node --test tests/js/)"
    );
}

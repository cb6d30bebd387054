use super::*;
use proptest::prelude::*;

fn sid(n: u32) -> StreamId {
    StreamId::new(n).expect("test ids are nonzero")
}

fn headers(fields: &[(&str, &str)]) -> Result<Headers, FrameError> {
    Headers::new(
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

fn frame(body: Body) -> Frame {
    Frame {
        stream: sid(7),
        body,
    }
}

fn raw(ty: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![ty];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn assert_round_trip(f: Frame) {
    let bytes = encode(&f);
    assert!(bytes.len() <= MAX_FRAME);
    assert_eq!(decode(&bytes), Ok(f));
}

#[test]
fn every_frame_type_round_trips() {
    let h = headers(&[
        ("accept", "*/*"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=\u{e9}\t2"),
    ])
    .unwrap();
    let bodies = [
        Body::RequestHead(
            RequestHead::new("POST", "/cgi-bin/x?a=1&b=%20", h.clone(), false).unwrap(),
        ),
        Body::RequestHead(RequestHead::new("GET", "/ws", Headers::default(), true).unwrap()),
        Body::ResponseHead(ResponseHead::new(200, h).unwrap()),
        Body::ResponseHead(ResponseHead::new(101, Headers::default()).unwrap()),
        Body::Data(Data::new(vec![0, 1, 2, 255]).unwrap()),
        Body::End,
        Body::Credit(NonZeroU32::new(128 * 1024).unwrap()),
        Body::Credit(NonZeroU32::new(512 * 1024).unwrap()),
        Body::Reset(Reset::new(ResetCode::FlowControl, "window exceeded")),
        Body::WsMessage(WsMessage::new(WsKind::Text, false, "h\u{e9}llo".into()).unwrap()),
        Body::WsMessage(WsMessage::new(WsKind::Binary, true, vec![0xff; 10]).unwrap()),
        Body::WsMessage(WsMessage::new(WsKind::Text, false, vec![]).unwrap()),
        Body::WsClose(WsClose::new(1000, "bye").unwrap()),
        Body::WsClose(WsClose::new(4999, "").unwrap()),
    ];
    for body in bodies {
        assert_round_trip(frame(body));
    }
    for code in [
        ResetCode::Cancel,
        ResetCode::Protocol,
        ResetCode::FlowControl,
        ResetCode::Closed,
        ResetCode::Refused,
        ResetCode::Upstream,
        ResetCode::Timeout,
        ResetCode::Internal,
    ] {
        assert_round_trip(frame(Body::Reset(Reset::new(code, ""))));
    }
}

/// Pins the byte layout `docs/proxy.md` gives.
#[test]
fn layout_is_as_documented() {
    let s = sid(0x0102_0304);
    let credit = Frame {
        stream: s,
        body: Body::Credit(NonZeroU32::new(0x0008_0000).unwrap()),
    };
    assert_eq!(encode(&credit), [0x05, 1, 2, 3, 4, 0x00, 0x08, 0x00, 0x00]);
    assert_eq!(
        encode(&Frame {
            stream: s,
            body: Body::End
        }),
        [0x04, 1, 2, 3, 4]
    );
    let close = Body::WsClose(WsClose::new(1001, "ok").unwrap());
    assert_eq!(
        encode(&Frame {
            stream: s,
            body: close
        }),
        [0x08, 1, 2, 3, 4, 0x03, 0xe9, b'o', b'k']
    );
    let more = Body::WsMessage(WsMessage::new(WsKind::Binary, true, vec![9]).unwrap());
    assert_eq!(
        encode(&Frame {
            stream: s,
            body: more
        }),
        [0x07, 1, 2, 3, 4, 0x82, 9]
    );

    let head = RequestHead::new("GET", "/", headers(&[("accept", "*/*")]).unwrap(), false).unwrap();
    let bytes = encode(&frame(Body::RequestHead(head)));
    assert_eq!(bytes[0], 0x01);
    let json = r#"{"method":"GET","path":"/","headers":[["accept","*/*"]],"websocket":false}"#;
    assert_eq!(&bytes[HEADER_LEN..], json.as_bytes());
    let head = ResponseHead::new(204, Headers::default()).unwrap();
    assert_eq!(
        &encode(&frame(Body::ResponseHead(head)))[HEADER_LEN..],
        br#"{"status":204,"headers":[]}"#
    );
    let reset = Reset::new(ResetCode::FlowControl, "x");
    assert_eq!(
        &encode(&frame(Body::Reset(reset)))[HEADER_LEN..],
        br#"{"code":"flow-control","message":"x"}"#
    );
}

#[test]
fn json_fields_may_come_in_any_order_with_whitespace() {
    let json = br#" { "websocket" : true , "headers" : [ ] , "path" : "/s" , "method" : "GET" } "#;
    let f = decode(&raw(0x01, 9, json)).unwrap();
    let Body::RequestHead(h) = f.body else {
        panic!("{f:?}")
    };
    assert_eq!(
        (h.method(), h.path(), h.websocket(), h.headers().len()),
        ("GET", "/s", true, 0)
    );
}

#[test]
fn size_boundaries() {
    let full = raw(0x03, 1, &vec![7; MAX_DATA]);
    assert_eq!(full.len(), MAX_FRAME);
    assert!(decode(&full).is_ok());
    let over = raw(0x03, 1, &vec![7; MAX_DATA + 1]);
    assert_eq!(decode(&over), Err(FrameError::Oversized(MAX_FRAME + 1)));
    assert!(Data::new(vec![0; MAX_DATA]).is_ok());
    assert_eq!(
        Data::new(vec![0; MAX_DATA + 1]),
        Err(FrameError::Oversized(MAX_FRAME + 1))
    );

    let ws = raw(0x07, 1, &[&[2u8][..], &vec![0; MAX_WS_FRAGMENT]].concat());
    assert_eq!(ws.len(), MAX_FRAME);
    assert!(decode(&ws).is_ok());
    assert!(WsMessage::new(WsKind::Binary, false, vec![0; MAX_WS_FRAGMENT]).is_ok());
    assert_eq!(
        WsMessage::new(WsKind::Binary, false, vec![0; MAX_WS_FRAGMENT + 1]),
        Err(FrameError::Oversized(MAX_FRAME + 1))
    );
    // Any type is refused over the limit before anything else is looked at.
    assert_eq!(
        decode(&vec![0xee; MAX_FRAME + 1]),
        Err(FrameError::Oversized(MAX_FRAME + 1))
    );
}

#[test]
fn head_json_limit() {
    // A request head whose JSON is exactly MAX_HEAD_JSON bytes, then one more.
    let base = RequestHead::new("GET", "/", headers(&[("x", "")]).unwrap(), false)
        .unwrap()
        .json()
        .len();
    let fill = "v".repeat(MAX_HEAD_JSON - base);
    let at = RequestHead::new("GET", "/", headers(&[("x", &fill)]).unwrap(), false).unwrap();
    assert_eq!(at.json().len(), MAX_HEAD_JSON);
    assert_round_trip(frame(Body::RequestHead(at)));
    let over = format!("{fill}v");
    let err = RequestHead::new("GET", "/", headers(&[("x", &over)]).unwrap(), false);
    assert_eq!(
        err,
        Err(FrameError::HeadTooLarge {
            kind: "request-head",
            len: MAX_HEAD_JSON + 1
        })
    );

    let long = format!(
        r#"{{"status":200,"headers":[["x","{}"]]}}"#,
        "v".repeat(MAX_HEAD_JSON)
    );
    let len = long.len();
    assert_eq!(
        decode(&raw(0x02, 1, long.as_bytes())),
        Err(FrameError::HeadTooLarge {
            kind: "response-head",
            len
        })
    );
    let reset = format!(
        r#"{{"code":"cancel","message":"{}"}}"#,
        " ".repeat(MAX_HEAD_JSON)
    );
    assert!(matches!(
        decode(&raw(0x06, 1, reset.as_bytes())),
        Err(FrameError::HeadTooLarge { kind: "reset", .. })
    ));
}

#[test]
fn header_count_limit() {
    let fields = |n| {
        (0..n)
            .map(|i| (format!("x-{i}"), "1".to_string()))
            .collect::<Vec<_>>()
    };
    assert!(Headers::new(fields(MAX_HEADERS)).is_ok());
    assert_eq!(
        Headers::new(fields(MAX_HEADERS + 1)),
        Err(FrameError::TooManyHeaders(MAX_HEADERS + 1))
    );
    let json = serde_json::json!({"status": 200, "headers": fields(MAX_HEADERS + 1)}).to_string();
    assert_eq!(
        decode(&raw(0x02, 1, json.as_bytes())),
        Err(FrameError::TooManyHeaders(MAX_HEADERS + 1))
    );
}

#[test]
fn header_names_and_values_are_checked() {
    for bad in ["", "Accept", "x y", "x:y", "x\r", "caf\u{e9}", "a\"b"] {
        assert_eq!(
            headers(&[("ok", "1"), (bad, "1")]),
            Err(FrameError::BadHeaderName(1)),
            "{bad:?}"
        );
    }
    for bad in ["a\rb", "a\nb", "\0", "\u{7f}", "\u{100}", "\u{1f600}"] {
        assert_eq!(
            headers(&[("ok", "1"), ("x", bad)]),
            Err(FrameError::BadHeaderValue(1))
        );
    }
    assert!(
        headers(&[
            ("x-a_b.c~!", "\t visible ~ and \u{a0}\u{ff}"),
            ("empty", "")
        ])
        .is_ok()
    );
    let json = br#"{"status":200,"headers":[["content-type","text/html\r\nx: y"]]}"#;
    assert_eq!(
        decode(&raw(0x02, 1, json)),
        Err(FrameError::BadHeaderValue(0))
    );
}

#[test]
fn methods_and_paths_are_checked() {
    let req = |m: &str, p: &str| RequestHead::new(m, p, Headers::default(), false);
    for bad in [
        "",
        "G ET",
        "GET\r",
        "CONNECT",
        "connect",
        &"X".repeat(MAX_METHOD + 1),
    ] {
        assert_eq!(req(bad, "/"), Err(FrameError::BadMethod), "{bad:?}");
    }
    assert!(req(&"X".repeat(MAX_METHOD), "/").is_ok());
    for bad in [
        "",
        "*",
        "x",
        "http://cam/",
        "//evil.example/",
        "/a b",
        "/a#b",
        "/\\evil",
        "/caf\u{e9}",
        "/\t",
    ] {
        assert_eq!(req("GET", bad), Err(FrameError::BadPath), "{bad:?}");
    }
    assert!(req("GET", "/a//b/../c?q=%2F&x=/y").is_ok());
    let ws = RequestHead::new("POST", "/ws", Headers::default(), true);
    assert_eq!(ws, Err(FrameError::WebSocketNotGet));
    let json = br#"{"method":"GET","path":"http://evil/","headers":[],"websocket":false}"#;
    assert_eq!(decode(&raw(0x01, 1, json)), Err(FrameError::BadPath));
}

#[test]
fn statuses_are_checked() {
    for bad in [0, 100, 102, 199, 600, 999] {
        assert_eq!(
            ResponseHead::new(bad, Headers::default()),
            Err(FrameError::BadStatus(bad))
        );
    }
    for good in [101, 200, 304, 599] {
        assert!(ResponseHead::new(good, Headers::default()).is_ok());
    }
}

#[test]
fn header_errors() {
    assert_eq!(
        decode(&[]),
        Err(FrameError::Truncated {
            kind: "any",
            len: 0,
            need: 5
        })
    );
    assert_eq!(
        decode(&[0x04, 0, 0, 1]),
        Err(FrameError::Truncated {
            kind: "any",
            len: 4,
            need: 5
        })
    );
    for ty in [0x00, 0x09, 0x7f, 0xff] {
        assert_eq!(decode(&raw(ty, 1, b"")), Err(FrameError::UnknownType(ty)));
    }
    assert_eq!(decode(&raw(0x04, 0, b"")), Err(FrameError::ReservedStream));
    assert_eq!(peek_stream(&raw(0x03, 42, b"zz")), Some(sid(42)));
    assert_eq!(peek_stream(&raw(0x03, 0, b"zz")), None);
    assert_eq!(peek_stream(&[3, 0, 0]), None);
}

#[test]
fn payload_errors() {
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (
            raw(0x04, 1, b"x"),
            FrameError::TrailingBytes {
                kind: "end",
                extra: 1,
            },
        ),
        (
            raw(0x05, 1, &[0, 0, 1]),
            FrameError::Truncated {
                kind: "credit",
                len: 8,
                need: 9,
            },
        ),
        (
            raw(0x05, 1, &[0, 0, 0, 1, 0]),
            FrameError::TrailingBytes {
                kind: "credit",
                extra: 1,
            },
        ),
        (raw(0x05, 1, &[0, 0, 0, 0]), FrameError::ZeroCredit),
        (raw(0x03, 1, b""), FrameError::EmptyData),
        (
            raw(0x07, 1, b""),
            FrameError::Truncated {
                kind: "ws-message",
                len: 5,
                need: 6,
            },
        ),
        (raw(0x07, 1, &[0x00]), FrameError::BadWsKind(0x00)),
        (raw(0x07, 1, &[0x03]), FrameError::BadWsKind(0x03)),
        (raw(0x07, 1, &[0x41, b'a']), FrameError::BadWsKind(0x41)),
        (
            raw(0x07, 1, &[0x01, 0xc3]),
            FrameError::BadUtf8("ws-message text"),
        ),
        (
            raw(0x08, 1, &[0x03]),
            FrameError::Truncated {
                kind: "ws-close",
                len: 6,
                need: 7,
            },
        ),
        (raw(0x08, 1, &[0x03, 0xe7]), FrameError::BadCloseCode(999)),
        (raw(0x08, 1, &[0x13, 0x88]), FrameError::BadCloseCode(5000)),
        (
            raw(0x08, 1, &[0x03, 0xe8, 0xff]),
            FrameError::BadUtf8("ws-close reason"),
        ),
        (
            raw(0x08, 1, &[&[0x03, 0xe8][..], &[b'r'; 124]].concat()),
            FrameError::CloseReasonTooLong(124),
        ),
    ];
    for (bytes, err) in cases {
        assert_eq!(decode(&bytes), Err(err), "{bytes:x?}");
    }
    // Binary fragments need not be UTF-8; a reason of exactly 123 bytes is fine.
    assert!(decode(&raw(0x07, 1, &[0x02, 0xc3])).is_ok());
    assert!(decode(&raw(0x08, 1, &[&[0x03, 0xe8][..], &[b'r'; 123]].concat())).is_ok());
    assert_eq!(
        WsClose::new(1000, "r".repeat(124)),
        Err(FrameError::CloseReasonTooLong(124))
    );
}

#[test]
fn json_errors() {
    let bad = |ty: u8, json: &str| match decode(&raw(ty, 1, json.as_bytes())) {
        Err(FrameError::BadJson { detail, .. }) => {
            assert!(detail.len() <= MAX_DETAIL, "{detail}")
        }
        other => panic!("{json}: {other:?}"),
    };
    bad(0x01, "");
    bad(0x01, "not json");
    bad(0x01, r#"{"method":"GET","path":"/","headers":[]}"#);
    bad(
        0x01,
        r#"{"method":"GET","path":"/","headers":[],"websocket":false,"extra":1}"#,
    );
    bad(
        0x01,
        r#"{"method":"GET","path":"/","headers":[["a","b","c"]],"websocket":false}"#,
    );
    bad(
        0x01,
        r#"{"method":"GET","path":"/","headers":{"a":"b"},"websocket":false}"#,
    );
    bad(
        0x01,
        r#"{"method":"GET","method":"PUT","path":"/","headers":[],"websocket":false}"#,
    );
    bad(0x02, r#"{"status":"200","headers":[]}"#);
    bad(0x02, r#"{"status":70000,"headers":[]}"#);
    bad(
        0x02,
        "{\"status\":200,\"headers\":[[\"a\",\"\u{0}\"]]} trailing",
    );
    bad(0x06, r#"{"code":"nope","message":""}"#);
    bad(0x06, r#"{"code":"cancel"}"#);
    bad(0x02, &format!("{{\"{}\":1}}", "k".repeat(5000)));
    // JSON strings must be UTF-8.
    let mut bytes = raw(0x02, 1, br#"{"status":200,"headers":[["a","#);
    bytes.extend_from_slice(b"\"\xff\"]]}");
    assert!(matches!(decode(&bytes), Err(FrameError::BadJson { .. })));
}

#[test]
fn reset_messages_are_cut_at_a_character_boundary() {
    let r = Reset::new(ResetCode::Internal, "\u{e9}".repeat(200));
    assert_eq!(r.message().len(), MAX_RESET_MESSAGE);
    let r = Reset::new(ResetCode::Internal, format!("x{}", "\u{e9}".repeat(200)));
    assert_eq!(r.message().len(), MAX_RESET_MESSAGE - 1);
    let long = format!(
        r#"{{"code":"cancel","message":"{}"}}"#,
        "m".repeat(MAX_RESET_MESSAGE + 1)
    );
    assert_eq!(
        decode(&raw(0x06, 1, long.as_bytes())),
        Err(FrameError::ResetMessageTooLong(MAX_RESET_MESSAGE + 1))
    );
}

#[test]
fn data_frames_split_at_the_frame_limit() {
    assert_eq!(data_frames(sid(3), b"").count(), 0);
    for len in [1, MAX_DATA - 1, MAX_DATA, MAX_DATA + 1, 3 * MAX_DATA + 17] {
        let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let frames: Vec<_> = data_frames(sid(3), &body).collect();
        assert_eq!(frames.len(), len.div_ceil(MAX_DATA));
        let mut joined = Vec::new();
        for bytes in frames {
            assert!(bytes.len() <= MAX_FRAME);
            let Frame {
                stream,
                body: Body::Data(d),
            } = decode(&bytes).unwrap()
            else {
                panic!()
            };
            assert_eq!(stream, sid(3));
            joined.extend(d.into_vec());
        }
        assert_eq!(joined, body);
    }
}

#[test]
fn ws_frames_fragment_text_at_character_boundaries() {
    let empty: Vec<_> = ws_frames(sid(2), WsPayload::Text("")).collect();
    assert_eq!(empty, vec![vec![0x07, 0, 0, 0, 2, 0x01]]);
    // 1 + 4-byte chars put boundaries off the fragment size.
    let text = format!("a{}", "\u{1f600}".repeat(MAX_WS_FRAGMENT / 2));
    let mut joined = Vec::new();
    let frames: Vec<_> = ws_frames(sid(2), WsPayload::Text(&text)).collect();
    assert_eq!(frames.len(), 3);
    for (i, bytes) in frames.iter().enumerate() {
        assert!(bytes.len() <= MAX_FRAME);
        let Body::WsMessage(m) = decode(bytes).unwrap().body else {
            panic!()
        };
        assert_eq!((m.kind(), m.more()), (WsKind::Text, i < 2));
        joined.extend_from_slice(m.payload());
    }
    assert_eq!(joined, text.as_bytes());
    let bin = vec![1u8; 2 * MAX_WS_FRAGMENT];
    let sizes: Vec<_> = ws_frames(sid(2), WsPayload::Binary(&bin))
        .map(|f| f.len())
        .collect();
    assert_eq!(sizes, [MAX_FRAME, MAX_FRAME]);
}

#[test]
fn flow_cost_counts_payload_after_the_header() {
    assert_eq!(Body::Data(Data::new(vec![0; 10]).unwrap()).flow_cost(), 10);
    assert_eq!(
        Body::WsMessage(WsMessage::new(WsKind::Text, false, vec![]).unwrap()).flow_cost(),
        1
    );
    assert_eq!(Body::End.flow_cost(), 0);
}

fn token() -> impl Strategy<Value = String> {
    "[a-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn arb_headers() -> impl Strategy<Value = Headers> {
    prop::collection::vec((token(), "[\t -~\u{80}-\u{ff}]{0,24}"), 0..8)
        .prop_map(|f| Headers::new(f).expect("strategy makes valid fields"))
}

fn arb_body() -> impl Strategy<Value = Body> {
    let code = prop::sample::select(vec![
        ResetCode::Cancel,
        ResetCode::Protocol,
        ResetCode::FlowControl,
        ResetCode::Closed,
        ResetCode::Refused,
        ResetCode::Upstream,
        ResetCode::Timeout,
        ResetCode::Internal,
    ]);
    let path =
        "/[A-Za-z0-9._~%!$&'()*+,;=:@/?-]{0,40}".prop_filter("not //", |p| !p.starts_with("//"));
    let method = "[A-Z]{1,10}".prop_filter("not CONNECT", |m| m != "CONNECT");
    prop_oneof![
        (method, path, arb_headers(), any::<bool>()).prop_map(|(m, p, h, ws)| {
            let m = if ws { "GET".to_string() } else { m };
            Body::RequestHead(RequestHead::new(m, p, h, ws).expect("valid"))
        }),
        (prop_oneof![Just(101u16), 200u16..=599], arb_headers())
            .prop_map(|(s, h)| Body::ResponseHead(ResponseHead::new(s, h).expect("valid"))),
        prop::collection::vec(any::<u8>(), 1..300)
            .prop_map(|b| Body::Data(Data::new(b).expect("valid"))),
        Just(Body::End),
        (1u32..).prop_map(|n| Body::Credit(NonZeroU32::new(n).expect("nonzero"))),
        (code, ".{0,80}").prop_map(|(c, m)| Body::Reset(Reset::new(c, m))),
        (any::<String>(), any::<bool>()).prop_map(|(s, more)| {
            Body::WsMessage(WsMessage::new(WsKind::Text, more, s.into_bytes()).expect("valid"))
        }),
        (prop::collection::vec(any::<u8>(), 0..300), any::<bool>()).prop_map(|(b, more)| {
            Body::WsMessage(WsMessage::new(WsKind::Binary, more, b).expect("valid"))
        }),
        (1000u16..=4999, ".{0,30}")
            .prop_map(|(c, r)| Body::WsClose(WsClose::new(c, r).expect("valid"))),
    ]
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    (1u32.., arb_body()).prop_map(|(id, body)| Frame {
        stream: sid(id),
        body,
    })
}

/// When `decode` accepts bytes, the frame it gives encodes to bytes that decode to it again.
fn check_decoded(bytes: &[u8]) {
    if let Ok(f) = decode(bytes) {
        assert_eq!(decode(&encode(&f)), Ok(f));
    }
}

proptest! {
    #[test]
    fn round_trip(f in arb_frame()) {
        let bytes = encode(&f);
        prop_assert!(bytes.len() <= MAX_FRAME);
        prop_assert_eq!(decode(&bytes), Ok(f));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_decoded(&bytes);
    }

    #[test]
    fn arbitrary_payloads_never_panic(
        ty in 0u8..=9,
        id in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        check_decoded(&raw(ty, id, &payload));
    }

    #[test]
    fn mutated_frames_never_panic(
        f in arb_frame(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = encode(&f);
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let keep = cut.index(bytes.len() + 1);
        check_decoded(&bytes);
        check_decoded(&bytes[..keep]);
    }
}

use super::*;
use crate::proxy::frame::Headers;

fn up(url: &str) -> Upstream {
    Upstream::new(url, &UiConfig::default()).unwrap()
}

fn head(headers: &[(&str, &str)], websocket: bool) -> RequestHead {
    let fields = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    RequestHead::new("GET", "/a?b=1", Headers::new(fields).unwrap(), websocket).unwrap()
}

fn names(out: &OutRequest) -> Vec<&str> {
    out.headers.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn upstream_origins_parse_with_their_authority() {
    let u = up("http://127.0.0.1:8081");
    assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 8081));
    assert_eq!(u.authority, "127.0.0.1:8081");
    assert_eq!(u.origin, "http://127.0.0.1:8081");
    let u = up("http://camera.local");
    assert_eq!((u.port, u.authority.as_str()), (80, "camera.local"));
    let u = up("http://[::1]:9000/");
    assert_eq!(
        (u.host.as_str(), u.authority.as_str()),
        ("::1", "[::1]:9000")
    );
    assert_eq!(u.response_timeout, Duration::from_secs(10));
    for bad in [
        "https://x",
        "http://x/path",
        "ftp://x",
        "not a url",
        "http://x/?q",
    ] {
        assert!(Upstream::new(bad, &UiConfig::default()).is_err(), "{bad}");
    }
    assert!(Upstream::new(DEFAULT_UPSTREAM, &UiConfig::default()).is_ok());
}

#[test]
fn host_is_rewritten_and_hop_by_hop_headers_are_dropped() {
    let u = up("http://127.0.0.1:8081");
    let h = head(
        &[
            ("host", "evil.example:22"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("accept-encoding", "gzip, br"),
            ("cookie", "a=1"),
            ("accept", "text/html"),
        ],
        false,
    );
    let out = request_headers(&h, &u).unwrap();
    assert_eq!(names(&out), ["host", "cookie", "accept", "accept-encoding"]);
    assert_eq!(out.headers[0].1, "127.0.0.1:8081");
    assert_eq!(out.headers[3].1, "identity");
    assert_eq!(out.content_length, None);
}

#[test]
fn origin_and_referer_move_onto_the_upstream() {
    let u = up("http://10.0.0.9");
    let h = head(
        &[
            ("origin", "https://viewer.example"),
            ("referer", "https://viewer.example/ui/page?x=1#frag"),
        ],
        false,
    );
    let out = request_headers(&h, &u).unwrap();
    assert_eq!(out.headers[1], ("origin".into(), "http://10.0.0.9".into()));
    assert_eq!(
        out.headers[2],
        ("referer".into(), "http://10.0.0.9/ui/page?x=1".into())
    );
    let h = head(&[("referer", "not a url")], false);
    assert_eq!(
        names(&request_headers(&h, &u).unwrap()),
        ["host", "accept-encoding"]
    );
}

#[test]
fn content_length_must_be_one_number() {
    let u = up("http://127.0.0.1:1");
    let out = request_headers(&head(&[("content-length", "42")], false), &u).unwrap();
    assert_eq!(out.content_length, Some(42));
    let same = head(&[("content-length", "7"), ("content-length", "7")], false);
    assert_eq!(request_headers(&same, &u).unwrap().headers.len(), 3);
    for bad in [
        &[("content-length", "-1")][..],
        &[("content-length", "1,2")],
        &[("content-length", "")],
        &[("content-length", "1"), ("content-length", "2")],
    ] {
        assert_eq!(
            request_headers(&head(bad, false), &u),
            Err(HeadError::BadContentLength),
            "{bad:?}"
        );
    }
    let ws = head(&[("content-length", "3")], true);
    assert_eq!(request_headers(&ws, &u), Err(HeadError::WebSocketBody));
}

#[test]
fn websocket_handshake_headers_are_the_devices_own() {
    let u = up("http://127.0.0.1:1");
    let h = head(
        &[
            ("sec-websocket-key", "x"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("sec-websocket-protocol", "events.v1"),
        ],
        true,
    );
    let out = request_headers(&h, &u).unwrap();
    assert_eq!(
        names(&out),
        ["host", "sec-websocket-protocol", "accept-encoding"]
    );
}

#[test]
fn response_headers_drop_hop_by_hop_and_keep_octets() {
    let fields: Vec<(&str, &[u8])> = vec![
        ("content-type", b"text/html"),
        ("connection", b"close, x-hop"),
        ("x-hop", b"1"),
        ("transfer-encoding", b"chunked"),
        ("set-cookie", b"a=1"),
        ("set-cookie", b"b=2"),
        ("x-latin1", b"caf\xe9"),
        ("x-bad", b"a\x01b"),
    ];
    let h = response_headers(&fields, false).unwrap();
    let got: Vec<(&str, &str)> = h.iter().collect();
    assert_eq!(
        got,
        [
            ("content-type", "text/html"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("x-latin1", "caf\u{e9}"),
        ]
    );
    assert_eq!(value_bytes("caf\u{e9}"), b"caf\xe9");
    let upgrade: Vec<(&str, &[u8])> = vec![
        ("upgrade", b"websocket"),
        ("sec-websocket-accept", b"x"),
        ("sec-websocket-protocol", b"events.v1"),
        ("server", b"cam"),
    ];
    let h = response_headers(&upgrade, true).unwrap();
    assert_eq!(
        h.iter().collect::<Vec<_>>(),
        [("sec-websocket-protocol", "events.v1")]
    );
    let many: Vec<(String, Vec<u8>)> = (0..101)
        .map(|i| (format!("x-{i}"), b"v".to_vec()))
        .collect();
    let many: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    assert!(response_headers(&many, false).is_err());
}

#[test]
fn error_pages_say_they_come_from_the_device() {
    let (headers, body) = error_page(502, "Camera UI unreachable", "down");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("Camera UI unreachable") && body.contains("not from the camera"));
    assert_eq!(
        headers.get("content-length"),
        Some(body.len().to_string().as_str())
    );
}

#[test]
fn every_origin_form_path_the_codec_admits_makes_a_request() {
    // The codec admits visible ASCII but `#` and `\\`; the HTTP request builder must too.
    let all: String = (0x21u8..=0x7e)
        .map(char::from)
        .filter(|c| !matches!(c, '#' | '\\'))
        .collect();
    let path = format!("/{all}");
    RequestHead::new("GET", path.as_str(), Headers::default(), false).unwrap();
    for p in [path.clone(), format!("/x?{all}")] {
        let target = request_target(&p);
        let built = http::Request::builder().uri(target.as_str()).body(());
        assert!(built.is_ok(), "{target}: {built:?}");
        let ws = format!("ws://127.0.0.1:1{target}");
        assert!(http::Uri::try_from(ws.as_str()).is_ok(), "{ws}");
    }
    assert_eq!(
        request_target("/a<b>?c=\"`d`\""),
        "/a%3Cb%3E?c=%22%60d%60%22"
    );
    assert_eq!(request_target("/%41?x=%"), "/%41?x=%", "no other change");
}

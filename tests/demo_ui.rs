//! The built-in demo camera UI of a real `pipe device` streaming the virtual webcam, driven
//! over plain HTTP and a WebSocket on loopback, with an in-process GStreamer viewer that
//! decodes what the settings do to the stream. (The element ids a browser test can read are
//! listed in `src/demo_ui/mod.rs`.)

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use pipe::signalling::protocol::DeviceId;
use pipe_testkit::receiver;
use serde_json::Value;
use support::device::Device;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// One HTTP/1.0 exchange (no chunking; the server closes at the end).
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

async fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        std::io::Result::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("the demo UI answers within 5 s")
        .expect("the demo UI is reachable");
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

async fn put_settings(port: u16, json: &str) -> Value {
    let reply = http(
        port,
        "PUT",
        "/api/settings",
        &[("Content-Type", "application/json")],
        json,
    )
    .await;
    assert_eq!(reply.status, 200, "PUT {json}: {}", reply.body);
    serde_json::from_str(&reply.body).expect("JSON settings")
}

/// The demo UI's port, from the line the device prints for people.
fn demo_port(device: &Device) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = device.log();
        if let Some(url) = log
            .lines()
            .find_map(|l| l.split_once("demo camera UI (on this machine only): "))
            .map(|(_, url)| url.trim().to_string())
        {
            let url = url::Url::parse(&url).expect("a URL");
            assert_eq!(url.host_str(), Some("127.0.0.1"), "loopback only");
            return url.port().expect("a port");
        }
        assert!(Instant::now() < deadline, "no demo UI URL printed:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Status messages until one satisfies `ok`; panics with the last one after `timeout`.
async fn status_until(
    socket: &mut Socket,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = Value::Null;
    loop {
        let next = tokio::time::timeout_at(deadline, socket.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(text)))) => {
                last = serde_json::from_str(&text).expect("status is JSON");
                if ok(&last) {
                    return last;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("status socket ended: {other:?}"),
            Err(_) => panic!("no status as wanted within {timeout:?}; last: {last}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_camera_ui_changes_the_live_stream() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(640, 360, &[]).unwrap();
    let port = demo_port(&device);

    // The page: server-rendered, its form, assets by absolute path, a relative link.
    let page = http(port, "GET", "/", &[], "").await;
    assert_eq!(page.status, 200, "{}", page.head);
    assert!(
        page.body
            .contains(r#"<form id="settings-form" method="post" action="/settings""#)
    );
    for needle in [
        r#"href="/static/style.css""#,
        r#"src="/static/app.js""#,
        r#"href="api/settings""#,
    ] {
        assert!(page.body.contains(needle), "{needle} in the page");
    }
    assert!(
        page.body
            .contains(r#"data-supported="overlay_text brightness resolution bitrate_kbps""#)
    );
    assert_eq!(
        page.header("set-cookie"),
        Some("demo_visits=1; Path=/; SameSite=Lax")
    );
    let js = http(port, "GET", "/static/app.js", &[], "").await;
    assert!(js.status == 200 && js.body.contains("/ws/status"));

    // A form POST answers 303 to the page, and the cookie counts each visit.
    let post = http(
        port,
        "POST",
        "/settings",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", "demo_visits=1"),
        ],
        "overlay_text=Front+door&brightness=60&save=1",
    )
    .await;
    assert_eq!(post.status, 303, "{}\n{}", post.head, post.body);
    assert_eq!(post.header("location"), Some("/?saved=1"));
    let saved = http(port, "GET", "/?saved=1", &[("Cookie", "demo_visits=1")], "").await;
    assert_eq!(
        saved.header("set-cookie"),
        Some("demo_visits=2; Path=/; SameSite=Lax")
    );
    assert!(saved.body.contains(r#"id="saved-banner""#));
    assert!(saved.body.contains(r#"<span id="server-visits">2</span>"#));
    // The overlay text is read back from the element (through media::controls).
    let settings = http(port, "GET", "/api/settings", &[], "").await;
    let settings: Value = serde_json::from_str(&settings.body).unwrap();
    assert_eq!(settings["overlay_text"], "Front door");
    assert_eq!(settings["brightness"], 60);
    let bad = http(
        port,
        "POST",
        "/settings",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "resolution=800x600",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains(r#"id="error""#));

    // A viewer that decodes, and the status socket.
    let id = DeviceId::parse(&device.device_id).unwrap();
    let viewer = receiver::connect(&device.signal_url(), id, device.owner(true))
        .await
        .unwrap();
    let playing = viewer
        .wait_for(Duration::from_secs(20), |s| {
            s.frames >= 30 && s.width == 640
        })
        .await
        .unwrap_or_else(|s| panic!("the viewer plays 640x360: {s:?}\n{}", device.log()));
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws/status"))
            .await
            .expect("the status socket opens");
    let status = status_until(&mut socket, Duration::from_secs(5), |s| {
        s["viewers"] == 1 && s["fps"].as_f64() > Some(20.0)
    })
    .await;
    assert_eq!(status["settings"]["overlay_text"], "Front door");

    // A new resolution reaches the viewer, which keeps playing and decodes the new size.
    let started = Instant::now();
    let applied = put_settings(port, r#"{"resolution":"1280x720"}"#).await;
    assert_eq!(applied["resolution"], "1280x720");
    let resized = viewer
        .wait_for(Duration::from_secs(10), |s| {
            s.width == 1280 && s.height == 720 && s.frames >= playing.frames + 60
        })
        .await
        .unwrap_or_else(|s| panic!("the viewer decodes 1280x720: {s:?}\n{}", device.log()));
    eprintln!("resized in {:?}: {resized:?}", started.elapsed());
    // The status socket pushes the change (not only once a second).
    status_until(&mut socket, Duration::from_secs(3), |s| {
        s["settings"]["resolution"] == "1280x720"
    })
    .await;

    // Bitrate: measured at the chain's output, it follows the setting (loosely: a measurement
    // of a rate-controlled encoder over a 3 s window).
    put_settings(port, r#"{"bitrate_kbps":2500}"#).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let high = status_until(&mut socket, Duration::from_secs(3), |_| true).await;
    let high_kbps = high["bitrate_kbps"].as_u64().unwrap();
    assert!((1200..5000).contains(&high_kbps), "at 2500 kbit/s: {high}");
    put_settings(port, r#"{"bitrate_kbps":400}"#).await;
    let low = status_until(&mut socket, Duration::from_secs(10), |s| {
        s["bitrate_kbps"].as_u64().is_some_and(|k| k < 800)
    })
    .await;
    assert!(
        low["bitrate_kbps"].as_u64().unwrap() > 100,
        "still streaming: {low}"
    );
    assert_eq!(low["settings"]["bitrate_kbps"], 400);

    // The overlay, changed through JSON, is read back from the element too.
    let applied = put_settings(port, r#"{"overlay_text":"Tom & Jerry <3"}"#).await;
    assert_eq!(applied["overlay_text"], "Tom & Jerry <3");
    let still = viewer.stats();
    assert!(
        still.ended.is_none() && still.frames > resized.frames,
        "{still:?}"
    );

    drop(socket);
    viewer.close().await;
    assert!(
        device.glib_criticals().is_empty(),
        "{:?}",
        device.glib_criticals()
    );
    let status = device.stop().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

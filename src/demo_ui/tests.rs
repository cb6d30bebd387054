//! The router with a fake camera: no sockets, no GStreamer.

use std::sync::Mutex;

use axum::body::Body;
use axum::http::Request;
use futures::channel::mpsc;
use tower::ServiceExt;

use super::settings::Resolution;
use super::*;

#[derive(Default)]
struct FakeCamera {
    settings: Mutex<Settings>,
    /// When set, `apply` fails with this after applying nothing.
    refuse: Option<ControlError>,
}

impl FakeCamera {
    fn full() -> Self {
        Self {
            settings: Mutex::new(Settings {
                overlay_text: Some(String::new()),
                brightness: Some(50),
                resolution: Some(Resolution::new(1280, 720)),
                bitrate_kbps: Some(2000),
            }),
            refuse: None,
        }
    }
}

impl Camera for FakeCamera {
    fn settings(&self) -> futures::future::BoxFuture<'_, Result<Settings, ControlError>> {
        let s = self.settings.lock().unwrap().clone();
        Box::pin(async move { Ok(s) })
    }

    fn apply(
        &self,
        patch: SettingsPatch,
    ) -> futures::future::BoxFuture<'_, Result<(), ControlError>> {
        if let Some(why) = &self.refuse {
            let why = why.clone();
            return Box::pin(async move { Err(why) });
        }
        let mut s = self.settings.lock().unwrap();
        s.overlay_text = patch.overlay_text.or(s.overlay_text.take());
        s.brightness = patch.brightness.or(s.brightness);
        s.resolution = patch.resolution.or(s.resolution);
        s.bitrate_kbps = patch.bitrate_kbps.or(s.bitrate_kbps);
        Box::pin(async { Ok(()) })
    }

    fn output(&self) -> status::Output {
        status::Output::default()
    }

    fn viewers(&self) -> usize {
        1
    }
}

fn shared(camera: FakeCamera) -> Arc<Shared> {
    let settings = camera.settings.lock().unwrap().clone();
    let (_, shutdown) = watch::channel(false);
    Shared::new(Arc::new(camera), settings, shutdown)
}

async fn send(shared: &Arc<Shared>, request: Request<Body>) -> (StatusCode, HeaderMap, String) {
    let response = app(shared.clone()).oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn form(body: &'static str) -> Request<Body> {
    Request::post("/settings")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn the_page_counts_visits_in_a_cookie() {
    let shared = shared(FakeCamera::full());
    let (status, headers, body) = send(&shared, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::SET_COOKIE],
        "demo_visits=1; Path=/; SameSite=Lax"
    );
    assert!(body.contains(r#"id="settings-form""#));
    assert!(!body.contains("saved-banner"));
    let again = Request::get("/?saved=1")
        .header("cookie", "theme=dark; demo_visits=4")
        .body(Body::empty())
        .unwrap();
    let (_, headers, body) = send(&shared, again).await;
    assert_eq!(
        headers[header::SET_COOKIE],
        "demo_visits=5; Path=/; SameSite=Lax"
    );
    assert!(body.contains(r#"<span id="server-visits">5</span>"#));
    assert!(body.contains("saved-banner"));
}

#[tokio::test]
async fn a_posted_form_applies_and_redirects() {
    let shared = shared(FakeCamera::full());
    let (status, headers, _) = send(
        &shared,
        form("overlay_text=Hall&brightness=80&resolution=640x360&bitrate_kbps=600&save=1"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/?saved=1");
    let now = shared.status.borrow().settings.clone();
    assert_eq!(now.overlay_text.as_deref(), Some("Hall"));
    assert_eq!(now.resolution, Some(Resolution::new(640, 360)));
    let (_, _, json) = send(&shared, get("/api/settings")).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["bitrate_kbps"], 600);
    assert_eq!(json["brightness"], 80);
}

#[tokio::test]
async fn a_bad_form_is_refused_with_the_page() {
    let shared = shared(FakeCamera::full());
    let (status, _, body) = send(&shared, form("bitrate_kbps=5")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains(r#"id="error""#) && body.contains("bitrate_kbps"),
        "{body}"
    );
    let not_form = Request::post("/settings")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        send(&shared, not_form).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[tokio::test]
async fn the_json_api_applies_partial_changes() {
    let shared = shared(FakeCamera::full());
    let put = |body: &'static str| {
        Request::put("/api/settings")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, body) = send(&shared, put(r#"{"overlay_text":"Garage"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["overlay_text"], "Garage");
    assert_eq!(json["resolution"], "1280x720", "the rest stays");
    for bad in [r#"{"resolution":"800x600"}"#, r#"{"zoom":2}"#, "not json"] {
        let (status, _, body) = send(&shared, put(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains("\"error\""), "{body}");
    }
}

#[tokio::test]
async fn what_the_camera_cannot_do_is_said() {
    let camera = FakeCamera {
        settings: Mutex::new(Settings {
            bitrate_kbps: Some(2000),
            ..Default::default()
        }),
        refuse: Some(ControlError::Missing("pipe-overlay")),
    };
    let shared = shared(camera);
    let (status, _, body) = send(&shared, form("overlay_text=x")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("no element named pipe-overlay"), "{body}");
    let (_, _, page) = send(&shared, get("/")).await;
    assert!(page.contains(r#"data-supported="bitrate_kbps""#), "{page}");
    assert!(page.contains(r#"<li data-setting="overlay_text">"#));
}

#[tokio::test]
async fn assets_are_served_with_their_types() {
    let shared = shared(FakeCamera::full());
    for (path, kind) in [
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/app.js", "text/javascript; charset=utf-8"),
        ("/static/logo.svg", "image/svg+xml"),
    ] {
        let (status, headers, _) = send(&shared, get(path)).await;
        assert_eq!(
            (status, &headers[header::CONTENT_TYPE]),
            (StatusCode::OK, &HeaderValue::from_static(kind)),
            "{path}"
        );
    }
    assert_eq!(
        send(&shared, get("/static/nope.js")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_status_socket_pushes_now_and_on_change() {
    let shared = shared(FakeCamera::full());
    let (tx, mut pushed) = mpsc::channel::<Message>(4);
    let (mut client, rx) = mpsc::channel::<Result<Message, ()>>(4);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(push_status(tx, rx, shared.status.subscribe(), shutdown));
    let text = |m: Option<Message>| match m {
        Some(Message::Text(t)) => serde_json::from_str::<serde_json::Value>(&t).unwrap(),
        other => panic!("{other:?}"),
    };
    let first = text(pushed.next().await);
    assert_eq!(first["settings"]["bitrate_kbps"], 2000);
    assert_eq!(first["supported"].as_array().unwrap().len(), 4);
    shared.status.send_modify(|s| s.viewers = 3);
    assert_eq!(text(pushed.next().await)["viewers"], 3);
    client
        .send(Ok(Message::Ping(Vec::new().into())))
        .await
        .unwrap();
    stop.send(true).unwrap();
    task.await.unwrap();
    assert!(matches!(pushed.next().await, Some(Message::Close(None))));
}

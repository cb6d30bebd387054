use super::*;
use crate::web::{ApiInfo, app};
use axum::http::Request;
use tower::ServiceExt;

const ID: &str = "abcdefghijklmn23";

fn info(device_id: Option<&str>) -> ApiInfo {
    ApiInfo {
        device_id: device_id.map(str::to_owned),
        ice_servers: vec![],
        signal_path: "/signal".into(),
        public_ui: None,
    }
}

async fn ask(device_id: Option<&str>, host: &str, path: &str) -> (StatusCode, HeaderMap, String) {
    let request = Request::get(path)
        .header("host", host)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app(info(device_id), None, None)
        .oneshot(request)
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn ui_hosts_are_parsed_strictly() {
    let ui = UiHost::parse("UI-ABCDEFGHIJKLMN23.localhost:8080").unwrap();
    assert_eq!(
        ui,
        UiHost {
            device_id: ID.into(),
            suffix: "localhost".into(),
            port: Some(8080)
        }
    );
    assert_eq!(
        UiHost::parse(&format!("ui-{ID}.cam.example.com"))
            .unwrap()
            .suffix,
        "cam.example.com"
    );
    for bad in [
        "localhost:8080".to_string(),
        format!("ui-{ID}"),                     // no suffix
        format!("ui-{ID}.localhost:http"),      // not a port
        format!("ui-{ID}1.localhost"),          // id too long
        "ui-abcdefghijklmn01.localhost".into(), // not base32
        format!("x-{ID}.localhost"),
        format!("ui-{ID}..localhost"),
        format!("ui-{ID}.local_host"),
        format!("ui-{ID}.localhost:99999"),
    ] {
        assert_eq!(UiHost::parse(&bad), None, "{bad}");
    }
    // A device answers for its own id only; a rendezvous for any.
    let other = "ui-zzzzzzzzzzzzzzzz.localhost:1";
    assert!(UiHosts::new(Some(ID.into()), None).parse(other).is_none());
    assert!(UiHosts::new(None, None).parse(other).is_some());
    // Only below `localhost` and the configured UI domain: never below the viewer's own host.
    let hosts = UiHosts::new(Some(ID.into()), Some(public()));
    assert!(
        hosts
            .parse(&format!("ui-{ID}.cam-ui.example.org"))
            .is_some()
    );
    assert!(hosts.parse(&format!("ui-{ID}.cam.example.net")).is_none());
    assert!(
        UiHosts::new(Some(ID.into()), None)
            .parse(&format!("ui-{ID}.cam-ui.example.org"))
            .is_none()
    );
}

fn public() -> PublicUi {
    PublicUi::new(
        &url::Url::parse("https://cam.example.net").unwrap(),
        "Cam-UI.example.org.",
    )
}

#[test]
fn only_the_viewer_may_frame_the_ui() {
    let hosts = UiHosts::new(None, Some(public()));
    let local = UiHost::parse(&format!("ui-{ID}.localhost:8080")).unwrap();
    // Not `localhost`: its UI origin would be on the viewer's site.
    assert_eq!(hosts.viewer_origins(&local), ["http://127.0.0.1:8080"]);
    let ui = UiHost::parse(&format!("ui-{ID}.cam-ui.example.org")).unwrap();
    assert_eq!(hosts.viewer_origins(&ui), ["https://cam.example.net"]);
    let below_viewer = UiHost::parse(&format!("ui-{ID}.cam.example.net")).unwrap();
    assert!(hosts.viewer_origins(&below_viewer).is_empty());

    assert_eq!(
        hosts.frame_src("127.0.0.1:8080").as_deref(),
        Some("http://*.localhost:*")
    );
    assert_eq!(
        hosts.frame_src("cam.example.net").as_deref(),
        Some("https://*.cam-ui.example.org")
    );
    let on_port = UiHosts::new(
        None,
        Some(PublicUi::new(
            &url::Url::parse("https://cam.example.net:8443").unwrap(),
            "cam-ui.example.org",
        )),
    );
    assert_eq!(
        on_port.frame_src("cam.example.net:8443").as_deref(),
        Some("https://*.cam-ui.example.org:8443")
    );
    for no_ui in [
        "localhost:8080",
        "192.168.1.20:8080",
        "[::1]:8080",
        "other.example.net",
        "cam.example.net:9",
    ] {
        assert_eq!(hosts.frame_src(no_ui), None, "{no_ui}");
    }
    // An HTTPS viewer without a UI domain gets no camera UI.
    assert_eq!(UiHosts::new(None, None).frame_src("cam.example.net"), None);
}

#[tokio::test]
async fn a_ui_host_gets_the_ui_assets_and_the_boot_page_only() {
    let host = format!("ui-{ID}.localhost:8080");
    for path in [
        "/",
        "/settings?x=1",
        "/api/info",
        "/local",
        "/signal",
        "/viewer.js",
        "/__pipe/boot",
    ] {
        let (status, headers, body) = ask(Some(ID), &host, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.contains("/__pipe/boot.js"), "{path}: {body}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{path}");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.ends_with("frame-ancestors http://127.0.0.1:8080"),
            "{csp}"
        );
        assert!(!headers.contains_key(header::X_FRAME_OPTIONS), "{path}");
    }
    for path in asset_paths() {
        let (status, headers, _) = ask(Some(ID), &host, path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            headers.get("service-worker-allowed").is_some(),
            path == "/__pipe/sw.js",
            "{path}"
        );
    }
    assert_eq!(
        ask(Some(ID), &host, "/__pipe/nope").await.0,
        StatusCode::NOT_FOUND
    );
    // A rendezvous (no device id of its own) answers any device's UI host.
    let (status, _, body) = ask(None, &host, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("/__pipe/boot.js"));
}

#[tokio::test]
async fn other_hosts_get_the_viewer_which_frames_only_the_ui() {
    // Another device's UI host, and the viewer's own host: the viewer app.
    for host in ["ui-zzzzzzzzzzzzzzzz.localhost:8080", "127.0.0.1:8080"] {
        let (status, headers, body) = ask(Some(ID), host, "/").await;
        assert_eq!(status, StatusCode::OK, "{host}");
        assert!(body.contains("viewer.js"), "{host}: {body}");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        if host.starts_with("127.") {
            assert!(csp.contains("frame-src http://*.localhost:*"), "{csp}");
        }
        let (status, _, _) = ask(Some(ID), host, "/__pipe/sw.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{host}");
    }
}

#[tokio::test]
async fn the_ui_scripts_learn_their_viewer_origins_from_the_server() {
    let (status, headers, body) = ask(
        Some(ID),
        &format!("ui-{ID}.localhost:8080"),
        "/__pipe/common.js",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with("self.__pipeViewerOrigins = [\"http://127.0.0.1:8080\"];\n"),
        "{}",
        &body[..80]
    );
    assert_eq!(headers["origin-agent-cluster"], "?1");
    // The viewer's copy has no such line, and the viewer page keeps its own agent cluster too.
    let (_, headers, body) = ask(Some(ID), "127.0.0.1:8080", "/").await;
    assert_eq!(headers["origin-agent-cluster"], "?1");
    assert!(!body.contains("__pipeViewerOrigins"));
}

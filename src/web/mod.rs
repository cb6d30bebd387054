//! The HTTP side: the viewer app (embedded in the binary), `/api/info`, a health check and,
//! where this process embeds one, the rendezvous WebSocket at `/signal`. Requests for the
//! camera UI's own origin (`ui-<device id>.<host>`, `ui.rs`) are answered before any of these.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::config::IceConfig;

pub mod local;
pub mod serve;
pub mod ui;
use crate::signalling::server::Rendezvous;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const STYLE_CSS: &str = include_str!("../../web/style.css");
/// The viewer's test seam: inert in the page a camera serves; test builds serve the harness's.
#[cfg(not(feature = "test-hooks"))]
const HOOKS_JS: &str = include_str!("../../web/hooks.js");
#[cfg(feature = "test-hooks")]
const HOOKS_JS: &str = include_str!("../../testkit/web/hooks.js");
/// The viewer's ES modules: `viewer.js` imports the others by these paths.
const SCRIPTS: &[(&str, &str)] = &[
    ("/viewer.js", include_str!("../../web/viewer.js")),
    ("/session.js", include_str!("../../web/session.js")),
    ("/link.js", include_str!("../../web/link.js")),
    ("/overlay.js", include_str!("../../web/overlay.js")),
    ("/sdp.js", include_str!("../../web/sdp.js")),
    ("/identity.js", include_str!("../../web/identity.js")),
    ("/control.js", include_str!("../../web/control.js")),
    ("/owner.js", include_str!("../../web/owner.js")),
    ("/proxy.js", include_str!("../../web/proxy.js")),
    ("/frame.js", include_str!("../../web/frame.js")),
    ("/cookies.js", include_str!("../../web/cookies.js")),
    ("/store.js", include_str!("../../web/store.js")),
    ("/uiframe.js", include_str!("../../web/uiframe.js")),
    ("/hooks.js", HOOKS_JS),
    // Shared with the UI origin's worker (a classic script there, a module here).
    ("/common.js", include_str!("../../web/ui/common.js")),
];

/// Text made safe to put in HTML content and in double- or single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the viewer app asks the server that served it (docs/protocol.md).
#[derive(Debug, Clone, Serialize)]
pub struct ApiInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub ice_servers: Vec<IceServer>,
    /// `/signal` on this server, or the `ws(s)://` URL of a remote rendezvous.
    pub signal_path: String,
    /// Where the camera UI's origins live for a viewer on HTTPS (`ui_domain` in the JSON).
    #[serde(
        rename = "ui_domain",
        skip_serializing_if = "Option::is_none",
        serialize_with = "ui::PublicUi::serialize_domain"
    )]
    pub public_ui: Option<ui::PublicUi>,
}

/// An `RTCIceServer` as the browser takes it.
#[derive(Clone, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

impl IceServer {
    /// The browser's view of the configured STUN and TURN servers.
    pub fn from_config(ice: &IceConfig) -> Vec<Self> {
        let stun = ice.stun_servers.iter().map(|url| Self {
            urls: vec![url.clone()],
            username: None,
            credential: None,
        });
        let turn = ice.turn_servers.iter().map(|t| Self {
            urls: vec![t.url.clone()],
            username: Some(t.username.clone()),
            credential: Some(t.credential.clone()),
        });
        stun.chain(turn).collect()
    }
}

/// Produces the device's live status for `/api/status` (called on a blocking thread).
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;
/// Produces the device's local page (called on a blocking thread: it reads the state).
pub type LocalFn = Arc<dyn Fn() -> String + Send + Sync>;

/// What only a device serves: its status and, to its own screen, the local page.
pub struct DeviceRoutes {
    pub status: StatusFn,
    pub local_page: LocalFn,
}

/// `/local` shows the claim link: only to a browser on the device itself, by its peer
/// address and by the name it used (a page that points its own name at 127.0.0.1 must not
/// read the secret, nor traffic a local reverse proxy forwards).
async fn local_route(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    page: LocalFn,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    // A same-host reverse proxy (nginx: `Host: 127.0.0.1:8080` from 127.0.0.1) passes both
    // checks above for any client on the internet; proxies say so in forwarding headers.
    let forwarded = local::FORWARDING_HEADERS
        .iter()
        .any(|name| headers.contains_key(*name));
    if !local::is_local(&peer) || !local::is_local_host(host) || forwarded {
        return (
            StatusCode::FORBIDDEN,
            "The local page is shown only on the camera itself (http://127.0.0.1/local).\n",
        )
            .into_response();
    }
    let Ok(html) = tokio::task::spawn_blocking(move || page()).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(local::CONTENT_SECURITY_POLICY),
    );
    // It may hold the claim secret: never cached, never sent on as a referrer.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The whole HTTP app. `rendezvous` is mounted at `/signal` when this process embeds one;
/// `status` serves `/api/status` on a device.
pub fn app(
    info: ApiInfo,
    rendezvous: Option<&Arc<Rendezvous>>,
    device: Option<DeviceRoutes>,
) -> axum::Router {
    let ui_hosts = ui::UiHosts::new(info.device_id.clone(), info.public_ui.clone());
    let info = Arc::new(info);
    let frames = ui_hosts.clone();
    let mut router = axum::Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| index(frames.clone(), headers)),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/api/info",
            get(move || async move { Json(info.as_ref().clone()) }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    for &(path, body) in SCRIPTS {
        router = router.route(
            path,
            get(move || async move { asset(body, "text/javascript; charset=utf-8") }),
        );
    }
    if let Some(rendezvous) = rendezvous {
        router = router.merge(rendezvous.routes());
    }
    if let Some(device) = device {
        let DeviceRoutes { status, local_page } = device;
        router = router
            .route(
                "/api/status",
                get(move || async move {
                    let status = status.clone();
                    match tokio::task::spawn_blocking(move || status()).await {
                        Ok(value) => Json(value).into_response(),
                        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                    }
                }),
            )
            .route(
                "/local",
                get(move |peer: ConnectInfo<SocketAddr>, headers: HeaderMap| {
                    local_route(peer, headers, local_page.clone())
                }),
            );
    }
    // Last, so it wraps every route above: a UI host never reaches them.
    router.layer(axum::middleware::from_fn_with_state(
        ui_hosts,
        ui::route_by_host,
    ))
}

/// The viewer page. It may frame the camera UI's origin (`frame-src`), and nothing may frame it.
async fn index(ui_hosts: ui::UiHosts, headers: HeaderMap) -> Response {
    let mut response = asset(INDEX_HTML, "text/html; charset=utf-8");
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if let Some(frame_src) = ui_hosts.frame_src(host) {
        let csp = format!("{VIEWER_CSP}; frame-src {frame_src}");
        if let Ok(value) = HeaderValue::from_str(&csp) {
            response
                .headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    response
}

/// The viewer's policy. `frame-ancestors 'none'` (and `X-Frame-Options`): the page that holds
/// the owner's certificate is never framed, by the camera UI or anyone.
const VIEWER_CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob:; img-src 'self' data:; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Assets change with the binary; a stale viewer after an upgrade would confuse people.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(VIEWER_CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The page that holds the certificate keeps an agent cluster of its own origin.
    headers.insert("origin-agent-cluster", HeaderValue::from_static("?1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn info() -> ApiInfo {
        ApiInfo {
            device_id: Some("aaaaaaaaaaaaaaaa".into()),
            ice_servers: vec![],
            signal_path: "/signal".into(),
            public_ui: None,
        }
    }

    async fn get(app: axum::Router, path: &str) -> (StatusCode, String) {
        let response = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_the_viewer_and_its_info() {
        let (status, body) = get(app(info(), None, None), "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("viewer.js"), "{body}");
        // Every module is imported by one of the others (viewer.js is the page's), and served
        // as JavaScript.
        for (path, _) in SCRIPTS {
            let module = format!("'.{path}'");
            assert!(
                *path == "/viewer.js" || SCRIPTS.iter().any(|(_, body)| body.contains(&module)),
                "no module imports {path}"
            );
            let response = app(info(), None, None)
                .oneshot(Request::get(*path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "text/javascript; charset=utf-8"
            );
        }
        let (status, body) = get(app(info(), None, None), "/api/info").await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["device_id"], "aaaaaaaaaaaaaaaa");
        assert_eq!(json["signal_path"], "/signal");
        assert_eq!(
            get(app(info(), None, None), "/nope").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn signal_exists_only_with_an_embedded_rendezvous() {
        assert_eq!(
            get(app(info(), None, None), "/signal").await.0,
            StatusCode::NOT_FOUND
        );
        let rendezvous = Rendezvous::new("test");
        // A plain GET (no upgrade) reaches the WebSocket route and is refused by it.
        assert_ne!(
            get(app(info(), Some(&rendezvous), None), "/signal").await.0,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn the_local_page_is_for_the_device_itself_only() {
        use axum::extract::connect_info::MockConnectInfo;
        let routes = || DeviceRoutes {
            status: Arc::new(|| serde_json::json!({})),
            local_page: Arc::new(|| "<p>claim here</p>".to_string()),
        };
        let ask = |peer: &str, host: &'static str| {
            let app = app(info(), None, Some(routes()))
                .layer(MockConnectInfo(peer.parse::<SocketAddr>().unwrap()));
            async move {
                let request = Request::get("/local")
                    .header("host", host)
                    .body(Body::empty())
                    .unwrap();
                let response = app.oneshot(request).await.unwrap();
                (
                    response.status(),
                    response.headers().get(header::CACHE_CONTROL).cloned(),
                )
            }
        };
        let (status, cache) = ask("127.0.0.1:5000", "127.0.0.1:8080").await;
        assert_eq!(
            (status, cache.unwrap()),
            (StatusCode::OK, HeaderValue::from_static("no-store"))
        );
        assert_eq!(
            ask("192.0.2.7:5000", "127.0.0.1:8080").await.0,
            StatusCode::FORBIDDEN,
            "a LAN peer"
        );
        assert_eq!(
            ask("127.0.0.1:5000", "evil.example:8080").await.0,
            StatusCode::FORBIDDEN,
            "a rebound name"
        );
        // Through a reverse proxy on the device: loopback peer and Host, but forwarded.
        for header in local::FORWARDING_HEADERS {
            let app = app(info(), None, Some(routes())).layer(MockConnectInfo(
                "127.0.0.1:5000".parse::<SocketAddr>().unwrap(),
            ));
            let request = Request::get("/local")
                .header("host", "127.0.0.1:8080")
                .header(*header, "203.0.113.9")
                .body(Body::empty())
                .unwrap();
            let status = app.oneshot(request).await.unwrap().status();
            assert_eq!(status, StatusCode::FORBIDDEN, "{header}");
        }
    }

    #[test]
    fn ice_servers_never_print_credentials() {
        let ice: IceConfig = toml::from_str(
            r#"stun_servers = ["stun:127.0.0.1:3478"]
            turn_servers = [{ url = "turn:127.0.0.1:3478", username = "u", credential = "s3cret" }]"#,
        )
        .unwrap();
        let servers = IceServer::from_config(&ice);
        assert_eq!(servers.len(), 2);
        assert!(!format!("{servers:?}").contains("s3cret"));
    }
}

//! The camera UI's own origin (`docs/ui-proxy-browser.md`): requests whose `Host` is
//! `ui-<device id>.<viewer host>` get only the `/__pipe/*` assets (boot page, service worker,
//! shim) and, for every other path, the boot page. The camera's UI itself never comes from
//! here: the service worker the boot page installs fetches it over the viewer's datachannels.
//! Nothing of the viewer app (`/`, `/api`, `/local`, `/signal`) is served on this origin, so a
//! script of the camera UI cannot reach it with same-origin rights.
//!
//! Everything that decides is pure (`UiHost::parse`, `frame_ancestors`, `viewer_frame_src`)
//! and tested without a server; `route_by_host` is the middleware that applies it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The prefix of the UI origin's first label: `ui-<device id>`.
const LABEL_PREFIX: &str = "ui-";
/// Where the UI origin keeps its own files; every other path belongs to the camera.
pub const ASSET_PREFIX: &str = "/__pipe/";

const BOOT_HTML: &str = include_str!("../../web/ui/boot.html");
/// `(path, body)`, all JavaScript. `sw.js` is the service worker (`Service-Worker-Allowed: /`).
const SCRIPTS: &[(&str, &str)] = &[
    ("/__pipe/boot.js", include_str!("../../web/ui/boot.js")),
    ("/__pipe/sw.js", include_str!("../../web/ui/sw.js")),
    ("/__pipe/shim.js", include_str!("../../web/ui/shim.js")),
    ("/__pipe/common.js", include_str!("../../web/ui/common.js")),
];

/// Which UI hosts this server answers: its own device's only, or (a rendezvous serving the
/// viewer for any device) any syntactically valid device id.
#[derive(Debug, Clone)]
pub struct UiHosts {
    device_id: Option<String>,
}

impl UiHosts {
    pub fn new(device_id: Option<String>) -> Self {
        Self { device_id }
    }

    /// The UI host a `Host` header names, if it names one this server answers.
    pub fn parse(&self, host: &str) -> Option<UiHost> {
        let ui = UiHost::parse(host)?;
        match &self.device_id {
            Some(id) if *id != ui.device_id => None,
            _ => Some(ui),
        }
    }
}

/// `ui-<device id>.<suffix>[:port]`, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiHost {
    pub device_id: String,
    /// The viewer's host name the UI host hangs below (`localhost`, `cam.example.com`).
    pub suffix: String,
    pub port: Option<u16>,
}

impl UiHost {
    pub fn parse(host: &str) -> Option<UiHost> {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port.parse::<u16>().ok()?)),
            None => (host, None),
        };
        let name = name.strip_suffix('.').unwrap_or(&name);
        let (label, suffix) = name.split_once('.')?;
        let device_id = label.strip_prefix(LABEL_PREFIX)?;
        let valid_id = device_id.len() == 16
            && device_id
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
        let valid_suffix = !suffix.is_empty()
            && suffix.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        (valid_id && valid_suffix).then(|| UiHost {
            device_id: device_id.to_owned(),
            suffix: suffix.to_owned(),
            port,
        })
    }

    fn port_suffix(&self) -> String {
        self.port.map(|p| format!(":{p}")).unwrap_or_default()
    }

    /// The viewer origins allowed to frame this UI origin (CSP `frame-ancestors`), the same
    /// list `web/ui/common.js` (`viewerOrigins`) accepts messages from. Below `localhost` the
    /// viewer is on loopback, by any of its names, over plain http (loopback is a secure
    /// context; `[::1]` is left out: CSP has no syntax for IPv6 literals); anywhere else only
    /// HTTPS is a secure context, so only HTTPS is allowed.
    pub fn viewer_origins(&self) -> Vec<String> {
        let port = self.port_suffix();
        if self.suffix == "localhost" {
            ["127.0.0.1", "localhost"]
                .iter()
                .map(|h| format!("http://{h}{port}"))
                .collect()
        } else {
            vec![format!("https://{}{port}", self.suffix)]
        }
    }

    /// The boot page's policy: only its own scripts, framed only by the viewer.
    fn boot_csp(&self) -> String {
        format!(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
             img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors {}",
            self.viewer_origins().join(" ")
        )
    }
}

/// The viewer page's `frame-src`: the UI origins below the host that served it. `*` stands for
/// the device id (a rendezvous serves the viewer for any device). None where the viewer page
/// cannot have a UI frame (plain-http LAN addresses are not secure contexts).
pub fn viewer_frame_src(viewer_host: &str) -> Option<String> {
    if super::local::is_local_host(viewer_host) {
        return Some("http://*.localhost:*".into());
    }
    let host = viewer_host.trim().to_ascii_lowercase();
    let name = host.rsplit_once(':').map_or(host.as_str(), |(n, _)| n);
    let is_ip = name.starts_with('[') || name.parse::<std::net::IpAddr>().is_ok();
    (!is_ip && !name.is_empty() && name.contains('.')).then(|| format!("https://*.{host}"))
}

/// Middleware over the whole app: a UI host is answered here and never reaches the viewer's
/// routes.
pub async fn route_by_host(State(hosts): State<UiHosts>, request: Request, next: Next) -> Response {
    let host = host_of(request.headers());
    match host.and_then(|h| hosts.parse(h)) {
        Some(ui) => serve(&ui, request.uri().path()),
        None => next.run(request).await,
    }
}

fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

/// The UI origin's answer for `path`: one of its scripts, 404 for other `/__pipe/` paths, and
/// the boot page for every path of the camera's (a browser without the service worker yet, or
/// after a hard reload: the boot page installs it and loads the same address again).
pub fn serve(ui: &UiHost, path: &str) -> Response {
    if let Some(&(_, body)) = SCRIPTS.iter().find(|(p, _)| *p == path) {
        let mut response = body.into_response();
        let h = response.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        );
        common_headers(h);
        if path == "/__pipe/sw.js" {
            // Served under /__pipe/ but controls the whole origin: the camera's paths.
            h.insert("service-worker-allowed", HeaderValue::from_static("/"));
        }
        return response;
    }
    if path.starts_with(ASSET_PREFIX) && path != "/__pipe/boot" {
        let mut response = (StatusCode::NOT_FOUND, "not found\n").into_response();
        common_headers(response.headers_mut());
        return response;
    }
    let mut response = BOOT_HTML.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    common_headers(h);
    // Never cached: once the worker runs, the same address must reach the camera instead.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(csp) = HeaderValue::from_str(&ui.boot_csp()) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

fn common_headers(h: &mut HeaderMap) {
    // Changes with the binary; a stale worker after an upgrade would speak an old protocol.
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// Every UI-origin asset path (for tests).
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    SCRIPTS.iter().map(|(p, _)| *p)
}

#[cfg(test)]
mod tests;

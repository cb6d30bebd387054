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

/// Where the camera UI's origins live when the viewer is on HTTPS: `ui-<device id>.DOMAIN`,
/// a registrable domain of its own (`device.ui_domain`, checked by
/// `config::ui_domain_problem`), framed only by the viewer's origin. Below the viewer's own
/// host the UI would be same-site with it, and could toss `Domain=` cookies onto it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUi {
    /// `cam-ui.example.org`: lowercase, no port.
    pub domain: String,
    /// `https://cam.example.net[:port]`, the one origin allowed to frame the UI.
    pub viewer_origin: String,
}

impl PublicUi {
    /// For a viewer at `public_url` (already validated, HTTPS) and a checked `domain`.
    pub fn new(public_url: &url::Url, domain: &str) -> Self {
        Self {
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            viewer_origin: public_url.origin().ascii_serialization(),
        }
    }

    /// The port of the viewer's origin, which the UI hosts share (one server serves both).
    fn port_suffix(&self) -> String {
        url::Url::parse(&self.viewer_origin)
            .ok()
            .and_then(|u| u.port())
            .map(|p| format!(":{p}"))
            .unwrap_or_default()
    }

    /// `/api/info`'s `ui_domain`: the viewer builds the UI origin from it.
    pub fn serialize_domain<S: serde::Serializer>(
        ui: &Option<PublicUi>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match ui {
            Some(ui) => s.serialize_str(&ui.domain),
            None => s.serialize_none(),
        }
    }
}

/// Which UI hosts this server answers: below `localhost` (for a viewer at `127.0.0.1`) and
/// below the public UI domain if there is one; for its own device only, or (a rendezvous
/// serving the viewer for any device) any syntactically valid device id.
#[derive(Debug, Clone)]
pub struct UiHosts {
    device_id: Option<String>,
    public: Option<PublicUi>,
}

impl UiHosts {
    pub fn new(device_id: Option<String>, public: Option<PublicUi>) -> Self {
        Self { device_id, public }
    }

    /// The UI host a `Host` header names, if it names one this server answers.
    pub fn parse(&self, host: &str) -> Option<UiHost> {
        let ui = UiHost::parse(host)?;
        let ours = match &self.device_id {
            Some(id) => *id == ui.device_id,
            None => true,
        };
        let below =
            ui.suffix == "localhost" || self.public.as_ref().is_some_and(|p| p.domain == ui.suffix);
        (ours && below).then_some(ui)
    }

    /// The viewer origins allowed to frame `ui` (CSP `frame-ancestors`), and the only ones its
    /// scripts talk to (`self.__pipeViewerOrigins`, see `serve`). Below `localhost`: the viewer
    /// at `127.0.0.1` on the same port (loopback is a secure context over plain http; not
    /// `localhost`, whose UI would be same-site with it, nor `[::1]`, which CSP cannot name).
    /// Below the public UI domain: the public viewer origin.
    pub fn viewer_origins(&self, ui: &UiHost) -> Vec<String> {
        if ui.suffix == "localhost" {
            return vec![format!("http://127.0.0.1{}", ui.port_suffix())];
        }
        match &self.public {
            Some(p) if p.domain == ui.suffix => vec![p.viewer_origin.clone()],
            _ => Vec::new(),
        }
    }

    /// The viewer page's `frame-src`: the UI origins that page may frame. `*` stands for the
    /// device id (a rendezvous serves the viewer for any device). None where the viewer page
    /// gets no UI frame: plain-http LAN addresses (no secure context, so no service worker),
    /// `localhost` (its UI origin would be same-site), and an HTTPS host without a UI domain.
    pub fn frame_src(&self, viewer_host: &str) -> Option<String> {
        let host = viewer_host.trim().to_ascii_lowercase();
        let (name, _) = split_port(&host)?;
        if name
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        {
            return Some("http://*.localhost:*".into());
        }
        let public = self.public.as_ref()?;
        let viewer = url::Url::parse(&public.viewer_origin).ok()?;
        let same_host = viewer.host_str() == Some(name) && split_port(&host)?.1 == viewer.port();
        same_host.then(|| format!("https://*.{}{}", public.domain, public.port_suffix()))
    }

    /// The boot page's policy: only its own scripts, framed only by the viewer.
    fn boot_csp(&self, ui: &UiHost) -> String {
        format!(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
             img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors {}",
            self.viewer_origins(ui).join(" ")
        )
    }
}

/// `name` and port of a `Host` value (`name[:port]`); None for a malformed port.
fn split_port(host: &str) -> Option<(&str, Option<u16>)> {
    if host.starts_with('[') {
        return Some((host, None)); // an IPv6 literal: never a UI host nor loopback IPv4
    }
    match host.rsplit_once(':') {
        Some((name, port)) => Some((name, Some(port.parse().ok()?))),
        None => Some((host, None)),
    }
}

/// `ui-<device id>.<suffix>[:port]`, lowercased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiHost {
    pub device_id: String,
    /// What the UI host hangs below: `localhost`, or the public UI domain.
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
}

/// Middleware over the whole app: a UI host is answered here and never reaches the viewer's
/// routes.
pub async fn route_by_host(State(hosts): State<UiHosts>, request: Request, next: Next) -> Response {
    let host = host_of(request.headers());
    match host.and_then(|h| hosts.parse(h)) {
        Some(ui) => serve(&hosts, &ui, request.uri().path()),
        None => next.run(request).await,
    }
}

fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

/// The UI origin's answer for `path`: one of its scripts, 404 for other `/__pipe/` paths, and
/// the boot page for every path of the camera's (a browser without the service worker yet, or
/// after a hard reload: the boot page installs it and loads the same address again).
pub fn serve(hosts: &UiHosts, ui: &UiHost, path: &str) -> Response {
    if let Some(&(_, body)) = SCRIPTS.iter().find(|(p, _)| *p == path) {
        let body = if path == "/__pipe/common.js" {
            // Every script of the UI origin (boot page, worker, shim) loads common.js: the
            // viewer origins it may talk to come from here, the one place that knows them.
            let origins = serde_json::to_string(&hosts.viewer_origins(ui)).unwrap_or_default();
            format!("self.__pipeViewerOrigins = {origins};\n{body}")
        } else {
            body.to_owned()
        };
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
    if let Ok(csp) = HeaderValue::from_str(&hosts.boot_csp(ui)) {
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
    // An agent cluster of its own origin: `document.domain` cannot join it to another.
    h.insert("origin-agent-cluster", HeaderValue::from_static("?1"));
}

/// Every UI-origin asset path (for tests).
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    SCRIPTS.iter().map(|(p, _)| *p)
}

#[cfg(test)]
mod tests;

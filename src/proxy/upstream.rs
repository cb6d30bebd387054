//! The one upstream the proxy forwards to, its limits, and the rewriting of heads between the
//! browser and it (`docs/proxy.md`, "What the device enforces"). Pure: no sockets.

use std::time::Duration;

use super::frame::{FrameError, Headers, MAX_HEADERS, RequestHead};
use crate::config::UiConfig;

/// Where `ui.upstream` points when it is not set (and no demo UI replaces it).
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:80";

/// The configured upstream origin and the limits that apply to every exchange with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Host name or address, as connected to (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// What `host` headers say: `host` or `host:port`, as in the configured URL.
    pub authority: String,
    /// `http://authority`, for `origin` and `referer`.
    pub origin: String,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
    /// To connect and get the response head (or the WebSocket handshake's answer).
    pub response_timeout: Duration,
    /// A body (either way) or a WebSocket with no byte from the upstream or the browser.
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ui.upstream {0:?} is not an http:// origin")]
pub struct UpstreamError(String);

impl Upstream {
    /// `url` is the effective upstream (validated by the config already; checked again).
    pub fn new(url: &str, ui: &UiConfig) -> Result<Self, UpstreamError> {
        let bad = || UpstreamError(url.to_string());
        let parsed = url::Url::parse(url).map_err(|_| bad())?;
        if parsed.scheme() != "http" || parsed.path() != "/" || parsed.query().is_some() {
            return Err(bad());
        }
        let host = match parsed.host().ok_or_else(bad)? {
            url::Host::Ipv6(a) => a.to_string(),
            h => h.to_string(),
        };
        let port = parsed.port_or_known_default().ok_or_else(bad)?;
        let shown = match parsed.host().ok_or_else(bad)? {
            url::Host::Ipv6(a) => format!("[{a}]"),
            h => h.to_string(),
        };
        let authority = match parsed.port() {
            Some(p) => format!("{shown}:{p}"),
            None => shown,
        };
        Ok(Self {
            origin: format!("http://{authority}"),
            host,
            port,
            authority,
            max_request_bytes: ui.max_request_bytes,
            max_response_bytes: ui.max_response_bytes,
            response_timeout: Duration::from_secs(ui.response_timeout_secs),
            idle_timeout: Duration::from_secs(ui.idle_timeout_secs),
        })
    }
}

/// Hop-by-hop headers (RFC 9110 7.6.1, plus the obsolete proxy ones): never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];
/// The WebSocket handshake's own headers: the device negotiates them with the upstream.
const WS_HANDSHAKE: &[&str] = &[
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
    "sec-websocket-extensions",
];

/// The request head as sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRequest {
    pub headers: Vec<(String, String)>,
    /// The declared body length, if any.
    pub content_length: Option<u64>,
}

/// Why a request head is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("content-length is not one decimal number")]
    BadContentLength,
    #[error("a WebSocket request carries no body (content-length or transfer-encoding)")]
    WebSocketBody,
}

/// Names listed in `connection` headers (lowercase): hop-by-hop too.
fn connection_tokens<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<String> {
    fields
        .filter(|(n, _)| *n == "connection")
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn is_hop_by_hop(name: &str, named: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || WS_HANDSHAKE.contains(&name) || named.iter().any(|n| n == name)
}

/// Rewrites the browser's head for the upstream: `host` set to the upstream, `origin` and
/// `referer` moved onto it, hop-by-hop and forwarding headers dropped, `accept-encoding:
/// identity`.
pub fn request_headers(head: &RequestHead, upstream: &Upstream) -> Result<OutRequest, HeadError> {
    let fields = head.headers();
    let named = connection_tokens(fields.iter());
    let mut out = vec![("host".to_string(), upstream.authority.clone())];
    let mut content_length = None;
    for (name, value) in fields.iter() {
        if is_hop_by_hop(name, &named)
            || matches!(name, "host" | "accept-encoding" | "forwarded" | "x-real-ip")
            || name.starts_with("x-forwarded-")
        {
            continue;
        }
        match name {
            "content-length" => {
                let n = parse_length(value).ok_or(HeadError::BadContentLength)?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HeadError::BadContentLength);
                }
                if content_length.is_none() {
                    out.push((name.into(), n.to_string()));
                }
                content_length = Some(n);
            }
            "origin" => out.push((name.into(), upstream.origin.clone())),
            "referer" => {
                if let Some(r) = rebase_referer(value, upstream) {
                    out.push((name.into(), r));
                }
            }
            _ => out.push((name.into(), value.into())),
        }
    }
    if head.websocket() && content_length.is_some_and(|n| n > 0) {
        return Err(HeadError::WebSocketBody);
    }
    out.push(("accept-encoding".into(), "identity".into()));
    Ok(OutRequest {
        headers: out,
        content_length,
    })
}

fn parse_length(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// The referer's path and query on the upstream's origin; `None` if it does not parse.
fn rebase_referer(value: &str, upstream: &Upstream) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    let mut out = format!("{}{}", upstream.origin, url.path());
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// The upstream's response headers for the browser: hop-by-hop dropped (and, for a 101,
/// everything but `sec-websocket-protocol`), values carried one char per octet, at most
/// `MAX_HEADERS` fields. Fields whose value has a control character are dropped.
pub fn response_headers(fields: &[(&str, &[u8])], upgrade: bool) -> Result<Headers, FrameError> {
    let named = connection_tokens(
        fields
            .iter()
            .filter_map(|(n, v)| std::str::from_utf8(v).ok().map(|v| (*n, v))),
    );
    let mut out = Vec::new();
    for &(name, value) in fields {
        let name = name.to_ascii_lowercase();
        if is_hop_by_hop(&name, &named) || (upgrade && name != "sec-websocket-protocol") {
            continue;
        }
        let ok = value
            .iter()
            .all(|&b| b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80);
        if !ok {
            continue;
        }
        out.push((name, value.iter().map(|&b| char::from(b)).collect()));
    }
    if out.len() > MAX_HEADERS {
        return Err(FrameError::TooManyHeaders(out.len()));
    }
    Headers::new(out)
}

/// The request target sent upstream: the browser's path, with the few bytes a URI cannot hold
/// (`"`, `<`, `>`, `` ` ``; RFC 3986, and browsers never send them raw) percent-encoded, which
/// HTTP request builders require. Nothing else changes.
pub fn request_target(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '"' | '<' | '>' | '`' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A header value from the browser (one char per octet) as the bytes it stands for.
pub fn value_bytes(value: &str) -> Vec<u8> {
    // Headers::new admits only U+0000..=U+00FF, so every char is one octet.
    value.chars().map(|c| c as u32 as u8).collect()
}

/// The page the browser gets when the upstream is not there (or too slow): the exchange
/// is answered rather than left to hang.
pub fn error_page(status: u16, title: &str, detail: &str) -> (Headers, Vec<u8>) {
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{status} {title}</title></head>\n\
         <body><h1>{title}</h1><p>{detail}</p><p>This page comes from the pipe device, not from \
         the camera.</p></body></html>\n"
    );
    let headers = Headers::new(vec![
        ("content-type".into(), "text/html; charset=utf-8".into()),
        ("content-length".into(), body.len().to_string()),
        ("cache-control".into(), "no-store".into()),
    ])
    .expect("fixed, valid headers");
    (headers, body.into_bytes())
}

#[cfg(test)]
mod tests;

//! The device's own page, `/local`, for a screen or browser on the device itself: its id and,
//! while it is unclaimed, the claim link as a big QR code. The link carries the claim secret,
//! so the page is served only to this machine (`is_local` and `is_local_host`); everything
//! here is pure so it is tested without a server.

use std::net::{IpAddr, SocketAddr};

use super::escape;
use crate::grants::links::qr_svg;

/// The page refreshes itself (no script needed) so a screen left on it shows a claim, or the
/// new link after `pipe reset-owner`, within this many seconds.
const REFRESH_SECS: u32 = 5;

/// What the page needs from the browser: its own inline styles and the inline SVG QR code,
/// nothing from anywhere else. Serve the page with this header, `Cache-Control: no-store`
/// (it may hold the claim secret) and `Referrer-Policy: no-referrer`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const STYLE: &str = "\
body{margin:0;font:18px/1.4 system-ui,sans-serif;background:#111;color:#eee;\
display:flex;min-height:100vh;align-items:center;justify-content:center;text-align:center}\
main{max-width:44rem;padding:1.5rem}\
h1{font-size:1.6rem;margin:0 0 .5rem}\
.id{font:1.3rem ui-monospace,monospace;letter-spacing:.08em;color:#9cf}\
.qr svg{display:block;margin:1rem auto;width:min(80vw,60vh);height:auto;background:#fff}\
.link{font:.9rem ui-monospace,monospace;word-break:break-all;color:#9cf}\
.warn{color:#fc6}\
a{color:inherit}";

/// The whole page. `claim_link` is `Some` while the device is unclaimed; then the page shows
/// it as a QR code and as text, otherwise it says the camera has an owner and shows
/// `viewer_link`.
pub fn page(device_id: &str, viewer_link: &str, claim_link: Option<&str>) -> String {
    let id = escape(device_id);
    let body = match claim_link {
        Some(link) => {
            // Markup we rendered ourselves from the link (paths only, no text); the XML
            // prologue is dropped so it sits inline in HTML.
            let svg = qr_svg(link);
            let svg = svg.find("<svg").map_or("", |start| &svg[start..]);
            let link = escape(link);
            format!(
                "<h1>Claim this camera</h1>\n\
                 <p>Device <span class=\"id\">{id}</span> has no owner yet. Scan this code with \
                 the phone or computer that will own it.</p>\n\
                 <div class=\"qr\">{svg}</div>\n\
                 <p class=\"link\"><a href=\"{link}\">{link}</a></p>\n\
                 <p class=\"warn\">Whoever opens this link first becomes the owner: show it only \
                 to them.</p>"
            )
        }
        None => {
            let link = escape(viewer_link);
            format!(
                "<h1>This camera has an owner</h1>\n\
                 <p>Device <span class=\"id\">{id}</span></p>\n\
                 <p>The owner watches and lends access at</p>\n\
                 <p class=\"link\"><a href=\"{link}\">{link}</a></p>\n\
                 <p>To hand the camera to someone else, run <code>pipe reset-owner</code> on \
                 this device.</p>"
            )
        }
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\n\
         <title>pipe {id}</title>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
}

/// Whether a client connected from this machine: IPv4 or IPv6 loopback, including IPv4
/// loopback seen through a dual-stack socket (`::ffff:127.0.0.1`).
/// Headers a reverse proxy adds for the client it forwards: a request that carries any of them
/// came from elsewhere, whatever its peer address and Host say.
pub const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "via",
];

pub fn is_local(addr: &SocketAddr) -> bool {
    is_loopback(addr.ip())
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a request's `Host` header names this machine (`localhost`, a loopback address,
/// with or without a port). A loopback peer address alone is not enough: a web page that
/// rebinds its own name to 127.0.0.1 (DNS rebinding) in a browser on the device, or a reverse
/// proxy on the device forwarding public traffic, also arrives from loopback, but under
/// another host name.
pub fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]` or `[::1]:8080`
        Some(rest) => match rest.split_once(']') {
            Some((inside, port)) if port.is_empty() || is_port(port) => inside,
            _ => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            _ => host,
        },
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost") || name.parse().is_ok_and(is_loopback)
}

fn is_port(text: &str) -> bool {
    text.strip_prefix(':')
        .unwrap_or(text)
        .parse::<u16>()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAIM: &str = "http://127.0.0.1:8080/#device=abcdefghijklmnop&fp=00ff&claim=s3cr3t";
    const VIEWER: &str = "http://127.0.0.1:8080/#device=abcdefghijklmnop&fp=00ff";

    #[test]
    fn unclaimed_shows_the_claim_link_as_a_qr_code_and_as_text() {
        let html = page("abcdefghijklmnop", VIEWER, Some(CLAIM));
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("abcdefghijklmnop"));
        assert!(html.contains("Claim this camera"));
        assert!(
            html.contains("<svg") && html.contains("</svg>"),
            "a QR code"
        );
        assert!(!html.contains("<?xml"), "no XML prologue inside HTML");
        let escaped = CLAIM.replace('&', "&amp;");
        assert!(
            html.contains(&format!(">{escaped}</a>")),
            "the link as text"
        );
        assert!(!html.contains("has an owner"));
    }

    #[test]
    fn claimed_shows_the_viewer_link_and_no_secret() {
        let html = page("abcdefghijklmnop", VIEWER, None);
        assert!(html.contains("This camera has an owner"));
        assert!(html.contains(&VIEWER.replace('&', "&amp;")));
        assert!(!html.contains("claim=") && !html.contains("<svg"));
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for html in [
            page("abcdefghijklmnop", VIEWER, Some(CLAIM)),
            page("abcdefghijklmnop", VIEWER, None),
        ] {
            for needle in ["<script", "<link", "src=", "url(", "@import"] {
                assert!(!html.contains(needle), "{needle} in {html}");
            }
        }
    }

    #[test]
    fn everything_interpolated_is_escaped() {
        let evil = "<script>alert('x')</script>\"&";
        for html in [page(evil, evil, Some(evil)), page(evil, evil, None)] {
            assert!(!html.contains("<script"), "{html}");
            assert!(!html.contains("'x'"), "{html}");
            assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
        }
        assert_eq!(escape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
    }

    #[test]
    fn only_loopback_peers_are_local() {
        let local = [
            "127.0.0.1:1",
            "127.9.8.7:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ];
        let remote = [
            "192.168.1.20:1",
            "0.0.0.0:1",
            "[::]:1",
            "[::ffff:192.168.1.20]:1",
            // IPv4-compatible (deprecated), not mapped: not how a dual-stack socket reports.
            "[::127.0.0.1]:1",
            "[fe80::1]:1",
        ];
        for text in local {
            assert!(is_local(&text.parse().unwrap()), "{text}");
        }
        for text in remote {
            assert!(!is_local(&text.parse().unwrap()), "{text}");
        }
    }

    #[test]
    fn only_loopback_host_names_are_local() {
        for host in [
            "localhost",
            "LOCALHOST:8080",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in [
            "",
            "cam.example.net",
            "localhost.example.net",
            "evil.localhost:8080",
            "192.168.1.20:8080",
            "127.0.0.1.nip.io",
            "[::1",
            "[::1]x",
            "::1",
        ] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}

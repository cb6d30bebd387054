//! The settings page, rendered on the server (as a camera's own UI is): a plain form that
//! works without JavaScript, which `app.js` enhances with live status.

use std::fmt::Write;

use super::settings::{BITRATE_KBPS, MAX_OVERLAY_CHARS, RESOLUTIONS, Resolution, Settings};
use super::status::Status;
use crate::web::escape;

/// What one rendering of the page shows.
pub struct PageView<'a> {
    pub status: &'a Status,
    /// Page views counted with this one (the cookie the response sets).
    pub visits: u32,
    /// After `POST /settings` redirected here with `?saved=1`.
    pub saved: bool,
    /// Why a submitted change was refused.
    pub error: Option<&'a str>,
}

fn disabled(supported: bool) -> &'static str {
    if supported { "" } else { " disabled" }
}

pub fn render(view: &PageView<'_>) -> String {
    let status = view.status;
    let Settings {
        overlay_text,
        brightness,
        resolution,
        bitrate_kbps,
    } = &status.settings;
    let mut banners = String::new();
    if view.saved {
        banners.push_str(r#"<p id="saved-banner" class="banner ok">Settings saved.</p>"#);
    }
    if let Some(error) = view.error {
        let _ = write!(
            banners,
            r#"<p id="error" class="banner error">Not saved: {}</p>"#,
            escape(error)
        );
    }
    let mut sizes = String::new();
    let current = *resolution;
    let mut offered: Vec<Resolution> = RESOLUTIONS.to_vec();
    if let Some(r) = current.filter(|r| !r.is_offered()) {
        // The chain started at a size the UI does not offer: show it, selected.
        offered.insert(0, r);
    }
    for r in offered {
        let selected = if current == Some(r) { " selected" } else { "" };
        let _ = write!(sizes, r#"<option value="{r}"{selected}>{r}</option>"#);
    }
    let unsupported: Vec<String> = super::settings::FIELDS
        .iter()
        .filter(|f| !status.supported.contains(f))
        .map(|f| format!(r#"<li data-setting="{f}">{f}</li>"#))
        .collect();
    let unsupported_note = if unsupported.is_empty() {
        String::from(r#"<ul id="unsupported" hidden></ul>"#)
    } else {
        format!(
            r#"<p class="note">This capture chain cannot change these settings (it lacks the named element, see docs/pipelines.md):</p><ul id="unsupported">{}</ul>"#,
            unsupported.join("")
        )
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo camera settings</title>
<link rel="stylesheet" href="/static/style.css">
<link rel="icon" href="/static/logo.svg" type="image/svg+xml">
<script src="/static/app.js" defer></script>
</head>
<body>
<header>
  <img id="logo" src="/static/logo.svg" alt="" width="40" height="40">
  <h1>Demo camera</h1>
  <nav><a id="home-link" href="/">Settings</a> · <a id="api-link" href="api/settings">settings as JSON</a></nav>
</header>
<main>
{banners}
<form id="settings-form" method="post" action="/settings" data-supported="{supported}">
  <label for="overlay-text">Overlay text</label>
  <input id="overlay-text" name="overlay_text" type="text" maxlength="{max_chars}" value="{overlay}"{overlay_disabled}>
  <label for="brightness">Brightness <output id="brightness-value" for="brightness">{brightness}</output>%</label>
  <input id="brightness" name="brightness" type="range" min="0" max="100" step="1" value="{brightness}"{brightness_disabled}>
  <label for="resolution">Resolution</label>
  <select id="resolution" name="resolution"{resolution_disabled}>{sizes}</select>
  <label for="bitrate">Bitrate (kbit/s)</label>
  <input id="bitrate" name="bitrate_kbps" type="number" min="{min_kbps}" max="{max_kbps}" step="1" value="{bitrate}"{bitrate_disabled}>
  <div class="buttons">
    <button id="save" type="submit" name="save" value="1">Save</button>
    <button id="apply-live" type="button">Apply without reloading</button>
    <span id="apply-result" role="status"></span>
  </div>
</form>
{unsupported_note}
<section id="status" aria-live="polite">
  <h2>Live status <span id="status-connection">connecting</span></h2>
  <dl>
    <dt>Frame rate</dt><dd><span id="status-fps">{fps}</span> fps</dd>
    <dt>Bitrate</dt><dd><span id="status-bitrate">{measured_kbps}</span> kbit/s</dd>
    <dt>Viewers</dt><dd id="status-viewers">{viewers}</dd>
    <dt>Overlay</dt><dd id="status-overlay">{overlay}</dd>
    <dt>Updates</dt><dd id="status-updates">0</dd>
  </dl>
</section>
<section id="visits">
  <p>Visits counted by the server: <span id="server-visits">{visits}</span>.
  Your cookie says: <span id="cookie-visits">(script not run)</span>.</p>
</section>
</main>
</body>
</html>
"#,
        supported = status.supported.join(" "),
        max_chars = MAX_OVERLAY_CHARS,
        overlay = escape(overlay_text.as_deref().unwrap_or("")),
        overlay_disabled = disabled(overlay_text.is_some()),
        brightness = brightness.unwrap_or(50),
        brightness_disabled = disabled(brightness.is_some()),
        resolution_disabled = disabled(resolution.is_some()),
        min_kbps = BITRATE_KBPS.start(),
        max_kbps = BITRATE_KBPS.end(),
        bitrate = bitrate_kbps.map(|b| b.to_string()).unwrap_or_default(),
        bitrate_disabled = disabled(bitrate_kbps.is_some()),
        fps = status.fps,
        measured_kbps = status.bitrate_kbps,
        viewers = status.viewers,
        visits = view.visits,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(settings: Settings) -> Status {
        let mut status = Status::default();
        status.set_settings(settings);
        status
    }

    #[test]
    fn the_form_shows_the_settings_escaped() {
        let status = status(Settings {
            overlay_text: Some(r#"<b>"hi"</b> & bye"#.into()),
            brightness: Some(60),
            resolution: Some(Resolution::new(1280, 720)),
            bitrate_kbps: Some(1500),
        });
        let html = render(&PageView {
            status: &status,
            visits: 3,
            saved: true,
            error: None,
        });
        assert!(html.contains(r#"value="&lt;b&gt;&quot;hi&quot;&lt;/b&gt; &amp; bye""#));
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains(r#"<option value="1280x720" selected>"#));
        assert!(html.contains(r#"id="saved-banner""#));
        assert!(html.contains(r#"<span id="server-visits">3</span>"#));
        assert!(html.contains(r#"<form id="settings-form" method="post" action="/settings""#));
        assert!(!html.contains(" disabled"), "every control works");
        for link in [
            r#"href="/static/style.css""#,
            r#"src="/static/app.js""#,
            r#"src="/static/logo.svg""#,
            r#"href="api/settings""#,
        ] {
            assert!(html.contains(link), "{link}");
        }
    }

    #[test]
    fn unsupported_settings_are_disabled_and_listed() {
        let status = status(Settings {
            bitrate_kbps: Some(1500),
            resolution: Some(Resolution::new(800, 600)),
            ..Default::default()
        });
        let html = render(&PageView {
            status: &status,
            visits: 1,
            saved: false,
            error: Some("the capture chain has no element named pipe-overlay"),
        });
        assert!(
            html.contains(r#"name="overlay_text" type="text" maxlength="64" value="" disabled"#)
        );
        assert!(html.contains(r#"<li data-setting="brightness">"#));
        assert!(!html.contains(r#"<li data-setting="bitrate_kbps">"#));
        assert!(
            html.contains(r#"<option value="800x600" selected>"#),
            "the current size is shown"
        );
        assert!(html.contains("no element named pipe-overlay"));
        assert!(!html.contains("saved-banner"));
    }
}

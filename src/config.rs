//! The one configuration struct. Read from TOML (`/etc/pipe/pipe.toml` by default), then
//! overridden by command-line flags and `PIPE_*` environment variables (see `cli`). Every key
//! and its default is documented here and in docs/config.md; unknown keys are rejected by name.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/pipe/pipe.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {error}")]
    Parse { path: PathBuf, error: SyntaxError },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub device: DeviceConfig,
    pub video: VideoConfig,
    pub ice: IceConfig,
    pub grants: GrantsConfig,
    pub ui: UiConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsConfig {
    /// Shortest lend the owner may choose, in seconds. Default `900` (15 minutes).
    pub lend_min_secs: u64,
    /// Longest lend, in seconds. Default `604800` (7 days).
    pub lend_max_secs: u64,
    /// How long an unredeemed invite link stays valid, in seconds. Default `86400` (a day).
    pub invite_ttl_secs: u64,
}

impl Default for GrantsConfig {
    /// The grants' own defaults (`LendPolicy`), so the numbers live in one place.
    fn default() -> Self {
        let policy = crate::grants::LendPolicy::default();
        Self {
            lend_min_secs: policy.min_secs,
            lend_max_secs: policy.max_secs,
            invite_ttl_secs: policy.invite_ttl_secs,
        }
    }
}

impl From<&GrantsConfig> for crate::grants::LendPolicy {
    fn from(config: &GrantsConfig) -> Self {
        Self {
            min_secs: config.lend_min_secs,
            max_secs: config.lend_max_secs,
            invite_ttl_secs: config.invite_ttl_secs,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Everything the device persists (identity, later grants). Default `/var/lib/pipe`.
    pub state_dir: PathBuf,
    /// Address the web server (viewer app + embedded rendezvous) binds. Default `0.0.0.0`
    /// (all interfaces, so a LAN browser can reach it); `127.0.0.1` keeps it on this machine.
    pub listen: IpAddr,
    /// Web server port. Default `8080`.
    pub port: u16,
    /// Remote rendezvous (`ws://` or `wss://` URL of its `/signal`). Default: none, the device
    /// embeds its own rendezvous on its web server.
    pub rendezvous: Option<String>,
    /// Capture chain: `auto` (probe and pick the best), a builtin name, or a path to a
    /// `.pipeline` file. Default `auto`.
    pub pipeline: String,
    /// Directory whose `NAME.pipeline` files override the builtin chains. Default
    /// `/etc/pipe/pipelines`.
    pub pipelines_dir: PathBuf,
    /// The one origin the device's links use (claim, lend, viewer), e.g.
    /// `https://cam.example.net` behind TLS. A browser's identity is per origin. Default: none,
    /// links use `http://127.0.0.1:PORT` and lend links work on this machine or LAN only.
    pub public_url: Option<String>,
    /// The registrable domain of the camera UI's origins when `public_url` is HTTPS: the
    /// viewer at `https://cam.example.net` frames `https://ui-<device id>.cam-ui.example.org`
    /// (wildcard DNS and certificate, pointing at the same server). It must not share a site
    /// with `public_url`: a camera UI could then set cookies on the viewer's site. Without it a
    /// viewer on HTTPS gets no camera UI. Default: none.
    pub ui_domain: Option<String>,
    /// Viewer sessions (including ones still negotiating) the device serves at once; more
    /// are refused. Each costs a pipeline and some CPU. Default `16`.
    pub max_sessions: usize,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/pipe"),
            listen: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            rendezvous: None,
            pipeline: "auto".into(),
            pipelines_dir: PathBuf::from("/etc/pipe/pipelines"),
            max_sessions: 16,
            public_url: None,
            ui_domain: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// V4L2 device for camera chains. Default: the one auto-selection finds.
    pub device: Option<String>,
    /// Frame width in pixels. Default `1280`.
    pub width: u32,
    /// Frame height in pixels. Default `720`.
    pub height: u32,
    /// Frames per second: `30`, `29.5` or a fraction `30000/1001`. Default `30`.
    pub framerate: String,
    /// Encoder bitrate in kbit/s, shared by every viewer. Default `2000`.
    pub bitrate_kbps: u32,
    /// An IP camera to re-stream (`rtsp://...`); used by the `rtsp` chain. Default: none.
    pub rtsp_url: Option<String>,
    /// Which viewers are asked to show frames without buffering them: `lan` (default),
    /// `always` or `never` (`media::playout`).
    pub playout_delay: PlayoutDelay,
    /// Height of the low rendition a viewer on a narrow link is moved to (a second encoder
    /// that runs only while such a viewer watches; docs/adaptation.md); `0` turns it off, and
    /// so does a height not under `height`. Default `360`.
    pub low_rendition_height: u32,
}

impl VideoConfig {
    /// The low rendition's height, if there is to be one.
    pub fn low_rendition(&self) -> Option<u32> {
        (self.low_rendition_height != 0 && self.low_rendition_height < self.height)
            .then_some(self.low_rendition_height)
    }
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            device: None,
            width: 1280,
            height: 720,
            framerate: "30".into(),
            bitrate_kbps: 2000,
            rtsp_url: None,
            playout_delay: PlayoutDelay::default(),
            low_rendition_height: 360,
        }
    }
}

/// `[video] playout_delay`: which viewers are asked to show frames without buffering them
/// (the RTP playout-delay hint, `media::playout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlayoutDelay {
    /// Viewers whose ICE path is direct on the local network (little jitter to buffer).
    #[default]
    Lan,
    /// Every viewer: lowest latency, but frames judder on a jittery link.
    Always,
    /// None: the browser sizes its own buffer.
    Never,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IceConfig {
    /// STUN servers (`stun:host:port`) for the device and the viewer. Default: none (host
    /// candidates only, enough on a LAN or loopback). No public server is baked in.
    pub stun_servers: Vec<String>,
    /// TURN servers for the device and the viewer. Default: none.
    pub turn_servers: Vec<TurnServer>,
    /// Lowest UDP port ICE may use. Default: any (with `port_max`, sets a range a firewall or
    /// container can publish).
    pub port_min: Option<u16>,
    /// Highest UDP port ICE may use. Default: any.
    pub port_max: Option<u16>,
    /// An address to advertise besides the host's own (a container's published address or a
    /// 1:1 NAT). Default: none.
    pub advertise_address: Option<IpAddr>,
    /// Also gather ICE-TCP candidates. Default `false`.
    pub tcp: bool,
    /// Let libnice map ports with UPnP (it multicasts SSDP on the LAN). Default `false`.
    pub upnp: bool,
}

/// The camera's own web UI, proxied to granted browsers over datachannels (docs/proxy.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// The one HTTP origin the proxy forwards to (`http://host:port`, no path). Default: the
    /// built-in demo camera UI when the chain is `virtual-webcam`, else `http://127.0.0.1:80`.
    pub upstream: Option<String>,
    /// Port of the built-in demo camera UI, on 127.0.0.1 only. Default `0`: any free port.
    pub demo_port: u16,
    /// Largest request body the proxy forwards, in bytes. Default `67108864` (64 MiB).
    pub max_request_bytes: u64,
    /// Largest response body it forwards, in bytes. Default `1073741824` (1 GiB).
    pub max_response_bytes: u64,
    /// Seconds to connect to the upstream and get its response head. Default `10`.
    pub response_timeout_secs: u64,
    /// Seconds a body may stall (no byte either way) before the exchange is reset. Default `60`.
    pub idle_timeout_secs: u64,
    /// Not a config key: the hidden `--bench-datachannel` flag (`bench-hooks` builds only)
    /// sets it, and the device then serves the raw datachannel ceiling for the benchmark.
    #[cfg(feature = "bench-hooks")]
    #[serde(skip)]
    pub bench_datachannel: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            upstream: None,
            demo_port: 0,
            max_request_bytes: 64 << 20,
            max_response_bytes: 1 << 30,
            response_timeout_secs: 10,
            idle_timeout_secs: 60,
            #[cfg(feature = "bench-hooks")]
            bench_datachannel: false,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnServer {
    /// `turn:host:port?transport=udp` or `turns:host:port`.
    pub url: String,
    pub username: String,
    pub credential: String,
}

impl fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnServer")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A frame rate as the exact fraction GStreamer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framerate {
    pub num: i32,
    pub den: i32,
}

impl Framerate {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (num, den) = if let Some((n, d)) = text.split_once('/') {
            (n.trim().parse().ok()?, d.trim().parse().ok()?)
        } else if let Some((whole, frac)) = text.split_once('.') {
            let den = 10i32.checked_pow(u32::try_from(frac.len()).ok()?)?;
            let value: i32 = format!("{whole}{frac}").parse().ok()?;
            (value, den)
        } else {
            (text.parse().ok()?, 1)
        };
        let g = gcd(num, den);
        (num > 0 && den > 0 && num / den <= 240).then(|| Self {
            num: num / g,
            den: den / g,
        })
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }
}

fn gcd(a: i32, b: i32) -> i32 {
    if b == 0 { a.max(1) } else { gcd(b, a % b) }
}

impl Config {
    /// Reads `path`. A missing file at the default path means "all defaults"; a missing file
    /// the user named is an error.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_owned(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                return Ok(Self::default());
            }
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::from_toml(&text).map_err(|error| ConfigError::Parse { path, error })
    }

    pub fn from_toml(text: &str) -> Result<Self, SyntaxError> {
        toml::from_str(text).map_err(|e| SyntaxError {
            message: e.message().to_string(),
            at: e.span().map(|span| Location::of(text, span.start)),
        })
    }

    /// Checks what serde cannot; run after flags and environment are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        let v = &self.video;
        if !(16..=7680).contains(&v.width) || !v.width.is_multiple_of(2) {
            return invalid("video.width", "must be an even number from 16 to 7680");
        }
        if !(16..=4320).contains(&v.height) || !v.height.is_multiple_of(2) {
            return invalid("video.height", "must be an even number from 16 to 4320");
        }
        if Framerate::parse(&v.framerate).is_none() {
            return invalid(
                "video.framerate",
                "must be a rate like 30, 29.5 or 30000/1001 (at most 240)",
            );
        }
        if !(100..=50_000).contains(&v.bitrate_kbps) {
            return invalid("video.bitrate_kbps", "must be from 100 to 50000");
        }
        if v.low_rendition_height != 0
            && (!(90..=4320).contains(&v.low_rendition_height)
                || !v.low_rendition_height.is_multiple_of(2))
        {
            return invalid(
                "video.low_rendition_height",
                "must be 0 (off) or an even number from 90 to 4320",
            );
        }
        if let Some(url) = &self.device.rendezvous {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "ws" | "wss") => {}
                _ => return invalid("device.rendezvous", "must be a ws:// or wss:// URL"),
            }
        }
        if let Some(url) = &self.device.public_url {
            match url::Url::parse(url) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.path() == "/"
                        && u.fragment().is_none() => {}
                _ => {
                    return invalid(
                        "device.public_url",
                        "must be an http(s):// origin like https://cam.example.net",
                    );
                }
            }
        }
        if let Some(domain) = &self.device.ui_domain {
            let viewer = self
                .device
                .public_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok());
            let problem = match viewer {
                Some(viewer) => ui_domain_problem(&viewer, domain),
                None => Some("needs device.public_url, the HTTPS origin of the viewer".into()),
            };
            if let Some(message) = problem {
                return invalid("device.ui_domain", &message);
            }
        }
        let g = &self.grants;
        if g.lend_min_secs == 0 || g.lend_min_secs > g.lend_max_secs {
            return invalid(
                "grants.lend_min_secs",
                "must be at least 1 and at most grants.lend_max_secs",
            );
        }
        if g.invite_ttl_secs == 0 {
            return invalid("grants.invite_ttl_secs", "must be at least 1");
        }
        if !(1..=256).contains(&self.device.max_sessions) {
            return invalid("device.max_sessions", "must be from 1 to 256");
        }
        if self.device.pipeline.trim().is_empty() {
            return invalid(
                "device.pipeline",
                "must be `auto`, a pipeline name or a path",
            );
        }
        for s in &self.ice.stun_servers {
            if !(s.starts_with("stun:") || s.starts_with("stuns:")) {
                return invalid("ice.stun_servers", "entries look like stun:host:port");
            }
        }
        for t in &self.ice.turn_servers {
            if !(t.url.starts_with("turn:") || t.url.starts_with("turns:")) {
                return invalid(
                    "ice.turn_servers",
                    "url looks like turn:host:port or turns:host:port",
                );
            }
        }
        if let Some(url) = &self.ui.upstream {
            match url::Url::parse(url) {
                Ok(u)
                    if u.scheme() == "http"
                        && u.host().is_some()
                        && u.path() == "/"
                        && u.query().is_none()
                        && u.fragment().is_none()
                        && u.username().is_empty() => {}
                _ => {
                    return invalid(
                        "ui.upstream",
                        "must be an http:// origin like http://127.0.0.1:80 (no path)",
                    );
                }
            }
        }
        if self.ui.response_timeout_secs == 0 || self.ui.idle_timeout_secs == 0 {
            return invalid(
                "ui.response_timeout_secs",
                "ui.response_timeout_secs and ui.idle_timeout_secs must be at least 1",
            );
        }
        match (self.ice.port_min, self.ice.port_max) {
            (Some(lo), Some(hi)) if lo > hi => {
                return invalid("ice.port_min", "must not exceed ice.port_max");
            }
            (Some(_), None) | (None, Some(_)) => {
                return invalid(
                    "ice.port_min",
                    "set both ice.port_min and ice.port_max, or neither",
                );
            }
            _ => {}
        }
        Ok(())
    }

    pub fn framerate(&self) -> Framerate {
        Framerate::parse(&self.video.framerate).expect("validated at load")
    }
}

/// " at line L, column C" for a TOML error span.
/// A config file that is not valid TOML, or names a key or value pipe does not know.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", at.map(|a| format!(" (line {}, column {})", a.line, a.column)).unwrap_or_default())]
pub struct SyntaxError {
    pub message: String,
    pub at: Option<Location>,
}

/// Where in a file, counted from 1 (columns in bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    fn of(text: &str, offset: usize) -> Self {
        let before = &text[..offset.min(text.len())];
        Self {
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().map_or(0, str::len) + 1,
        }
    }
}

/// Why `domain` cannot hold the camera UI's origins for a viewer at `viewer` (an `https://`
/// origin), if it cannot: it must be a DNS name whose registrable domain (by the Public Suffix
/// List, as browsers decide "site") differs from the viewer's. A UI origin on the viewer's
/// site could set `Domain=` cookies there and would share its site-keyed process and storage
/// partition. Used for `device.ui_domain` and `pipe rendezvous --ui-domain`.
pub fn ui_domain_problem(viewer: &url::Url, domain: &str) -> Option<String> {
    if viewer.scheme() != "https" {
        return Some(format!(
            "a camera UI domain is for a viewer on HTTPS, and the viewer is at {}",
            viewer.origin().ascii_serialization()
        ));
    }
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = domain.split('.').count() >= 2
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok || domain.parse::<std::net::IpAddr>().is_ok() {
        return Some(format!(
            "`{domain}` is not a DNS name like cam-ui.example.org"
        ));
    }
    let Some(ui_site) = psl::domain_str(&domain) else {
        return Some(format!(
            "`{domain}` is a public suffix, not a domain of your own"
        ));
    };
    let viewer_host = viewer.host_str().unwrap_or_default().to_ascii_lowercase();
    let viewer_site = psl::domain_str(&viewer_host).unwrap_or(&viewer_host);
    (ui_site == viewer_site).then(|| {
        format!(
            "`{domain}` is on the viewer's site ({viewer_site}), where a camera UI could set \
             cookies for the viewer: use a registrable domain of its own (not below \
             {viewer_site})"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.device.port, 8080);
        assert_eq!(c.device.state_dir, PathBuf::from("/var/lib/pipe"));
        assert_eq!(
            (c.video.width, c.video.height, c.video.bitrate_kbps),
            (1280, 720, 2000)
        );
        assert_eq!(c.framerate(), Framerate { num: 30, den: 1 });
        assert!(!c.ice.upnp && !c.ice.tcp && c.ice.stun_servers.is_empty());
        assert_eq!(c.video.playout_delay, PlayoutDelay::Lan);
        c.validate().unwrap();
    }

    #[test]
    fn reads_every_section() {
        let c = Config::from_toml(
            r#"
            [device]
            port = 9000
            listen = "127.0.0.1"
            rendezvous = "wss://relay.example/signal"
            [video]
            framerate = "29.5"
            playout_delay = "always"
            [ice]
            stun_servers = ["stun:127.0.0.1:3478"]
            turn_servers = [{ url = "turn:127.0.0.1:3478", username = "u", credential = "hunter2" }]
            port_min = 50000
            port_max = 50100
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.device.port, 9000);
        assert_eq!(c.framerate(), Framerate { num: 59, den: 2 });
        assert_eq!(c.video.playout_delay, PlayoutDelay::Always);
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "TURN credentials never reach logs"
        );
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = Config::from_toml("[video]\nwidht = 640\n").unwrap_err();
        assert_eq!(err.at.map(|a| a.line), Some(2));
        let err = err.to_string();
        assert!(err.contains("widht"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = Config::from_toml("[camera]\n").unwrap_err().to_string();
        assert!(err.contains("camera"), "{err}");
        let err = Config::from_toml("[video]\nplayout_delay = \"wan\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("wan") && err.contains("never"), "{err}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("[video]\nwidth = 641", "video.width"),
            ("[video]\nframerate = \"fast\"", "video.framerate"),
            ("[video]\nbitrate_kbps = 1", "video.bitrate_kbps"),
            (
                "[video]\nlow_rendition_height = 361",
                "video.low_rendition_height",
            ),
            (
                "[video]\nlow_rendition_height = 2",
                "video.low_rendition_height",
            ),
            ("[device]\nrendezvous = \"http://x\"", "device.rendezvous"),
            ("[ice]\nport_min = 5", "ice.port_min"),
            ("[ice]\nstun_servers = [\"1.2.3.4\"]", "ice.stun_servers"),
            (
                "[device]\nui_domain = \"cam-ui.example.org\"",
                "device.ui_domain",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(text).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn framerates_parse_as_exact_fractions() {
        assert_eq!(
            Framerate::parse("30000/1001"),
            Some(Framerate {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(Framerate::parse("25"), Some(Framerate { num: 25, den: 1 }));
        assert_eq!(
            Framerate::parse("29.50"),
            Some(Framerate { num: 59, den: 2 })
        );
        assert_eq!(Framerate::parse("0"), None);
        assert_eq!(Framerate::parse("1/0"), None);
    }

    #[test]
    fn a_missing_default_file_means_defaults_but_a_named_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Config::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }

    #[test]
    fn the_camera_ui_domain_is_a_site_of_its_own() {
        let viewer = url::Url::parse("https://cam.example.net").unwrap();
        assert_eq!(ui_domain_problem(&viewer, "cam-ui.example.org"), None);
        assert_eq!(ui_domain_problem(&viewer, "UI.Example-Cams.co.uk."), None);
        for same_site in [
            "example.net",
            "ui.example.net",
            "a.b.example.net",
            "cam.example.net",
        ] {
            let problem = ui_domain_problem(&viewer, same_site).unwrap();
            assert!(problem.contains("viewer's site (example.net)"), "{problem}");
        }
        // The Public Suffix List decides: two customers of one hosting suffix are two sites,
        // two names under one registrable domain are one.
        let hosted = url::Url::parse("https://alice.github.io").unwrap();
        assert_eq!(ui_domain_problem(&hosted, "bob.github.io"), None);
        let uk = url::Url::parse("https://cam.example.co.uk:8443").unwrap();
        assert!(ui_domain_problem(&uk, "ui.example.co.uk").is_some());
        for bad in [
            "co.uk",
            "com",
            "localhost",
            "192.0.2.1",
            "-x.example.org",
            "a..b",
            "a_b.org",
        ] {
            assert!(ui_domain_problem(&viewer, bad).is_some(), "{bad}");
        }
        let plain = url::Url::parse("http://192.168.1.20:8080").unwrap();
        assert!(
            ui_domain_problem(&plain, "cam-ui.example.org")
                .unwrap()
                .contains("HTTPS")
        );
    }
}

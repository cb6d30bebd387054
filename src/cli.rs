//! Command-line interface. Every device flag can also be set with a `PIPE_*` environment
//! variable; flags and variables override the config file, which overrides the defaults.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError};

#[derive(Debug, Parser)]
#[command(
    name = "pipe",
    version,
    about = "Secure remote access to a camera behind NAT, with nothing but a browser."
)]
#[command(
    long_about = "pipe streams a camera to browsers over WebRTC. The device keeps an outbound \
connection to a rendezvous (signalling) server, embedded by default, so it works behind NAT \
without port forwarding.\n\nWith no subcommand, `pipe` runs `pipe device`."
)]
pub struct Cli {
    /// Config file (TOML). Default /etc/pipe/pipe.toml, if it exists.
    #[arg(long, global = true, env = "PIPE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `pipe=debug,warn`.
    #[arg(long, global = true, env = "PIPE_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the camera supervisor: capture, encode once, stream to every authorised viewer
    /// (the default).
    Device(Box<DeviceArgs>),
    /// Run a standalone rendezvous (signalling) server that also serves the viewer app. It
    /// only forwards messages between devices and browsers and holds no keys.
    Rendezvous(RendezvousArgs),
    /// List who may watch this device, or revoke a grant (run on the device, with shell
    /// access; a running device picks up a change within a second).
    Grants(GrantsArgs),
    /// Drop the owner and every grant and invite, return the device to unclaimed and print a
    /// new claim link (run on the device, with shell access).
    ResetOwner(ResetOwnerArgs),
    /// Check this machine for pipe: GStreamer and its elements (with the packages that
    /// provide them), cameras, the capture chain auto-selection would choose and why, the
    /// state directory, the rendezvous. Exits non-zero when pipe cannot stream here. Takes
    /// the device's flags, so it checks what `pipe device` with them would use.
    Doctor(Box<DoctorArgs>),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only check that a running device answers 200 at URL (a container's health check)
    /// [default URL: http://127.0.0.1:PORT/healthz].
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub health: Option<String>,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Default, Args)]
pub struct DeviceArgs {
    /// Directory for everything the device persists [default: /var/lib/pipe].
    #[arg(long, env = "PIPE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Web server port (viewer app and embedded rendezvous) [default: 8080].
    #[arg(long, env = "PIPE_PORT")]
    pub port: Option<u16>,
    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "PIPE_LISTEN")]
    pub listen: Option<IpAddr>,
    /// The one origin the device's links use, e.g. https://cam.example.net [default: http://127.0.0.1:PORT].
    #[arg(long, env = "PIPE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// The camera UI's own registrable domain for a viewer on HTTPS, e.g. cam-ui.example.org
    /// (docs/config.md) [default: none: no camera UI on HTTPS].
    #[arg(long, env = "PIPE_UI_DOMAIN", value_name = "DOMAIN")]
    pub ui_domain: Option<String>,
    /// Remote rendezvous, e.g. wss://relay.example/signal [default: embedded].
    #[arg(long, env = "PIPE_RENDEZVOUS", value_name = "URL")]
    pub rendezvous: Option<String>,
    /// Capture chain: `auto`, a name (virtual-webcam, v4l2-x264, ...) or a .pipeline file.
    #[arg(long, env = "PIPE_PIPELINE", value_name = "NAME|PATH")]
    pub pipeline: Option<String>,
    /// Directory of .pipeline files that override the builtin ones [default: /etc/pipe/pipelines].
    #[arg(long, env = "PIPE_PIPELINES_DIR", value_name = "DIR")]
    pub pipelines_dir: Option<PathBuf>,
    /// V4L2 device for camera chains, e.g. /dev/video0 [default: auto].
    #[arg(long, env = "PIPE_VIDEO_DEVICE", value_name = "PATH")]
    pub video_device: Option<String>,
    /// Frame width [default: 1280].
    #[arg(long, env = "PIPE_WIDTH")]
    pub width: Option<u32>,
    /// Frame height [default: 720].
    #[arg(long, env = "PIPE_HEIGHT")]
    pub height: Option<u32>,
    /// Frame rate: 30, 29.5 or 30000/1001 [default: 30].
    #[arg(long, env = "PIPE_FRAMERATE")]
    pub framerate: Option<String>,
    /// Encoder bitrate in kbit/s, shared by all viewers [default: 2000].
    #[arg(long, env = "PIPE_BITRATE")]
    pub bitrate: Option<u32>,
    /// IP camera to re-stream with the `rtsp` chain.
    #[arg(long, env = "PIPE_RTSP_URL", value_name = "URL")]
    pub rtsp_url: Option<String>,
    /// STUN server (stun:host:port) for device and viewer; repeat for more.
    #[arg(
        long = "stun",
        env = "PIPE_STUN",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub stun_servers: Vec<String>,
    /// The camera web UI the proxy forwards to, an http:// origin [default: http://127.0.0.1:80].
    #[arg(long, env = "PIPE_UI_UPSTREAM", value_name = "URL")]
    pub ui_upstream: Option<String>,
    /// Benchmark hook: serve a `bench-ceiling` datachannel flooded with 64 KiB messages
    /// (docs/benchmarks.md). Only in builds with the `bench-hooks` feature.
    #[cfg(feature = "bench-hooks")]
    #[arg(long, hide = true)]
    pub bench_datachannel: bool,
}

#[derive(Debug, Args)]
pub struct RendezvousArgs {
    /// Port to listen on.
    #[arg(long, env = "PIPE_RENDEZVOUS_PORT", default_value_t = 8443)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, env = "PIPE_RENDEZVOUS_LISTEN", default_value = "0.0.0.0")]
    pub listen: IpAddr,
    /// The URL devices dial (e.g. wss://relay.example/signal, behind a TLS proxy): their
    /// registrations must be signed for its host and port. Without it, for the Host header
    /// of each connection, which a proxy or a relaying rendezvous can set as it likes.
    #[arg(long, env = "PIPE_RENDEZVOUS_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// The camera UI's own registrable domain, as the device's --ui-domain; the viewer origin
    /// is https:// on --public-url's host and port.
    #[arg(
        long,
        env = "PIPE_RENDEZVOUS_UI_DOMAIN",
        value_name = "DOMAIN",
        requires = "public_url"
    )]
    pub ui_domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct GrantsArgs {
    #[command(subcommand)]
    pub command: GrantsCommand,
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Grants (owner, borrowers) and pending invites.
    List(GrantsListArgs),
    /// Revoke a grant, or cancel a pending invite, by its id (from `pipe grants list`).
    Revoke(GrantsRevokeArgs),
}

/// The device's state directory, for the commands that edit it from a shell.
#[derive(Debug, Args)]
pub struct StateDirArg {
    /// The device's state directory [default: the config's device.state_dir, /var/lib/pipe].
    #[arg(long, env = "PIPE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GrantsListArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// Print JSON (times as Unix seconds) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GrantsRevokeArgs {
    /// The grant's or invite's id.
    pub id: String,
    #[command(flatten)]
    pub state: StateDirArg,
}

#[derive(Debug, Args)]
pub struct ResetOwnerArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// The origin the claim link uses, as the device's --public-url [default: http://127.0.0.1:PORT].
    #[arg(long, env = "PIPE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// The device's web server port, for the default origin [default: the config's device.port, 8080].
    #[arg(long, env = "PIPE_PORT")]
    pub port: Option<u16>,
}

impl DeviceArgs {
    /// Applies flags and environment over the file's values, then validates the result.
    pub fn apply(self, mut config: Config) -> Result<Config, ConfigError> {
        let d = &mut config.device;
        set(&mut d.state_dir, self.state_dir);
        set(&mut d.port, self.port);
        set(&mut d.listen, self.listen);
        if self.rendezvous.is_some() {
            d.rendezvous = self.rendezvous;
        }
        if self.public_url.is_some() {
            d.public_url = self.public_url;
        }
        if self.ui_domain.is_some() {
            d.ui_domain = self.ui_domain;
        }
        set(&mut d.pipeline, self.pipeline);
        set(&mut d.pipelines_dir, self.pipelines_dir);
        let v = &mut config.video;
        if self.video_device.is_some() {
            v.device = self.video_device;
        }
        set(&mut v.width, self.width);
        set(&mut v.height, self.height);
        set(&mut v.framerate, self.framerate);
        set(&mut v.bitrate_kbps, self.bitrate);
        if self.rtsp_url.is_some() {
            v.rtsp_url = self.rtsp_url;
        }
        if !self.stun_servers.is_empty() {
            config.ice.stun_servers = self.stun_servers;
        }
        if self.ui_upstream.is_some() {
            config.ui.upstream = self.ui_upstream;
        }
        #[cfg(feature = "bench-hooks")]
        {
            config.ui.bench_datachannel |= self.bench_datachannel;
        }
        config.validate()?;
        Ok(config)
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_are_validated() {
        let file = Config::from_toml("[device]\nport = 9000\n[video]\nwidth = 640\n").unwrap();
        let cli = Cli::try_parse_from(["pipe", "device", "--port", "9100", "--framerate", "29.5"])
            .unwrap();
        let Some(Command::Device(args)) = cli.command else {
            panic!("device")
        };
        let config = args.apply(file).unwrap();
        assert_eq!(config.device.port, 9100);
        assert_eq!(
            config.video.width, 640,
            "file values stay where no flag is given"
        );
        assert_eq!(config.video.framerate, "29.5");

        let cli = Cli::try_parse_from(["pipe", "device", "--width", "7"]).unwrap();
        let Some(Command::Device(args)) = cli.command else {
            panic!("device")
        };
        let err = args.apply(Config::default()).unwrap_err();
        assert!(err.to_string().contains("video.width"), "{err}");
    }

    #[test]
    fn the_ui_upstream_flag_sets_ui_upstream() {
        let parse = |url: &str| {
            let cli = Cli::try_parse_from(["pipe", "device", "--ui-upstream", url]).unwrap();
            let Some(Command::Device(args)) = cli.command else {
                panic!("device")
            };
            args.apply(Config::default())
        };
        let config = parse("http://127.0.0.1:8081").unwrap();
        assert_eq!(config.ui.upstream.as_deref(), Some("http://127.0.0.1:8081"));
        let err = parse("http://127.0.0.1:8081/admin").unwrap_err();
        assert!(err.to_string().contains("ui.upstream"), "{err}");
    }

    #[test]
    fn no_subcommand_means_device() {
        let cli = Cli::try_parse_from(["pipe"]).unwrap();
        assert!(cli.command.is_none());
        Cli::try_parse_from(["pipe", "rendezvous", "--port", "1"]).unwrap();
    }

    #[test]
    fn doctor_takes_the_device_flags_and_an_optional_health_url() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Some(Command::Doctor(args)) => args,
            other => panic!("doctor, got {other:?}"),
        };
        let args = parse(&["pipe", "doctor", "--json", "--port", "9000"]);
        assert!(args.json);
        assert_eq!(args.health, None);
        assert_eq!(
            args.device.apply(Config::default()).unwrap().device.port,
            9000
        );
        assert_eq!(
            parse(&["pipe", "doctor", "--health"]).health.as_deref(),
            Some("")
        );
        let url = "http://127.0.0.1:1/healthz";
        assert_eq!(
            parse(&["pipe", "doctor", "--health", url])
                .health
                .as_deref(),
            Some(url)
        );
    }
}

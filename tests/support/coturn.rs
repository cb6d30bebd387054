//! A private coturn TURN server (Debian's `/usr/bin/turnserver`) for relay tests.
//!
//! Everything it needs is on its command line (`-n`: no config file) and in a temporary
//! directory (its SQLite user database, pid file): no root paths. UDP and TCP on one port, no
//! TLS/DTLS, no CLI, long-term credentials with one static user.
//!
//! It listens and relays on [`ADDRESS`], 127.0.0.2, not 127.0.0.1: in `scripts/netns` the
//! device's libnice gathers on `nsv0` (127.0.0.2) only and pins its sockets to that interface
//! (`IP_UNICAST_IF`), so its sends to 127.0.0.1, which lives on `lo`, fail with EINVAL. A
//! relay on 127.0.0.1 would take the browser's packets but could never reach the device.
//! Outside the namespace all of 127.0.0.0/8 is local, so the address works there too.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// coturn starts in well under a second; 10 s allows for a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Relay ports per server: each allocation takes one, and a test makes a few at most.
const RELAY_PORTS: u16 = 16;

pub const USER: &str = "pipe";
pub const PASSWORD: &str = "secret";
pub const REALM: &str = "pipe";
/// Where it listens and allocates relay ports (see the module comment for why not 127.0.0.1).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

pub struct Coturn {
    /// Its listening port (UDP and TCP) on ADDRESS.
    pub port: u16,
    /// Relay addresses are allocated on ADDRESS in this inclusive range.
    pub relay_ports: (u16, u16),
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Coturn {
    /// Starts `$TURNSERVER` (default `/usr/bin/turnserver`) and waits until it answers a STUN
    /// binding request on its UDP port.
    pub fn start() -> Result<Coturn> {
        let exe = std::env::var_os("TURNSERVER").unwrap_or_else(|| "/usr/bin/turnserver".into());
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let relay_ports = free_range(port)?;
        let mut child = Command::new(&exe)
            .args([
                "-n",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--no-software-attribute",
            ])
            .args(["--allow-loopback-peers", "--lt-cred-mech"])
            .args(["--user", &format!("{USER}:{PASSWORD}"), "--realm", REALM])
            .args(["--listening-ip", &ADDRESS.to_string()])
            .args(["--relay-ip", &ADDRESS.to_string()])
            .args(["--listening-port", &port.to_string()])
            .args(["--min-port", &relay_ports.0.to_string()])
            .args(["--max-port", &relay_ports.1.to_string()])
            .args(["--log-file", "stdout", "--simple-log", "--verbose"])
            // Without these it would use /var/lib/turn/turndb and /var/run or /var/tmp.
            .arg("--userdb")
            .arg(dir.path().join("turndb"))
            .arg("--pidfile")
            .arg(dir.path().join("turnserver.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("starting {exe:?} (Debian package coturn; or set $TURNSERVER)")
            })?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("piped")),
            Box::new(child.stderr.take().expect("piped")),
        ];
        for stream in streams {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().expect("coturn log lock").push(line);
                }
            });
        }
        let mut coturn = Coturn {
            port,
            relay_ports,
            child,
            log,
            _dir: dir,
        };
        coturn.wait_ready()?;
        Ok(coturn)
    }

    /// `turn:127.0.0.2:PORT?transport=udp`, as the device config and RTCIceServer spell it.
    pub fn url(&self) -> String {
        format!("turn:{ADDRESS}:{}?transport=udp", self.port)
    }

    /// What coturn printed so far (for failure messages).
    pub fn log(&self) -> String {
        self.log.lock().expect("coturn log lock").join("\n")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let socket = UdpSocket::bind((ADDRESS, 0))?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let server = SocketAddr::from((ADDRESS, self.port));
        let request = binding_request();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("turnserver exited ({status}) at start:\n{}", self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "turnserver did not answer STUN on {server} within {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            // An ICMP port-unreachable before it binds shows up as an error here: retry.
            if socket.send_to(&request, server).is_ok() {
                let mut buf = [0u8; 1500];
                if let Ok((n, from)) = socket.recv_from(&mut buf)
                    && from == server
                    && is_binding_success(&buf[..n], &request)
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A STUN Binding request (RFC 5389): type 0x0001, no attributes, the magic cookie and a
/// transaction id.
fn binding_request() -> [u8; 20] {
    let mut msg = [0u8; 20];
    msg[..2].copy_from_slice(&0x0001u16.to_be_bytes());
    msg[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    let id = std::process::id().to_be_bytes();
    msg[8..12].copy_from_slice(&id);
    msg[12..20].copy_from_slice(b"pipetest");
    msg
}

/// A Binding success response (0x0101) to `request` (same magic cookie and transaction id).
fn is_binding_success(reply: &[u8], request: &[u8; 20]) -> bool {
    reply.len() >= 20 && reply[..2] == [0x01, 0x01] && reply[4..20] == request[4..20]
}

/// A port free for both UDP and TCP on ADDRESS (coturn listens on both).
fn free_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind((ADDRESS, 0))?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((ADDRESS, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on {ADDRESS}")
}

/// RELAY_PORTS consecutive UDP ports free on ADDRESS, below Linux's ephemeral range
/// (32768 and up) so the browser's and the device's own sockets do not land in it. Where to
/// look depends on `seed`, so two servers started side by side pick different ranges.
fn free_range(seed: u16) -> Result<(u16, u16)> {
    const LOW: u16 = 20_000;
    const SLOTS: u16 = 12_000 / RELAY_PORTS;
    for attempt in 0..SLOTS {
        let slot = (seed.wrapping_add(attempt.wrapping_mul(7))) % SLOTS;
        let lo = LOW + slot * RELAY_PORTS;
        let hi = lo + RELAY_PORTS - 1;
        if (lo..=hi).all(|p| UdpSocket::bind((ADDRESS, p)).is_ok()) {
            return Ok((lo, hi));
        }
    }
    bail!("no {RELAY_PORTS} consecutive free UDP ports on {ADDRESS} from {LOW}")
}

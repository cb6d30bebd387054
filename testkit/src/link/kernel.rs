//! The kernel's part of the emulated link, on `lo` of the test's own network namespace: an HTB
//! class per direction with a drop-tail FIFO (the bottleneck and its queue), chosen by the
//! device's UDP ports (nftables sets the packet's priority to the class), and an NFQUEUE rule
//! per direction that hands packets to the userspace stage when delay, jitter, loss or a
//! blackout is wanted. Nothing else on `lo` (page loads, signalling, the test's own
//! connections) is touched.

use std::ops::RangeInclusive;
use std::process::Command;

use super::LinkError;
use super::spec::Shape;

/// The HTB classes: `1:1` everything else (unshaped), `1:10` from the device, `1:20` to it.
pub const UP_CLASS: u32 = 0x10;
pub const DOWN_CLASS: u32 = 0x20;
/// The NFQUEUE numbers of the userspace stage.
pub const UP_QUEUE: u16 = 710;
pub const DOWN_QUEUE: u16 = 720;
const TABLE: &str = "pipe_link";
/// What "not capped" means on loopback.
const UNCAPPED: &str = "10gbit";

/// The programs, each named once (tests/debian_packages.rs finds them here).
fn tc() -> Command {
    Command::new("tc")
}

fn iptables(v6: bool) -> Command {
    if v6 {
        Command::new("ip6tables")
    } else {
        Command::new("iptables")
    }
}

/// Runs `command` with `args`; its stdout, or what it said on stderr.
pub fn run(mut command: Command, args: &[&str]) -> Result<String, LinkError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let described = || format!("{program} {}", args.join(" "));
    let out = command
        .args(args)
        .output()
        .map_err(|e| LinkError::Command {
            command: described(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(LinkError::Command {
            command: described(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rate(shape: &Shape) -> String {
    shape
        .rate_kbps
        .map_or_else(|| UNCAPPED.to_string(), |k| format!("{k}kbit"))
}

/// Sets up both classes, their queues and the classification.
pub fn install(
    ports: &RangeInclusive<u16>,
    up: &Shape,
    down: &Shape,
    stage: bool,
) -> Result<(), LinkError> {
    run(
        tc(),
        &[
            "qdisc", "replace", "dev", "lo", "root", "handle", "1:", "htb", "default", "1",
        ],
    )?;
    run(
        tc(),
        &[
            "class", "replace", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate",
            UNCAPPED,
        ],
    )?;
    for (class, shape) in [(UP_CLASS, up), (DOWN_CLASS, down)] {
        set_class(class, shape, "replace")?;
    }
    let (lo, hi) = (ports.start(), ports.end());
    let rules = format!(
        "table inet {TABLE} {{
            chain out {{
                type filter hook output priority 0; policy accept;
                udp sport {lo}-{hi} meta priority set 1:{UP_CLASS:x}
                udp dport {lo}-{hi} meta priority set 1:{DOWN_CLASS:x}
            }}
        }}"
    );
    nft_from_text(&rules)?;
    if stage {
        for v6 in [false, true] {
            for rule in queue_rules(ports) {
                let mut args = vec!["-A"];
                args.extend(rule.iter().map(String::as_str));
                run(iptables(v6), &args)?;
            }
        }
    }
    Ok(())
}

/// `nft -f -` reads the rules from stdin.
fn nft_from_text(rules: &str) -> Result<String, LinkError> {
    use std::io::Write;
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| LinkError::Command {
            command: "nft -f -".into(),
            message: e.to_string(),
        })?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(rules.as_bytes())
        .map_err(|e| LinkError::Command {
            command: "nft -f -".into(),
            message: e.to_string(),
        })?;
    let out = child.wait_with_output().map_err(|e| LinkError::Command {
        command: "nft -f -".into(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(LinkError::Command {
            command: format!("nft -f - <<< {rules}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::new())
}

/// The NFQUEUE rules (iptables arguments after `-A`/`-D`). `--queue-bypass`: with no stage
/// bound, packets pass instead of being dropped.
fn queue_rules(ports: &RangeInclusive<u16>) -> [Vec<String>; 2] {
    let range = format!("{}:{}", ports.start(), ports.end());
    let rule = |flag: &str, queue: u16| {
        [
            "OUTPUT",
            "-p",
            "udp",
            flag,
            &range,
            "-j",
            "NFQUEUE",
            "--queue-num",
            &queue.to_string(),
            "--queue-bypass",
        ]
        .map(String::from)
        .to_vec()
    };
    [rule("--sport", UP_QUEUE), rule("--dport", DOWN_QUEUE)]
}

/// Sets one direction's rate and queue depth (`replace` at install, `change` later).
pub fn set_class(class: u32, shape: &Shape, verb: &str) -> Result<(), LinkError> {
    let classid = format!("1:{class:x}");
    let rate = rate(shape);
    run(
        tc(),
        &[
            "class", verb, "dev", "lo", "parent", "1:", "classid", &classid, "htb", "rate", &rate,
            "ceil", &rate,
        ],
    )?;
    let handle = format!("{class:x}:");
    let limit = shape.queue_packets.max(1).to_string();
    run(
        tc(),
        &[
            "qdisc", "replace", "dev", "lo", "parent", &classid, "handle", &handle, "pfifo",
            "limit", &limit,
        ],
    )?;
    Ok(())
}

/// Takes it all away again (best effort: called from a drop guard).
pub fn remove(ports: &RangeInclusive<u16>, stage: bool) {
    if stage {
        for v6 in [false, true] {
            for rule in queue_rules(ports) {
                let mut args = vec!["-D"];
                args.extend(rule.iter().map(String::as_str));
                let _ = run(iptables(v6), &args);
            }
        }
    }
    let _ = run(Command::new("nft"), &["delete", "table", "inet", TABLE]);
    let _ = run(tc(), &["qdisc", "del", "dev", "lo", "root"]);
}

/// Packets sent and dropped by one direction's bottleneck so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent_packets: u64,
    pub sent_bytes: u64,
    pub dropped: u64,
}

/// From the class's FIFO (`tc -s -j qdisc`): a drop there is the bottleneck's queue overflowing.
pub fn counters(class: u32) -> Result<Counters, LinkError> {
    let text = run(tc(), &["-s", "-j", "qdisc", "show", "dev", "lo"])?;
    let qdiscs: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| LinkError::Command {
            command: "tc -s -j qdisc show dev lo".into(),
            message: e.to_string(),
        })?;
    let handle = format!("{class:x}:");
    let found = qdiscs
        .as_array()
        .into_iter()
        .flatten()
        .find(|q| q["handle"] == handle.as_str());
    let Some(q) = found else {
        return Ok(Counters::default());
    };
    let number = |key: &str| q[key].as_u64().unwrap_or(0);
    Ok(Counters {
        sent_packets: number("packets"),
        sent_bytes: number("bytes"),
        dropped: number("drops"),
    })
}

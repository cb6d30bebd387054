//! Guard for tests that open peer connections: they must run where the only addresses are
//! loopback (`scripts/netns`), or ICE would gather and probe this machine's real addresses.

use std::net::IpAddr;
use std::process::Command;

use serde_json::Value;

/// Panics unless every address on every interface is in 127.0.0.0/8 or is ::1.
pub fn require_loopback_only() {
    let out = Command::new("ip")
        .args(["-j", "addr"])
        .output()
        .expect("running `ip -j addr` (iproute2: scripts/setup-deps test installs it)");
    assert!(out.status.success(), "`ip -j addr` failed: {out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("`ip -j addr` prints JSON");
    let others = non_loopback_addresses(&json);
    assert!(
        others.is_empty(),
        "run this test through scripts/test or scripts/netns: ICE would otherwise use this \
         machine's LAN addresses (found {})",
        others.join(", ")
    );
}

/// "ifname addr" for each address in `ip -j addr` output that is not loopback. An address
/// that does not parse counts as not loopback: when unsure, refuse.
pub fn non_loopback_addresses(ip_j_addr: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for iface in ip_j_addr.as_array().into_iter().flatten() {
        let name = iface["ifname"].as_str().unwrap_or("?");
        for info in iface["addr_info"].as_array().into_iter().flatten() {
            let local = info["local"].as_str().unwrap_or("?");
            let loopback = local.parse::<IpAddr>().is_ok_and(|a| a.is_loopback());
            if !loopback {
                found.push(format!("{name} {local}"));
            }
        }
    }
    found
}

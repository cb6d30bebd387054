//! Two Chromium viewers of one device, only one of them behind a narrow link
//! (`PIPE_BENCH_TWO=<kbit/s>`): the shared encoder must not give the unconstrained viewer the
//! constrained one's picture (issue 13: the low rendition).
//!
//! Both are pages of one browser with one certificate, each in a window of its own (the second
//! joins once the first has redeemed the lend link). The link emulator shapes only the device's UDP port of the second
//! viewer's session, read from that page's selected ICE candidate pair once it plays: the
//! second viewer starts on an open link and then meets the narrow one, as a phone that walks
//! out of Wi-Fi range does. Both are measured together, from `PIPE_BENCH_SETTLE` s (default
//! 10) after the link narrowed, for the phase.

use std::time::Duration;

use anyhow::{Context, Result};
use pipe_testkit::link::{Emulator, Link, Scenario, Shape};

use super::support::chromium::Browser;
use super::support::device::Device;
use super::{Phase, Processes, env_number, measure, open_viewer, open_viewer_in, pct};

pub async fn run(
    kbps: u32,
    phase: Duration,
    browser: &Browser,
    device: Device,
    invite: &str,
) -> Result<()> {
    println!("  link      viewer 1 unconstrained; viewer 2 behind {kbps} kbit/s, 40-packet queue");
    let (open, _) = open_viewer(browser, &device, invite).await?;
    let origin_url = device.url.clone();
    let (narrow, _) = open_viewer_in(browser, &device, &origin_url, true).await?;
    let port = narrow.eval(super::common::DEVICE_PORT).await?;
    let port = port
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .with_context(|| format!("no selected candidate pair on the second page: {port}"))?;
    let emulator = Emulator::start(
        port..=port,
        Scenario::steady(Link::uplink(Shape::capped(kbps))),
    )?;
    let settle = Duration::from_secs(env_number("PIPE_BENCH_SETTLE").unwrap_or(10));
    tokio::time::sleep(settle).await;
    let processes = Processes {
        device: device.pid(),
        browser: browser.pid(),
    };
    let (wide, slow) = tokio::try_join!(
        measure(&open, &processes, phase),
        measure(&narrow, &processes, phase)
    )?;
    let (up, _) = emulator.counters()?;
    println!(
        "{:<44} {:>15} {:>15}   target (issue 13)",
        "metric", "viewer 1", "viewer 2"
    );
    let row = |name: &str, f: &dyn Fn(&Phase) -> String, target: &str| {
        println!("{name:<44} {:>15} {:>15}   {target}", f(&wide), f(&slow));
    };
    row(
        "video received (inbound-rtp bytes)",
        &|p| {
            format!(
                "{:.0} kbit/s",
                p.delta("bytesReceived") * 8.0 / p.seconds / 1000.0
            )
        },
        "1: >= 1500 kbit/s",
    );
    row(
        "fps shown",
        &|p| format!("{:.1}", p.delta("presented") / p.seconds),
        "1: >= 28; 2: >= 15",
    );
    row(
        "latency p50 / p95",
        &|p| {
            let l = p.column(1);
            format!("{:.1} / {:.1} ms", pct(&l, 50.0), pct(&l, 95.0))
        },
        "2: p95 <= 200 ms",
    );
    row(
        "frozen (totalFreezesDuration) / freezes",
        &|p| {
            format!(
                "{:.2} s / {:.0}",
                p.delta("totalFreezesDuration"),
                p.delta("freezeCount")
            )
        },
        &format!("2: <= {:.2} s", wide.seconds / 60.0),
    );
    row(
        "frame height (last)",
        &|p| {
            p.stats_after["frameHeight"]
                .as_f64()
                .map_or("?".into(), |h| format!("{h:.0}"))
        },
        "",
    );
    row(
        "frames timed / unreadable",
        &|p| format!("{} / {}", p.samples.len(), p.undecoded),
        "",
    );
    row(
        "packets lost / PLIs / key frames",
        &|p| {
            format!(
                "{:.0} / {:.0} / {:.0}",
                p.delta("packetsLost"),
                p.delta("pliCount"),
                p.delta("keyFramesDecoded")
            )
        },
        "",
    );
    println!(
        "{:<44} {:>15}",
        "link 2: sent / dropped at the queue",
        format!("{} / {}", up.sent_packets, up.dropped)
    );
    println!("{:<44} {:>14.0}%", "device CPU", wide.device_cpu);
    if std::env::var_os("PIPE_BENCH_DEVICE_LOG").is_some() {
        println!("\n--- device log ---\n{}", device.log());
    }
    drop(emulator);
    open.close().await?;
    narrow.close().await?;
    device.stop()?;
    Ok(())
}

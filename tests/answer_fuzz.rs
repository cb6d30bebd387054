//! A structural fuzzer of answers against a running device (issue: "a stranger can crash the
//! camera with one message"): answers captured from Chromium, aiortc and Firefox
//! (tests/data/sdp) mutated the ways that reach webrtcbin's assertions: m-section order and
//! kinds, mids, directions, BUNDLE groups, setup roles, fingerprints, ICE credentials,
//! candidates. Every case is sent by a stranger at a live device; the device must answer it
//! (an `end`, or the session going on) and stay alive, and at the end it is back to its
//! baseline with no GLib critical. Seeded and reproducible: PIPE_FUZZ_SEED (default 1) and
//! PIPE_FUZZ_CASES (default 300).

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::device::Device;
use support::raw::Raw;

fn sample(name: &str) -> String {
    let path = format!("{}/tests/data/sdp/{name}.sdp", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// An SDP as its session part and its m-sections, each a list of lines.
struct Sdp {
    session: Vec<String>,
    media: Vec<Vec<String>>,
}

impl Sdp {
    fn parse(text: &str) -> Sdp {
        let mut session = Vec::new();
        let mut media: Vec<Vec<String>> = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if line.starts_with("m=") {
                media.push(vec![line.to_string()]);
            } else if let Some(m) = media.last_mut() {
                m.push(line.to_string());
            } else {
                session.push(line.to_string());
            }
        }
        Sdp { session, media }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for line in self.session.iter().chain(self.media.iter().flatten()) {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out
    }

    fn any_section(&mut self, rng: &mut StdRng) -> &mut Vec<String> {
        let i = rng.random_range(0..self.media.len());
        &mut self.media[i]
    }

    /// Replaces lines starting with `prefix` in one section (or adds one) with `line`.
    fn set(&mut self, rng: &mut StdRng, prefix: &str, line: Option<String>) {
        let section = self.any_section(rng);
        section.retain(|l| !l.starts_with(prefix));
        if let Some(line) = line {
            section.push(line);
        }
    }
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// One structural mutation; returns what it did, for the failure message.
fn mutate(sdp: &mut Sdp, rng: &mut StdRng) -> String {
    match rng.random_range(0..14) {
        0 => {
            let (a, b) = (
                rng.random_range(0..sdp.media.len()),
                rng.random_range(0..sdp.media.len()),
            );
            sdp.media.swap(a, b);
            format!("swap m-sections {a} and {b}")
        }
        1 => {
            let kind = pick(rng, &["audio", "video", "application", "text"]);
            let section = sdp.any_section(rng);
            let rest = section[0]
                .split_once(' ')
                .map(|(_, r)| r.to_string())
                .unwrap_or_default();
            section[0] = format!("m={kind} {rest}");
            format!("kind {kind}")
        }
        2 => {
            let mid = pick(rng, &["video0", "audio1", "application2", "0", "zzz", ""]);
            sdp.set(rng, "a=mid:", Some(format!("a=mid:{mid}")));
            format!("mid {mid:?}")
        }
        3 => {
            let dir = pick(rng, &["sendrecv", "sendonly", "recvonly", "inactive"]);
            let section = sdp.any_section(rng);
            section.retain(|l| {
                !matches!(
                    l.as_str(),
                    "a=sendrecv" | "a=sendonly" | "a=recvonly" | "a=inactive"
                )
            });
            if rng.random_bool(0.8) {
                section.push(format!("a={dir}"));
            }
            if rng.random_bool(0.2) {
                section.push("a=sendrecv".into());
            }
            format!("direction {dir}")
        }
        4 => {
            let group = pick(
                rng,
                &[
                    "a=group:BUNDLE application2 audio1 video0",
                    "a=group:BUNDLE audio1 video0 application2",
                    "a=group:BUNDLE video0",
                    "a=group:BUNDLE zzz video0",
                    "a=group:BUNDLE",
                    "a=group:LS video0 audio1",
                ],
            );
            sdp.session
                .retain(|l| !l.starts_with("a=group:") || rng.random_bool(0.3));
            sdp.session.push(group.to_string());
            format!("group {group:?}")
        }
        5 => {
            let setup = pick(
                rng,
                &[
                    "actpass", "active", "passive", "holdconn", "ACTIVE", "bogus",
                ],
            );
            sdp.set(rng, "a=setup:", Some(format!("a=setup:{setup}")));
            format!("setup {setup}")
        }
        6 => {
            let fp = pick(
                rng,
                &[
                    "a=fingerprint:sha-256 00:11",
                    "a=fingerprint:sha-1 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01",
                    "a=fingerprint:md5 AB:CD",
                    "a=fingerprint:sha-256 ZZ:ZZ",
                ],
            );
            let keep = rng.random_bool(0.5);
            sdp.set(
                rng,
                if keep {
                    "a=fingerprint:x"
                } else {
                    "a=fingerprint:"
                },
                Some(fp.to_string()),
            );
            format!("fingerprint {fp:?} (kept others: {keep})")
        }
        7 => {
            sdp.session.push("a=ice-ufrag:dup1".into());
            sdp.session.push("a=ice-ufrag:dup2".into());
            sdp.session
                .push("a=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa".into());
            sdp.session
                .push("a=ice-pwd:bbbbbbbbbbbbbbbbbbbbbbbb".into());
            for section in &mut sdp.media {
                section.retain(|l| !l.starts_with("a=ice-ufrag") && !l.starts_with("a=ice-pwd"));
            }
            "duplicate session-level ICE credentials".into()
        }
        8 => {
            let c = pick(
                rng,
                &[
                    "a=candidate:1 1 UDP 1 0.0.0.0 9 typ host",
                    "a=candidate:1 1 UDP 1 224.0.0.1 9 typ host",
                    "a=candidate:1 2 UDP 1 127.0.0.1 9 typ host",
                    "a=candidate:1 1 TCP 1 127.0.0.1 9 typ host",
                    "a=candidate:1 1 UDP 1 evil.example 9 typ host",
                    "a=candidate:x",
                    "a=candidate:1 1 UDP 99999999999 127.0.0.1 9 typ host",
                ],
            );
            sdp.any_section(rng).push(c.to_string());
            format!("candidate {c:?}")
        }
        9 => {
            let n = rng.random_range(30..200);
            let section = sdp.any_section(rng);
            for i in 0..n {
                section.push(format!(
                    "a=candidate:{i} 1 UDP 1 127.0.{}.{} 9 typ host",
                    i / 250,
                    i % 250 + 1
                ));
            }
            format!("{n} candidates")
        }
        10 => {
            let section = sdp.any_section(rng);
            let dup: Vec<String> = section
                .iter()
                .filter(|l| l.starts_with("a="))
                .take(3)
                .cloned()
                .collect();
            section.extend(dup);
            "duplicated attributes".into()
        }
        11 => {
            let i = rng.random_range(0..sdp.media.len());
            let removed = sdp.media.remove(i);
            if rng.random_bool(0.5) {
                sdp.media.push(removed);
                format!("m-section {i} moved last")
            } else {
                format!("m-section {i} removed")
            }
        }
        12 => {
            let section = sdp.any_section(rng);
            let port = pick(rng, &["0", "65536", "-1", "9"]);
            let parts: Vec<&str> = section[0].splitn(3, ' ').collect();
            if parts.len() == 3 {
                section[0] = format!("{} {port} {}", parts[0], parts[2]);
            }
            format!("port {port}")
        }
        _ => {
            let line = pick(
                rng,
                &[
                    "a=ssrc:1 cname:x",
                    "a=ice-lite",
                    "a=extmap:0 urn:x",
                    "a=rtpmap:96 VP8/90000",
                    "a=sctp-port:0",
                ],
            );
            sdp.any_section(rng).push(line.to_string());
            format!("line {line:?}")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_answers_never_take_the_device_down() {
    support::netns::require_loopback_only();
    let seed: u64 = std::env::var("PIPE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let cases: usize = std::env::var("PIPE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut rng = StdRng::seed_from_u64(seed);
    let device = Device::test_picture(160, 120, &["--bitrate", "200"]).unwrap();
    let url = device.signal_url();
    let me = device.device_id.clone();
    let log = |what: &str| format!("{what}\n--- device log ---\n{}", device.log());
    let bases: Vec<String> = ["chrome_answer", "aiortc_answer", "firefox_answer"]
        .iter()
        .map(|n| sample(n))
        .collect();
    let started = Instant::now();
    let (mut ended, mut going_on) = (0usize, 0usize);
    for case in 0..cases {
        let base = &bases[rng.random_range(0..bases.len())];
        let mut sdp = Sdp::parse(base);
        let what: Vec<String> = (0..rng.random_range(1..=3))
            .map(|_| mutate(&mut sdp, &mut rng))
            .collect();
        // A source address per case: the rendezvous limits connects per source, and a
        // stranger with one address would be held to a connect a second.
        let source = Ipv4Addr::new(127, 1, (case / 200) as u8, (case % 200 + 1) as u8);
        let mut stranger = Raw::open_from(&url, source).await;
        let session = stranger.connect_until_offer(&me).await;
        stranger
            .send_json(json!({"type": "signal", "session_id": session,
                "data": {"sdp": {"type": "answer", "sdp": sdp.text()}}}))
            .await;
        let deadline = Instant::now() + Duration::from_millis(1500);
        loop {
            match stranger
                .next(deadline.saturating_duration_since(Instant::now()))
                .await
            {
                Ok(m) if m["type"] == "end" => {
                    ended += 1;
                    break;
                }
                Ok(_) => continue,
                Err(e) if e.starts_with("nothing within") => {
                    going_on += 1;
                    break;
                }
                Err(e) => panic!(
                    "{}",
                    log(&format!(
                        "case {case} (seed {seed}): the socket failed ({e}) after {what:?}"
                    ))
                ),
            }
        }
        if case % 25 == 24 {
            stranger.ping_pong().await;
            let status = device.status().await;
            assert!(
                status["pipeline"].is_string(),
                "{}",
                log(&format!("case {case}: {status}"))
            );
        }
    }
    println!(
        "  {cases} mutated answers (seed {seed}) in {:.1} s: {ended} ended by the device, {going_on} still negotiating when left",
        started.elapsed().as_secs_f32()
    );
    // Alive, and back to no viewer pipelines once the strangers' sessions have timed out.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = device.status().await;
        if status["viewer_pipelines"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            log(&format!("pipelines left: {status}"))
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!device.log().contains("panicked"), "{}", log("a panic"));
    let criticals = device.glib_criticals();
    assert!(
        criticals.is_empty(),
        "{}",
        log(&format!("GLib criticals: {criticals:?}"))
    );
}

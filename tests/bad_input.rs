//! Bad input at the device's embedded rendezvous: malformed, oversized, misaddressed and
//! half-finished signalling. Each gets the error docs/protocol.md names, no socket is closed
//! that the protocol keeps open, sessions left half-negotiated are torn down, and through
//! all of it a viewer keeps watching and a new one can still join.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use pipe::signalling::protocol::DeviceId;
use pipe_testkit::receiver::{self, Receiver};
use serde_json::{Value, json};
use support::device::Device;
use support::raw::{ANSWER, Raw};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How soon a vanished viewer's pipeline must be gone (docs/protocol.md, Lifetimes).
const TEARDOWN: Duration = Duration::from_secs(2);
/// The device's answer deadline (session::machine, `ANSWER_TIMEOUT`): a viewer that never answers is ended then.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the watching viewer may go without a frame (at 30 fps, ~45 frames).
const MAX_STALL: Duration = Duration::from_millis(1500);

async fn viewer_pipelines(device: &Device) -> u64 {
    device.status().await["viewer_pipelines"]
        .as_u64()
        .expect("/api/status has viewer_pipelines")
}

/// The device seen from outside: its threads and fds, and its live viewer pipelines.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Snapshot {
    threads: usize,
    fds: usize,
    viewer_pipelines: u64,
    viewer_elements: u64,
}

impl Snapshot {
    async fn take(device: &Device) -> Snapshot {
        let status = device.status().await;
        Snapshot {
            threads: device.threads(),
            fds: device.fds(),
            viewer_pipelines: status["viewer_pipelines"]
                .as_u64()
                .expect("viewer_pipelines"),
            viewer_elements: status["viewer_elements"].as_u64().expect("viewer_elements"),
        }
    }

    /// Once two samples 500 ms apart agree on the thread count (at most 5 s): the threads
    /// that served a viewer's set-up are gone by then.
    async fn quiet(device: &Device) -> Snapshot {
        let mut last = Snapshot::take(device).await;
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = Snapshot::take(device).await;
            if now.threads == last.threads || Instant::now() > until {
                return now;
            }
            last = now;
        }
    }

    /// Threads, fds and elements within ±2, pipelines exactly.
    fn near(&self, base: &Snapshot) -> bool {
        self.threads.abs_diff(base.threads) <= 2
            && self.fds.abs_diff(base.fds) <= 2
            && self.viewer_elements.abs_diff(base.viewer_elements) <= 2
            && self.viewer_pipelines == base.viewer_pipelines
    }
}

/// Polls until the device has `want` live viewer pipelines; returns how long that took, or
/// `Err(last count)` after `within`.
async fn pipelines_become(device: &Device, want: u64, within: Duration) -> Result<Duration, u64> {
    let start = Instant::now();
    loop {
        let now = viewer_pipelines(device).await;
        if now == want {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            return Err(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The viewer that connects and never answers, but keeps its socket alive with `ping`s: it
/// waits for the device to give up (`end`), and says how long after the offer that came.
async fn silent_viewer(url: String, device: String) -> Result<(String, Duration), String> {
    let mut raw = Raw::open(&url).await;
    raw.connect_until_offer(&device).await;
    let offered = Instant::now();
    while offered.elapsed() < ANSWER_TIMEOUT + Duration::from_secs(10) {
        match raw.next(Duration::from_secs(2)).await {
            Ok(message) if message["type"] == "end" => {
                let reason = message["reason"].as_str().unwrap_or_default().to_owned();
                return Ok((reason, offered.elapsed()));
            }
            Ok(_) => {}
            // Quiet for a while: well inside the server's 30 s silence limit, say something.
            Err(e) if e.starts_with("nothing within") => {
                raw.send_json(json!({"type": "ping"})).await
            }
            Err(e) => return Err(e),
        }
    }
    Err(format!(
        "no end within {:?} of the offer",
        offered.elapsed()
    ))
}

/// Samples a viewer's frame counter every 50 ms and remembers the longest time between two
/// samples that saw it advance (~50-100 ms when all is well).
struct FrameWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Duration>,
}

impl FrameWatch {
    fn start(viewer: Arc<Receiver>) -> FrameWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut frames, mut since) = (viewer.stats().frames, Instant::now());
            let mut longest = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = viewer.stats().frames;
                if now != frames {
                    longest = longest.max(since.elapsed());
                    (frames, since) = (now, Instant::now());
                }
            }
            longest.max(since.elapsed())
        });
        FrameWatch { stop, task }
    }

    async fn finish(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the frame watch does not panic")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signalling_is_refused_and_the_device_keeps_serving() {
    support::netns::require_loopback_only();
    let started = Instant::now();
    let device = Device::test_picture(320, 240, &["--bitrate", "500"]).unwrap();
    let (url, me) = (device.signal_url(), device.device_id.clone());
    let id = DeviceId::parse(&me).unwrap();
    let log = |what: &str| format!("{what}\n--- device log ---\n{}", device.log());
    let stamp = |what: &str| println!("{:5.1} s  {what}", started.elapsed().as_secs_f32());

    // One viewer watches through everything.
    let watcher = Arc::new(
        receiver::connect(&url, id.clone(), device.owner(false))
            .await
            .unwrap(),
    );
    if let Err(s) = watcher
        .wait_for(Duration::from_secs(20), |s| s.frames >= 30)
        .await
    {
        panic!("{}", log(&format!("the watcher got only {s:?}")));
    }
    let watched = watcher
        .stats()
        .session_id
        .expect("the watcher has a session");
    let baseline = Snapshot::quiet(&device).await;
    let baseline_threads = device.thread_names();
    assert_eq!(
        baseline.viewer_pipelines,
        1,
        "{}",
        log("one viewer, one pipeline")
    );
    let frames = FrameWatch::start(watcher.clone());
    stamp("watcher receiving");

    // The silent viewer: it has its offer, never answers, and the device gives up on it at
    // the answer deadline (5 s), not the 30 s connect timeout.
    let silent = tokio::spawn(silent_viewer(url.clone(), me.clone()));
    if let Err(n) = pipelines_become(&device, 2, ANSWER).await {
        panic!(
            "{}",
            log(&format!("the silent viewer's pipeline: {n} live"))
        );
    }
    let (reason, after) = silent
        .await
        .expect("the silent viewer does not panic")
        .unwrap_or_else(|e| panic!("{}", log(&format!("the silent viewer: {e}"))));
    assert!(
        reason.contains("no answer")
            && after >= ANSWER_TIMEOUT - Duration::from_millis(500)
            && after <= ANSWER_TIMEOUT + Duration::from_secs(3),
        "the device gave up on the silent viewer after {after:?}: {reason}"
    );
    let live: u64 = 1; // the watcher
    if let Err(n) = pipelines_become(&device, live, TEARDOWN).await {
        panic!(
            "{}",
            log(&format!(
                "the silent viewer's pipeline outlived its end: {n} live"
            ))
        );
    }
    stamp(&format!(
        "silent viewer ended after {:.1} s: {reason}",
        after.as_secs_f32()
    ));

    // Malformed messages, one socket, which stays open through all of them.
    let mut bad = Raw::open(&url).await;
    let other_device = if me == "aaaaaaaaaaaaaaaa" {
        "bbbbbbbbbbbbbbbb"
    } else {
        "aaaaaaaaaaaaaaaa"
    };
    let text = |s: &str| Message::text(s.to_owned());
    let json = |v: Value| Message::text(v.to_string());
    let two_payloads = json!({"type": "signal", "session_id": "x", "data": {
        "sdp": {"type": "answer", "sdp": "v=0"},
        "ice": {"candidate": "c", "sdp_m_line_index": 0},
    }});
    let pranswer = json!({"type": "signal", "session_id": "x", "data": {
        "sdp": {"type": "pranswer", "sdp": "v=0"},
    }});
    let cases: Vec<(&str, Message, &str)> = vec![
        ("garbage text", text("garbage"), "bad-message"),
        ("empty text", text(""), "bad-message"),
        (
            "truncated JSON",
            text(r#"{"type":"connect","device_id":"#),
            "bad-message",
        ),
        ("a JSON array", text("[1,2,3]"), "bad-message"),
        ("a JSON string", text(r#""ping""#), "bad-message"),
        (
            "no type",
            text(r#"{"device_id":"aaaaaaaaaaaaaaaa"}"#),
            "bad-message",
        ),
        ("a numeric type", text(r#"{"type":7}"#), "bad-message"),
        (
            "a binary frame",
            Message::binary(vec![0u8, 159, 146, 150]),
            "bad-message",
        ),
        (
            "an unknown type",
            text(r#"{"type":"teleport"}"#),
            "unknown-type",
        ),
        (
            "a server-only type",
            text(r#"{"type":"session-request","session_id":"x"}"#),
            "unknown-type",
        ),
        (
            "a type of 10 KiB",
            json(json!({"type": "x".repeat(10 * 1024)})),
            "unknown-type",
        ),
        (
            "connect without device_id",
            text(r#"{"type":"connect"}"#),
            "bad-message",
        ),
        (
            "connect with a numeric id",
            text(r#"{"type":"connect","device_id":5}"#),
            "bad-message",
        ),
        (
            "signal without data",
            text(r#"{"type":"signal","session_id":"x"}"#),
            "bad-message",
        ),
        (
            "signal with other data",
            text(r#"{"type":"signal","session_id":"x","data":{"v":1}}"#),
            "bad-message",
        ),
        (
            "signal with two payloads",
            json(two_payloads),
            "bad-message",
        ),
        ("an sdp of type pranswer", json(pranswer), "bad-message"),
        (
            "end without session_id",
            text(r#"{"type":"end"}"#),
            "bad-message",
        ),
        (
            "a 100 KiB message",
            json(json!({"type": "ping", "pad": "x".repeat(100 * 1024)})),
            "too-large",
        ),
        (
            "connect to an unknown device",
            json(json!({"type": "connect", "device_id": other_device})),
            "device-offline",
        ),
    ];
    let mut malformed_ids: Vec<String> = vec![
        String::new(),
        "short".into(),
        me.to_uppercase(),
        format!("{}1", &me[..15]),
        format!("{me}a"),
        format!("{}-", &me[..15]),
        "é".repeat(8),
    ];
    malformed_ids.dedup();
    let connects: Vec<(String, Message)> = malformed_ids
        .iter()
        .map(|bad_id| {
            let m = json!({"type": "connect", "device_id": bad_id}).to_string();
            (format!("connect to device id {bad_id:?}"), Message::text(m))
        })
        .chain(std::iter::once((
            "register a malformed id".to_owned(),
            text(r#"{"type":"register","device_id":"NOT-A-DEVICE-ID!"}"#),
        )))
        .collect();
    for (what, message, code) in cases {
        bad.send(message).await;
        bad.expect_error(code, what).await;
    }
    for (what, message) in connects {
        bad.send(message).await;
        bad.expect_error("bad-device-id", &what).await;
    }
    bad.ping_pong().await;
    stamp("malformed messages refused, socket still open");

    // Sessions that do not exist, or are someone else's: the watcher's live one, and a
    // half-negotiated one of a raw viewer that then vanishes without a word.
    for (session, code) in [
        ("nope", "unknown-session"),
        (watched.0.as_str(), "not-in-session"),
    ] {
        let ice =
            json!({"candidate": "candidate:1 1 UDP 1 127.0.0.1 9 typ host", "sdp_m_line_index": 0});
        let answer = json!({"sdp": {"type": "answer", "sdp": "v=0\r\n"}});
        for message in [
            json!({"type": "signal", "session_id": session, "data": {"ice": ice}}),
            json!({"type": "signal", "session_id": session, "data": answer}),
            json!({"type": "end", "session_id": session, "reason": "hijack"}),
        ] {
            bad.send_json(message.clone()).await;
            let error = bad.expect_error(code, &message.to_string()).await;
            assert_eq!(error["session_id"], session, "{error}");
        }
    }
    let mut vanishing = Raw::open(&url).await;
    let half = vanishing.connect_until_offer(&me).await;
    if let Err(n) = pipelines_become(&device, live + 1, ANSWER).await {
        panic!(
            "{}",
            log(&format!("the vanishing viewer's pipeline: {n} live"))
        );
    }
    bad.send_json(json!({"type": "end", "session_id": half, "reason": "hijack"}))
        .await;
    bad.expect_error("not-in-session", "end of another's half-negotiated session")
        .await;
    assert_eq!(
        viewer_pipelines(&device).await,
        live + 1,
        "{}",
        log("nobody else can end a session")
    );
    drop(vanishing); // the TCP connection closes: no `end`, no close frame
    let vanished = pipelines_become(&device, live, TEARDOWN)
        .await
        .unwrap_or_else(|n| {
            panic!(
                "{}",
                log(&format!(
                    "a viewer vanished mid-negotiation; {n} pipelines after {TEARDOWN:?}"
                ))
            )
        });
    stamp(&format!(
        "vanished mid-negotiation: torn down in {} ms",
        vanished.as_millis()
    ));

    // Answers the device cannot use end the session they belong to, and only that one.
    let mut confused = Raw::open(&url).await;
    let mut unusable = vec![
        (
            "an offer instead of an answer".to_string(),
            json!({"sdp": {"type": "offer", "sdp": "v=0\r\n"}}),
        ),
        (
            "an answer that is not SDP".to_string(),
            json!({"sdp": {"type": "answer", "sdp": "garbage"}}),
        ),
        (
            "an answer with no media".to_string(),
            json!({"sdp": {"type": "answer", "sdp":
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}}),
        ),
    ];
    // Answers that made webrtcbin 1.22 abort the whole device (exit 134) when handed to it as
    // they came: m-sections in another order (with an old-style or two-format data section,
    // so webrtcbin reaches `_get_final_direction`), a BUNDLE group led by the data section,
    // duplicate session-level ICE credentials. tests/data/sdp; the device's offer has the
    // same mids (video0 audio1 application2).
    for name in [
        "reordered_twofmt",
        "reordered_oldsctp",
        "reordered_answer",
        "hostile_bundle_first_app",
        "hostile_dup_session_ufrag",
        "hostile_dup_session_pwd",
    ] {
        let path = format!("{}/tests/data/sdp/{name}.sdp", env!("CARGO_MANIFEST_DIR"));
        let sdp = std::fs::read_to_string(&path).expect("an SDP fixture");
        unusable.push((
            format!("the answer {name}"),
            json!({"sdp": {"type": "answer", "sdp": sdp}}),
        ));
    }
    for (what, data) in unusable {
        let session = confused.connect_until_offer(&me).await;
        confused
            .send_json(json!({"type": "signal", "session_id": session, "data": data}))
            .await;
        let end = confused.expect("end").await;
        assert_eq!(end["session_id"], session.as_str(), "{end}");
        println!(
            "         {what}: the device ended the session: {}",
            end["reason"]
        );
        if let Err(n) = pipelines_become(&device, live, TEARDOWN).await {
            panic!(
                "{}",
                log(&format!("after {what}: {n} pipelines after {TEARDOWN:?}"))
            );
        }
    }
    confused.ping_pong().await;
    stamp("unusable answers end their own sessions");

    // Nonsense from inside the watcher's live session: candidates the device cannot use are
    // ignored, a malformed message is refused, and the session goes on.
    for candidate in [
        json!({"candidate": "candidate:garbage", "sdp_m_line_index": 0}),
        json!({"candidate": "", "sdp_m_line_index": 0}),
        json!({"candidate": "candidate:1 1 UDP 1 127.0.0.1 9 typ host", "sdp_m_line_index": 99}),
        json!({"candidate": "candidate:1 1 UDP 1 256.1.1.1 99999 typ host", "sdp_m_line_index": 0}),
    ] {
        let message =
            json!({"type": "signal", "session_id": watched.0, "data": {"ice": candidate}});
        assert!(
            watcher.send_raw(message.to_string()),
            "the watcher is running"
        );
    }
    assert!(watcher.send_raw("{not json"), "the watcher is running");
    if let Err(s) = watcher
        .wait_for(ANSWER, |s| {
            s.errors.iter().any(|e| e.starts_with("bad-message:"))
        })
        .await
    {
        panic!("the watcher hears bad-message for its malformed message: {s:?}");
    }
    let before = watcher.stats().frames;
    if let Err(s) = watcher
        .wait_for(Duration::from_secs(2), |s| s.frames >= before + 30)
        .await
    {
        panic!(
            "{}",
            log(&format!(
                "the watcher stalled after garbage candidates: {s:?}"
            ))
        );
    }
    stamp("garbage candidates in a live session ignored");

    // Too many sessions on one socket: at most eight are open at once at the rendezvous (a
    // ninth while eight are open is refused), and the device keeps at most four of them
    // waiting for an answer (it ends the oldest for each new one, which frees its place at the
    // rendezvous). Messages on one socket come in the rendezvous's order, so counting sessions
    // and ends here sees exactly what it sees.
    let mut greedy = Raw::open(&url).await;
    for _ in 0..9 {
        greedy
            .send_json(json!({"type": "connect", "device_id": me}))
            .await;
    }
    let (mut open, mut answered, mut refused) = (0usize, 0usize, 0usize);
    while answered < 9 {
        let message = greedy
            .next(ANSWER)
            .await
            .unwrap_or_else(|e| panic!("greedy: {e}"));
        match message["type"].as_str() {
            Some("session") => {
                open += 1;
                answered += 1;
                assert!(open <= 8, "more than eight sessions open on one socket");
            }
            Some("end") => open -= 1,
            Some("error") => {
                assert_eq!(message["code"], "too-many-sessions", "{message}");
                assert_eq!(open, 8, "refused with {open} open: {message}");
                refused += 1;
                answered += 1;
            }
            _ => {}
        }
    }
    println!("         nine connects on one socket: {refused} refused as the ninth of eight open");
    tokio::time::sleep(ANSWER / 5).await;
    let parked = viewer_pipelines(&device).await;
    assert!(
        parked <= live + 4,
        "{}",
        log(&format!(
            "{parked} pipelines with {live} live: over four parked"
        ))
    );
    drop(greedy);
    match pipelines_become(&device, live, TEARDOWN).await {
        Ok(t) => stamp(&format!(
            "nine connects: eight sessions, too-many-sessions, all torn down in {} ms",
            t.as_millis()
        )),
        Err(n) => panic!(
            "{}",
            log(&format!(
                "eight sessions of a vanished socket: {n} live after {TEARDOWN:?}"
            ))
        ),
    }

    // A 10 MB message: over the 1 MiB WebSocket limit, so the socket is closed with 1009
    // (or, if the server's close frame is lost under the unread data, just closed).
    let big = Raw::open(&url).await;
    let (mut sink, mut stream) = big.ws.split();
    let sender = tokio::spawn(async move {
        let payload = json!({"type": "ping", "pad": "x".repeat(10 * 1024 * 1024)}).to_string();
        sink.send(Message::text(payload)).await
    });
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(frame))) => break Ok(frame),
                Some(Ok(Message::Text(text))) => break Err(format!("answered: {text}")),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break Err(format!("socket error: {e}")),
                None => break Err("ended without a close frame".into()),
            }
        }
    })
    .await
    .expect("the 10 MB message ends the connection within 10 s");
    let sent = tokio::time::timeout(ANSWER, sender).await;
    match &outcome {
        Ok(Some(frame)) => assert_eq!(frame.code, CloseCode::Size, "{frame:?}"),
        Ok(None) => panic!("closed without a code after a 10 MB message"),
        Err(e) => assert!(!e.starts_with("answered"), "{e}"),
    }
    stamp(&format!(
        "10 MB message: {outcome:?} (sender: {:?})",
        sent.map(|r| r.map(|r| r.map_err(|e| e.to_string())))
    ));
    bad.ping_pong().await;

    // Through all of it the watcher kept watching, and a new viewer can still join.
    let newcomer = receiver::connect(&url, id.clone(), device.owner(true))
        .await
        .unwrap();
    match newcomer
        .wait_for(Duration::from_secs(20), |s| s.distinct_frames >= 30)
        .await
    {
        Ok(s) => stamp(&format!(
            "newcomer decodes: {}x{}, {} distinct frames",
            s.width, s.height, s.distinct_frames
        )),
        Err(s) => panic!("{}", log(&format!("the newcomer got only {s:?}"))),
    }
    let stall = frames.finish().await;
    let stats = watcher.stats();
    println!(
        "watcher: {} frames, longest gap {stall:?}, errors heard {:?}",
        stats.frames, stats.errors
    );
    assert!(
        stats.ended.is_none(),
        "the watcher's session lives: {stats:?}"
    );
    assert!(
        stall <= MAX_STALL,
        "the watcher went {stall:?} without a frame"
    );
    assert!(
        !device.log().contains("panicked"),
        "{}",
        log("the device panicked")
    );
    newcomer.close().await;
    // The raw sockets still open held an fd each on the device; close them properly first.
    for mut raw in [bad, confused] {
        let _ = tokio::time::timeout(ANSWER, raw.ws.close(None)).await;
    }
    // Everything the bad input made is gone again: back to the watcher's own pipeline, and
    // threads, fds and elements where they were before it (±2, as in tests/churn.rs).
    if let Err(n) = pipelines_become(&device, 1, TEARDOWN).await {
        panic!(
            "{}",
            log(&format!("the newcomer's pipeline outlived it: {n} live"))
        );
    }
    let settle = Instant::now();
    // Idle threads leave on their own: tokio's blocking pool after 2 s without work (the
    // nine-connect burst started that many at once), GLib's pool after 15 s. Polling
    // /api/status would itself give the blocking pool work and keep its threads alive, so
    // the wait reads /proc only.
    while settle.elapsed() < Duration::from_secs(25)
        && device.threads().abs_diff(baseline.threads) > 2
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let after = Snapshot::take(&device).await;
    println!(
        "baseline {baseline:?}\nafter    {after:?} (settled in {:.1} s)",
        settle.elapsed().as_secs_f32()
    );
    assert!(
        after.near(&baseline),
        "{}",
        log(&format!(
            "the device did not return to its baseline\nthreads before: {baseline_threads}\nthreads after:  {}\n{}",
            device.thread_names(),
            device.stacks()
        ))
    );
    let criticals = device.glib_criticals();
    assert!(
        criticals.is_empty(),
        "{}",
        log(&format!(
            "GLib criticals in the device:\n{}",
            criticals.join("\n")
        ))
    );
    Arc::try_unwrap(watcher)
        .unwrap_or_else(|_| panic!("the frame watch let go of the watcher"))
        .close()
        .await;
    if std::env::var_os("DUMP_DEVICE_LOG").is_some() {
        println!("{}", device.log());
    }
    let exit = device.stop().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    stamp("done");
}

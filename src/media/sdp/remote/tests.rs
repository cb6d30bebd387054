use super::*;

fn sample(name: &str) -> String {
    let path = format!("{}/tests/data/sdp/{name}.sdp", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn offer() -> Offer {
    Offer::parse(&sample("offer")).expect("webrtcbin's offer parses")
}

#[test]
fn browser_and_aiortc_answers_pass_and_rewrite_to_answers_that_pass_again() {
    let offer = offer();
    for name in ["chrome_answer", "aiortc_answer", "firefox_answer"] {
        let answer = Answer::check(&offer, &sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = answer.to_sdp(&offer);
        let again = Answer::check(&offer, &written)
            .unwrap_or_else(|e| panic!("{name} rewritten: {e}\n{written}"));
        assert_eq!(
            again.to_sdp(&offer),
            written,
            "{name}: writing is a fixed point"
        );
        assert_eq!(again.fingerprint(), answer.fingerprint());
        // Nothing the checks did not look at survives: no ssrc, msid, ice-options or lite.
        for dropped in [
            "a=ssrc",
            "a=msid",
            "a=ice-options",
            "a=ice-lite",
            "a=end-of-candidates",
        ] {
            assert!(
                !written.contains(dropped),
                "{name}: {dropped} kept:\n{written}"
            );
        }
    }
}

#[test]
fn the_playout_delay_extension_counts_as_kept_only_under_its_id() {
    let offer = offer();
    let uri = "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay";
    let chrome = sample("chrome_answer");
    assert!(
        Answer::check(&offer, &chrome)
            .unwrap()
            .kept_extension(5, uri)
    );
    let moved = chrome.replace(&format!("a=extmap:5 {uri}"), &format!("a=extmap:4 {uri}"));
    assert!(
        !Answer::check(&offer, &moved)
            .unwrap()
            .kept_extension(5, uri)
    );
    let dropped = chrome.replace(&format!("a=extmap:5 {uri}\r\n"), "");
    assert!(
        !Answer::check(&offer, &dropped)
            .unwrap()
            .kept_extension(5, uri)
    );
}

#[test]
fn aiortc_fingerprints_of_other_hashes_are_allowed_and_sha256_is_used() {
    let text = sample("aiortc_answer");
    assert!(
        text.contains("sha-384") && text.contains("sha-512"),
        "the sample has all three"
    );
    let answer = Answer::check(&offer(), &text).expect("aiortc's answer");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("a=fingerprint:sha-256 "))
        .expect("a sha-256 line");
    assert_eq!(Some(answer.fingerprint()), Fingerprint::parse(line));
}

#[test]
fn answers_that_abort_webrtcbin_or_do_not_answer_the_offer_are_refused() {
    let offer = offer();
    // Each of the first four aborted webrtcbin 1.22 (exit 134) when handed as is.
    for (name, why) in [
        (
            "reordered_answer",
            "the answer's m-sections are not the offer's, in its order",
        ),
        (
            "reordered_twofmt",
            "an m-section of a kind or transport the device does not offer",
        ),
        (
            "reordered_oldsctp",
            "an m-section of a kind or transport the device does not offer",
        ),
        (
            "hostile_bundle_first_app",
            "the answer's BUNDLE group is not the offer's",
        ),
        (
            "hostile_dup_session_ufrag",
            "a session-level attribute given twice",
        ),
        (
            "hostile_dup_session_pwd",
            "a session-level attribute given twice",
        ),
        (
            "hostile_kind_swap",
            "the answer's m-sections are not the offer's, in its order",
        ),
        (
            "hostile_fewer",
            "the answer does not have the offer's m-sections",
        ),
        (
            "hostile_no_bundle",
            "the answer needs exactly one a=group:BUNDLE and no other group",
        ),
        (
            "hostile_group_ls_first",
            "the answer needs exactly one a=group:BUNDLE and no other group",
        ),
        (
            "hostile_bundle_partial",
            "the answer's BUNDLE group is not the offer's",
        ),
        (
            "hostile_bundle_unknown_mid",
            "the answer's BUNDLE group is not the offer's",
        ),
        (
            "hostile_bundle_first_audio",
            "the answer's BUNDLE group is not the offer's",
        ),
        (
            "hostile_two_dirs",
            "an m-section whose direction does not answer the offer's",
        ),
        ("hostile_two_mids", "each m-section needs exactly one a=mid"),
        (
            "hostile_setup_actpass",
            "an m-section whose setup is not active or passive",
        ),
        (
            "hostile_video_port0",
            "the answer rejects an m-section (port 0)",
        ),
        (
            "hostile_rtpmap",
            "a payload type whose rtpmap is not the offer's",
        ),
    ] {
        match Answer::check(&offer, &sample(name)) {
            Err(Refused(got)) => assert_eq!(got, why, "{name}"),
            Ok(a) => panic!("{name} passed:\n{}", a.to_sdp(&offer)),
        }
    }
}

#[test]
fn what_the_checks_do_not_use_is_not_passed_on() {
    let offer = offer();
    // `bundle-only` on a section the offer bundles, extmap ids out of range (0, 300): harmless
    // once written from the model, which keeps only what the offer had.
    for name in ["hostile_bundle_only_video", "hostile_extmap_ids"] {
        let answer = Answer::check(&offer, &sample(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let written = answer.to_sdp(&offer);
        assert!(!written.contains("bundle-only"), "{name}:\n{written}");
        for line in written.lines().filter(|l| l.starts_with("a=extmap:")) {
            assert_eq!(
                line, "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
                "{name}"
            );
        }
    }
    let empty = sample("hostile_bundle_empty");
    assert!(Answer::check(&offer, &empty).is_err());
}

#[test]
fn hostile_bytes_are_refused_before_parsing() {
    let offer = offer();
    let chrome = sample("chrome_answer");
    let big = format!("{chrome}{}", "a=x-pad:0123456789\r\n".repeat(2000));
    assert_eq!(
        Answer::check(&offer, &big).unwrap_err(),
        Refused("too large")
    );
    let nul = chrome.replacen("a=setup:active", "a=setup:active\0", 1);
    assert_eq!(
        Answer::check(&offer, &nul).unwrap_err(),
        Refused("a control character")
    );
    let cr = chrome.replacen("a=setup:active\r\n", "a=setup:active\ra=x\r\n", 1);
    assert_eq!(
        Answer::check(&offer, &cr).unwrap_err(),
        Refused("a CR without LF")
    );
}

#[test]
fn candidates_are_rebuilt_in_one_form_or_refused() {
    let offer = offer();
    let ok = |text: &str| trickled_candidate(&offer, text, 0);
    assert_eq!(
        ok("candidate:842163049 1 udp 1677729535 192.0.2.7 50000 typ srflx raddr 10.0.0.2 rport 50000 generation 0 ufrag abcd network-cost 999").unwrap(),
        "candidate:842163049 1 UDP 1677729535 192.0.2.7 50000 typ srflx raddr 10.0.0.2 rport 50000"
    );
    assert_eq!(
        ok("a=candidate:1 1 UDP 2130706431 127.0.0.2 9 typ host").unwrap(),
        "candidate:1 1 UDP 2130706431 127.0.0.2 9 typ host"
    );
    assert!(
        ok("candidate:1 1 udp 1 9e2f8d3c-1b2a-4c5d-8e9f-0a1b2c3d4e5f.local 5000 typ host").is_ok()
    );
    for bad in [
        "",
        "candidate:garbage",
        "candidate:1 1 UDP 1 256.1.1.1 99999 typ host",
        "candidate:1 2 UDP 1 192.0.2.7 5000 typ host",
        "candidate:1 1 UDP 1 0.0.0.0 5000 typ host",
        "candidate:1 1 UDP 1 224.0.0.1 5000 typ host",
        "candidate:1 1 UDP 1 evil.example.com 5000 typ host",
        "candidate:1 1 UDP 1 192.0.2.7 0 typ host",
        "candidate:1 1 TCP 1 192.0.2.7 5000 typ host",
        "candidate:1 1 UDP 99999999999 192.0.2.7 5000 typ host",
        "candidate:1 1 UDP 1 192.0.2.7 5000 typ host\r\na=candidate:2 1 UDP 1 192.0.2.8 5000 typ host",
        "a=fingerprint:sha-256 AB",
    ] {
        assert!(ok(bad).is_err(), "{bad:?} passed");
    }
    assert_eq!(
        trickled_candidate(&offer, "candidate:1 1 UDP 1 192.0.2.7 5000 typ host", 99).unwrap_err(),
        Refused("a candidate for an m-line the offer does not have")
    );
}

proptest::proptest! {
    /// Whatever a stranger sends, checking never panics, and whatever passes writes an answer
    /// that passes again unchanged.
    #[test]
    fn mutated_answers_never_panic_and_what_passes_is_stable(
        seed in proptest::collection::vec((0usize..200, 0usize..6, "[ -~]{0,24}"), 1..6),
        base in 0usize..3,
    ) {
        let offer = offer();
        let names = ["chrome_answer", "aiortc_answer", "firefox_answer"];
        let mut lines: Vec<String> = sample(names[base]).lines().map(str::to_string).collect();
        for (at, op, text) in seed {
            let at = at % (lines.len() + 1);
            match op {
                0 if at < lines.len() => { lines.remove(at); }
                1 => lines.insert(at, text),
                2 if at < lines.len() => { let l = lines[at].clone(); lines.insert(at, l); }
                3 if at < lines.len() => { let l = lines.remove(at); lines.push(l); }
                4 if at < lines.len() => lines[at].push_str(&text),
                _ if at < lines.len() => { let i = (at * 7) % lines.len(); lines.swap(at, i); }
                _ => {}
            }
        }
        let text = lines.join("\r\n") + "\r\n";
        if let Ok(answer) = Answer::check(&offer, &text) {
            let written = answer.to_sdp(&offer);
            let again = Answer::check(&offer, &written).expect("a written answer passes");
            proptest::prop_assert_eq!(again.to_sdp(&offer), written);
        }
    }
}

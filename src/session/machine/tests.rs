//! The session's decisions, with no GStreamer and no clock: real SDP (webrtcbin's offer and
//! browsers' answers from `tests/data/sdp`), time as `Instant`s the test makes up.

use super::*;
use crate::grants::{Role, Scope};
use crate::media::capture::CameraState;
use crate::media::playout::PathEnd;

fn sample(name: &str) -> String {
    let path = format!("{}/tests/data/sdp/{name}.sdp", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const OWNER: Access = Access {
    role: Role::Owner,
    scope: Scope::ViewUi,
    expires_at: None,
};
const VIEW: Access = Access {
    role: Role::Borrower,
    scope: Scope::View,
    expires_at: Some(100),
};

fn config() -> Config {
    Config {
        fingerprint: Fingerprint::of_der(b"device"),
        profile_level_id: Some("42e01f".into()),
        advertise_address: None,
        playout: PlayoutDelay::Lan,
        bench_datachannel: false,
    }
}

fn answer(name: &str) -> SignalData {
    SignalData::Sdp(Sdp {
        kind: SdpKind::Answer,
        sdp: sample(name),
    })
}

/// The fingerprint Chrome's sample answer announces.
fn chrome() -> Fingerprint {
    let offer = remote::Offer::parse(&sample("offer")).unwrap();
    remote::Answer::check(&offer, &sample("chrome_answer"))
        .unwrap()
        .fingerprint()
}

fn ended(actions: &[Action]) -> Option<&Ending> {
    match actions.last() {
        Some(Action::End(ending)) => Some(ending),
        _ => None,
    }
}

/// A session driven by hand: `t` seconds after its start.
struct Run {
    session: Session,
    start: Instant,
}

impl Run {
    fn new() -> Self {
        Self::with(config())
    }

    fn with(config: Config) -> Self {
        let start = Instant::now();
        Self {
            session: Session::new(config, start),
            start,
        }
    }

    fn at(&mut self, secs: f64, input: Input) -> Vec<Action> {
        let now = self.start + Duration::from_secs_f64(secs);
        self.session.handle(input, now)
    }

    /// Offered and answered with Chrome's answer.
    fn answered() -> Self {
        let mut run = Self::new();
        run.at(0.0, Input::Offered(sample("offer")));
        run.at(0.05, Input::Remote(answer("chrome_answer")));
        run
    }

    /// Answered, connected and checked with `access`.
    fn connected(access: Option<Access>) -> Self {
        let mut run = Self::answered();
        run.at(0.3, Input::Peer(PeerState::Connected));
        run.at(
            0.3,
            Input::Certificate {
                peer: chrome(),
                access,
                renewal_offered: false,
            },
        );
        run
    }
}

#[test]
fn the_offer_goes_out_with_the_device_fingerprint_and_the_capture_profile() {
    let mut run = Run::new();
    let actions = run.at(0.0, Input::Offered(sample("offer")));
    let [Action::Signal(SignalData::Sdp(offer))] = actions.as_slice() else {
        panic!("{actions:?}");
    };
    assert_eq!(offer.kind, SdpKind::Offer);
    assert_eq!(
        sdp::fingerprint(&offer.sdp),
        Some(config().fingerprint),
        "{}",
        offer.sdp
    );
    assert!(offer.sdp.contains("profile-level-id="), "{}", offer.sdp);

    let mut run = Run::new();
    let actions = run.at(0.0, Input::Offered("v=0\r\nnot an offer".into()));
    assert!(
        matches!(ended(&actions), Some(Ending::ByDevice(r)) if r.starts_with("own offer")),
        "{actions:?}"
    );
}

#[test]
fn a_checked_answer_is_handed_on_rewritten_and_the_slot_moves_on() {
    let mut run = Run::new();
    run.at(0.0, Input::Offered(sample("offer")));
    let actions = run.at(0.05, Input::Remote(answer("chrome_answer")));
    assert_eq!(actions.len(), 2, "{actions:?}");
    assert_eq!(actions[0], Action::Admit(Phase::Unverified));
    let Action::SetAnswer(text) = &actions[1] else {
        panic!("{actions:?}");
    };
    assert!(!text.contains("a=ssrc"), "written from the model: {text}");
    assert!(remote::Answer::check(&remote::Offer::parse(&sample("offer")).unwrap(), text).is_ok());
}

#[test]
fn bad_answers_a_second_answer_and_offers_end_the_session_before_webrtcbin_sees_them() {
    for (input, why) in [
        (answer("hostile_kind_swap"), "unusable answer"),
        (answer("reordered_answer"), "unusable answer"),
        (
            SignalData::Sdp(Sdp {
                kind: SdpKind::Offer,
                sdp: sample("offer"),
            }),
            "the device makes the offer",
        ),
    ] {
        let mut run = Run::new();
        run.at(0.0, Input::Offered(sample("offer")));
        let actions = run.at(0.1, Input::Remote(input));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::SetAnswer(_))),
            "{actions:?}"
        );
        assert!(
            matches!(ended(&actions), Some(Ending::ByDevice(r)) if r.starts_with(why)),
            "{why}: {actions:?}"
        );
    }
    let mut run = Run::answered();
    let actions = run.at(0.2, Input::Remote(answer("chrome_answer")));
    assert_eq!(
        ended(&actions),
        Some(&Ending::ByDevice("a second answer".into()))
    );

    let mut run = Run::new();
    let actions = run.at(0.0, Input::Remote(answer("chrome_answer")));
    assert!(
        ended(&actions).is_some(),
        "nothing is read before the offer"
    );
}

#[test]
fn remote_candidates_are_rebuilt_ignored_when_unusable_and_capped() {
    let mut run = Run::answered();
    let ice = |candidate: &str, mline| {
        Input::Remote(SignalData::Ice(IceCandidate {
            candidate: candidate.into(),
            sdp_m_line_index: mline,
        }))
    };
    assert_eq!(
        run.at(
            0.1,
            ice(
                "candidate:1 1 udp 2130706431 127.0.0.2 9 typ host generation 0",
                0
            )
        ),
        [Action::AddCandidate {
            mline: 0,
            candidate: "candidate:1 1 UDP 2130706431 127.0.0.2 9 typ host".into()
        }]
    );
    for bad in [
        ice("candidate:1 1 UDP 1 evil.example.com 5000 typ host", 0),
        ice("candidate:1 1 UDP 1 192.0.2.7 5000 typ host", 99),
    ] {
        assert_eq!(run.at(0.1, bad), [], "ignored, not fatal");
    }
    let mut added = 1;
    for port in 1000..1000 + remote::MAX_CANDIDATES as u16 * 2 {
        let text = format!("candidate:1 1 UDP 1 192.0.2.7 {port} typ host");
        added += run.at(0.2, ice(&text, 0)).len();
    }
    assert!(!run.session.has_ended());
    assert!(
        added <= remote::MAX_CANDIDATES,
        "{added} candidates handed to webrtcbin"
    );
}

#[test]
fn local_candidates_go_out_with_an_advertised_copy_of_host_candidates() {
    let mut run = Run::with(Config {
        advertise_address: Some("203.0.113.9".parse().unwrap()),
        ..config()
    });
    run.at(0.0, Input::Offered(sample("offer")));
    let host = "candidate:1 1 UDP 2130706431 10.0.0.2 5000 typ host";
    let actions = run.at(
        0.1,
        Input::LocalCandidate {
            mline: 0,
            candidate: host.into(),
        },
    );
    let sent: Vec<&str> = actions
        .iter()
        .map(|a| match a {
            Action::Signal(SignalData::Ice(c)) => c.candidate.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sent.len(), 2);
    assert!(sent[0].contains("203.0.113.9") && sent[1] == host);
}

#[test]
fn a_certificate_other_than_the_answered_one_is_refused_and_audited() {
    let mut run = Run::answered();
    let stranger = Fingerprint::of_der(b"someone else");
    let actions = run.at(
        0.3,
        Input::Certificate {
            peer: stranger,
            access: Some(OWNER),
            renewal_offered: false,
        },
    );
    assert_eq!(
        actions[0],
        Action::Audit {
            event: "refused",
            fingerprint: stranger,
            detail: "DTLS certificate differs from the answer's fingerprint",
        }
    );
    assert!(matches!(ended(&actions), Some(Ending::ByDevice(_))));
    assert!(!actions.contains(&Action::OpenMedia));
}

#[test]
fn media_opens_once_when_both_the_transport_and_the_grant_are_there_in_either_order() {
    // Connected first, then the certificate.
    let run = Run::connected(Some(VIEW));
    assert!(run.session.state().media_allowed());

    let mut run = Run::answered();
    let actions = run.at(
        0.3,
        Input::Certificate {
            peer: chrome(),
            access: Some(VIEW),
            renewal_offered: false,
        },
    );
    assert!(actions.contains(&Action::Admit(Phase::Granted)));
    assert!(actions.contains(&Action::MarkConnected(chrome())));
    assert!(
        !actions.contains(&Action::OpenMedia),
        "frames before the transport is up would be lost"
    );
    let actions = run.at(0.4, Input::Peer(PeerState::Connected));
    assert_eq!(actions.last(), Some(&Action::OpenMedia));
    // Reconnecting after a short disconnection does not open it again.
    run.at(1.0, Input::Peer(PeerState::Disconnected));
    let actions = run.at(2.0, Input::Peer(PeerState::Connected));
    assert!(!actions.contains(&Action::OpenMedia), "{actions:?}");
    // Only one certificate check per session.
    assert_eq!(
        run.at(
            2.0,
            Input::Certificate {
                peer: chrome(),
                access: Some(OWNER),
                renewal_offered: false
            }
        ),
        []
    );
}

#[test]
fn an_unknown_certificate_gets_ten_seconds_of_control_channel_and_no_media() {
    let mut run = Run::answered();
    run.at(0.3, Input::Peer(PeerState::Connected));
    let actions = run.at(
        0.3,
        Input::Certificate {
            peer: chrome(),
            access: None,
            renewal_offered: false,
        },
    );
    assert_eq!(
        actions[0],
        Action::Audit {
            event: "refused",
            fingerprint: chrome(),
            detail: "no grant: pre-auth session (claim or redeem only)",
        }
    );
    assert!(matches!(
        actions[1],
        Action::Announce(State::PreAuth { .. })
    ));
    assert!(
        !actions.contains(&Action::OpenMedia) && !actions.contains(&Action::Admit(Phase::Granted))
    );
    assert_eq!(
        run.at(0.5, Input::Camera(CameraState::Lost)),
        [],
        "not told"
    );
    assert_eq!(run.at(10.2, Input::Tick), []);
    let actions = run.at(10.31, Input::Tick);
    assert_eq!(
        ended(&actions),
        Some(&Ending::ByDevice(
            "no grant for this browser: closed after 10 s".into()
        ))
    );
}

#[test]
fn a_claim_on_the_session_opens_media_and_is_audited() {
    let mut run = Run::connected(None);
    let actions = run.at(2.0, Input::Access(Some(OWNER)));
    assert_eq!(
        actions,
        [
            Action::Admit(Phase::Granted),
            Action::Audit {
                event: "connected",
                fingerprint: chrome(),
                detail: "after claim or redeem"
            },
            Action::MarkConnected(chrome()),
            Action::Announce(State::Granted {
                fingerprint: chrome(),
                access: OWNER
            }),
            Action::OpenMedia,
        ]
    );
    assert_eq!(
        run.at(12.0, Input::Tick),
        [],
        "no pre-auth deadline any more"
    );
    assert_eq!(run.at(12.0, Input::Access(Some(OWNER))), [], "no change");
}

#[test]
fn revocation_or_expiry_ends_a_granted_session_at_once() {
    let mut run = Run::connected(Some(VIEW));
    let actions = run.at(3.0, Input::Access(None));
    assert_eq!(
        actions,
        [
            Action::Audit {
                event: "refused",
                fingerprint: chrome(),
                detail: "grant revoked or expired: session closed"
            },
            Action::End(Ending::ByDevice("access revoked or expired".into())),
        ]
    );
    assert!(run.session.has_ended());
    assert_eq!(
        run.at(3.1, Input::Tick),
        [],
        "an ended session decides nothing"
    );
}

#[test]
fn a_renewed_certificate_completes_its_renewal_before_it_is_authorised() {
    let mut run = Run::answered();
    let actions = run.at(
        0.3,
        Input::Certificate {
            peer: chrome(),
            access: None,
            renewal_offered: true,
        },
    );
    assert_eq!(actions, [Action::CompleteRenewal(chrome())]);
    assert!(!run.session.awaits_certificate());
    let actions = run.at(0.4, Input::Renewed(Some(OWNER)));
    assert!(
        actions.contains(&Action::MarkConnected(chrome())),
        "{actions:?}"
    );
    assert!(run.session.state().media_allowed());

    // A renewal that did not complete leaves a pre-auth session.
    let mut run = Run::answered();
    run.at(
        0.3,
        Input::Certificate {
            peer: chrome(),
            access: None,
            renewal_offered: true,
        },
    );
    run.at(0.4, Input::Renewed(None));
    assert!(matches!(run.session.state(), State::PreAuth { .. }));
}

#[test]
fn channels_are_checked_against_the_grants_scope() {
    // View-only: any channel the viewer opens is closed; a proxy channel turns the proxy off.
    let mut run = Run::connected(Some(VIEW));
    let open = |label: &str| Input::Channel {
        label: label.into(),
        reliable: true,
    };
    assert_eq!(run.at(1.0, open("chat")), [Action::CloseChannel]);
    assert_eq!(
        run.at(1.0, open("proxy-0")),
        [Action::CloseChannel, Action::RefuseProxy]
    );
    assert_eq!(run.at(1.0, open("proxy-1")), [Action::CloseChannel]);

    // The owner: the proxy starts with the fourth reliable channel.
    let mut run = Run::connected(Some(OWNER));
    for label in ["proxy-2", "proxy-0", "proxy-3"] {
        assert_eq!(run.at(1.0, open(label)), []);
    }
    assert_eq!(run.at(1.0, open("proxy-1")), [Action::StartProxy]);
    // Losing the UI scope stops it.
    let actions = run.at(
        2.0,
        Input::Access(Some(Access {
            role: Role::Owner,
            ..VIEW
        })),
    );
    assert!(actions.contains(&Action::StopProxy), "{actions:?}");

    // An unreliable or repeated proxy channel turns the proxy off for the connection.
    let mut run = Run::connected(Some(OWNER));
    assert_eq!(
        run.at(
            1.0,
            Input::Channel {
                label: "proxy-0".into(),
                reliable: false
            }
        ),
        [Action::CloseChannel, Action::StopProxy]
    );
    assert_eq!(run.at(1.0, open("proxy-1")), [Action::CloseChannel]);
    let mut run = Run::connected(Some(OWNER));
    run.at(1.0, open("proxy-0"));
    assert_eq!(
        run.at(1.0, open("proxy-0")),
        [Action::CloseChannel, Action::StopProxy]
    );

    // The benchmark channel exists only when the hidden flag is set.
    let mut run = Run::connected(Some(OWNER));
    assert_eq!(run.at(1.0, open(CEILING_LABEL)), []);
    let mut run = Run::with(Config {
        bench_datachannel: true,
        ..config()
    });
    run.at(0.0, Input::Offered(sample("offer")));
    run.at(0.1, Input::Remote(answer("chrome_answer")));
    run.at(
        0.2,
        Input::Certificate {
            peer: chrome(),
            access: Some(OWNER),
            renewal_offered: false,
        },
    );
    assert_eq!(run.at(1.0, open(CEILING_LABEL)), [Action::ServeCeiling]);
}

#[test]
fn deadlines_answer_connect_and_disconnection() {
    let mut run = Run::new();
    run.at(0.0, Input::Offered(sample("offer")));
    assert_eq!(run.at(4.9, Input::Tick), []);
    assert_eq!(
        ended(&run.at(5.0, Input::Tick)),
        Some(&Ending::ByDevice("no answer within 5 s".into()))
    );

    let mut run = Run::answered();
    assert_eq!(run.at(29.9, Input::Tick), []);
    assert_eq!(
        ended(&run.at(30.0, Input::Tick)),
        Some(&Ending::ByDevice("not connected within 30 s".into()))
    );

    let mut run = Run::connected(Some(VIEW));
    assert_eq!(
        run.at(40.0, Input::Tick),
        [],
        "connected: no connect deadline"
    );
    run.at(41.0, Input::Peer(PeerState::Disconnected));
    run.at(42.0, Input::Peer(PeerState::Disconnected));
    assert_eq!(run.at(45.9, Input::Tick), []);
    run.at(45.95, Input::Peer(PeerState::Connected));
    assert_eq!(run.at(50.0, Input::Tick), [], "it came back");
    run.at(51.0, Input::Peer(PeerState::Disconnected));
    assert_eq!(
        ended(&run.at(56.0, Input::Tick)),
        Some(&Ending::ByDevice("connection lost".into()))
    );

    for state in [PeerState::Failed, PeerState::Closed] {
        let mut run = Run::connected(Some(VIEW));
        assert!(matches!(
            ended(&run.at(1.0, Input::Peer(state))),
            Some(Ending::ByDevice(_))
        ));
    }
}

#[test]
fn a_connected_viewer_outlives_its_signalling_while_it_says_alive() {
    // Never said alive: its socket closing ends the session.
    let mut run = Run::connected(Some(VIEW));
    assert_eq!(
        ended(&run.at(2.0, Input::EndedByPeer(VIEWER_GONE.into()))),
        Some(&Ending::ByPeer(VIEWER_GONE.into()))
    );

    let mut run = Run::connected(Some(VIEW));
    run.at(1.0, Input::Alive);
    assert_eq!(run.at(2.0, Input::EndedByPeer(VIEWER_GONE.into())), []);
    run.at(20.0, Input::Alive);
    assert_eq!(run.at(49.0, Input::Tick), []);
    assert!(matches!(
        ended(&run.at(50.0, Input::Tick)),
        Some(Ending::ByPeer(_))
    ));

    // A viewer's own `end` ends it whatever it said before.
    let mut run = Run::connected(Some(VIEW));
    run.at(1.0, Input::Alive);
    assert!(ended(&run.at(2.0, Input::EndedByPeer("bye".into()))).is_some());

    // Losing the rendezvous ends a session still negotiating, not a connected one.
    let mut run = Run::answered();
    assert!(ended(&run.at(0.2, Input::RendezvousLost)).is_some());
    let mut run = Run::connected(Some(VIEW));
    assert_eq!(run.at(1.0, Input::RendezvousLost), []);
    assert_eq!(
        run.at(100.0, Input::Tick),
        [],
        "never said alive: not held to it"
    );
}

#[test]
fn the_playout_hint_is_chosen_once_from_the_selected_path() {
    let mut run = Run::answered();
    let actions = run.at(0.3, Input::Peer(PeerState::Connected));
    assert_eq!(
        actions,
        [Action::ChoosePlayoutHint],
        "Chrome keeps the extension"
    );
    let lan = PathEnd {
        kind: "host".into(),
        address: "192.168.1.20".into(),
    };
    let far = PathEnd {
        kind: "srflx".into(),
        address: "203.0.113.7".into(),
    };
    assert_eq!(
        run.at(
            0.4,
            Input::SelectedPath(Some(lan.clone()), Some(lan.clone()))
        ),
        [Action::PlayoutHint(true)]
    );
    assert_eq!(
        run.at(0.4, Input::SelectedPath(Some(lan), Some(far))),
        [Action::PlayoutHint(false)]
    );

    let mut run = Run::with(Config {
        playout: PlayoutDelay::Never,
        ..config()
    });
    run.at(0.0, Input::Offered(sample("offer")));
    run.at(0.1, Input::Remote(answer("chrome_answer")));
    assert_eq!(run.at(0.3, Input::Peer(PeerState::Connected)), []);
}

#[test]
fn the_camera_state_reaches_granted_viewers_only_and_the_device_can_close() {
    let mut run = Run::connected(Some(VIEW));
    assert_eq!(
        run.at(1.0, Input::Camera(CameraState::Lost)),
        [Action::TellCamera(CameraState::Lost)]
    );
    assert_eq!(
        ended(&run.at(2.0, Input::Close("room for the owner".into()))),
        Some(&Ending::ByDevice("room for the owner".into()))
    );
    let mut run = Run::connected(Some(VIEW));
    assert!(matches!(
        ended(&run.at(1.0, Input::Failed("viewer pipeline error: x".into()))),
        Some(Ending::ByDevice(_))
    ));
}

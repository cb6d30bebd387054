use super::*;
use crate::proxy::frame::MAX_DATA;
use crate::proxy::frame::{
    Data, Headers, RequestHead, ResponseHead, WsClose, WsMessage, decode, encode,
};

/// Browser -> device (request bodies, messages toward the upstream).
const U: u32 = OPENER_WINDOW;
/// Device -> browser (responses, messages toward the page).
const D: u32 = ACCEPTOR_WINDOW;

fn sid(n: u32) -> StreamId {
    StreamId::new(n).expect("test ids are nonzero")
}

fn f(id: u32, body: Body) -> Frame {
    Frame {
        stream: sid(id),
        body,
    }
}

fn get(id: u32) -> Frame {
    f(
        id,
        Body::RequestHead(RequestHead::new("GET", "/", Headers::default(), false).unwrap()),
    )
}

fn upgrade(id: u32) -> Frame {
    f(
        id,
        Body::RequestHead(RequestHead::new("GET", "/ws", Headers::default(), true).unwrap()),
    )
}

fn head(id: u32, status: u16) -> Frame {
    f(
        id,
        Body::ResponseHead(ResponseHead::new(status, Headers::default()).unwrap()),
    )
}

fn data(id: u32, n: usize) -> Frame {
    f(id, Body::Data(Data::new(vec![0xaa; n]).unwrap()))
}

fn end(id: u32) -> Frame {
    f(id, Body::End)
}

fn ws(id: u32, kind: WsKind, more: bool, n: usize) -> Frame {
    f(
        id,
        Body::WsMessage(WsMessage::new(kind, more, vec![b'x'; n]).unwrap()),
    )
}

fn close(id: u32) -> Frame {
    f(id, Body::WsClose(WsClose::new(1000, "").unwrap()))
}

fn credit(id: u32, n: u32) -> Frame {
    f(id, Body::Credit(NonZeroU32::new(n).unwrap()))
}

/// The browser and the device, joined by four perfect channels (through the codec).
struct Pair {
    browser: Streams,
    device: Streams,
}

impl Pair {
    fn new() -> Self {
        Self {
            browser: Streams::new(Role::Opener, DEFAULT_MAX_STREAMS),
            device: Streams::new(Role::Acceptor, DEFAULT_MAX_STREAMS),
        }
    }

    fn up(&mut self, frame: Frame) -> Result<Delivery, Violation> {
        transfer(&mut self.browser, &mut self.device, frame)
    }

    fn down(&mut self, frame: Frame) -> Result<Delivery, Violation> {
        transfer(&mut self.device, &mut self.browser, frame)
    }
}

fn transfer(from: &mut Streams, to: &mut Streams, frame: Frame) -> Result<Delivery, Violation> {
    from.on_send(&frame).expect("the sender keeps the rules");
    let frame = decode(&encode(&frame)).expect("encoded frames decode");
    to.on_receive(frame.stream.channel(), &frame)
}

/// Delivers `frame` to `to` without the sender's checks: a misbehaving peer.
fn inject(to: &mut Streams, frame: Frame) -> Result<Delivery, Violation> {
    to.on_receive(frame.stream.channel(), &frame)
}

fn violation(to: &mut Streams, frame: Frame) -> (StreamError, Option<ResetCode>) {
    let v = inject(to, frame).expect_err("a violation");
    let code = v.reply.map(|r| match r.body {
        Body::Reset(r) => r.code(),
        other => panic!("reply {other:?}"),
    });
    (v.error, code)
}

#[test]
fn window_counts_credit_and_refuses_overgrants() {
    let mut w = Window::new(100);
    assert!(w.can_send(100) && !w.can_send(101));
    w.consume_send(60).unwrap();
    assert_eq!(
        w.consume_send(41),
        Err(FlowError::NoCredit {
            n: 41,
            available: 40
        })
    );
    assert_eq!(w.available(), 40);
    w.grant(60).unwrap();
    assert_eq!(w.available(), 100);
    assert_eq!(
        w.grant(1),
        Err(FlowError::CreditOverflow {
            n: 1,
            available: 100,
            window: 100
        })
    );
    let mut w = Window::new(u32::MAX);
    w.consume_send(1).unwrap();
    assert!(matches!(
        w.grant(u32::MAX),
        Err(FlowError::CreditOverflow { .. })
    ));
}

#[test]
fn inbound_detects_a_peer_over_its_window() {
    let mut i = Inbound::new(100);
    i.received(70).unwrap();
    assert_eq!(
        i.received(31),
        Err(FlowError::WindowExceeded {
            n: 31,
            available: 30
        })
    );
    i.received(30).unwrap();
    // Consumed but not returned still counts against the peer.
    assert_eq!(i.consumed(40), None);
    assert_eq!(
        i.received(1),
        Err(FlowError::WindowExceeded { n: 1, available: 0 })
    );
    assert_eq!(i.consumed(10), Some(50));
    assert_eq!(i.available(), 50);
}

#[test]
fn credits_are_batched_per_half_window() {
    for w_size in [U, D] {
        let mut i = Inbound::new(w_size);
        let mut credits = Vec::new();
        let mut sent = 0;
        let mut w = Window::new(w_size);
        // 8 MiB in 1000-byte chunks, each read as soon as it arrives.
        while sent < 8 << 20 {
            let n = 1000.min(w.available());
            w.consume_send(n).unwrap();
            i.received(n).unwrap();
            sent += n;
            if let Some(c) = i.consumed(n) {
                assert!(c >= w_size / 2);
                w.grant(c).unwrap();
                credits.push(c);
            }
        }
        // One credit per half window, never one per chunk (the last half may be pending).
        let halves = sent / (w_size / 2);
        assert!(
            credits.len() as u32 <= halves && credits.len() as u32 >= halves - 1,
            "window {w_size}: {} credits",
            credits.len()
        );
    }
}

#[test]
fn each_direction_has_its_own_window() {
    assert_eq!((U, D), (256 * 1024, 1024 * 1024));
    assert_eq!(Role::Opener.send_window(), U);
    assert_eq!(Role::Opener.recv_window(), D);
    assert_eq!(Role::Acceptor.send_window(), D);
    assert_eq!(Role::Acceptor.recv_window(), U);
    let mut p = Pair::new();
    p.up(get(1)).unwrap();
    assert_eq!(p.browser.send_credit(sid(1)), U);
    assert_eq!(p.device.send_credit(sid(1)), D);
    p.down(head(1, 200)).unwrap();
    // The browser returns credit per half of the device's window, the device per half of the
    // browser's.
    p.up(data(1, MAX_DATA)).unwrap();
    p.up(data(1, MAX_DATA)).unwrap();
    assert_eq!(p.device.consumed(sid(1), 2 * MAX_DATA as u32), None);
    p.up(data(1, 10)).unwrap();
    let c = p.device.consumed(sid(1), 10).expect("half of 256 KiB");
    assert_eq!(c, credit(1, 2 * MAX_DATA as u32 + 10));
    p.down(c).unwrap();
    assert_eq!(p.browser.send_credit(sid(1)), U);
    // Credit that would lift the browser's window above its 256 KiB is refused, though it is
    // below the other direction's window.
    let (error, code) = violation(&mut p.browser, credit(1, 1));
    assert!(matches!(
        error,
        StreamError::Flow(FlowError::CreditOverflow { window: U, .. })
    ));
    assert_eq!(code, Some(ResetCode::FlowControl));
    let mut p = Pair::new();
    p.up(get(1)).unwrap();
    p.up(end(1)).unwrap();
    p.down(head(1, 200)).unwrap();
    for _ in 0..8 {
        p.down(data(1, MAX_DATA)).unwrap();
    }
    assert_eq!(p.browser.consumed(sid(1), 8 * MAX_DATA as u32), None);
    p.down(data(1, 100)).unwrap();
    let c = p.browser.consumed(sid(1), 100).expect("half of 1 MiB");
    assert_eq!(c, credit(1, 8 * MAX_DATA as u32 + 100));
    p.up(c).unwrap();
    assert_eq!(p.device.send_credit(sid(1)), D);
}

#[test]
fn a_slow_reader_caps_bytes_in_flight_and_stalls_no_one_else() {
    let mut p = Pair::new();
    for id in [1, 2] {
        p.up(get(id)).unwrap();
        p.up(end(id)).unwrap();
        p.down(head(id, 200)).unwrap();
    }
    let (slow, fast) = (sid(1), sid(2));
    let body = 3 << 20;
    let (mut sent, mut read) = (0u32, 0u32);
    let mut steps = 0;
    while read < body {
        steps += 1;
        // The device sends whatever its credit allows, in full-size frames.
        loop {
            let n = p
                .device
                .send_credit(slow)
                .min(MAX_DATA as u32)
                .min(body - sent);
            if n == 0 {
                break;
            }
            p.down(data(1, n as usize)).unwrap();
            sent += n;
        }
        assert!(sent - read <= D, "in flight {} > window", sent - read);
        // Meanwhile the other stream still has its whole window.
        assert_eq!(p.device.send_credit(fast), D);
        // The page reads 10 KiB per step.
        let n = 10_000.min(sent - read);
        read += n;
        if let Some(c) = p.browser.consumed(slow, n) {
            p.up(c).unwrap();
        }
    }
    assert_eq!(sent, body);
    assert!(
        steps > 300,
        "the reader's pace set the transfer's: {steps} steps"
    );

    // A reader that stops: the device can send exactly one window, then nothing.
    p.up(get(3)).unwrap();
    p.up(end(3)).unwrap();
    p.down(head(3, 200)).unwrap();
    let mut stuck = 0;
    while p.device.send_credit(sid(3)) > 0 {
        let n = p.device.send_credit(sid(3)).min(MAX_DATA as u32);
        p.down(data(3, n as usize)).unwrap();
        stuck += n;
    }
    assert_eq!(stuck, D);
    assert_eq!(
        p.device.on_send(&data(3, 1)),
        Err(StreamError::Flow(FlowError::NoCredit {
            n: 1,
            available: 0
        }))
    );
    // Reading less than half the window returns nothing; half returns credit.
    assert_eq!(p.browser.consumed(sid(3), D / 2 - 1), None);
    let c = p.browser.consumed(sid(3), 1).expect("half the window read");
    assert_eq!(c.body, Body::Credit(NonZeroU32::new(D / 2).unwrap()));
    p.up(c).unwrap();
    assert_eq!(p.device.send_credit(sid(3)), D / 2);
}

/// The sequences in `docs/proxy.md`, frame by frame.
#[test]
fn the_documented_examples_hold() {
    let mut p = Pair::new();
    p.up(get(1)).unwrap();
    p.up(end(1)).unwrap();
    p.down(head(1, 200)).unwrap();
    for _ in 0..16 {
        p.down(data(1, MAX_DATA)).unwrap();
    }
    assert_eq!(p.device.send_credit(sid(1)), 80);
    assert_eq!(p.browser.consumed(sid(1), 524_287), None);
    let c = p.browser.consumed(sid(1), 1).unwrap();
    assert_eq!(c, credit(1, 524_288));
    p.up(c).unwrap();
    assert_eq!(p.device.send_credit(sid(1)), 524_368);
    p.down(data(1, MAX_DATA)).unwrap();
    p.down(data(1, MAX_DATA)).unwrap();
    p.down(data(1, 20_442)).unwrap();
    assert_eq!(16 * MAX_DATA + 2 * MAX_DATA + 20_442, 1_200_000);
    p.down(end(1)).unwrap();
    assert_eq!(p.device.state(sid(1)), Some(State::Closed));
    assert_eq!(p.browser.state(sid(1)), Some(State::Closed));

    p.up(upgrade(2)).unwrap();
    p.down(head(2, 101)).unwrap();
    p.up(ws(2, WsKind::Text, false, 9)).unwrap();
    p.down(ws(2, WsKind::Binary, true, 65_530)).unwrap();
    p.down(ws(2, WsKind::Binary, false, 34_470)).unwrap();
    assert_eq!(p.device.send_credit(sid(2)), D - 65_531 - 34_471);
    p.up(close(2)).unwrap();
    p.down(close(2)).unwrap();
    assert!(p.device.is_empty() && p.browser.is_empty());
}

#[test]
fn a_peer_over_its_window_is_reset() {
    let mut device = Streams::new(Role::Acceptor, DEFAULT_MAX_STREAMS);
    inject(
        &mut device,
        f(
            1,
            Body::RequestHead(RequestHead::new("PUT", "/f", Headers::default(), false).unwrap()),
        ),
    )
    .unwrap();
    for _ in 0..4 {
        inject(&mut device, data(1, MAX_DATA)).unwrap();
    }
    inject(&mut device, data(1, U as usize - 4 * MAX_DATA)).unwrap();
    let (error, code) = violation(&mut device, data(1, 1));
    assert_eq!(
        error,
        StreamError::Flow(FlowError::WindowExceeded { n: 1, available: 0 })
    );
    assert_eq!(code, Some(ResetCode::FlowControl));
    assert_eq!(device.state(sid(1)), Some(State::Closed));
    assert!(device.is_empty());

    // The browser holds the device to its own, larger window.
    let mut browser = Streams::new(Role::Opener, DEFAULT_MAX_STREAMS);
    browser.on_send(&get(1)).unwrap();
    inject(&mut browser, head(1, 200)).unwrap();
    for _ in 0..16 {
        inject(&mut browser, data(1, MAX_DATA)).unwrap();
    }
    inject(&mut browser, data(1, D as usize - 16 * MAX_DATA)).unwrap();
    let (error, code) = violation(&mut browser, data(1, 1));
    assert_eq!(
        error,
        StreamError::Flow(FlowError::WindowExceeded { n: 1, available: 0 })
    );
    assert_eq!(code, Some(ResetCode::FlowControl));
}

#[test]
fn credit_the_peer_cannot_owe_is_reset() {
    let mut p = Pair::new();
    p.up(get(1)).unwrap();
    p.down(head(1, 200)).unwrap();
    p.down(data(1, 1000)).unwrap();
    p.up(credit(1, 1000)).unwrap();
    let (error, code) = violation(&mut p.device, credit(1, 1));
    assert!(matches!(
        error,
        StreamError::Flow(FlowError::CreditOverflow { .. })
    ));
    assert_eq!(code, Some(ResetCode::FlowControl));
}

#[test]
fn http_exchange_lifecycle() {
    let mut p = Pair::new();
    let id = p.browser.next_id().unwrap();
    assert_eq!(id, sid(1));
    p.up(f(
        1,
        Body::RequestHead(RequestHead::new("POST", "/set", Headers::default(), false).unwrap()),
    ))
    .unwrap();
    assert_eq!(
        (p.browser.state(id), p.device.state(id)),
        (Some(State::Open), Some(State::Open))
    );
    p.up(data(1, 10)).unwrap();
    p.up(end(1)).unwrap();
    assert_eq!(p.browser.state(id), Some(State::HalfClosedLocal));
    assert_eq!(p.device.state(id), Some(State::HalfClosedRemote));
    // Request body read: no credit after the browser's End.
    assert_eq!(p.device.consumed(id, 10), None);
    p.down(head(1, 200)).unwrap();
    p.down(data(1, 5)).unwrap();
    p.down(end(1)).unwrap();
    assert_eq!(
        (p.browser.state(id), p.device.state(id)),
        (Some(State::Closed), Some(State::Closed))
    );
    assert!(p.browser.is_empty() && p.device.is_empty());
    assert_eq!(p.browser.next_id(), Some(sid(2)));
}

#[test]
fn the_device_may_answer_before_the_request_body_ends() {
    let mut p = Pair::new();
    p.up(f(
        1,
        Body::RequestHead(RequestHead::new("POST", "/up", Headers::default(), false).unwrap()),
    ))
    .unwrap();
    p.down(head(1, 413)).unwrap();
    p.down(end(1)).unwrap();
    assert_eq!(p.device.state(sid(1)), Some(State::HalfClosedLocal));
    p.up(data(1, 3)).unwrap();
    p.up(end(1)).unwrap();
    assert!(p.device.is_empty() && p.browser.is_empty());
}

#[test]
fn websocket_bridge_lifecycle() {
    let mut p = Pair::new();
    p.up(upgrade(1)).unwrap();
    p.down(head(1, 101)).unwrap();
    p.up(ws(1, WsKind::Text, false, 5)).unwrap();
    p.down(ws(1, WsKind::Binary, true, MAX_DATA - 1)).unwrap();
    p.down(ws(1, WsKind::Binary, false, 1)).unwrap();
    assert_eq!(p.device.send_credit(sid(1)), D - MAX_DATA as u32 - 2);
    p.up(close(1)).unwrap();
    assert_eq!(p.device.state(sid(1)), Some(State::HalfClosedRemote));
    p.down(ws(1, WsKind::Text, false, 0)).unwrap();
    p.down(close(1)).unwrap();
    assert!(p.device.is_empty() && p.browser.is_empty());
}

#[test]
fn a_refused_upgrade_is_an_http_response_that_ends_both_ways() {
    let mut p = Pair::new();
    p.up(upgrade(1)).unwrap();
    p.down(head(1, 403)).unwrap();
    p.down(data(1, 9)).unwrap();
    assert_eq!(
        p.device.on_send(&ws(1, WsKind::Text, false, 1)),
        Err(StreamError::NotUpgraded("ws-message"))
    );
    p.down(end(1)).unwrap();
    assert_eq!(
        (p.browser.state(sid(1)), p.device.state(sid(1))),
        (Some(State::Closed), Some(State::Closed))
    );
}

#[test]
fn illegal_transitions_are_rejected() {
    use StreamError::*;
    // (frames the browser sends first, the bad frame from the browser or device, error)
    type Case = (Vec<Frame>, Vec<Frame>, Frame, StreamError);
    let cases: Vec<Case> = vec![
        (vec![get(1), end(1)], vec![], data(1, 1), AfterEnd("data")),
        (vec![get(1), end(1)], vec![], end(1), AfterEnd("end")),
        (
            vec![upgrade(1)],
            vec![],
            data(1, 1),
            HttpOnWebSocket("data"),
        ),
        (
            vec![upgrade(1)],
            vec![],
            ws(1, WsKind::Text, false, 1),
            NotUpgraded("ws-message"),
        ),
        (vec![upgrade(1)], vec![], close(1), NotUpgraded("ws-close")),
        (
            vec![get(1)],
            vec![],
            head(1, 200),
            WrongSender {
                frame: "response-head",
                sender: Role::Opener,
            },
        ),
        (vec![get(1)], vec![], get(1), DuplicateHead),
    ];
    for (up, _, bad, error) in cases {
        let mut p = Pair::new();
        up.into_iter().for_each(|fr| assert!(p.up(fr).is_ok()));
        assert_eq!(violation(&mut p.device, bad).0, error);
        assert!(p.device.is_empty(), "{error}: the stream was reset");
    }
    // Bad frames from the device, seen by the browser.
    let cases: Vec<Case> = vec![
        (vec![get(1)], vec![], data(1, 1), BeforeHead("data")),
        (vec![get(1)], vec![], end(1), BeforeHead("end")),
        (vec![get(1)], vec![], head(1, 101), UnaskedUpgrade),
        (
            vec![get(1)],
            vec![head(1, 200)],
            head(1, 200),
            DuplicateHead,
        ),
        (
            vec![get(1)],
            vec![head(1, 200), end(1)],
            data(1, 1),
            AfterEnd("data"),
        ),
        (
            vec![get(1)],
            vec![head(1, 200)],
            ws(1, WsKind::Text, false, 1),
            NotUpgraded("ws-message"),
        ),
        (
            vec![upgrade(1)],
            vec![head(1, 101)],
            data(1, 1),
            HttpOnWebSocket("data"),
        ),
        (
            vec![upgrade(1)],
            vec![head(1, 101)],
            end(1),
            HttpOnWebSocket("end"),
        ),
        (
            vec![upgrade(1)],
            vec![head(1, 101), close(1)],
            close(1),
            AfterEnd("ws-close"),
        ),
        (
            vec![upgrade(1)],
            vec![head(1, 101), ws(1, WsKind::Text, true, 1)],
            ws(1, WsKind::Binary, false, 1),
            FragmentKind,
        ),
        (
            vec![upgrade(1)],
            vec![head(1, 101), ws(1, WsKind::Binary, true, 1)],
            close(1),
            CloseMidMessage,
        ),
        (
            vec![],
            vec![],
            get(1),
            WrongSender {
                frame: "request-head",
                sender: Role::Acceptor,
            },
        ),
    ];
    for (up, down, bad, error) in cases {
        let mut p = Pair::new();
        up.into_iter().for_each(|fr| assert!(p.up(fr).is_ok()));
        down.into_iter().for_each(|fr| assert!(p.down(fr).is_ok()));
        // The same check stops a device that would send it.
        assert_eq!(p.device.on_send(&bad), Err(error));
        assert_eq!(violation(&mut p.browser, bad).0, error);
    }
}

#[test]
fn a_failed_send_changes_nothing() {
    let mut p = Pair::new();
    p.up(upgrade(1)).unwrap();
    p.down(head(1, 101)).unwrap();
    p.down(ws(1, WsKind::Text, true, 10)).unwrap();
    let before = p.device.send_credit(sid(1));
    assert_eq!(
        p.device.on_send(&ws(1, WsKind::Binary, false, 10)),
        Err(StreamError::FragmentKind)
    );
    assert_eq!(
        p.device.on_send(&close(1)),
        Err(StreamError::CloseMidMessage)
    );
    assert_eq!(p.device.send_credit(sid(1)), before);
    p.down(ws(1, WsKind::Text, false, 10)).unwrap();
    p.down(close(1)).unwrap();
}

#[test]
fn ids_increase_per_channel_and_stay_on_their_channel() {
    let mut device = Streams::new(Role::Acceptor, DEFAULT_MAX_STREAMS);
    // Channels are independent, so 6 may overtake 5.
    inject(&mut device, get(6)).unwrap();
    inject(&mut device, get(5)).unwrap();
    inject(&mut device, get(3)).unwrap();
    // Below the last id of their channel: skipped ids count as used.
    assert_eq!(
        violation(&mut device, get(2)).0,
        StreamError::IdNotIncreasing
    );
    assert_eq!(device.state(sid(2)), Some(State::Closed));
    assert_eq!(
        violation(&mut device, get(1)).0,
        StreamError::IdNotIncreasing
    );
    assert_eq!(device.state(sid(7)), None);
    let wrong = device.on_receive(2, &data(5, 1)).unwrap_err();
    assert_eq!(
        wrong.error,
        StreamError::WrongChannel {
            stream: sid(5),
            channel: 2,
            expected: 1
        }
    );
    assert_eq!(wrong.reply.map(|r| r.stream), Some(sid(5)));
    assert_eq!(device.state(sid(5)), Some(State::Closed));
    assert_eq!(device.len(), 2);
}

#[test]
fn the_stream_limit_refuses_and_recovers() {
    let mut p = Pair::new();
    for id in 1..=DEFAULT_MAX_STREAMS as u32 {
        p.up(get(id)).unwrap();
    }
    let next = DEFAULT_MAX_STREAMS as u32 + 1;
    // The browser's own table holds it back...
    assert_eq!(
        p.browser.on_send(&get(next)),
        Err(StreamError::TooManyStreams(DEFAULT_MAX_STREAMS))
    );
    // ...and the device refuses one that gets through anyway (a close still in flight).
    let (error, code) = violation(&mut p.device, get(next));
    assert_eq!(
        (error, code),
        (
            StreamError::TooManyStreams(DEFAULT_MAX_STREAMS),
            Some(ResetCode::Refused)
        )
    );
    assert_eq!(p.device.state(sid(next)), Some(State::Closed));
    assert_eq!(
        violation(&mut p.device, end(next)).1,
        Some(ResetCode::Closed)
    );
    // One stream goes, another may come.
    p.up(f(1, Body::Reset(Reset::new(ResetCode::Cancel, "aborted"))))
        .unwrap();
    assert_eq!(p.device.len(), DEFAULT_MAX_STREAMS - 1);
    assert!(inject(&mut p.device, get(next + 1)).is_ok());
}

#[test]
fn unknown_and_closed_streams() {
    let mut p = Pair::new();
    p.up(get(1)).unwrap();
    p.up(end(1)).unwrap();
    p.down(head(1, 204)).unwrap();
    p.down(end(1)).unwrap();
    // Never opened: a protocol error, even a credit.
    assert_eq!(
        violation(&mut p.device, data(9, 1)),
        (StreamError::Unknown, Some(ResetCode::Protocol))
    );
    assert_eq!(
        violation(&mut p.device, credit(9, 1)),
        (StreamError::Unknown, Some(ResetCode::Protocol))
    );
    // Closed: answered with `closed`, except the frames that may cross a close.
    assert_eq!(
        violation(&mut p.device, data(1, 1)),
        (StreamError::Closed, Some(ResetCode::Closed))
    );
    assert_eq!(inject(&mut p.device, credit(1, 5)), Ok(Delivery::Ignore));
    let reset = f(1, Body::Reset(Reset::new(ResetCode::Cancel, "")));
    assert_eq!(inject(&mut p.device, reset.clone()), Ok(Delivery::Ignore));
    assert_eq!(
        inject(&mut p.device, f(13, reset.body.clone())),
        Ok(Delivery::Ignore)
    );
    // Our own sends to them are refused.
    assert_eq!(p.device.on_send(&data(1, 1)), Err(StreamError::Closed));
    assert_eq!(p.device.on_send(&head(9, 200)), Err(StreamError::Unknown));
}

#[test]
fn a_reset_releases_everything_and_is_never_answered() {
    let mut p = Pair::new();
    p.up(upgrade(1)).unwrap();
    p.down(head(1, 101)).unwrap();
    p.up(ws(1, WsKind::Binary, false, 1000)).unwrap();
    let reset = p
        .device
        .reset(sid(1), ResetCode::Upstream, "camera closed the socket")
        .unwrap();
    assert!(p.device.is_empty());
    assert_eq!(p.device.reset(sid(1), ResetCode::Internal, ""), None);
    assert_eq!(p.device.consumed(sid(1), 1000), None);
    assert_eq!(p.browser.on_receive(1, &reset), Ok(Delivery::Deliver));
    assert!(p.browser.is_empty());
    // A Reset on the wrong channel is a violation, but it is not answered.
    inject(&mut p.device, get(2)).unwrap();
    let v = p
        .device
        .on_receive(0, &f(2, Body::Reset(Reset::new(ResetCode::Cancel, ""))))
        .unwrap_err();
    assert_eq!(v.reply, None);
    assert!(p.device.is_empty());
}

#[test]
fn an_undecodable_head_is_refused_and_uses_up_its_id() {
    let mut device = Streams::new(Role::Acceptor, DEFAULT_MAX_STREAMS);
    // CONNECT cannot be built, so write the bytes by hand: stream 5 on channel 1.
    let mut msg = vec![0x01, 0, 0, 0, 5];
    msg.extend_from_slice(br#"{"method":"CONNECT","path":"/","headers":[],"websocket":false}"#);
    assert!(crate::proxy::frame::decode(&msg).is_err());
    assert_eq!(
        device.undecodable(0, &msg, "bad"),
        None,
        "wrong channel: dropped"
    );
    let reset = device.undecodable(1, &msg, "bad").expect("refused");
    assert_eq!(reset.stream, sid(5));
    assert!(matches!(&reset.body, Body::Reset(r) if r.code() == ResetCode::Protocol));
    assert_eq!(device.state(sid(5)), Some(State::Closed), "id used up");
    assert_eq!(
        device.undecodable(1, &msg, "bad"),
        None,
        "not answered twice"
    );
    // Another type for an unknown stream is dropped; an open stream is reset.
    let mut junk = vec![0x03, 0, 0, 0, 9];
    assert_eq!(device.undecodable(1, &junk, "bad"), None);
    device.on_receive(1, &get(9)).unwrap();
    junk.truncate(5);
    assert!(device.undecodable(1, &junk, "empty data").is_some());
    assert_eq!(device.state(sid(9)), Some(State::Closed));
}

//! What a stranger's TCP connections can hold on the device (issue: "no HTTP timeouts or
//! connection caps"): half-sent headers and silent sockets used to stay open forever, and
//! 1,100 idle connections used up the device's descriptors. Now a request's headers have 10 s,
//! a signalling socket that neither registers nor connects has 10 s, connections are capped
//! per source and in total, and once the stranger's connections are gone the device serves
//! again. Sources are addresses in 127.0.0.0/8 (scripts/netns: loopback only).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use support::device::Device;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The device's header deadline (web/serve.rs) and the signalling hello deadline.
const DEADLINE: Duration = Duration::from_secs(10);

async fn connect_from(source: [u8; 4], port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// How long until the server closes `stream` (reads EOF or a reset), at most `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(start + limit),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// A whole GET of /healthz from `source`: the status line, or why not.
async fn healthz(source: [u8; 4], port: u16) -> Result<String, String> {
    let mut stream = connect_from(source, port).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text))
        .await
        .map_err(|_| "no answer within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    text.lines()
        .next()
        .map(str::to_string)
        .ok_or("closed without an answer".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_hold_the_devices_connections() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(320, 240, &["--bitrate", "300"]).unwrap();
    let port = device.port;
    let log = |what: &str| format!("{what}\n--- device log ---\n{}", device.log());
    assert_eq!(
        healthz([127, 0, 0, 1], port).await.unwrap(),
        "HTTP/1.1 200 OK"
    );

    // Half-sent headers, a silent socket, a signalling socket that never says who it is.
    let mut slow = connect_from([127, 0, 1, 1], port).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = connect_from([127, 0, 1, 2], port).await;
    let mut ws = connect_from([127, 0, 1, 3], port).await;
    ws.write_all(
        b"GET /signal HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let limit = DEADLINE + Duration::from_secs(5);
    let (a, b, c) = tokio::join!(
        closed_within(&mut slow, limit),
        closed_within(&mut silent, limit),
        closed_within(&mut ws, limit),
    );
    for (what, closed) in [
        ("half-sent headers", a),
        ("a silent socket", b),
        ("a mute WebSocket", c),
    ] {
        let after = closed
            .unwrap_or_else(|| panic!("{}", log(&format!("{what} still open after {limit:?}"))));
        println!("  {what}: closed after {:.1} s", after.as_secs_f32());
        assert!(
            after >= DEADLINE - Duration::from_secs(1),
            "{what} closed early: {after:?}"
        );
    }

    // One source holds at most 32 connections; the next is closed at once.
    let mut held = Vec::new();
    for _ in 0..32 {
        held.push(connect_from([127, 0, 2, 1], port).await);
    }
    let mut over = connect_from([127, 0, 2, 1], port).await;
    let closed = closed_within(&mut over, Duration::from_secs(2)).await;
    assert!(
        closed.is_some(),
        "{}",
        log("a 33rd connection from one source was kept")
    );
    // Another source is served meanwhile.
    assert_eq!(
        healthz([127, 0, 0, 1], port).await.unwrap(),
        "HTTP/1.1 200 OK"
    );

    // 256 in all: ten sources x 26 more fill it; a newcomer is refused until they go.
    for source in 0..10u8 {
        for _ in 0..26 {
            held.push(connect_from([127, 0, 3, source], port).await);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = healthz([127, 0, 0, 1], port).await;
    assert!(refused.is_err(), "served past the total cap: {refused:?}");
    println!(
        "  {} connections held: a newcomer is refused ({})",
        held.len(),
        refused.unwrap_err()
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match healthz([127, 0, 0, 1], port).await {
            Ok(status) if status == "HTTP/1.1 200 OK" => break,
            other if Instant::now() > deadline => {
                panic!(
                    "{}",
                    log(&format!("not served after the strangers left: {other:?}"))
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    println!("  served again once they closed");
    assert!(
        !device.log().contains("cannot refresh grants"),
        "{}",
        log("the grants thread starved")
    );
}

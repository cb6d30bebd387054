//! Self-test of the CDP helper in `support::chromium`: launch headless Chromium, load a page
//! from a local HTTP server, evaluate JavaScript, read the console, kill the browser.
//! No peer connections, so it does not need `scripts/netns`.

mod support;

use std::time::Duration;

use support::chromium::Browser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const PAGE: &str = "<!doctype html><title>smoke</title><p id=p>hello</p>\
<script>console.log('smoke loaded', 42); window.answer = 6 * 7;</script>";

/// Serves PAGE to every request on 127.0.0.1 and returns its URL.
async fn serve_page() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The request itself does not matter; read its head (bounded) and answer.
                let mut buf = vec![0; 8192];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                    match sock.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => len += n,
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/")
}

#[tokio::test]
async fn eval_console_and_kill() {
    let url = serve_page().await;
    let profile = tempfile::tempdir().expect("tempdir");
    let mut browser = Browser::launch(profile.path())
        .await
        .expect("launch chromium");
    let page = browser.new_page(&url).await.expect("open page");

    assert_eq!(page.eval("window.answer").await.unwrap(), 42);
    assert_eq!(
        page.eval("document.getElementById('p').textContent")
            .await
            .unwrap(),
        "hello"
    );
    assert_eq!(
        page.eval("undefined").await.unwrap(),
        serde_json::Value::Null
    );
    let later = page.eval("new Promise(r => setTimeout(() => r({ok: true}), 50))");
    assert_eq!(later.await.unwrap(), serde_json::json!({"ok": true}));

    let err = page.eval("throw new Error('boom')").await.unwrap_err();
    assert!(format!("{err:#}").contains("boom"), "{err:#}");

    page.eval("setTimeout(() => { window.ready = 'yes' }, 200)")
        .await
        .unwrap();
    let ready = page
        .wait_for("window.ready", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(ready, "yes");
    let timeout = page
        .wait_for("window.never", Duration::from_millis(300))
        .await;
    assert!(timeout.is_err());

    page.wait_for("true", Duration::from_secs(1)).await.unwrap();
    let console = page.console_log();
    assert!(
        console.iter().any(|l| l == "[console.log] smoke loaded 42"),
        "console: {console:?}"
    );
    page.close().await.expect("close page");

    // A second page on the same browser, then an abrupt kill.
    let page = browser.new_page(&url).await.expect("open second page");
    assert_eq!(page.eval("document.title").await.unwrap(), "smoke");
    let pid = browser.pid();
    browser.kill();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "chromium not reaped"
    );
    assert!(page.eval("1").await.is_err(), "calls after kill must fail");
}

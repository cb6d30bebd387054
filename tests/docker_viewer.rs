//! The container image's end-to-end check, run by `tests/docker/smoke.sh`: a device runs in a
//! container (host network, inside the smoke test's loopback-only namespace), and headless
//! Chromium opens the claim link it printed, becomes its owner and must be shown moving
//! frames. Ignored by default: it needs that container. By hand:
//!
//!   PIPE_TEST_DEVICE_URL='http://127.0.0.1:8080/#device=...&claim=...' \
//!     scripts/netns cargo test --test docker_viewer -- --ignored

mod support;

use std::time::Duration;

use support::viewer::Viewer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a device in a container: tests/docker/smoke.sh runs it"]
async fn a_browser_gets_frames_from_the_container() {
    support::netns::require_loopback_only();
    let url = std::env::var("PIPE_TEST_DEVICE_URL")
        .expect("PIPE_TEST_DEVICE_URL: the claim link the container's device printed");
    assert!(url.contains("claim="), "not a claim link: {url}");
    let viewer = Viewer::open(&url).await.expect("the viewer opens");
    let result = async {
        viewer.wait_role("owner", Duration::from_secs(30)).await?;
        viewer.watching(60, Duration::from_secs(30)).await
    }
    .await;
    match result {
        Ok(frames) => println!("docker viewer: owner, {frames} frames presented"),
        Err(e) => panic!(
            "{e:#}\nconsole:\n{}\nbrowser log:\n{}",
            viewer.page.console_log().join("\n"),
            viewer.browser.log()
        ),
    }
}

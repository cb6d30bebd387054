//! A real device process and in-process GStreamer viewers, through the embedded rendezvous.

mod support;

use std::time::Duration;

use pipe::signalling::protocol::DeviceId;
use pipe_testkit::receiver;
use support::device::Device;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gstreamer_viewer_decodes_distinct_frames_of_the_configured_size() {
    support::netns::require_loopback_only();
    let device = Device::test_picture(640, 360, &[]).unwrap();
    let id = DeviceId::parse(&device.device_id).unwrap();
    let viewer = receiver::connect(&device.signal_url(), id, device.owner(true))
        .await
        .unwrap();
    let result = viewer
        .wait_for(Duration::from_secs(20), |s| s.longest_distinct_run >= 60)
        .await;
    let stats =
        result.unwrap_or_else(|s| panic!("only {s:?}\n--- device log ---\n{}", device.log()));
    assert_eq!((stats.width, stats.height), (640, 360), "{stats:?}");
    assert!(stats.audio_buffers > 0, "audio arrives too: {stats:?}");
    viewer.close().await;
    let status = device.stop().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

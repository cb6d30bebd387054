//! The capture chain with a real encoder: the low rendition runs only while wanted, and a
//! feed moves between renditions at key frames.

use std::time::Duration;

use gst::prelude::*;

use super::*;

const CHAIN: &str = "videotestsrc is-live=true \
    ! video/x-raw,width=640,height=480,framerate=30/1 \
    ! x264enc name=pipe-encoder tune=zerolatency speed-preset=ultrafast key-int-max=300 bitrate=800 \
    ! video/x-h264,profile=constrained-baseline ! h264parse config-interval=-1 \
    ! appsink name=video caps=video/x-h264,stream-format=byte-stream,alignment=au sync=false async=false";

/// A viewer's end of a feed: what reaches its appsrc, read back from an appsink.
struct Receiver {
    pipeline: gst::Pipeline,
    out: gst_app::AppSink,
}

impl Receiver {
    fn start(capture: &Capture) -> (Self, Arc<Feed>) {
        let pipeline = gst::parse::launch(
            "appsrc name=v is-live=true format=time ! appsink name=out sync=false",
        )
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        pipeline.use_clock(Some(capture.clock()));
        let base_time = capture.clock().time();
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(base_time);
        let src = pipeline.by_name("v").unwrap().downcast().unwrap();
        let out = pipeline.by_name("out").unwrap().downcast().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        (Self { pipeline, out }, Feed::new(src, None, base_time))
    }

    /// The next `n` frames' heights and whether each is a key frame.
    fn frames(&self, n: usize) -> Vec<(i32, bool)> {
        tokio::task::block_in_place(|| (0..n).map(|_| self.next()).collect())
    }

    /// The next frame's height and whether it is a key frame.
    fn next(&self) -> (i32, bool) {
        let (height, key, _) = self.next_with_age();
        (height, key)
    }

    /// ... and how long ago it was captured.
    fn next_with_age(&self) -> (i32, bool, Duration) {
        let sample = self
            .out
            .try_pull_sample(gst::ClockTime::from_seconds(5))
            .expect("a frame within 5 s");
        let caps = sample.caps().expect("caps");
        let height = caps.structure(0).unwrap().get("height").unwrap();
        let buffer = sample.buffer().unwrap();
        let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let now = self.pipeline.current_running_time().unwrap();
        let age = now.saturating_sub(buffer.pts().unwrap());
        (height, key, Duration::from_nanos(age.nseconds()))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_low_rendition_runs_only_while_wanted_and_a_feed_switches_at_its_key_frame() {
    crate::media::init().unwrap();
    let capture = Capture::start(CHAIN.into(), false, Some(120))
        .await
        .unwrap();
    assert!(capture.has_low());
    let (receiver, feed) = Receiver::start(&capture);
    capture.attach(feed.clone());
    assert!(feed.open());
    capture.request_keyframe(Rendition::Main);
    let (height, key) = tokio::task::block_in_place(|| receiver.next());
    assert_eq!(
        (height, key),
        (480, true),
        "the feed starts at a key frame of the main one"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        capture.low_frames(),
        0,
        "the low encoder idles until wanted"
    );

    capture.set_low_wanted(true);
    assert!(feed.switch_to(Rendition::Low));
    let frames = receiver.frames(60);
    let first_low = frames
        .iter()
        .position(|(h, _)| *h == 120)
        .expect("the feed moved to the low rendition");
    assert!(frames[first_low].1, "it moved at a key frame");
    assert!(
        frames[first_low..].iter().all(|(h, _)| *h == 120),
        "and stayed: {frames:?}"
    );
    assert!(frames[..first_low].iter().all(|(h, _)| *h == 480));
    assert_eq!(feed.rendition(), Rendition::Low);
    // As fresh as the main rendition's frames: the second encoder is tuned as the first (a
    // copy that undid x264's zerolatency tune held every frame back by 1.3 s).
    let ages = tokio::task::block_in_place(|| {
        (0..30)
            .map(|_| receiver.next_with_age().2)
            .collect::<Vec<_>>()
    });
    assert!(
        ages.iter().all(|age| *age < Duration::from_millis(300)),
        "{ages:?}"
    );
    // 640x480 scaled to 120 rows with square pixels.
    let caps = capture
        .low
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .sink
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    assert_eq!(caps.structure(0).unwrap().get::<i32>("width").unwrap(), 160);

    // Back to the main one, at its key frame; the low encoder stops after its linger.
    assert!(feed.switch_to(Rendition::Main));
    capture.request_keyframe(Rendition::Main);
    capture.set_low_wanted(false);
    let frames = receiver.frames(30);
    let back = frames
        .iter()
        .position(|(h, _)| *h == 480)
        .expect("back on the main one");
    assert!(frames[back].1, "at a key frame: {frames:?}");
    tokio::time::sleep(LOW_LINGER + Duration::from_millis(500)).await;
    let stopped = capture.low_frames();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(capture.low_frames(), stopped, "the low encoder stopped");
    capture.detach(&feed);
    capture.stop().await;
}

//! What a running session holds in the device's shared state, and its release on every way
//! out of the session task.

use std::sync::Arc;

use tracing::warn;

use super::Connected;
use crate::media::capture::{Capture, Feed};
use crate::media::webrtc;
use crate::signalling::protocol::SessionId;

/// What a running session holds in the device's shared state: its feed in the capture
/// fan-out, its `Connected` entry and its PLAYING pipeline. Released on every way out of the
/// session task, an `abort` included (which skips everything after the `.await` it stops at):
/// the feed leaves the fan-out, the entry goes, and the pipeline goes to NULL on a blocking
/// thread, never on a tokio worker (webrtcbin joins its threads on the way to NULL) and never
/// dropped while PLAYING.
pub struct Attached {
    capture: Arc<Capture>,
    feed: Arc<Feed>,
    connected: Connected,
    id: SessionId,
    pipeline: Option<gst::Pipeline>,
}

impl Attached {
    pub fn new(
        capture: Arc<Capture>,
        feed: Arc<Feed>,
        connected: Connected,
        id: SessionId,
        pipeline: gst::Pipeline,
    ) -> Self {
        Self {
            capture,
            feed,
            connected,
            id,
            pipeline: Some(pipeline),
        }
    }

    /// The ordinary way out: the same release, waiting for the pipeline to reach NULL.
    pub async fn release(mut self) {
        self.detach();
        if let Some(pipeline) = self.pipeline.take() {
            let _ = tokio::task::spawn_blocking(move || webrtc::stop_pipeline(&pipeline)).await;
        }
    }

    fn detach(&self) {
        self.capture.detach(&self.feed);
        self.connected.set(&self.id, None);
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.detach();
        let Some(pipeline) = self.pipeline.take() else {
            return;
        };
        let stop = move || webrtc::stop_pipeline(&pipeline);
        // Drop cannot await: hand the state change to a blocking thread.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(stop)),
            Err(_) => {
                if let Err(error) = std::thread::Builder::new()
                    .name("pipe-session-stop".into())
                    .spawn(stop)
                {
                    warn!(%error, "cannot stop a viewer pipeline");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use gst::prelude::*;

    use super::*;
    use crate::identity::Fingerprint;

    /// A capture chain without a camera, as the device builds one (appsink `video`).
    const CHAIN: &str = "videotestsrc is-live=true ! video/x-raw,width=64,height=48 \
        ! x264enc tune=zerolatency speed-preset=ultrafast \
        ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au \
        ! h264parse ! appsink name=video caps=video/x-h264,stream-format=byte-stream,alignment=au \
          sync=false async=false emit-signals=false max-buffers=2 drop=false";

    /// A session task that is aborted mid-`await` (as the device's supervisor does to a session
    /// that cannot keep up) leaves nothing behind: its feed is out of the fan-out, its
    /// `Connected` entry is gone and its pipeline reaches NULL, off the runtime's workers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_session_leaves_nothing_behind() {
        crate::media::init().unwrap();
        let capture = Capture::start(CHAIN.into(), false).await.unwrap();
        let connected = Connected::default();
        let viewer = gst::parse::launch("fakesrc is-live=true ! fakesink")
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        viewer.set_state(gst::State::Playing).unwrap();
        let appsrc = gst::ElementFactory::make("appsrc")
            .build()
            .unwrap()
            .downcast::<gst_app::AppSrc>()
            .unwrap();
        let feed = Feed::new(appsrc, None, gst::ClockTime::ZERO);
        let id = SessionId("aaaaaaaaaaaa-1".into());
        let peer = Fingerprint::of_der(b"viewer");

        capture.attach(feed.clone());
        connected.set(&id, Some(peer));
        let attached = Attached::new(capture.clone(), feed, connected.clone(), id, viewer.clone());
        let task = tokio::spawn(async move {
            let _attached = attached;
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(capture.viewer_count(), 1);
        task.abort();
        let _ = task.await;

        assert_eq!(
            capture.viewer_count(),
            0,
            "the feed is still in the fan-out"
        );
        assert!(
            !connected.contains(&peer),
            "the Connected entry is still there"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while viewer.current_state() != gst::State::Null {
            assert!(
                std::time::Instant::now() < deadline,
                "the pipeline was not stopped"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        capture.stop().await;
    }
}

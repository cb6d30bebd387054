//! A viewer attached to the capture fan-out, and its release on every way out of the session
//! task.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use tracing::warn;

use super::{Registry, Viewer};
use crate::media::capture::Capture;
use crate::media::webrtc;

/// A viewer whose feed is in the capture fan-out and whose pipeline is PLAYING. Released on
/// every way out of the session task, an `abort` included (which skips everything after the
/// `.await` it stops at): the feed leaves the fan-out and the pipeline goes to NULL on a
/// blocking thread, never on a tokio worker (webrtcbin joins its threads on the way to NULL)
/// and never dropped while PLAYING.
pub struct Attached {
    capture: Arc<Capture>,
    viewer: Option<Viewer>,
}

impl Attached {
    /// Puts the viewer's feed into the fan-out and its pipeline into the registry.
    pub fn new(capture: Arc<Capture>, viewer: Viewer, registry: &Registry) -> Self {
        registry.add(&viewer);
        capture.attach(viewer.feed.clone());
        Self {
            capture,
            viewer: Some(viewer),
        }
    }

    /// The ordinary way out: the same release, waiting for the pipeline to reach NULL.
    pub async fn release(mut self) {
        if let Some(viewer) = self.viewer.take() {
            self.capture.detach(&viewer.feed);
            let _ = tokio::task::spawn_blocking(move || stop(viewer)).await;
        }
    }
}

/// Stops the pipeline, then drops every reference the viewer held. Blocks.
fn stop(viewer: Viewer) {
    webrtc::stop_pipeline(&viewer.pipeline);
    drop(viewer);
}

impl Deref for Attached {
    type Target = Viewer;
    fn deref(&self) -> &Viewer {
        self.viewer.as_ref().expect("present until released")
    }
}

impl DerefMut for Attached {
    fn deref_mut(&mut self) -> &mut Viewer {
        self.viewer.as_mut().expect("present until released")
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let Some(viewer) = self.viewer.take() else {
            return;
        };
        self.capture.detach(&viewer.feed);
        // Drop cannot await: hand the state change to a blocking thread.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || stop(viewer))),
            Err(_) => {
                if let Err(error) = std::thread::Builder::new()
                    .name("pipe-session-stop".into())
                    .spawn(move || stop(viewer))
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
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::IceConfig;
    use crate::identity::DeviceIdentity;

    /// A capture chain without a camera, as the device builds one (appsink `video`).
    const CHAIN: &str = "videotestsrc is-live=true ! video/x-raw,width=64,height=48 \
        ! x264enc tune=zerolatency speed-preset=ultrafast \
        ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au \
        ! h264parse ! appsink name=video caps=video/x-h264,stream-format=byte-stream,alignment=au \
          sync=false async=false emit-signals=false max-buffers=2 drop=false";

    /// A task holding an attached viewer that is aborted mid-`await` (as the device's
    /// supervisor does to a session that cannot keep up) leaves nothing behind: the feed is
    /// out of the fan-out and the pipeline reaches NULL and is freed, off the runtime's
    /// workers. (`session`'s own test adds its `Connected` entry and slot.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_task_leaves_no_viewer_behind() {
        crate::media::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let identity = DeviceIdentity::load_or_create(dir.path()).unwrap();
        let pem = format!("{}{}", identity.cert_pem, identity.key_pem.expose());
        let capture = Capture::start(CHAIN.into(), false).await.unwrap();
        let registry = Registry::default();
        let (events, _events) = mpsc::channel(16);
        let (control, _control) = mpsc::channel(16);
        let built = {
            let capture = capture.clone();
            tokio::task::spawn_blocking(move || {
                super::super::build(&capture, &IceConfig::default(), pem, events, control)
            })
            .await
            .unwrap()
            .unwrap()
        };
        let attached = Attached::new(capture.clone(), built, &registry);
        let pipeline = attached.pipeline.downgrade();
        let task = tokio::spawn(async move {
            let _attached = attached;
            std::future::pending::<()>().await;
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!((capture.viewer_count(), registry.live().0), (1, 1));
        task.abort();
        let _ = task.await;

        assert_eq!(
            capture.viewer_count(),
            0,
            "the feed is still in the fan-out"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while registry.live().0 != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the pipeline was not stopped and freed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(pipeline.upgrade().is_none());
        capture.stop().await;
    }
}

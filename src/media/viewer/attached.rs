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

// Tested through the session that holds it: an aborted session task leaves no feed, entry,
// slot or pipeline behind (`session::task::tests::an_aborted_session_leaves_nothing_behind`).

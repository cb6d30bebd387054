//! Everything that touches GStreamer lives below this module: the capture chain all viewers
//! share (`capture`) and its live settings (`controls`), one pipeline per viewer (`viewer`)
//! with its datachannels (`datachannels` is the proxy's transport), the webrtcbin, SDP and
//! DTLS wrappers (`webrtc`, `sdp`, `dtls`), and what this machine has (`probe`, `plugins`).
//! The chains as data and the choice of one are `chains`, which has no GStreamer; the viewer
//! session that drives a viewer pipeline is `session`, above this module.

pub mod capture;
#[cfg(feature = "bench-hooks")]
pub mod ceiling;
pub mod controls;
pub mod datachannels;
pub mod dtls;
pub mod keyframe;
pub mod playout;
pub mod plugins;
pub mod probe;
pub mod sdp;
pub mod stamp;
pub mod viewer;
pub mod webrtc;

/// Errors at the media boundary.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
    #[error("{0}")]
    Pipeline(String),
    #[error("negotiation failed: {0}")]
    Negotiation(String),
}

/// Initialises GStreamer once; every entry point calls this first.
pub fn init() -> Result<(), MediaError> {
    gst::init().map_err(|e| MediaError::Init(e.to_string()))
}

/// The GStreamer library in use, e.g. `GStreamer 1.22.0` (for `pipe doctor`).
pub fn gstreamer_version() -> String {
    gst::version_string().to_string()
}

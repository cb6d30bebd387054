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
pub mod pacer;
pub mod playout;
pub mod plugins;
pub mod probe;
pub mod sdp;
pub mod stamp;
pub mod twcc;
pub mod viewer;
pub mod webrtc;

/// Errors at the media boundary.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(#[source] gst::glib::Error),
    /// GStreamer did not accept a pipeline description.
    #[error("cannot build the {part}: {error}")]
    Build { part: Part, error: gst::glib::Error },
    #[error("the {0} description is not a pipeline")]
    NotAPipeline(Part),
    /// A pipeline did not reach PLAYING; the error its bus posted, if any.
    #[error("the {part} did not start{}", .error.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    DidNotStart { part: Part, error: Option<BusError> },
    #[error("the capture chain has no appsink named {0}")]
    NoAppsink(&'static str),
    /// A blocking task that built or changed a pipeline panicked or was cancelled.
    #[error("a media task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("webrtcbin dropped the {0} request")]
    Dropped(&'static str),
    #[error("webrtcbin's {request} promise failed: {error:?}")]
    Promise {
        request: &'static str,
        error: gst::PromiseError,
    },
    /// webrtcbin answered a request with an error.
    #[error("webrtcbin refused {request}: {error}")]
    Refused {
        request: &'static str,
        error: gst::glib::Error,
    },
    #[error("webrtcbin gave no result for {0}")]
    NoResult(&'static str),
    #[error("webrtcbin refused to create data channel {0:?}")]
    DataChannel(String),
    #[error("the SDP does not parse: {0}")]
    Sdp(#[source] gst::glib::BoolError),
    #[error("cannot write the SDP: {0}")]
    WriteSdp(#[source] gst::glib::BoolError),
}

/// Which pipeline an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Capture,
    Viewer,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Capture => "capture chain",
            Part::Viewer => "viewer pipeline",
        })
    }
}

/// An error a pipeline's bus posted: GStreamer's error and its debug text.
#[derive(Debug, Clone)]
pub struct BusError {
    pub error: gst::glib::Error,
    pub debug: Option<String>,
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.debug {
            Some(debug) => write!(f, "{} ({debug})", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

/// Initialises GStreamer once; every entry point calls this first.
pub fn init() -> Result<(), MediaError> {
    gst::init().map_err(MediaError::Init)
}

/// The GStreamer library in use, e.g. `GStreamer 1.22.0` (for `pipe doctor`).
pub fn gstreamer_version() -> String {
    gst::version_string().to_string()
}

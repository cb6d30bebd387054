//! Adapting to the link (issue 13), pure: no GStreamer, no sockets, no clock. `feedback` is what
//! viewers report, `estimator` one viewer's bandwidth estimate from it, `encoder` the policy
//! that turns every viewer's estimate into the shared encoder's target, `rendition` which
//! viewers a second, low rendition serves, `datashare` the datachannels' part of a narrow
//! link, `pacer` how one
//! viewer's packets are spread out over time. `media/` translates
//! GStreamer's feedback into these types and applies the target; the viewer session feeds its
//! estimator. Depends on nothing in the crate.

pub mod datashare;
pub mod encoder;
pub mod estimator;
pub mod feedback;
pub mod pacer;
pub mod rendition;
pub mod utilization;

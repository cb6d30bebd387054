//! Helpers shared by the integration tests: each `tests/*.rs` says `mod support;`.
// Not every test binary uses every helper.
#![allow(dead_code)]

pub mod aiortc;
pub mod chromium;
pub mod coturn;
pub mod device;
pub mod grants;
pub mod netns;
pub mod raw;
pub mod rendezvous;
pub mod viewer;

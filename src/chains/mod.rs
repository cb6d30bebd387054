//! Capture chains as data, with no GStreamer: the pipeline file format and the builtin chains
//! (`pipeline`), what the machine has (`machine`), which package provides each element
//! (`plugins`) and which chain to run (`select`). `media` gathers the facts from GStreamer
//! (`media::probe`, `media::plugins`) and runs the chosen chain.

pub mod machine;
pub mod pipeline;
pub mod plugins;
pub mod select;

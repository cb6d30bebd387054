//! pipe: secure remote access to a camera behind NAT, with nothing but a browser.
//!
//! The binary (`src/main.rs`) only parses arguments and calls into this library. Three flows
//! read straight through the modules: a signalling message (`signalling`), a video frame
//! (`media`), and the viewer app (`web`).

pub mod adapt;
pub mod chains;
pub mod cli;
pub mod cmds;
pub mod config;
pub mod demo_ui;
pub mod doctor;
pub mod grants;
pub mod identity;
pub mod media;
pub mod persist;
pub mod proxy;
pub mod session;
pub mod signalling;
pub mod web;

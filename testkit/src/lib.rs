//! pipe's test and benchmark harness, kept out of the binary that ships: `receiver`, a
//! headless viewer with its own signalling client (the cheap extra viewer of tests and
//! benchmarks), `proxy_client`, the opener's side of the web-UI proxy in Rust over it, and
//! `link`, an emulated network link (rate, queue, delay, jitter, loss, blackouts, changing on a
//! script) for the device's media. Only `pipe`'s tests and benchmarks depend on this crate.

pub mod link;
pub mod proxy_client;
pub mod receiver;

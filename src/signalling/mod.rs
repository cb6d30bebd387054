//! Signalling: the wire protocol, the rendezvous server (pure routing + WebSocket transport)
//! and the device's outbound client.

pub mod backoff;
pub mod client;
pub mod limits;
pub mod proof;
pub mod protocol;
pub mod router;
pub mod server;

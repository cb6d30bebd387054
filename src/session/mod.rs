//! One viewer's session, the layer above `media`, `grants` and `proxy` (and used by none of
//! them): the supervisor (`cmds/device.rs`) admits it and spawns its task.
//!
//! - `machine`: every decision, sans IO (`Session::handle(input, now) -> actions`).
//! - `task`: the thin task that feeds the machine and carries out its actions.
//! - `access`, `admission`: pure rules for what a certificate may do and who holds a slot.
//! - `control`, `proxy`: the control channel's requests and the web-UI proxy's bridge.
//! - `context`: what a session shares with the device.

mod access;
pub mod adapt;
pub mod admission;
mod context;
mod control;
mod machine;
mod proxy;
mod task;

pub use self::context::{Command, Connected, SessionContext, SessionHandle};
pub use self::task::spawn;
pub use crate::media::viewer::Registry;

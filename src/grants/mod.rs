//! Access to the device: the owner (who claimed it), borrowers (lent time-limited access) and
//! the secrets that bind them, all held on the device. `model` is the pure logic; `store`
//! persists it atomically with an audit log.

pub mod audit;
pub mod control;
pub mod links;
pub mod model;
pub mod renewal;
pub mod secret;
pub mod service;
pub mod store;

pub use model::{Access, Grant, GrantError, Grants, LendPolicy, LendRequest, Role, Scope, Time};
pub use secret::{Secret, SecretHash};
pub use service::GrantsService;

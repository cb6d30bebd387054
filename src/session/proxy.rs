//! The session's web-UI proxy: the bridge task (`proxy::bridge`) over the four `proxy-N`
//! channels, started when the session's decisions say so (`machine`: all four open, ordered and
//! reliable, on a grant with the UI scope) and ending with the session.

use std::sync::Arc;

use tracing::Instrument;

use crate::media::datachannels::{Inbound, Tap};
use crate::proxy::upstream::Upstream;

pub struct Proxy {
    tap: Arc<Tap>,
    /// Taken by the bridge when it starts; dropped (discarding what came) when the proxy stops.
    inbound: Option<Inbound>,
    task: Option<tokio::task::JoinHandle<()>>,
    upstream: Arc<Upstream>,
}

impl Proxy {
    pub fn new(tap: Arc<Tap>, inbound: Option<Inbound>, upstream: Arc<Upstream>) -> Self {
        Self {
            tap,
            inbound,
            task: None,
            upstream,
        }
    }

    /// Starts the bridge (once; not after `refuse` or `stop`).
    pub fn start(&mut self) {
        if self.task.is_none()
            && let Some(outlet) = self.tap.outlet()
            && let Some(inbound) = self.inbound.take()
        {
            let bridge = crate::proxy::bridge::run(inbound, outlet, self.upstream.clone());
            let task = async move {
                bridge.await;
            };
            self.task = Some(tokio::spawn(task.in_current_span()));
        }
    }

    /// A viewer without the UI scope opened a proxy channel (the session closed it): what it
    /// sent is dropped, and the proxy stays off on this connection.
    pub fn refuse(&mut self) {
        self.inbound = None;
    }

    /// Stops the proxy for the rest of this peer connection and closes its channels.
    pub fn stop(&mut self) {
        self.halt();
        self.tap.close_all();
    }

    fn halt(&mut self) {
        self.inbound = None;
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    /// The session is over: its pipeline goes to NULL, which closes the channels.
    fn drop(&mut self) {
        self.halt();
    }
}

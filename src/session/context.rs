//! What a session shares with the device: the commands the supervisor sends it, its handle,
//! everything it needs from the device (`SessionContext`), who is connected, and its viewer slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::admission;
use crate::config::IceConfig;
use crate::grants::GrantsService;
use crate::grants::links::Links;
use crate::identity::{DeviceIdentity, Fingerprint};
use crate::media::capture::Capture;
use crate::media::playout::PlayoutDelay;
use crate::media::viewer::Registry;
use crate::signalling::protocol::{ClientMessage, SessionId, SignalData};

/// What the device's signalling loop tells a session.
#[derive(Debug)]
pub enum Command {
    Remote(SignalData),
    /// The other side or the device ended it; do not send `end` back.
    End(String),
    /// The device closes it (to make room for another viewer): tell the viewer why.
    Close(String),
    /// The link to the rendezvous dropped: a session still negotiating cannot finish and
    /// ends; a connected one goes on (media is peer to peer).
    RendezvousLost,
}

pub struct SessionHandle {
    pub commands: mpsc::Sender<Command>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Which certificates are connected now, for the owner's list of grants.
#[derive(Clone, Default)]
pub struct Connected(Arc<Mutex<HashMap<SessionId, Fingerprint>>>);

impl Connected {
    pub fn contains(&self, fingerprint: &Fingerprint) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|f| f == fingerprint)
    }

    pub(super) fn set(&self, id: &SessionId, fingerprint: Option<Fingerprint>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match fingerprint {
            Some(fp) => map.insert(id.clone(), fp),
            None => map.remove(id),
        };
    }
}

/// Everything a session needs from the device.
#[derive(Clone)]
pub struct SessionContext {
    pub capture: Arc<Capture>,
    pub ice: IceConfig,
    pub outgoing: mpsc::Sender<ClientMessage>,
    pub registry: Registry,
    pub identity: Arc<DeviceIdentity>,
    pub grants: Arc<GrantsService>,
    pub links: Links,
    pub connected: Connected,
    /// The hidden `--bench-datachannel` flag: serve the `bench-ceiling` channel (`ceiling`).
    #[cfg(feature = "bench-hooks")]
    pub bench_datachannel: bool,
    /// The camera UI the web-UI proxy forwards to, with its limits.
    pub upstream: Arc<crate::proxy::upstream::Upstream>,
    /// Which viewers' packets carry the playout-delay hint (`[video] playout_delay`).
    pub playout: PlayoutDelay,
    /// Who holds a viewer slot, and in which phase (`admission`).
    pub admission: Arc<Mutex<admission::Admission>>,
    /// The viewers' estimates, steering the shared encoder (`adapt`).
    pub adaptation: Arc<super::adapt::Adaptation>,
}

/// A session's slot: moved forward as the session answers and is verified, and given back
/// when the session's task ends, however it ends (dropped with it).
pub(super) struct Slot {
    pub(super) admission: Arc<Mutex<admission::Admission>>,
    pub(super) id: SessionId,
}

impl Slot {
    pub(super) fn advance(&self, phase: admission::Phase) {
        self.admission
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .advance(&self.id, phase);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ended(&self.id);
    }
}

/// A session's entry in `Connected`, removed when the session's task ends, however it ends.
pub(super) struct ConnectedEntry {
    pub(super) connected: Connected,
    pub(super) id: SessionId,
}

impl ConnectedEntry {
    pub(super) fn set(&self, fingerprint: Fingerprint) {
        self.connected.set(&self.id, Some(fingerprint));
    }
}

impl Drop for ConnectedEntry {
    fn drop(&mut self) {
        self.connected.set(&self.id, None);
    }
}

//! The session's end of the `control` datachannel: announces the viewer's access and serves
//! its requests through the grants service (on blocking threads: they write the store).

use gst::prelude::*;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::SessionContext;
use super::access::State;
use crate::grants::control::{self, AccessInfo, GrantView, Reply, Request};
use crate::grants::links::qr_svg;
use crate::grants::{Access, Role, Secret, service::ServiceError};
use crate::identity::Fingerprint;
use crate::media::capture::CameraState;
use crate::media::webrtc;

/// What the channel's callbacks forward (they run on GStreamer threads).
#[derive(Debug)]
pub enum ControlEvent {
    Open,
    Message(String),
}

/// A change a request made to this session: the certificate it now stands for, and what
/// that certificate may do.
pub type Change = (Fingerprint, Option<Access>);

#[derive(Default)]
pub struct Control {
    channel: Option<gst_webrtc::WebRTCDataChannel>,
    open: bool,
    /// An access announcement waits for the channel to open.
    pending: bool,
    /// Claim and redeem attempts made on this session (`MAX_ATTEMPTS`).
    attempts: std::sync::atomic::AtomicU32,
    /// When the viewer last said `alive` (viewers that never do are not held to it).
    last_alive: Option<std::time::Instant>,
}

/// Claim or redeem attempts one session may make: a person mistyping gets a few tries, a
/// stranger guessing must open a new session (rate-limited at the rendezvous) for every few.
pub const MAX_ATTEMPTS: u32 = 3;

impl Control {
    /// Creates the device's `control` channel (before the offer, so it is negotiated in it).
    pub fn open(
        &mut self,
        webrtc: &gst::Element,
        events: mpsc::Sender<ControlEvent>,
    ) -> Result<(), String> {
        let channel = webrtc::create_data_channel(webrtc, "control").map_err(|e| e.to_string())?;
        let tx = events.clone();
        channel.connect("on-open", false, move |_| {
            let _ = tx.try_send(ControlEvent::Open);
            None
        });
        channel.connect("on-message-string", false, move |values| {
            if let Ok(Some(text)) = values[1].get::<Option<String>>() {
                // A full queue means a viewer flooding requests: dropping is the answer.
                let _ = events.try_send(ControlEvent::Message(text));
            }
            None
        });
        self.channel = Some(channel);
        Ok(())
    }

    /// Tells the viewer where it stands, now or as soon as the channel opens.
    pub fn announce(&mut self, state: &State, context: &SessionContext) {
        if !self.open {
            self.pending = true;
            return;
        }
        let closes_in = match state {
            State::PreAuth { until, .. } => Some(
                until
                    .saturating_duration_since(std::time::Instant::now())
                    .as_secs()
                    .max(1),
            ),
            _ => None,
        };
        let reply = Reply::Access {
            device_id: context.identity.device_id.to_string(),
            claimed: context.grants.is_claimed(),
            access: AccessInfo::from(state.access()),
            closes_in,
        };
        self.send(&reply);
        if state.media_allowed() {
            self.camera(context.capture.camera_state());
        }
    }

    /// When the viewer last said `alive`; None if it never has.
    pub fn last_alive(&self) -> Option<std::time::Instant> {
        self.last_alive
    }

    /// Tells a viewer whether the camera delivers pictures (once the channel is open; an
    /// announcement made before it opens carries the state then).
    pub fn camera(&self, state: CameraState) {
        if self.open {
            self.send(&Reply::Camera {
                live: state == CameraState::Live,
            });
        }
    }

    /// Serves one event. Returns the reply to send and the change the request made: the
    /// caller applies the change first (so media opens without waiting for the reply's
    /// send), then sends the reply with [`Control::send`].
    pub async fn handle(
        &mut self,
        event: ControlEvent,
        state: &State,
        context: &SessionContext,
    ) -> (Option<Reply>, Option<Change>) {
        match event {
            ControlEvent::Open => {
                self.open = true;
                if std::mem::take(&mut self.pending) {
                    self.announce(state, context);
                }
                (None, None)
            }
            ControlEvent::Message(text) => match control::decode(&text) {
                Ok(Request::Alive) => {
                    self.last_alive = Some(std::time::Instant::now());
                    (None, None)
                }
                Ok(request) => {
                    let name = request.name();
                    match self.serve(request, state, context).await {
                        Ok((reply, change)) => (Some(reply), change),
                        Err(message) => {
                            debug!(request = name, %message, "control request refused");
                            let error = Reply::Error {
                                request: Some(name),
                                message,
                            };
                            (Some(error), None)
                        }
                    }
                }
                Err(reply) => (Some(reply), None),
            },
        }
    }

    async fn serve(
        &self,
        request: Request,
        state: &State,
        context: &SessionContext,
    ) -> Result<(Reply, Option<Change>), String> {
        let Some(me) = state.fingerprint() else {
            return Err("the connection is not checked yet; try again in a moment".into());
        };
        if state.access().is_none() && !request.allowed_before_access() {
            return Err("this browser has no access to the camera".into());
        }
        let grants = context.grants.clone();
        let name = request.name();
        let done = Reply::Done { request: name };
        if matches!(request, Request::Claim { .. } | Request::Redeem { .. }) {
            let made = self.attempts.load(std::sync::atomic::Ordering::Relaxed);
            if made >= MAX_ATTEMPTS {
                return Err(format!(
                    "{MAX_ATTEMPTS} attempts on this connection already; reload the page to try again"
                ));
            }
            self.attempts
                .store(made + 1, std::sync::atomic::Ordering::Relaxed);
        }
        match request {
            Request::Claim { secret } => {
                blocking(move || grants.claim(&Secret::presented(&secret), me)).await?;
                Ok((done, Some((me, context.grants.check(&me)))))
            }
            Request::Redeem { token } => {
                blocking(move || grants.redeem(&Secret::presented(&token), me)).await?;
                Ok((done, Some((me, context.grants.check(&me)))))
            }
            Request::Lend { scope, secs } => {
                let token = blocking(move || grants.lend(me, scope, secs)).await?;
                let link = context.links.borrow(&token);
                let warning = (!context.links.is_public()).then(|| {
                    "This link works only where this device's address is reachable (its LAN). Set device.public_url to lend beyond it.".to_string()
                });
                Ok((
                    Reply::Lent {
                        qr_svg: qr_svg(&link),
                        link,
                        scope,
                        secs,
                        warning,
                    },
                    None,
                ))
            }
            Request::Grants => {
                if state.access().map(|a| a.role) != Some(Role::Owner) {
                    return Err("only the owner can see the grants".into());
                }
                let list = grants
                    .list()
                    .iter()
                    .map(|g| GrantView::new(g, context.connected.contains(&g.fingerprint)))
                    .collect();
                Ok((Reply::Grants { grants: list }, None))
            }
            Request::Revoke { id } => {
                blocking(move || grants.revoke(Some(me), &id)).await?;
                Ok((done, None))
            }
            Request::Renew { fingerprint } => {
                let new = Fingerprint::parse(&fingerprint)
                    .ok_or("not a SHA-256 fingerprint (AB:CD:...)")?;
                // Memory only; the grant moves when a session proves the new key (DTLS).
                grants.offer_renewal(me, new).map_err(|e| e.to_string())?;
                Ok((done, None))
            }
            // Taken in `handle` before anything is served; never answered.
            Request::Alive => Err("`alive` is not answered".into()),
        }
    }

    pub fn send(&self, reply: &Reply) {
        if let Some(channel) = &self.channel {
            let text = control::encode(reply);
            channel.emit_by_name::<()>("send-string", &[&Some(text.as_str())]);
        } else {
            warn!("no control channel to answer on");
        }
    }
}

/// Runs a grants operation (it writes the store) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(e) => Err(format!("internal error: {e}")),
    }
}

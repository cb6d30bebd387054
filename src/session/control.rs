//! The session's end of the `control` datachannel: announces the viewer's access and serves
//! its requests through the grants service (on blocking threads: they write the store).

use tracing::debug;

use super::SessionContext;
use super::access::State;
use crate::grants::control::{self, AccessInfo, GrantView, Reply, Request};
use crate::grants::links::qr_svg;
use crate::grants::{Access, Role, Secret, service::ServiceError};
use crate::identity::Fingerprint;
use crate::media::capture::CameraState;
use crate::media::viewer::ControlChannel;
pub use crate::media::viewer::ControlEvent;

/// What one control event came to.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to do (the channel opened; an announcement that waited for it went out).
    Nothing,
    /// The viewer said `alive`.
    Alive,
    /// A reply to send.
    Reply(Reply),
    /// A request (claim or redeem) changed what this session's certificate may do: the caller
    /// applies the change first (so media opens without waiting for the reply's send), then
    /// sends the reply with [`Control::send`].
    Changed(Option<Access>, Reply),
}

pub struct Control {
    channel: ControlChannel,
    open: bool,
    /// An access announcement waits for the channel to open.
    pending: bool,
    /// Claim and redeem attempts made on this session (`MAX_ATTEMPTS`).
    attempts: u32,
}

/// Claim or redeem attempts one session may make: a person mistyping gets a few tries, a
/// stranger guessing must open a new session (rate-limited at the rendezvous) for every few.
pub const MAX_ATTEMPTS: u32 = 3;

impl Control {
    pub fn new(channel: ControlChannel) -> Self {
        Self {
            channel,
            open: false,
            pending: false,
            attempts: 0,
        }
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

    /// Tells a viewer whether the camera delivers pictures (once the channel is open; an
    /// announcement made before it opens carries the state then).
    pub fn camera(&self, state: CameraState) {
        if self.open {
            self.send(&Reply::Camera {
                live: state == CameraState::Live,
            });
        }
    }

    /// Serves one event.
    pub async fn handle(
        &mut self,
        event: ControlEvent,
        state: &State,
        context: &SessionContext,
    ) -> Outcome {
        match event {
            ControlEvent::Open => {
                self.open = true;
                if std::mem::take(&mut self.pending) {
                    self.announce(state, context);
                }
                Outcome::Nothing
            }
            ControlEvent::Message(text) => match control::decode(&text) {
                Ok(Request::Alive) => Outcome::Alive,
                Ok(request) => {
                    let name = request.name();
                    match self.serve(request, state, context).await {
                        Ok((reply, Some(access))) => Outcome::Changed(access, reply),
                        Ok((reply, None)) => Outcome::Reply(reply),
                        Err(refusal) => {
                            debug!(request = name, %refusal, "control request refused");
                            Outcome::Reply(Reply::Error {
                                request: Some(name),
                                message: refusal.to_string(),
                            })
                        }
                    }
                }
                Err(reply) => Outcome::Reply(reply),
            },
        }
    }

    async fn serve(
        &mut self,
        request: Request,
        state: &State,
        context: &SessionContext,
    ) -> Result<(Reply, Option<Option<Access>>), Refusal> {
        let Some(me) = state.fingerprint() else {
            return Err(Refusal::NotChecked);
        };
        if state.access().is_none() && !request.allowed_before_access() {
            return Err(Refusal::NoAccess);
        }
        let grants = context.grants.clone();
        let name = request.name();
        let done = Reply::Done { request: name };
        if matches!(request, Request::Claim { .. } | Request::Redeem { .. }) {
            if self.attempts >= MAX_ATTEMPTS {
                return Err(Refusal::TooManyAttempts);
            }
            self.attempts += 1;
        }
        match request {
            Request::Claim { secret } => {
                blocking(move || grants.claim(&Secret::presented(&secret), me)).await?;
                Ok((done, Some(context.grants.check(&me))))
            }
            Request::Redeem { token } => {
                blocking(move || grants.redeem(&Secret::presented(&token), me)).await?;
                Ok((done, Some(context.grants.check(&me))))
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
                    return Err(Refusal::NotOwner);
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
                let new = Fingerprint::parse(&fingerprint).ok_or(Refusal::NotAFingerprint)?;
                // Memory only; the grant moves when a session proves the new key (DTLS).
                grants.offer_renewal(me, new)?;
                Ok((done, None))
            }
            // Taken in `handle` before anything is served; never answered.
            Request::Alive => Err(Refusal::NotAnswered),
        }
    }

    pub fn send(&self, reply: &Reply) {
        self.channel.send(&control::encode(reply));
    }
}

/// Why a control request was refused; the text is what the viewer is told.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the connection is not checked yet; try again in a moment")]
    NotChecked,
    #[error("this browser has no access to the camera")]
    NoAccess,
    #[error("{MAX_ATTEMPTS} attempts on this connection already; reload the page to try again")]
    TooManyAttempts,
    #[error("only the owner can see the grants")]
    NotOwner,
    #[error("not a SHA-256 fingerprint (AB:CD:...)")]
    NotAFingerprint,
    #[error("`alive` is not answered")]
    NotAnswered,
    #[error(transparent)]
    Grants(#[from] ServiceError),
    #[error("internal error: {0}")]
    Internal(#[from] tokio::task::JoinError),
}

/// Runs a grants operation (it writes the store) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, Refusal> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

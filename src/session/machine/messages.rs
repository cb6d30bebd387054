//! What goes into the session machine and what comes out: the device's settings (`Config`),
//! everything that can happen to a session (`Input`), what the task must do (`Action`), and
//! how a session ends (`Ending`).

use std::net::IpAddr;

use super::super::access::State;
use super::super::admission::Phase;
use crate::grants::Access;
use crate::identity::Fingerprint;
use crate::media::capture::CameraState;
use crate::media::playout::{PathEnd, PlayoutDelay};
pub use crate::media::viewer::PeerState;
use crate::signalling::protocol::SignalData;

/// What the session is told about this device, once.
#[derive(Debug, Clone)]
pub struct Config {
    /// The device's certificate: the offer carries its fingerprint.
    pub fingerprint: Fingerprint,
    /// The capture's H.264 profile-level-id, for an offer whose fmtp lacks it.
    pub profile_level_id: Option<String>,
    /// An address advertised besides the host's own (`[ice] advertise_address`).
    pub advertise_address: Option<IpAddr>,
    /// Which viewers' packets carry the playout-delay hint.
    pub playout: PlayoutDelay,
    /// Serve the `bench-ceiling` channel (the hidden `--bench-datachannel` flag; only with
    /// the `bench-hooks` feature can it be set).
    pub bench_datachannel: bool,
}

/// Everything that can happen to a session.
#[derive(Debug)]
pub enum Input {
    /// webrtcbin made the device's offer (set as the local description): its SDP.
    Offered(String),
    /// An answer or a candidate from the viewer, through the rendezvous.
    Remote(SignalData),
    /// The viewer or the rendezvous ended it (no `end` goes back).
    EndedByPeer(String),
    /// The device closes it (to make room for another viewer): the viewer is told why.
    Close(String),
    /// The link to the rendezvous dropped.
    RendezvousLost,
    /// Signalling can no longer carry this session's messages (the device is shutting down).
    SignallingClosed,
    /// webrtcbin gathered a local candidate.
    LocalCandidate { mline: u32, candidate: String },
    /// The peer connection's state changed.
    Peer(PeerState),
    /// The DTLS handshake showed the peer's certificate. `access`: what the grants say about
    /// it; `renewal_offered`: its owner offered it as a renewed certificate.
    Certificate {
        peer: Fingerprint,
        access: Option<Access>,
        renewal_offered: bool,
    },
    /// `Action::CompleteRenewal` is done: what the grants say now.
    Renewed(Option<Access>),
    /// The viewer opened a datachannel.
    Channel { label: String, reliable: bool },
    /// The viewer said `alive` on the control channel.
    Alive,
    /// What the grants say about this session's certificate now (after any change to them, a
    /// claim or redeem on this session, and on every tick).
    Access(Option<Access>),
    /// The camera went live or was lost.
    Camera(CameraState),
    /// The path ICE selected (`Action::ChoosePlayoutHint`).
    SelectedPath(Option<PathEnd>, Option<PathEnd>),
    /// The engine failed (the pipeline posted an error, a description was refused, webrtcbin
    /// went away): the session cannot go on.
    Failed(String),
    /// Time passed (the task ticks every `TICK`).
    Tick,
}

/// What the task must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this to the viewer through the rendezvous.
    Signal(SignalData),
    /// Hand webrtcbin the answer, written from the checked model.
    SetAnswer(String),
    /// Hand webrtcbin a checked, rebuilt remote candidate.
    AddCandidate { mline: u32, candidate: String },
    /// Move this session's viewer slot on.
    Admit(Phase),
    /// Append to the audit log.
    Audit {
        event: &'static str,
        fingerprint: Fingerprint,
        detail: &'static str,
    },
    /// List this certificate as connected (the owner's list of grants).
    MarkConnected(Fingerprint),
    /// Tell the viewer where it stands (on the control channel).
    Announce(State),
    /// Tell the viewer whether the camera delivers pictures.
    TellCamera(CameraState),
    /// Move the grant offered for renewal to this certificate (it proved its key), then
    /// report `Input::Renewed`.
    CompleteRenewal(Fingerprint),
    /// Find the path ICE selected and report `Input::SelectedPath`.
    ChoosePlayoutHint,
    /// Whether this viewer's packets carry the playout-delay hint.
    PlayoutHint(bool),
    /// Let frames flow to the viewer, starting with a key frame.
    OpenMedia,
    /// Close the channel of the `Input::Channel` just handled.
    CloseChannel,
    /// The channel of the `Input::Channel` just handled is the ceiling benchmark's.
    ServeCeiling,
    /// All four proxy channels are open and reliable: start the web-UI proxy.
    StartProxy,
    /// The proxy stays off on this connection: drop what its channels delivered.
    RefuseProxy,
    /// Stop the proxy for the rest of this connection and close its channels.
    StopProxy,
    /// The session is over (always the last action, given once).
    End(Ending),
}

/// Who ended a session, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The viewer, the rendezvous or the device's shutdown: nothing to tell the viewer.
    ByPeer(String),
    /// This session decided: the viewer is sent an `end` with the reason.
    ByDevice(String),
}

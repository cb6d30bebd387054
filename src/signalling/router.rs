//! The rendezvous server's routing, as a pure state machine: connections come and go, messages
//! come in, and the router says what to send to whom. No sockets, no clock, no randomness
//! beyond the session-id prefix it is given, so every rule is unit-tested directly.

use std::collections::{BTreeSet, HashMap};

use super::proof::{self, RegisterProof};
use super::protocol::{
    ClientMessage, DecodeError, DeviceId, ErrorCode, MAX_MESSAGE_BYTES, MAX_REASON_CHARS,
    ServerMessage, SessionId,
};

/// A transport-level connection, numbered by the server.
pub type ConnId = u64;

/// Open sessions one viewer connection may hold (documented in docs/protocol.md).
pub const MAX_SESSIONS_PER_VIEWER: usize = 8;

/// What the transport must do after the router handled an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Send(ConnId, ServerMessage),
    /// Send the queued messages, then close this connection.
    Close(ConnId),
}

#[derive(Debug, Default)]
struct Conn {
    /// Sent in `welcome`; a registration on this connection signs it.
    nonce: String,
    /// The `host[:port]` the peer says it reached (its Host header), when known.
    authority: Option<String>,
    /// The peer's address (IPv4, or the /64 of IPv6), when the transport knows it.
    source: Option<String>,
    device: Option<DeviceId>,
    /// Sessions this connection is the viewer of.
    viewing: BTreeSet<SessionId>,
}

#[derive(Debug)]
struct Session {
    viewer: ConnId,
    device: ConnId,
}

#[derive(Debug)]
pub struct Router {
    server_name: String,
    conns: HashMap<ConnId, Conn>,
    devices: HashMap<DeviceId, ConnId>,
    sessions: HashMap<SessionId, Session>,
    session_prefix: String,
    next_session: u64,
    /// The one device id this rendezvous serves (a device's embedded rendezvous), if any.
    only_device: Option<DeviceId>,
    /// The authority registrations must be signed for (`--public-url`); without it, each
    /// connection's own Host header.
    authority: Option<String>,
}

impl Router {
    /// `session_prefix` makes session ids unguessable across server restarts; give it some
    /// random characters.
    pub fn new(server_name: impl Into<String>, session_prefix: impl Into<String>) -> Self {
        Self {
            server_name: server_name.into(),
            conns: HashMap::new(),
            devices: HashMap::new(),
            sessions: HashMap::new(),
            session_prefix: session_prefix.into(),
            next_session: 1,
            only_device: None,
            authority: None,
        }
    }

    /// Serve `device_id` alone: an embedded rendezvous is its device's, nobody else's.
    pub fn only_device(&mut self, device_id: DeviceId) {
        self.only_device = Some(device_id);
    }

    /// Registrations must be signed for `authority` (`host[:port]` of the public URL).
    pub fn require_authority(&mut self, authority: String) {
        self.authority = Some(authority);
    }

    /// A connection opened. `nonce` must be fresh and unpredictable (the transport draws it);
    /// `authority` is the Host it was reached by, when the transport knows it.
    pub fn connected(
        &mut self,
        conn: ConnId,
        nonce: String,
        authority: Option<String>,
        source: Option<std::net::IpAddr>,
    ) -> Vec<Output> {
        self.conns.insert(
            conn,
            Conn {
                nonce: nonce.clone(),
                authority,
                source: source.map(|ip| super::limits::source_key(ip).to_string()),
                ..Conn::default()
            },
        );
        vec![Output::Send(
            conn,
            ServerMessage::Welcome {
                server: self.server_name.clone(),
                max_message_bytes: MAX_MESSAGE_BYTES,
                nonce,
            },
        )]
    }

    /// A frame that did not decode: tell the sender, keep the connection.
    pub fn rejected(&mut self, conn: ConnId, error: &DecodeError) -> Vec<Output> {
        vec![Output::Send(
            conn,
            ServerMessage::error(error.code(), error.to_string()),
        )]
    }

    pub fn handle(&mut self, conn: ConnId, message: ClientMessage) -> Vec<Output> {
        if !self.conns.contains_key(&conn) {
            return Vec::new();
        }
        match message {
            ClientMessage::Ping => vec![Output::Send(conn, ServerMessage::Pong)],
            ClientMessage::Register { device_id, proof } => {
                self.register(conn, device_id, proof.as_ref())
            }
            ClientMessage::Connect { device_id } => self.connect(conn, device_id),
            ClientMessage::Signal { session_id, data } => match self.peer_of(conn, &session_id) {
                Ok(peer) => vec![Output::Send(
                    peer,
                    ServerMessage::Signal { session_id, data },
                )],
                Err(out) => vec![out],
            },
            ClientMessage::End { session_id, reason } => match self.peer_of(conn, &session_id) {
                Ok(peer) => {
                    self.remove_session(&session_id);
                    let reason = reason
                        .unwrap_or_else(|| "ended".into())
                        .chars()
                        .take(MAX_REASON_CHARS)
                        .collect();
                    vec![Output::Send(
                        peer,
                        ServerMessage::End { session_id, reason },
                    )]
                }
                Err(out) => vec![out],
            },
        }
    }

    /// The connection is gone: end its sessions and forget its registration.
    pub fn disconnected(&mut self, conn: ConnId) -> Vec<Output> {
        let Some(state) = self.conns.remove(&conn) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if let Some(device) = state.device {
            if self.devices.get(&device) == Some(&conn) {
                self.devices.remove(&device);
            }
            out.extend(self.end_sessions_of_device(conn, "device-gone"));
        }
        for session_id in state.viewing {
            if let Some(session) = self.sessions.remove(&session_id) {
                out.push(Output::Send(
                    session.device,
                    ServerMessage::End {
                        session_id,
                        reason: "viewer-gone".into(),
                    },
                ));
            }
        }
        out
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    fn register(
        &mut self,
        conn: ConnId,
        device_id: DeviceId,
        proof: Option<&RegisterProof>,
    ) -> Vec<Output> {
        let not_allowed = |message: String| {
            vec![Output::Send(
                conn,
                ServerMessage::error(ErrorCode::NotAllowed, message),
            )]
        };
        if self
            .only_device
            .as_ref()
            .is_some_and(|only| *only != device_id)
        {
            return not_allowed(format!(
                "this rendezvous serves only device {}",
                self.only_device.as_ref().expect("checked")
            ));
        }
        let Some(state) = self.conns.get(&conn) else {
            return Vec::new();
        };
        let authority = self
            .authority
            .as_deref()
            .or(state.authority.as_deref())
            .unwrap_or_default();
        let checked = match proof {
            None => Err(proof::ProofError::Missing),
            Some(p) => proof::verify(p, authority, &state.nonce, &device_id),
        };
        if let Err(why) = checked {
            return not_allowed(format!("cannot register {device_id}: {why}"));
        }
        let mut out = Vec::new();
        let current = self.conns.get(&conn).and_then(|c| c.device.clone());
        if let Some(current) = current
            && current != device_id
        {
            let message = format!("this connection is already registered as device {current}");
            return vec![Output::Send(
                conn,
                ServerMessage::error(ErrorCode::BadMessage, message),
            )];
        }
        if let Some(old) = self.devices.insert(device_id.clone(), conn)
            && old != conn
        {
            out.extend(self.end_sessions_of_device(old, "replaced"));
            if let Some(old_state) = self.conns.get_mut(&old) {
                old_state.device = None;
            }
            let message = format!("another connection registered device {device_id}");
            out.push(Output::Send(
                old,
                ServerMessage::error(ErrorCode::Replaced, message),
            ));
            out.push(Output::Close(old));
        }
        if let Some(state) = self.conns.get_mut(&conn) {
            state.device = Some(device_id.clone());
        }
        out.push(Output::Send(conn, ServerMessage::Registered { device_id }));
        out
    }

    fn connect(&mut self, conn: ConnId, device_id: DeviceId) -> Vec<Output> {
        let Some(&device_conn) = self.devices.get(&device_id) else {
            let message = format!("device {device_id} is not connected to this rendezvous");
            return vec![Output::Send(
                conn,
                ServerMessage::error(ErrorCode::DeviceOffline, message),
            )];
        };
        let viewing = self.conns.get(&conn).map_or(0, |c| c.viewing.len());
        if viewing >= MAX_SESSIONS_PER_VIEWER {
            let message = format!("at most {MAX_SESSIONS_PER_VIEWER} sessions per connection");
            return vec![Output::Send(
                conn,
                ServerMessage::error(ErrorCode::TooManySessions, message),
            )];
        }
        let session_id = SessionId(format!("{}-{}", self.session_prefix, self.next_session));
        self.next_session += 1;
        self.sessions.insert(
            session_id.clone(),
            Session {
                viewer: conn,
                device: device_conn,
            },
        );
        if let Some(state) = self.conns.get_mut(&conn) {
            state.viewing.insert(session_id.clone());
        }
        vec![
            Output::Send(
                conn,
                ServerMessage::Session {
                    session_id: session_id.clone(),
                    device_id,
                },
            ),
            Output::Send(
                device_conn,
                ServerMessage::SessionRequest {
                    session_id,
                    source: self.conns.get(&conn).and_then(|c| c.source.clone()),
                },
            ),
        ]
    }

    /// The other end of `session_id` as seen from `conn`, or the error to send back.
    fn peer_of(&self, conn: ConnId, session_id: &SessionId) -> Result<ConnId, Output> {
        let Some(session) = self.sessions.get(session_id) else {
            let message = format!("no session {session_id}");
            return Err(Output::Send(
                conn,
                ServerMessage::session_error(
                    ErrorCode::UnknownSession,
                    session_id.clone(),
                    message,
                ),
            ));
        };
        if session.viewer == conn {
            Ok(session.device)
        } else if session.device == conn {
            Ok(session.viewer)
        } else {
            let message = format!("this connection is not an end of session {session_id}");
            Err(Output::Send(
                conn,
                ServerMessage::session_error(ErrorCode::NotInSession, session_id.clone(), message),
            ))
        }
    }

    fn remove_session(&mut self, session_id: &SessionId) -> Option<Session> {
        let session = self.sessions.remove(session_id)?;
        if let Some(viewer) = self.conns.get_mut(&session.viewer) {
            viewer.viewing.remove(session_id);
        }
        Some(session)
    }

    fn end_sessions_of_device(&mut self, device_conn: ConnId, reason: &str) -> Vec<Output> {
        let ids: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.device == device_conn)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for session_id in ids {
            if let Some(session) = self.remove_session(&session_id) {
                out.push(Output::Send(
                    session.viewer,
                    ServerMessage::End {
                        session_id,
                        reason: reason.into(),
                    },
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signalling::protocol::{IceCandidate, SignalData};

    const DEV: ConnId = 1;
    const VIEWER: ConnId = 2;
    const OTHER: ConnId = 3;

    /// Two real device identities (registration needs their keys), made once.
    fn identities() -> &'static [crate::identity::DeviceIdentity; 2] {
        static IDS: std::sync::OnceLock<[crate::identity::DeviceIdentity; 2]> =
            std::sync::OnceLock::new();
        IDS.get_or_init(|| {
            let make = || {
                let dir = tempfile::tempdir().unwrap();
                crate::identity::DeviceIdentity::load_or_create(dir.path()).unwrap()
            };
            [make(), make()]
        })
    }

    fn id() -> DeviceId {
        identities()[0].device_id.clone()
    }

    const AUTHORITY: &str = "relay.example";

    /// Opens `conn` as the transport would: nonce `n<conn>`, reached as `AUTHORITY`.
    fn open(r: &mut Router, conn: ConnId) -> Vec<Output> {
        r.connected(conn, format!("n{conn}"), Some(AUTHORITY.into()), None)
    }

    /// `register` of identity `which` as a device on `conn`, signed for that connection.
    fn register_as(which: usize, conn: ConnId, authority: &str) -> ClientMessage {
        let device = &identities()[which];
        let message = proof::signed_message(authority, &format!("n{conn}"), &device.device_id, 1);
        ClientMessage::Register {
            device_id: device.device_id.clone(),
            proof: Some(RegisterProof {
                certificate: data_encoding::BASE64.encode(&device.cert_der().unwrap()),
                counter: 1,
                signature: data_encoding::BASE64.encode(&device.sign(&message).unwrap()),
            }),
        }
    }

    fn register(conn: ConnId) -> ClientMessage {
        register_as(0, conn, AUTHORITY)
    }

    /// `out` is exactly one error with `code`, sent to `conn`.
    fn assert_error(out: &[Output], conn: ConnId, code: ErrorCode) {
        assert!(
            matches!(out, [Output::Send(to, ServerMessage::Error { code: c, .. })] if *to == conn && *c == code),
            "expected {code:?} to {conn}, got {out:?}"
        );
    }

    fn ice() -> SignalData {
        SignalData::Ice(IceCandidate {
            candidate: "candidate:1 1 UDP 1 127.0.0.1 5000 typ host".into(),
            sdp_m_line_index: 0,
        })
    }

    /// A router with a registered device and one viewer session, named `t-1`.
    fn with_session() -> (Router, SessionId) {
        let mut r = Router::new("test", "t");
        for c in [DEV, VIEWER, OTHER] {
            open(&mut r, c);
        }
        r.handle(DEV, register(DEV));
        let out = r.handle(VIEWER, ClientMessage::Connect { device_id: id() });
        let sid = SessionId("t-1".into());
        assert_eq!(
            out,
            vec![
                Output::Send(
                    VIEWER,
                    ServerMessage::Session {
                        session_id: sid.clone(),
                        device_id: id()
                    }
                ),
                Output::Send(
                    DEV,
                    ServerMessage::SessionRequest {
                        session_id: sid.clone(),
                        source: None,
                    }
                ),
            ]
        );
        (r, sid)
    }

    #[test]
    fn greets_and_answers_ping() {
        let mut r = Router::new("test", "t");
        assert!(matches!(
            open(&mut r, 7)[0],
            Output::Send(7, ServerMessage::Welcome { .. })
        ));
        assert_eq!(
            r.handle(7, ClientMessage::Ping),
            vec![Output::Send(7, ServerMessage::Pong)]
        );
    }

    #[test]
    fn connect_to_an_unknown_device_is_an_error() {
        let mut r = Router::new("test", "t");
        open(&mut r, VIEWER);
        let out = r.handle(VIEWER, ClientMessage::Connect { device_id: id() });
        assert_error(&out, VIEWER, ErrorCode::DeviceOffline);
    }

    #[test]
    fn signals_flow_both_ways_within_a_session_only() {
        let (mut r, sid) = with_session();
        let out = r.handle(
            VIEWER,
            ClientMessage::Signal {
                session_id: sid.clone(),
                data: ice(),
            },
        );
        assert_eq!(
            out,
            vec![Output::Send(
                DEV,
                ServerMessage::Signal {
                    session_id: sid.clone(),
                    data: ice()
                }
            )]
        );
        let out = r.handle(
            DEV,
            ClientMessage::Signal {
                session_id: sid.clone(),
                data: ice(),
            },
        );
        assert_eq!(
            out,
            vec![Output::Send(
                VIEWER,
                ServerMessage::Signal {
                    session_id: sid.clone(),
                    data: ice()
                }
            )]
        );
        let out = r.handle(
            OTHER,
            ClientMessage::Signal {
                session_id: sid.clone(),
                data: ice(),
            },
        );
        assert_error(&out, OTHER, ErrorCode::NotInSession);
        let out = r.handle(
            VIEWER,
            ClientMessage::Signal {
                session_id: SessionId("nope".into()),
                data: ice(),
            },
        );
        assert_error(&out, VIEWER, ErrorCode::UnknownSession);
    }

    #[test]
    fn end_is_forwarded_once_and_forgets_the_session() {
        let (mut r, sid) = with_session();
        let out = r.handle(
            VIEWER,
            ClientMessage::End {
                session_id: sid.clone(),
                reason: Some("bye".into()),
            },
        );
        assert_eq!(
            out,
            vec![Output::Send(
                DEV,
                ServerMessage::End {
                    session_id: sid.clone(),
                    reason: "bye".into()
                }
            )]
        );
        assert_eq!(r.session_count(), 0);
        let out = r.handle(
            DEV,
            ClientMessage::End {
                session_id: sid,
                reason: None,
            },
        );
        assert_error(&out, DEV, ErrorCode::UnknownSession);
    }

    #[test]
    fn long_reasons_are_cut() {
        let (mut r, sid) = with_session();
        let out = r.handle(
            VIEWER,
            ClientMessage::End {
                session_id: sid,
                reason: Some("x".repeat(10_000)),
            },
        );
        let [Output::Send(_, ServerMessage::End { reason, .. })] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(reason.len(), MAX_REASON_CHARS);
    }

    #[test]
    fn a_vanished_viewer_ends_its_sessions_at_the_device() {
        let (mut r, sid) = with_session();
        let out = r.disconnected(VIEWER);
        assert_eq!(
            out,
            vec![Output::Send(
                DEV,
                ServerMessage::End {
                    session_id: sid,
                    reason: "viewer-gone".into()
                }
            )]
        );
        assert_eq!(r.session_count(), 0);
        assert!(r.disconnected(VIEWER).is_empty());
    }

    #[test]
    fn a_vanished_device_ends_its_viewers_sessions_and_goes_offline() {
        let (mut r, sid) = with_session();
        let out = r.disconnected(DEV);
        assert_eq!(
            out,
            vec![Output::Send(
                VIEWER,
                ServerMessage::End {
                    session_id: sid,
                    reason: "device-gone".into()
                }
            )]
        );
        assert_eq!(r.device_count(), 0);
        let out = r.handle(VIEWER, ClientMessage::Connect { device_id: id() });
        assert_error(&out, VIEWER, ErrorCode::DeviceOffline);
    }

    #[test]
    fn a_second_registration_replaces_the_first() {
        let (mut r, sid) = with_session();
        let out = r.handle(OTHER, register(OTHER));
        assert_eq!(
            out[0],
            Output::Send(
                VIEWER,
                ServerMessage::End {
                    session_id: sid,
                    reason: "replaced".into()
                }
            )
        );
        assert!(matches!(
            &out[1],
            Output::Send(
                DEV,
                ServerMessage::Error {
                    code: ErrorCode::Replaced,
                    ..
                }
            )
        ));
        assert_eq!(out[2], Output::Close(DEV));
        assert_eq!(
            out[3],
            Output::Send(OTHER, ServerMessage::Registered { device_id: id() })
        );
        // The replaced connection closing later must not unregister the new one.
        r.disconnected(DEV);
        assert_eq!(r.device_count(), 1);
    }

    #[test]
    fn registration_needs_a_proof_for_this_connection_and_rendezvous() {
        let mut r = Router::new("test", "t");
        open(&mut r, OTHER);
        open(&mut r, DEV);
        // No proof; the squatter's own key for the device's id; a proof made for another
        // connection (replayed); a proof made for another rendezvous (relayed).
        let bare = ClientMessage::Register {
            device_id: id(),
            proof: None,
        };
        assert_error(&r.handle(OTHER, bare), OTHER, ErrorCode::NotAllowed);
        let ClientMessage::Register { proof: theirs, .. } = register_as(1, OTHER, AUTHORITY) else {
            unreachable!()
        };
        let squat = ClientMessage::Register {
            device_id: id(),
            proof: theirs,
        };
        assert_error(&r.handle(OTHER, squat), OTHER, ErrorCode::NotAllowed);
        assert_error(
            &r.handle(OTHER, register(DEV)),
            OTHER,
            ErrorCode::NotAllowed,
        );
        let relayed = register_as(0, OTHER, "evil.example");
        assert_error(&r.handle(OTHER, relayed), OTHER, ErrorCode::NotAllowed);
        assert_eq!(r.device_count(), 0);
        // The device itself, on its own connection.
        assert_eq!(
            r.handle(DEV, register(DEV)),
            vec![Output::Send(
                DEV,
                ServerMessage::Registered { device_id: id() }
            )]
        );
    }

    #[test]
    fn a_configured_public_authority_wins_over_the_host_header() {
        let mut r = Router::new("test", "t");
        r.require_authority("public.example:8443".into());
        open(&mut r, DEV);
        // Signed for the Host header the connection came with: not enough.
        assert_error(&r.handle(DEV, register(DEV)), DEV, ErrorCode::NotAllowed);
        let out = r.handle(DEV, register_as(0, DEV, "public.example:8443"));
        assert!(
            matches!(
                &out[..],
                [Output::Send(DEV, ServerMessage::Registered { .. })]
            ),
            "{out:?}"
        );
    }

    #[test]
    fn an_embedded_rendezvous_serves_only_its_device() {
        let mut r = Router::new("test", "t");
        r.only_device(id());
        open(&mut r, OTHER);
        // Another device, with a valid proof of its own key: not here.
        let out = r.handle(OTHER, register_as(1, OTHER, AUTHORITY));
        assert_error(&out, OTHER, ErrorCode::NotAllowed);
        open(&mut r, DEV);
        let out = r.handle(DEV, register(DEV));
        assert!(
            matches!(
                &out[..],
                [Output::Send(DEV, ServerMessage::Registered { .. })]
            ),
            "{out:?}"
        );
    }

    #[test]
    fn a_connection_is_one_device_only() {
        let mut r = Router::new("test", "t");
        open(&mut r, DEV);
        r.handle(DEV, register(DEV));
        let out = r.handle(DEV, register_as(1, DEV, AUTHORITY));
        assert_error(&out, DEV, ErrorCode::BadMessage);
    }

    #[test]
    fn sessions_per_viewer_are_bounded() {
        let (mut r, _) = with_session();
        for _ in 1..MAX_SESSIONS_PER_VIEWER {
            r.handle(VIEWER, ClientMessage::Connect { device_id: id() });
        }
        let out = r.handle(VIEWER, ClientMessage::Connect { device_id: id() });
        assert_error(&out, VIEWER, ErrorCode::TooManySessions);
    }

    #[test]
    fn rejected_frames_get_an_error_and_change_nothing() {
        let (mut r, _) = with_session();
        let out = r.rejected(VIEWER, &DecodeError::TooLarge(10_000_000));
        assert_error(&out, VIEWER, ErrorCode::TooLarge);
        assert_eq!(r.session_count(), 1);
    }
}

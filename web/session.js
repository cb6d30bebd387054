// The viewer's decisions about one session, as a pure reducer (like the device's
// `session::machine`): `step(state, event)` returns the next state and the effects the page
// must carry out, in order. No DOM, no WebSocket, no RTCPeerConnection, no timers: viewer.js
// owns those, feeds events in and carries effects out, and node tests drive this directly
// (tests/js/session.test.mjs).
//
// What is decided here: what a signalling message means (docs/protocol.md), what the socket
// closing means for a connected session, what the peer connection's state means, the camera
// being lost and back, when the first picture counts as delivered, how an ended session is
// worded, and how long to wait before the next one.

export const BACKOFF_MIN_MS = 1_000;
export const BACKOFF_MAX_MS = 10_000;
/** A browser without access is closed by the device after 10 s; it retries slowly. */
export const NO_ACCESS_BACKOFF_MAX_MS = 30_000;

export const MESSAGES = {
  identityChanged: 'This is not your camera: its identity changed. Someone may be intercepting the connection.',
  identityUnverified: "This is not your camera: it could not prove its identity. Someone may be intercepting the connection.",
  noAccess: 'This browser has no access to this camera. Ask its owner for a link.',
  accessEnded: 'Your access to this camera has ended. Ask its owner for a new link.',
  unclaimed: 'This camera has no owner yet. To become its owner, open the claim link it printed (or its /local page, on the camera itself).',
  claimRefused: 'This claim link did not work: it was already used, or it is not for this camera.',
  inviteRefused: 'This invitation did not work: it was already used or has expired. Ask the owner for a new link.',
  cameraLost: 'The camera stopped sending pictures. Waiting for it to come back…',
  lost: 'The connection to the camera was lost.',
};

/**
 * Why a session ended, in the owner's words; `retry: false` when trying again cannot help.
 * `problem` names it for tests and styles (`identity-changed`, `no-access`, `bad-link`).
 */
export class SessionEnd extends Error {
  constructor(message, { retry = true, immediate = false, sendEnd = true, problem = null, noAccess = false } = {}) {
    super(message);
    Object.assign(this, { retry, immediate, sendEnd, problem, noAccess });
  }
}

export const unverified = () => new SessionEnd(MESSAGES.identityUnverified, { retry: false, problem: 'identity-changed' });

/** A new session toward `deviceId`. */
export function initial(deviceId) {
  return {
    deviceId,
    id: null, // the rendezvous's session id, once given
    signalling: false, // the socket is open
    connected: false, // the peer connection is
    delivered: false, // a frame was decoded (counted from `resumeAfter`)
    cameraLost: false,
    resumeAfter: 0, // frames decoded before the camera came back
    access: null, // the device's last `access` message
    done: false,
  };
}

const show = (state, message = '') => ({ do: 'show', state, message });
const end = (sessionEnd) => ({ do: 'end', end: sessionEnd });

/**
 * One event in, the next state and the effects out. Events:
 * - `{ type: 'socket-open' }`, `{ type: 'socket-closed', controlOpen }`
 * - `{ type: 'message', text }`: a signalling frame
 * - `{ type: 'peer', state, dtlsFailed }`: the peer connection's state changed
 * - `{ type: 'camera', live, framesDecoded }`: the device says whether pictures come
 * - `{ type: 'frames', decoded, shown }`: frames decoded so far, and what the page shows now
 * - `{ type: 'access', access }`: the device said what this browser may do
 * Effects: `send {msg}`, `show {state, message}`, `end {end}`, `signal {data}` (an offer or
 * candidate, handled in order), `peer-ready` (wait for the peer connection, in order),
 * `counted` (a session started), `ping {on}`, `grace {on}` (the disconnection timer),
 * `set-up` (the setup deadline is met), `signalling-lost` (the session goes on without it).
 */
export function step(state, event) {
  if (state.done) return { state, effects: [] };
  const s = { ...state };
  const effects = [];
  switch (event.type) {
    case 'socket-open':
      s.signalling = true;
      // Browsers cannot send WebSocket pings; an app-level ping keeps the server's timer fed.
      effects.push({ do: 'ping', on: true });
      break;
    case 'socket-closed':
      effects.push({ do: 'ping', on: false });
      // Media is peer to peer: a connected session outlives its signalling (a rendezvous that
      // restarts, a proxy that drops the socket). It says `alive` on the control channel, so
      // the device ends it soon after this page is gone.
      if (s.connected && event.controlOpen) {
        s.signalling = false;
        effects.push({ do: 'signalling-lost' });
      } else {
        effects.push(end(new SessionEnd(s.signalling ? 'Lost contact with the camera.' : "Can't reach the camera.")));
      }
      break;
    case 'message':
      message(s, event.text, effects);
      break;
    case 'peer':
      peer(s, event, effects);
      break;
    case 'camera':
      if (event.live) {
        if (s.cameraLost) {
          s.cameraLost = false;
          s.resumeAfter = event.framesDecoded ?? 0;
          effects.push(show('connected', 'The camera is back. Waiting for the picture…'));
        }
      } else {
        s.cameraLost = true;
        effects.push(show('camera-lost', MESSAGES.cameraLost));
      }
      break;
    case 'frames':
      if (event.decoded > s.resumeAfter) {
        s.delivered = true;
        if (event.shown === 'connected' || event.shown === 'negotiating') effects.push(show('playing'));
      }
      break;
    case 'access':
      s.access = event.access;
      if (event.access.role && !s.delivered && !s.cameraLost && event.shown !== 'playing') {
        effects.push(show('connected', 'Waiting for the first picture…'));
      }
      break;
    default:
      throw new Error(`unknown event ${event.type}`);
  }
  if (effects.some((e) => e.do === 'end')) s.done = true;
  return { state: s, effects };
}

function message(s, text, effects) {
  let msg = null;
  try {
    msg = JSON.parse(text);
  } catch { /* a garbled frame is not worth dropping a working stream over */ }
  if (typeof msg !== 'object' || msg === null) return;
  const ours = s.id != null && msg.session_id === s.id;
  switch (msg.type) {
    case 'welcome':
      effects.push({ do: 'send', msg: { type: 'connect', device_id: s.deviceId } });
      break;
    case 'session':
      if (s.id || typeof msg.session_id !== 'string') break; // one session per socket
      s.id = msg.session_id;
      effects.push({ do: 'counted' }, show('negotiating', 'Starting video…'), { do: 'peer-ready' });
      break;
    case 'signal':
      // Handled in order, so a candidate never races the offer it belongs to.
      if (ours && typeof msg.data === 'object' && msg.data !== null) effects.push({ do: 'signal', data: msg.data });
      break;
    case 'end':
      if (ours) effects.push(end(endedByServer(msg.reason)));
      break;
    case 'error':
      // Errors about `connect` carry no session id; errors about another session are not ours.
      if (msg.session_id == null || ours) effects.push(end(errorFromServer(msg)));
      break;
    default:
      break; // pong, and whatever a later server adds
  }
}

function peer(s, { state, dtlsFailed }, effects) {
  effects.push({ do: 'grace', on: false });
  switch (state) {
    case 'connected':
      s.connected = true;
      effects.push({ do: 'set-up' });
      if (s.cameraLost) effects.push(show('camera-lost', MESSAGES.cameraLost));
      else if (s.delivered) effects.push(show('playing'));
      else if (!s.access) effects.push(show('connected', 'Checking access…'));
      break;
    case 'disconnected':
      // Often heals by itself (a Wi-Fi blip); the grace timer ends it otherwise.
      s.connected = false;
      effects.push(show('interrupted', 'Connection interrupted…'), { do: 'grace', on: true });
      break;
    case 'failed':
    case 'closed':
      // GStreamer 1.22 cannot do an ICE restart, so a failed connection is only ever replaced.
      s.connected = false;
      effects.push(end(dtlsFailed ? unverified() : new SessionEnd(MESSAGES.lost)));
      break;
    default:
      break;
  }
}

export function endedByServer(reason) {
  const opts = { sendEnd: false }; // the session is already gone
  switch (reason) {
    case 'device-gone': return new SessionEnd('The camera went offline.', opts);
    case 'replaced': return new SessionEnd('The camera restarted.', opts);
    default: return new SessionEnd('The camera stopped the stream.', opts);
  }
}

export function errorFromServer({ code }) {
  switch (code) {
    case 'device-offline': return new SessionEnd('The camera is offline.');
    case 'bad-device-id': return new SessionEnd('This camera id is not valid. Check the link you were given.', { retry: false });
    default: return new SessionEnd(`The connection to the camera failed (${code}).`);
  }
}

/**
 * What an ending means once the session is over. The device closes a browser without access
 * after 10 s: that session keeps saying why (`noAccessMessage`) and retries slowly.
 * `page`: `{ redeeming, linkRefused, hadBorrowerAccess }`.
 */
export function finalEnd(s, sessionEnd, page) {
  if (s.access && !s.access.role && !page.redeeming && sessionEnd.retry && !sessionEnd.immediate) {
    return new SessionEnd(noAccessMessage(s.access, page), { sendEnd: sessionEnd.sendEnd, problem: 'no-access', noAccess: true });
  }
  return sessionEnd;
}

export function noAccessMessage(access, { linkRefused = null, hadBorrowerAccess = false } = {}) {
  if (linkRefused) return linkRefused;
  if (!access?.claimed) return MESSAGES.unclaimed;
  return hadBorrowerAccess ? MESSAGES.accessEnded : MESSAGES.noAccess;
}

/**
 * Between sessions: `{ stop: true }` when retrying cannot help, else how long to wait
 * (`waitMs`, 0 for at once) and the backoff for the time after. A session that delivered
 * pictures earns a quick retry; without access the wait grows to 30 s, else to 10 s.
 */
export function nextAttempt(backoff, ended) {
  if (!ended.retry) return { stop: true, backoff };
  const from = ended.delivered ? BACKOFF_MIN_MS : backoff;
  if (ended.immediate) return { stop: false, waitMs: 0, backoff: from };
  const max = ended.noAccess ? NO_ACCESS_BACKOFF_MAX_MS : BACKOFF_MAX_MS;
  return { stop: false, waitMs: Math.min(from, max), backoff: Math.min(from * 2, max) };
}

// The viewer's decisions about one session, as a pure reducer (like the device's
// `session::machine`): `step(state, event)` returns the next state and the effects the page
// must carry out, in order. No DOM, no WebSocket, no RTCPeerConnection, no timers: viewer.js
// owns those, feeds events in and carries effects out, and node tests drive this directly
// (tests/js/session.test.mjs).
//
// What is decided here: what a signalling message means (docs/protocol.md), what the socket
// closing means for a connected session, what the peer connection's state means, the camera
// being lost and back, when the first picture counts as delivered, what the device's `access`
// message asks of this browser (claim, redeem, renew, or tell the user why not; docs/security.md),
// how an ended session is worded, and how long to wait before the next one.
//
// A session's state holds `page`, what the page remembers from one session to the next (why
// the link was refused, whether this browser had a borrower's access, a renewal under way):
// `carry(state, end)` hands it to the next session's `initial`.

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
  poor: 'Poor connection: the picture is paused. Waiting for it to catch up…',
};

/** Connected, but no new frame for this long: the page says "poor connection". */
export const POOR_AFTER_MS = 1_000;
/**
 * No video byte at all for this long, while the camera is live and the picture was playing:
 * the path is likely dead (the camera moved from Wi-Fi to 4G, a NAT rebound the flow), and
 * the disconnection grace starts. Chromium says 'disconnected' only ~6 s after the last
 * packet; a frame comes at least every 100 ms from a live camera.
 */
export const SILENT_AFTER_MS = 2_500;

/**
 * Why a session ended, in the owner's words; `retry: false` when trying again cannot help.
 * `problem` names it for tests and styles (`identity-changed`, `no-access`, `bad-link`).
 */
export class SessionEnd extends Error {
  constructor(message, { retry = true, immediate = false, sendEnd = true, problem = null, noAccess = false, newLink = false } = {}) {
    super(message);
    Object.assign(this, { retry, immediate, sendEnd, problem, noAccess, newLink });
  }
}

export const unverified = () => new SessionEnd(MESSAGES.identityUnverified, { retry: false, problem: 'identity-changed' });

/** What a page starts with, and what a new link resets. */
export const FRESH_PAGE = Object.freeze({
  linkRefused: null, // why the claim or invite in the link did not work
  hadBorrowerAccess: false, // so a lapsed borrower hears "ended", not "no access"
  renewing: false, // a certificate renewal is under way (once per page)
});

/** A new session toward `deviceId`, with what the page carried over from the last one. */
export function initial(deviceId, page = FRESH_PAGE) {
  return {
    deviceId,
    page,
    redeeming: false, // a claim or redeem is in flight: its answer decides
    id: null, // the rendezvous's session id, once given
    signalling: false, // the socket is open
    connected: false, // the peer connection is
    delivered: false, // a frame was decoded (counted from `resumeAfter`)
    cameraLost: false,
    resumeAfter: 0, // frames decoded before the camera came back
    lastDecoded: null, // frames decoded at the last `frames` event that saw a new one
    movedAt: 0, // and when (`at`, ms)
    lastHeard: null, // video bytes received at the last `frames` event that saw new ones
    heardAt: null, // and when (`at`, ms)
    silent: false, // nothing heard for SILENT_AFTER_MS: the grace runs, as for 'disconnected'
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
 * - `{ type: 'frames', decoded, heard, shown, at }`: frames decoded and video bytes received so
 *   far, what the page shows now, and when (ms, any monotonic clock): a picture that stops
 *   moving for `POOR_AFTER_MS` while playing shows as a poor connection until it moves again;
 *   no byte at all for `SILENT_AFTER_MS` is an interrupted connection (the grace runs) until
 *   bytes come again
 * - `{ type: 'access', access, shown, link, trying, renewalDue }`: the device said what this
 *   browser may do; `link` is the claim or invite secret in the address (`{ claim, invite }`),
 *   `trying` whether this session presents a renewed certificate not yet committed,
 *   `renewalDue` whether the page's certificate is close to expiry
 * - `{ type: 'redeemed', request, ok }`: the device's answer to a claim or redeem
 * - `{ type: 'adopted', ok }`: whether a renewal proven earlier was found and adopted
 * - `{ type: 'renewal', outcome }`: `offered` (the device took the new certificate),
 *   `refused`, or `interrupted`
 * Effects: `send {msg}`, `show {state, message}`, `end {end}`, `signal {data}` (an offer or
 * candidate, handled in order), `peer-ready` (wait for the peer connection, in order),
 * `counted` (a session started), `ping {on}`, `grace {on}` (the disconnection timer),
 * `set-up` (the setup deadline is met), `signalling-lost` (the session goes on without it),
 * `problem {problem}` (what is wrong, for tests and styles; null when nothing),
 * `forget-secret` (the link's secret leaves the address), `redeem {request}` (answered by
 * `redeemed`), `adopt-pending` (answered by `adopted`), `renew` (answered by `renewal`),
 * `commit-renewal`, `abandon-renewal`.
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
    case 'frames': {
      const moved = event.decoded !== s.lastDecoded;
      if (moved) {
        s.lastDecoded = event.decoded;
        s.movedAt = event.at ?? 0;
      }
      if (event.decoded > s.resumeAfter) {
        s.delivered = true;
        const waiting = event.shown === 'connected' || event.shown === 'negotiating';
        if (waiting || (event.shown === 'poor' && moved)) effects.push(show('playing'));
      }
      if (!moved && event.shown === 'playing' && event.at != null && event.at - s.movedAt >= POOR_AFTER_MS) {
        effects.push(show('poor', MESSAGES.poor));
      }
      silence(s, event, effects);
      break;
    }
    case 'access':
      s.access = event.access;
      if (event.access.role && !s.delivered && !s.cameraLost && event.shown !== 'playing' && event.shown !== 'poor') {
        effects.push(show('connected', 'Waiting for the first picture…'));
      }
      access(s, event, effects);
      break;
    case 'redeemed':
      s.redeeming = false;
      effects.push({ do: 'forget-secret' }); // it works once, so it leaves the address either way
      if (!event.ok) {
        s.page = { ...s.page, linkRefused: event.request === 'claim' ? MESSAGES.claimRefused : MESSAGES.inviteRefused };
        refuse(s, effects);
      }
      // Done: the device has announced the new access (just before its answer).
      break;
    case 'adopted':
      // A renewal a session proved but the page did not commit: the replacement has the grant.
      if (event.ok) effects.push(end(new SessionEnd('Switching to this browser\'s renewed identity…', { immediate: true })));
      else refuse(s, effects);
      break;
    case 'renewal':
      if (event.outcome === 'offered') {
        // The next session presents the new certificate, which proves its key; the device moves
        // the grant then. `renewing` stays set: once per page.
        effects.push(end(new SessionEnd('Switching to this browser\'s renewed identity…', { immediate: true })));
      } else {
        if (event.outcome === 'refused') effects.push({ do: 'abandon-renewal' });
        s.page = { ...s.page, renewing: false }; // the next session tries again
      }
      break;
    default:
      throw new Error(`unknown event ${event.type}`);
  }
  if (effects.some((e) => e.do === 'end')) s.done = true;
  return { state: s, effects };
}

/** What the device's `access` message asks of this browser. */
function access(s, { access: a, link = {}, trying = false, renewalDue = false }, effects) {
  if (trying) {
    // This session presented a renewed certificate: let in, it is this browser's identity now;
    // refused, the current one stays (the device keeps the grant where it was).
    if (a.role) {
      effects.push({ do: 'commit-renewal' });
    } else if (a.claimed) {
      effects.push({ do: 'abandon-renewal' }, end(new SessionEnd('Switching back to this browser\'s identity…', { immediate: true })));
      return;
    }
  }
  if (a.role) {
    s.page = { ...s.page, hadBorrowerAccess: a.role === 'borrower' };
    effects.push({ do: 'problem', problem: null }, { do: 'forget-secret' }); // the link stays unused
    if (renewalDue && !s.page.renewing) {
      s.page = { ...s.page, renewing: true };
      effects.push({ do: 'renew' });
    }
    return;
  }
  if (s.redeeming) return; // the answer to our claim or redeem decides
  const request = link.claim ? { type: 'claim', secret: link.claim }
    : link.invite ? { type: 'redeem', token: link.invite } : null;
  if (request) {
    s.redeeming = true;
    effects.push(show('claiming', request.type === 'claim' ? 'Claiming this camera…' : 'Accepting the invitation…'),
      { do: 'redeem', request });
  } else if (a.claimed) {
    effects.push({ do: 'adopt-pending' });
  } else {
    refuse(s, effects);
  }
}

/** No access: say why, and go on showing it until the device closes the session. */
function refuse(s, effects) {
  effects.push({ do: 'problem', problem: 'no-access' }, show('no-access', noAccessMessage(s.access, s.page)));
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

/** The video's bytes, from a `frames` event: a dead path is found before the browser says so. */
function silence(s, { heard, at }, effects) {
  if (heard == null || at == null) return;
  if (heard !== s.lastHeard) {
    s.lastHeard = heard;
    s.heardAt = at;
    if (s.silent) {
      s.silent = false;
      if (s.connected) effects.push({ do: 'grace', on: false }, show('poor', MESSAGES.poor));
    }
    return;
  }
  // Only while pictures are due: a lost camera (which may send nothing at all) is not a
  // dead path, and the browser's own 'disconnected' already runs the grace.
  if (!s.silent && s.connected && s.delivered && !s.cameraLost && s.heardAt != null && at - s.heardAt >= SILENT_AFTER_MS) {
    s.silent = true;
    effects.push(show('interrupted', 'Connection interrupted…'), { do: 'grace', on: true });
  }
}

function peer(s, { state, dtlsFailed }, effects) {
  if (state === 'disconnected' && s.silent) {
    // The grace already runs since the bytes stopped: the browser agreeing restarts nothing.
    s.connected = false;
    return;
  }
  s.silent = false;
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
 */
export function finalEnd(s, sessionEnd) {
  if (s.access && !s.access.role && !s.redeeming && sessionEnd.retry && !sessionEnd.immediate) {
    return new SessionEnd(noAccessMessage(s.access, s.page), { sendEnd: sessionEnd.sendEnd, problem: 'no-access', noAccess: true });
  }
  return sessionEnd;
}

/** What the next session starts from: this one's page, unless the link changed (`newLink`). */
export function carry(s, ended) {
  return ended.newLink ? { ...s.page, linkRefused: null } : s.page;
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

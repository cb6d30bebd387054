// pipe viewer: plays one camera's live WebRTC stream with as little delay as the browser allows.
// Signalling is docs/protocol.md. Each session gets its own WebSocket: closing it makes the
// server end the session on the device ("viewer-gone"), so teardown cannot leak device state.
// Identity is docs/security.md: this browser presents its own long-lived certificate, holds
// the camera to the fingerprint it paired with, and claims or borrows over the `control`
// channel (identity.js, control.js; the owner's share panel is owner.js). What a session's
// events mean is decided in session.js, a pure reducer; this file holds the page's objects
// (socket, peer connection, timers, DOM) and carries out its decisions (`dispatch`).

import { Control, ControlError } from './control.js';
import {
  BACKOFF_MIN_MS, FRESH_PAGE, MESSAGES, SessionEnd, carry, finalEnd, initial, nextAttempt, step, unverified,
} from './session.js';
import {
  CERT_TTL_MS, Identity, PairingError, RENEW_DAYS, certFingerprint, deviceIdOf, offerFingerprint, pair,
  pairFromLink, short, toColons,
} from './identity.js';
import { fetchInfo, forgetSecret, pickDeviceId, readLink, signalUrl } from './link.js';
import { unsyncAudio, videoRejected } from './sdp.js';
import { estimatedDelayMs, overlayLines, snapshot, whoLine } from './overlay.js';
import { expose, overrides } from './hooks.js';
// owner.js (the Share panel), proxy.js and uiframe.js (the camera's UI) are imported when the
// device first says what this browser may do (`extras()`): the first picture needs none of them.

performance.mark('pipe:modules'); // this page's modules loaded and run: it starts working here

const PING_MS = 10_000; // the server closes sockets silent for 30 s
const ALIVE_MS = 5_000; // the device ends a session without signalling after 30 s of silence
const STATS_MS = 1_000;
const DISCONNECTED_GRACE_MS = 2_000; // 'disconnected' often heals by itself (a Wi-Fi blip); a dead path (Wi-Fi to 4G) does not: docs/adaptation.md
const SETUP_TIMEOUT_MS = 20_000; // socket opened -> ICE connected
/** How long the camera UI's requests wait for a session with open proxy channels. */
const PROXY_WAIT_MS = 15_000;

const $ = (id) => document.getElementById(id);
const ui = { video: $('video'), audio: $('audio'), status: $('status'), stats: $('stats'), unmute: $('unmute'),
  who: $('who') };
// What tests change (web/hooks.js: nothing in the page a camera serves).
const forceRelay = overrides.forceRelay === true;
const identity = new Identity({ ttlMs: overrides.certTtlMs ?? CERT_TTL_MS, renewDays: overrides.renewDays ?? RENEW_DAYS });

// The page's state as tests read it (`expose`).
const viewer = {
  state: 'starting', sessions: 0, pc: null, video: ui.video, stats: () => snapshot(viewer.pc, viewer),
  camera: null, // 'live' or 'lost', as the device last said
  signalling: false, // whether this session's signalling socket is open
  fingerprint: null, // this browser's certificate, `AB:CD:...`
  access: null, // the device's last `access` message
  problem: null,
  renewedTo: null, // the certificate a renewal moved this browser's grant to
  proxy: null, // the camera UI proxy (proxy.js) of the live session, with `view+ui` access
  ui: null, // the Camera settings panel (uiframe.js)
  /** Sends a control request on the live session; resolves with the device's reply. */
  control: (request) => (current?.control ? current.control.request(request)
    : Promise.reject(new Error('no session with the camera'))),
};
expose(viewer);

let current = null; // the live session, if any
let wake = null; // cuts the reconnect wait short (network back, a new link)
let running = false;
let extrasLoading = null;

/**
 * The parts of the page that only a browser with access uses, loaded on the first `access`
 * message: `{ updateOwnerPanel(access), updateUiPanel(grant), UiProxy }`. Importing them with
 * the viewer held its start (and so the first picture) back by ~40 ms.
 */
function extras() {
  extrasLoading ??= Promise.all([import('./owner.js'), import('./proxy.js'), import('./uiframe.js')])
    .then(([{ ownerPanel }, { UiProxy }, { uiPanel }]) => {
      const updateUiPanel = uiPanel(liveProxy, { chunks: overrides.uiChunks === true });
      viewer.ui = updateUiPanel.panel;
      return {
        updateOwnerPanel: ownerPanel((request) => viewer.control(request), { extraDurations: overrides.lendDurations ?? [] }),
        updateUiPanel,
        UiProxy,
      };
    })
    .catch((err) => {
      extrasLoading = null; // the next session tries again
      throw err;
    });
  return extrasLoading;
}

/** The live session's proxy once its channels are open; waits across a reconnect. */
async function liveProxy() {
  const until = Date.now() + PROXY_WAIT_MS;
  for (;;) {
    const proxy = current?.proxy;
    if (proxy && !proxy.failed) {
      try {
        return await proxy.ready;
      } catch { /* closed while opening: a new session makes a new one */ }
    }
    if (Date.now() > until) throw new Error('no connection to the camera');
    await sleep(200);
  }
}

/** Opens or closes the proxy channels and the settings button as the access scope says. */
function updateUi(s, access, { updateUiPanel, UiProxy }) {
  if (s.done) return; // the session ended while extras() loaded
  const allowed = Boolean(access.role) && access.scope === 'view+ui';
  // Once per peer connection (docs/proxy.md "Channels": channels opened twice turn the proxy
  // off for the connection); a scope given back later takes effect with the next session.
  if (allowed && !s.proxy && !s.proxyClosed) s.proxy = new UiProxy(s.pc);
  if (!allowed && s.proxy) {
    s.proxy.close('access changed');
    s.proxy = null;
    s.proxyClosed = true;
  }
  viewer.proxy = s.proxy;
  updateUiPanel(allowed ? { deviceId: s.deviceId, fingerprint: viewer.fingerprint, uiDomain: s.uiDomain } : null);
}

/**
 * The first time something happened on this page, as a `performance` mark named `pipe:NAME`
 * (the benchmark reads them to show where the time to first frame goes).
 */
function mark(name) {
  if (performance.getEntriesByName(`pipe:${name}`).length === 0) performance.mark(`pipe:${name}`);
}

function setState(state, message = '') {
  viewer.state = state;
  document.body.dataset.state = state;
  if (ui.status.textContent !== message) ui.status.textContent = message;
}

// ---- main loop: one session at a time, backoff between them --------------------------------

async function main() {
  running = true;
  let backoff = BACKOFF_MIN_MS;
  let page = FRESH_PAGE; // what session.js carries from one session to the next
  for (;;) {
    const end = await runSession(page);
    page = end.page;
    viewer.problem = end.problem;
    const next = nextAttempt(backoff, end);
    if (next.stop) {
      setState('stopped', end.message);
      break;
    }
    backoff = next.backoff;
    if (next.waitMs > 0 && (await countdown(end.message, next.waitMs))?.newLink) {
      page = carry({ page }, { newLink: true });
    }
  }
  running = false;
}

/** Waits `ms`, or until woken; resolves with what woke it (`{ newLink }`), if anything did. */
async function countdown(message, ms) {
  const until = Date.now() + ms;
  const early = new Promise((resolve) => { wake = resolve; });
  let woke = null;
  while (Date.now() < until && !woke) {
    const secs = Math.ceil((until - Date.now()) / 1000);
    setState('reconnecting', `${message} Trying again in ${secs} s…`);
    woke = await Promise.race([early.then((why) => why ?? {}), sleep(Math.min(1000, until - Date.now()))]);
  }
  wake = null;
  return woke;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs one session to its end; resolves (never rejects) with the SessionEnd plus `delivered`
 * and the `page` state for the next session.
 */
function runSession(page) {
  return new Promise((resolve) => {
    // `st` is what session.js decides on; the rest are the objects this page holds for it.
    const s = { st: initial(null, page), ws: null, pc: null, deviceId: null, chain: Promise.resolve(), pendingIce: [],
      setupTimer: 0, graceTimer: 0, pingTimer: 0, aliveTimer: 0, done: false,
      link: {}, paired: null, cert: null, certReady: null, peerReady: null, control: null, proxy: null, proxyClosed: false };
    s.end = (err) => {
      if (s.done) return;
      s.done = true;
      const end = finalEnd(s.st, err instanceof SessionEnd ? err : unexpected(err));
      s.st = { ...s.st, done: true };
      teardown(s, end);
      resolve(Object.assign(end, { delivered: s.st.delivered, page: carry(s.st, end) }));
    };
    current = s;
    viewer.access = null; // until this session's device says
    startSession(s).catch(s.end);
  });
}

/** Hands session.js one event and carries out what it decides, in order. */
function dispatch(s, event) {
  const { state, effects } = step(s.st, event);
  s.st = state;
  carryOut(s, effects);
}

/** Carries out effects in order; one that returns a promise holds the rest back until it settles. */
function carryOut(s, effects) {
  for (let i = 0; i < effects.length; i += 1) {
    const pending = carryOutOne(s, effects[i]);
    if (pending) {
      pending.then(() => carryOut(s, effects.slice(i + 1)), (err) => failed(s, err));
      return;
    }
  }
}

/** An error in the access flow: a closed control channel means the session is ending anyway. */
function failed(s, err) {
  if (!(err instanceof ControlError)) s.end(err);
}

/** Carries out one effect; returns a promise when the effects after it must wait for it. */
function carryOutOne(s, effect) {
  switch (effect.do) {
    case 'send': send(s, effect.msg); break;
    case 'show': setState(effect.state, effect.message); break;
    case 'end': s.end(effect.end); break;
    // Serialised with the signals that follow, which need the peer connection.
    case 'peer-ready': s.chain = s.chain.then(() => s.peerReady).catch(s.end); break;
    case 'signal': s.chain = s.chain.then(() => onSignal(s, effect.data)).catch(s.end); break;
    case 'counted':
      viewer.sessions += 1;
      mark('session');
      break;
    case 'ping':
      clearInterval(s.pingTimer);
      if (effect.on) s.pingTimer = setInterval(() => send(s, { type: 'ping' }), PING_MS);
      break;
    case 'grace':
      clearTimeout(s.graceTimer);
      if (effect.on) s.graceTimer = setTimeout(() => s.end(new SessionEnd(MESSAGES.lost)), DISCONNECTED_GRACE_MS);
      break;
    case 'set-up': clearTimeout(s.setupTimer); break;
    case 'signalling-lost':
      console.info('pipe viewer: signalling closed; the connected session goes on');
      s.ws = null;
      viewer.signalling = false;
      break;
    case 'problem': viewer.problem = effect.problem; break;
    case 'forget-secret':
      forgetSecret();
      s.link = readLink();
      break;
    case 'redeem': redeem(s, effect.request).catch((err) => failed(s, err)); break;
    case 'adopt-pending':
      identity.adoptPending().then((ok) => dispatch(s, { type: 'adopted', ok })).catch((err) => failed(s, err));
      break;
    case 'renew': renew(s); break;
    // The ending that may follow waits for these: the next session must present the right certificate.
    case 'commit-renewal':
      return identity.commitRenewal().then(() => {
        viewer.renewedTo = viewer.fingerprint;
        console.info('pipe viewer: certificate renewed, now', viewer.fingerprint.slice(0, 11));
      });
    case 'abandon-renewal':
      console.warn('pipe viewer: the renewed certificate was not used; keeping the current one');
      return identity.abandonRenewal();
    default: throw new Error(`unknown effect ${effect.do}`);
  }
  return null;
}

function unexpected(err) {
  console.error('pipe viewer:', err);
  return new SessionEnd('Something went wrong while connecting to the camera.');
}

async function startSession(s) {
  if (typeof RTCPeerConnection === 'undefined') {
    throw new SessionEnd('This browser cannot play live video (WebRTC is not available).', { retry: false });
  }
  setState('connecting', 'Connecting to the camera…');
  // This browser's certificate loads (or, on a first visit, is made) while the page asks for the
  // camera's info and a session: the peer connection needs it only when the session starts.
  s.certReady = identity.current().then((cert) => {
    mark('certificate');
    s.cert = cert;
    viewer.fingerprint = toColons(certFingerprint(cert));
    showWho();
    return cert;
  });
  s.certReady.catch(s.end);
  const info = await fetchInfo();
  mark('info');
  s.deviceId = pickDeviceId(info);
  s.st = { ...s.st, deviceId: s.deviceId };
  s.uiDomain = info.ui_domain ?? null;
  s.link = readLink();
  try {
    s.paired = pairFromLink(s.deviceId, s.link.fp);
  } catch (err) {
    if (err instanceof PairingError) throw new SessionEnd(err.message, { retry: false, problem: 'bad-link' });
    throw err;
  }
  if (s.done) return;
  ui.unmute.hidden = true; // shown again if this session carries audio
  // Every network wait has a deadline; this one covers the socket, the session and ICE.
  const late = forceRelay ? "Couldn't reach the camera through the relay server." : 'The camera did not respond in time.';
  s.setupTimer = setTimeout(() => s.end(new SessionEnd(late)), SETUP_TIMEOUT_MS);
  openSocket(s, info);
  // The peer connection needs only the info and the certificate: made while the socket opens
  // (a browser's first one takes tens of ms), it is ready when the offer comes.
  s.peerReady = s.certReady.then(() => createPeer(s, info));
  s.peerReady.catch(s.end);
}

// ---- signalling ------------------------------------------------------------------------------

function openSocket(s, info) {
  const ws = new WebSocket(signalUrl(info.signal_path));
  s.ws = ws;
  ws.onopen = () => {
    viewer.signalling = true;
    dispatch(s, { type: 'socket-open' });
  };
  ws.onmessage = (ev) => dispatch(s, { type: 'message', text: ev.data });
  // A connected session outlives its socket while it says `alive` (session.js decides).
  ws.onclose = () => dispatch(s, { type: 'socket-closed', controlOpen: Boolean(s.control?.open) });
}

function send(s, msg) {
  if (s.ws?.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify(msg));
}

// ---- WebRTC ----------------------------------------------------------------------------------

function createPeer(s, info) {
  if (s.done) return;
  const pc = new RTCPeerConnection({
    iceServers: Array.isArray(info.ice_servers) ? info.ice_servers : [],
    iceTransportPolicy: forceRelay ? 'relay' : 'all',
    bundlePolicy: 'max-bundle', // what the device offers; one transport to set up
    certificates: [s.cert], // this browser's identity: the device grants access to it
  });
  s.pc = pc;
  viewer.pc = pc;
  pc.onicecandidate = ({ candidate }) => {
    // null (and Firefox's empty string) mean end-of-candidates, which the device does not need.
    if (!candidate?.candidate) return;
    const ice = { candidate: candidate.candidate, sdp_m_line_index: candidate.sdpMLineIndex ?? 0 };
    send(s, { type: 'signal', session_id: s.st.id, data: { ice } });
  };
  pc.ontrack = ({ track, receiver }) => attachTrack(track, receiver);
  pc.onconnectionstatechange = () => onConnectionState(s);
  pc.ondatachannel = ({ channel }) => {
    if (channel.label !== 'control') {
      channel.close(); // the device opens only `control`
      return;
    }
    s.control?.close();
    s.control = new Control(channel, (msg) => (msg.type === 'camera' ? onCamera(s, msg) : onAccess(s, msg)).catch((err) => {
      if (!(err instanceof ControlError)) s.end(err); // a closed channel: the session is ending anyway
    }));
    // "Still here": what keeps this session once its signalling socket is gone (`openSocket`).
    const alive = () => s.control?.notify({ type: 'alive' });
    channel.addEventListener('open', alive);
    alive();
    clearInterval(s.aliveTimer);
    s.aliveTimer = setInterval(alive, ALIVE_MS);
  };
}

async function onSignal(s, data) {
  const { pc } = s;
  if (data?.sdp?.type === 'offer') {
    mark('offer');
    checkCameraIdentity(s, data.sdp.sdp); // before anything is answered
    await pc.setRemoteDescription({ type: 'offer', sdp: unsyncAudio(data.sdp.sdp) });
    for (const ice of s.pendingIce.splice(0)) await addCandidate(pc, ice);
    await pc.setLocalDescription(await pc.createAnswer());
    watchDtls(s);
    if (videoRejected(pc.localDescription.sdp)) {
      throw new SessionEnd("This browser can't play the camera's H.264 video. Please try another browser.", { retry: false });
    }
    send(s, { type: 'signal', session_id: s.st.id, data: { sdp: { type: 'answer', sdp: pc.localDescription.sdp } } });
    mark('answer');
  } else if (data?.ice?.candidate) {
    const ice = { candidate: data.ice.candidate, sdpMLineIndex: data.ice.sdp_m_line_index ?? 0 };
    // The protocol does not promise the offer arrives before the first candidate.
    if (pc.remoteDescription) await addCandidate(pc, ice);
    else s.pendingIce.push(ice);
  }
}

/**
 * The offer must announce the fingerprint this browser paired with (or, on a first visit with
 * no `fp` in the link, one that matches the device id). The browser's DTLS then holds the
 * handshake to it, so a relay that rewrites the offer or swaps the camera is refused here or
 * there (watchDtls).
 */
function checkCameraIdentity(s, sdp) {
  const announced = offerFingerprint(sdp);
  const expected = s.paired;
  const ok = announced && (expected ? announced === expected : deviceIdOf(announced) === s.deviceId);
  if (!ok) {
    console.warn('pipe viewer: refused the offer: camera fingerprint', announced, 'expected', expected ?? `id ${s.deviceId}`);
    throw new SessionEnd(MESSAGES.identityChanged, { retry: false, problem: 'identity-changed' });
  }
  if (!expected) {
    pair(s.deviceId, announced);
    s.paired = announced;
  }
}

/** A failed DTLS handshake: the camera's certificate is not the one its offer announced. */
function dtlsFailed(pc) {
  const transports = [pc.sctp?.transport, ...pc.getReceivers().map((r) => r.transport)];
  return transports.some((t) => t?.state === 'failed');
}

function watchDtls(s) {
  const transports = new Set([s.pc.sctp?.transport, ...s.pc.getReceivers().map((r) => r.transport)]);
  for (const t of transports) {
    if (t) t.onstatechange = () => { if (t.state === 'failed') s.end(unverified()); };
  }
}

// ---- access: claim, redeem, renew ------------------------------------------------------------

/**
 * The device says whether its camera delivers pictures. Lost: the picture is marked as not
 * live (dimmed, with a message) instead of passing a frozen frame off as live; back: playing
 * again with the first new frame decoded (`updateOverlay`).
 */
async function onCamera(s, msg) {
  const live = msg.live !== false;
  viewer.camera = live ? 'live' : 'lost';
  dispatch(s, { type: 'camera', live, framesDecoded: previous?.stats.video.framesDecoded ?? 0 });
}

/** The device says what this browser may do; session.js decides what follows. */
async function onAccess(s, access) {
  mark('access');
  viewer.access = access;
  dispatch(s, {
    type: 'access',
    access,
    shown: viewer.state,
    link: s.link,
    trying: identity.trying(s.cert),
    renewalDue: s.cert === identity.cert && identity.needsRenewal(),
  });
  // Not awaited: a claim or redeem goes out at once. Updates keep their order (one promise).
  extras().then((parts) => {
    parts.updateOwnerPanel(access);
    updateUi(s, access, parts);
  }).catch(s.end);
  showWho();
}

/** Presents a claim secret or an invite (the `redeem` effect); the answer goes back to session.js. */
async function redeem(s, request) {
  await identity.saved; // the grant will belong to this certificate: it must outlive the page
  const reply = await s.control.request(request);
  if (reply.type !== 'done') console.warn('pipe viewer:', request.type, 'refused:', reply.message);
  dispatch(s, { type: 'redeemed', request: request.type, ok: reply.type === 'done' });
}

/**
 * Close to expiry (the `renew` effect), this browser makes a new certificate and offers it; the
 * next session presents it, which proves the key, and the device moves the grant then
 * (docs/security.md).
 */
async function renew(s) {
  let outcome = 'interrupted';
  try {
    const next = await identity.prepareRenewal();
    const reply = await s.control.request({ type: 'renew', fingerprint: toColons(next) });
    if (reply.type === 'done') {
      await identity.offerRenewal();
      console.info('pipe viewer: renewal offered, reconnecting with', short(next));
      outcome = 'offered';
    } else {
      console.warn('pipe viewer: renewal refused:', reply.message);
      outcome = 'refused';
    }
  } catch (err) {
    console.warn('pipe viewer: renewal interrupted; the next session tries again', err);
  }
  dispatch(s, { type: 'renewal', outcome });
}

function showWho() {
  ui.who.textContent = whoLine(viewer.fingerprint, viewer.access);
}

async function addCandidate(pc, ice) {
  try {
    await pc.addIceCandidate(ice);
  } catch (err) {
    console.warn('pipe viewer: ignored ICE candidate', ice.candidate, err); // one bad candidate is not fatal
  }
}

function attachTrack(track, receiver) {
  // Each track gets its own MediaStream: one stream holding both would be played in sync.
  if (track.kind === 'video') {
    lowLatency(receiver);
    ui.video.srcObject = new MediaStream([track]);
    ui.video.play().catch(() => {}); // autoplay normally covers this; a rejection is harmless
  } else if (track.kind === 'audio') {
    ui.audio.srcObject = new MediaStream([track]);
    ui.audio.play().catch(() => {}); // muted until the owner asks (autoplay policy)
    ui.unmute.hidden = false;
  }
}

/** Ask for the smallest jitter buffer the browser will use: low latency is the product. */
function lowLatency(receiver) {
  if ('jitterBufferTarget' in receiver) receiver.jitterBufferTarget = 0; // standard, milliseconds
  if ('playoutDelayHint' in receiver) receiver.playoutDelayHint = 0; // older Chromium, seconds
}

function onConnectionState(s) {
  const state = s.pc.connectionState;
  const failed = state === 'failed' || state === 'closed';
  dispatch(s, { type: 'peer', state, dtlsFailed: failed && dtlsFailed(s.pc) });
}

// ---- teardown --------------------------------------------------------------------------------

function teardown(s, end) {
  clearTimeout(s.setupTimer);
  clearTimeout(s.graceTimer);
  clearInterval(s.pingTimer);
  clearInterval(s.aliveTimer);
  s.control?.close();
  s.proxy?.close('session ended');
  if (viewer.proxy === s.proxy) viewer.proxy = null;
  if (s.pc) {
    s.pc.onconnectionstatechange = s.pc.onicecandidate = s.pc.ontrack = s.pc.ondatachannel = null;
    s.pc.close();
  }
  if (s.ws) {
    s.ws.onclose = s.ws.onmessage = null;
    // Say why, so the device logs something better than "viewer-gone" (skip if already ended).
    if (s.st.id && end.sendEnd) send(s, { type: 'end', session_id: s.st.id, reason: end.retry ? 'viewer-reconnecting' : 'viewer-stopped' });
    s.ws.close(1000); // queued after the `end` above
  }
  if (current === s) current = null;
}

// ---- stats -----------------------------------------------------------------------------------

let previous = null; // last snapshot, for per-second rates

async function updateOverlay() {
  const pc = viewer.pc;
  const now = await snapshot(pc, viewer);
  const v = now.video;
  if (current && current.pc === pc) dispatch(current, {
    type: 'frames', decoded: v.framesDecoded ?? 0, heard: v.bytesReceived, shown: viewer.state, at: performance.now(),
  });
  const prev = previous?.pc === pc ? previous.stats : null;
  const secs = prev?.timestamp != null && now.timestamp != null ? (now.timestamp - prev.timestamp) / 1000 : 0;
  const rate = (key) => (secs > 0 && v[key] != null && prev.video[key] != null ? (v[key] - prev.video[key]) / secs : null);
  const fps = v.framesPerSecond ?? rate('framesDecoded');
  const kbps = rate('bytesReceived');
  const delayMs = estimatedDelayMs(now, prev);
  previous = { pc, stats: now };
  ui.stats.textContent = pc ? overlayLines(now, { fps, kbps, relay: forceRelay, delayMs }) : '';
}

// ---- page wiring -----------------------------------------------------------------------------

ui.unmute.addEventListener('click', () => {
  ui.audio.muted = !ui.audio.muted;
  if (!ui.audio.muted) ui.audio.play().catch(() => {}); // this click is the user gesture play() needs
  ui.unmute.textContent = ui.audio.muted ? 'Unmute' : 'Mute';
});

/** Start over at once, without backoff: the owner opened a different link (a new link gets its own chance). */
function restartNow(message) {
  current?.end(new SessionEnd(message, { immediate: true, newLink: true }));
  wake?.({ newLink: true });
  if (!running) main();
}

window.addEventListener('hashchange', () => restartNow('Switching camera…'));
window.addEventListener('online', () => { if (viewer.state === 'reconnecting') wake?.(); });
setInterval(() => updateOverlay().catch((err) => console.warn('pipe viewer: stats', err)), STATS_MS);
main();

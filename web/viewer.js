// pipe viewer: plays one camera's live WebRTC stream with as little delay as the browser allows.
// Signalling is docs/protocol.md. Each session gets its own WebSocket: closing it makes the
// server end the session on the device ("viewer-gone"), so teardown cannot leak device state.

const PING_MS = 10_000; // the server closes sockets silent for 30 s
const STATS_MS = 1_000;
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 10_000;
const DISCONNECTED_GRACE_MS = 5_000; // 'disconnected' often heals by itself (a Wi-Fi blip)
const SETUP_TIMEOUT_MS = 20_000; // socket opened -> ICE connected
const INFO_TIMEOUT_MS = 5_000;
const DEVICE_ID_RE = /^[a-z2-7]{16}$/; // protocol.md "Addressing"

const $ = (id) => document.getElementById(id);
const ui = { video: $('video'), audio: $('audio'), status: $('status'), stats: $('stats'), unmute: $('unmute') };
const forceRelay = new URLSearchParams(location.search).get('relay') === '1';

/** Why a session ended, in the owner's words; `retry: false` when trying again cannot help. */
class SessionEnd extends Error {
  constructor(message, { retry = true, immediate = false, sendEnd = true } = {}) {
    super(message);
    Object.assign(this, { retry, immediate, sendEnd });
  }
}

// The handle automated tests (and curious operators in devtools) use.
const viewer = { state: 'starting', sessions: 0, pc: null, video: ui.video, stats: publicStats };
window.pipeViewer = viewer;

let current = null; // the live session, if any
let wake = null; // cuts the reconnect wait short (network back, camera changed)
let running = false;

function setState(state, message = '') {
  viewer.state = state;
  document.body.dataset.state = state;
  if (ui.status.textContent !== message) ui.status.textContent = message;
}

// ---- main loop: one session at a time, backoff between them --------------------------------

async function main() {
  running = true;
  let backoff = BACKOFF_MIN_MS;
  for (;;) {
    const end = await runSession();
    if (!end.retry) {
      setState('stopped', end.message);
      break;
    }
    if (end.delivered) backoff = BACKOFF_MIN_MS; // a session that worked earns a quick retry
    if (end.immediate) continue;
    await countdown(end.message, backoff);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }
  running = false;
}

async function countdown(message, ms) {
  const until = Date.now() + ms;
  const early = new Promise((resolve) => { wake = resolve; });
  while (Date.now() < until) {
    const secs = Math.ceil((until - Date.now()) / 1000);
    setState('reconnecting', `${message} Trying again in ${secs} s…`);
    if (await Promise.race([early.then(() => true), sleep(Math.min(1000, until - Date.now()))])) break;
  }
  wake = null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs one session to its end; resolves (never rejects) with the SessionEnd plus `delivered`. */
function runSession() {
  return new Promise((resolve) => {
    const s = { ws: null, pc: null, id: null, deviceId: null, chain: Promise.resolve(), pendingIce: [],
      setupTimer: 0, graceTimer: 0, pingTimer: 0, delivered: false, done: false };
    s.end = (err) => {
      if (s.done) return;
      s.done = true;
      const end = err instanceof SessionEnd ? err : unexpected(err);
      teardown(s, end);
      resolve(Object.assign(end, { delivered: s.delivered }));
    };
    current = s;
    startSession(s).catch(s.end);
  });
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
  const info = await fetchInfo();
  s.deviceId = pickDeviceId(info);
  if (s.done) return;
  ui.unmute.hidden = true; // shown again if this session carries audio
  // Every network wait has a deadline; this one covers the socket, the session and ICE.
  const late = forceRelay ? "Couldn't reach the camera through the relay server." : 'The camera did not respond in time.';
  s.setupTimer = setTimeout(() => s.end(new SessionEnd(late)), SETUP_TIMEOUT_MS);
  openSocket(s, info);
}

async function fetchInfo() {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), INFO_TIMEOUT_MS);
  try {
    const res = await fetch('/api/info', { signal: abort.signal, cache: 'no-store' });
    if (!res.ok) throw new SessionEnd(`The camera's web server reported a problem (HTTP ${res.status}).`);
    return await res.json();
  } catch (err) {
    throw err instanceof SessionEnd ? err : new SessionEnd("Can't reach the camera's web server.");
  } finally {
    clearTimeout(timer);
  }
}

/** `#device=<id>` wins over the server's own id, so a rendezvous page can show any camera. */
function pickDeviceId(info) {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('device');
  const id = (fromHash ?? info.device_id ?? '').trim().toLowerCase();
  if (!id) {
    throw new SessionEnd('No camera selected. Open this page from your camera, or add '
      + '#device=<camera id> to the end of the address.', { retry: false });
  }
  if (!DEVICE_ID_RE.test(id)) {
    throw new SessionEnd(`"${id}" is not a valid camera id. Check the link you were given.`, { retry: false });
  }
  return id;
}

// ---- signalling ------------------------------------------------------------------------------

// `signal_path` is a path on this server, or a remote rendezvous's ws(s):// URL.
function signalUrl(path) {
  if (typeof path === 'string' && /^wss?:\/\//.test(path)) return path;
  const local = typeof path === 'string' && path.startsWith('/') ? path : '/signal';
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${local}`;
}

function openSocket(s, info) {
  const ws = new WebSocket(signalUrl(info.signal_path));
  s.ws = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    // Browsers cannot send WebSocket pings; an app-level ping keeps the server's 30 s timer fed.
    s.pingTimer = setInterval(() => send(s, { type: 'ping' }), PING_MS);
  };
  ws.onmessage = (ev) => onMessage(s, info, ev.data);
  ws.onclose = () => s.end(new SessionEnd(opened ? 'Lost contact with the camera.' : "Can't reach the camera."));
}

function send(s, msg) {
  if (s.ws?.readyState === WebSocket.OPEN) s.ws.send(JSON.stringify(msg));
}

function onMessage(s, info, text) {
  let msg = null;
  try {
    msg = JSON.parse(text);
  } catch { /* a garbled frame is not worth dropping a working stream over */ }
  if (typeof msg !== 'object' || msg === null) return;
  const ours = s.id != null && msg.session_id === s.id;
  switch (msg.type) {
    case 'welcome':
      send(s, { type: 'connect', device_id: s.deviceId });
      break;
    case 'session':
      if (s.id) break; // one session per socket; never expected
      s.id = msg.session_id;
      viewer.sessions += 1;
      setState('negotiating', 'Starting video…');
      createPeer(s, info);
      break;
    case 'signal':
      // Serialised so a candidate never races the offer it belongs to.
      if (ours) s.chain = s.chain.then(() => onSignal(s, msg.data)).catch(s.end);
      break;
    case 'end':
      if (ours) s.end(endedByServer(msg.reason));
      break;
    case 'error':
      // Errors about `connect` carry no session id; errors about another session are not ours.
      if (msg.session_id == null || ours) s.end(errorFromServer(msg));
      break;
  }
}

function endedByServer(reason) {
  const opts = { sendEnd: false }; // the session is already gone
  switch (reason) {
    case 'device-gone': return new SessionEnd('The camera went offline.', opts);
    case 'replaced': return new SessionEnd('The camera restarted.', opts);
    default: return new SessionEnd('The camera stopped the stream.', opts);
  }
}

function errorFromServer({ code, message }) {
  switch (code) {
    case 'device-offline': return new SessionEnd('The camera is offline.');
    case 'bad-device-id': return new SessionEnd('This camera id is not valid. Check the link you were given.', { retry: false });
    default:
      console.warn('pipe viewer: server error', code, message);
      return new SessionEnd(`The connection to the camera failed (${code}).`);
  }
}

// ---- WebRTC ----------------------------------------------------------------------------------

function createPeer(s, info) {
  const pc = new RTCPeerConnection({
    iceServers: Array.isArray(info.ice_servers) ? info.ice_servers : [],
    iceTransportPolicy: forceRelay ? 'relay' : 'all',
    bundlePolicy: 'max-bundle', // what the device offers; one transport to set up
  });
  s.pc = pc;
  viewer.pc = pc;
  pc.onicecandidate = ({ candidate }) => {
    // null (and Firefox's empty string) mean end-of-candidates, which the device does not need.
    if (!candidate?.candidate) return;
    const ice = { candidate: candidate.candidate, sdp_m_line_index: candidate.sdpMLineIndex ?? 0 };
    send(s, { type: 'signal', session_id: s.id, data: { ice } });
  };
  pc.ontrack = ({ track, receiver }) => attachTrack(track, receiver);
  pc.onconnectionstatechange = () => onConnectionState(s);
}

async function onSignal(s, data) {
  const { pc } = s;
  if (data?.sdp?.type === 'offer') {
    await pc.setRemoteDescription({ type: 'offer', sdp: unsyncAudio(data.sdp.sdp) });
    for (const ice of s.pendingIce.splice(0)) await addCandidate(pc, ice);
    await pc.setLocalDescription(await pc.createAnswer());
    if (videoRejected(pc.localDescription.sdp)) {
      throw new SessionEnd("This browser can't play the camera's H.264 video. Please try another browser.", { retry: false });
    }
    send(s, { type: 'signal', session_id: s.id, data: { sdp: { type: 'answer', sdp: pc.localDescription.sdp } } });
  } else if (data?.ice?.candidate) {
    const ice = { candidate: data.ice.candidate, sdpMLineIndex: data.ice.sdp_m_line_index ?? 0 };
    // The protocol does not promise the offer arrives before the first candidate.
    if (pc.remoteDescription) await addCandidate(pc, ice);
    else s.pendingIce.push(ice);
  }
}

async function addCandidate(pc, ice) {
  try {
    await pc.addIceCandidate(ice);
  } catch (err) {
    console.warn('pipe viewer: ignored ICE candidate', ice.candidate, err); // one bad candidate is not fatal
  }
}

/** Port 0 without bundle-only means the browser turned video down: no H.264 decoder. */
function videoRejected(sdp) {
  const video = sdp.split(/(?=^m=)/m).find((section) => section.startsWith('m=video'));
  return !video || (/^m=video 0 /.test(video) && !/^a=bundle-only/m.test(video));
}

/**
 * GStreamer 1.22 names every section's stream after its RTCP cname, so the browser sees audio
 * and video as one MediaStream and lip-syncs them: video then waits for audio's deeper jitter
 * buffer. Giving audio its own stream id in the (remote) offer keeps video undelayed.
 */
function unsyncAudio(sdp) {
  return sdp.split(/(?=^m=)/m).map((section) => (section.startsWith('m=audio')
    ? section.replace(/^(a=(?:ssrc:\d+ )?msid:)\S+/gm, '$1pipe-audio')
    : section)).join('');
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
  clearTimeout(s.graceTimer);
  if (state === 'connected') {
    clearTimeout(s.setupTimer);
    if (s.delivered) setState('playing');
    else setState('connected', 'Waiting for the first picture…');
  } else if (state === 'disconnected') {
    setState('interrupted', 'Connection interrupted…');
    s.graceTimer = setTimeout(() => s.end(new SessionEnd('The connection to the camera was lost.')), DISCONNECTED_GRACE_MS);
  } else if (state === 'failed' || state === 'closed') {
    // GStreamer 1.22 cannot do an ICE restart, so a failed connection is only ever replaced.
    s.end(new SessionEnd('The connection to the camera was lost.'));
  }
}

// ---- teardown --------------------------------------------------------------------------------

function teardown(s, end) {
  clearTimeout(s.setupTimer);
  clearTimeout(s.graceTimer);
  clearInterval(s.pingTimer);
  if (s.pc) {
    s.pc.onconnectionstatechange = s.pc.onicecandidate = s.pc.ontrack = null;
    s.pc.close();
  }
  if (s.ws) {
    s.ws.onclose = s.ws.onmessage = null;
    // Say why, so the device logs something better than "viewer-gone" (skip if already ended).
    if (s.id && end.sendEnd) send(s, { type: 'end', session_id: s.id, reason: end.retry ? 'viewer-reconnecting' : 'viewer-stopped' });
    s.ws.close(1000); // queued after the `end` above
  }
  if (current === s) current = null;
}

// ---- stats -----------------------------------------------------------------------------------

/** A plain, JSON-able snapshot of the current session, for the overlay and for tests. */
async function publicStats() {
  const { pc } = viewer;
  const out = { state: viewer.state, connectionState: pc?.connectionState ?? 'new', sessions: viewer.sessions,
    video: { framesDecoded: null, framesReceived: null, framesDropped: null, frameWidth: null, frameHeight: null,
      framesPerSecond: null, freezeCount: null, bytesReceived: null, codec: null },
    audio: { totalSamplesReceived: null, codec: null },
    rtt: null, // milliseconds (0.1 ms steps), from the selected ICE candidate pair
    timestamp: null };
  if (!pc) return out;
  const report = await pc.getStats().catch(() => null); // null: closed mid-call; next tick sees the new pc
  if (!report) return out;
  const codecOf = (r) => {
    const c = r.codecId && report.get(r.codecId);
    return c ? { mimeType: c.mimeType ?? null, sdpFmtpLine: c.sdpFmtpLine ?? null } : null;
  };
  let pair = null;
  report.forEach((r) => {
    const kind = r.kind ?? r.mediaType; // older Firefox says mediaType
    if (r.type === 'inbound-rtp' && kind === 'video') {
      for (const key of Object.keys(out.video)) if (key !== 'codec' && r[key] !== undefined) out.video[key] = r[key];
      out.video.codec = codecOf(r);
      out.timestamp = r.timestamp;
    } else if (r.type === 'inbound-rtp' && kind === 'audio') {
      out.audio = { totalSamplesReceived: r.totalSamplesReceived ?? null, codec: codecOf(r) };
    } else if (r.type === 'transport' && r.selectedCandidatePairId) {
      pair = report.get(r.selectedCandidatePairId) ?? pair;
    } else if (r.type === 'candidate-pair' && !pair && (r.selected || (r.nominated && r.state === 'succeeded'))) {
      pair = r; // Firefox has no transport stats; it marks the pair instead
    }
  });
  if (pair?.currentRoundTripTime != null) out.rtt = Math.round(pair.currentRoundTripTime * 10_000) / 10;
  return out;
}

let previous = null; // last snapshot, for per-second rates

async function updateOverlay() {
  const pc = viewer.pc;
  const now = await publicStats();
  const v = now.video;
  if (v.framesDecoded > 0 && current?.pc === pc) {
    current.delivered = true;
    if (viewer.state === 'connected' || viewer.state === 'negotiating') setState('playing');
  }
  const prev = previous?.pc === pc ? previous.stats : null;
  const secs = prev?.timestamp != null && now.timestamp != null ? (now.timestamp - prev.timestamp) / 1000 : 0;
  const rate = (key) => (secs > 0 && v[key] != null && prev.video[key] != null ? (v[key] - prev.video[key]) / secs : null);
  const fps = v.framesPerSecond ?? rate('framesDecoded');
  const kbps = rate('bytesReceived');
  previous = { pc, stats: now };
  ui.stats.textContent = pc ? [
    [v.frameWidth && `${v.frameWidth}×${v.frameHeight}`, fps != null && `${Math.round(fps)} fps`,
      kbps != null && `${Math.round((kbps * 8) / 1000)} kbit/s`],
    [now.rtt != null && `rtt ${now.rtt} ms`, now.connectionState, forceRelay && 'relay only'],
    [v.codec && [v.codec.mimeType, v.codec.sdpFmtpLine].filter(Boolean).join(' ')],
  ].map((line) => line.filter(Boolean).join(' · ')).filter(Boolean).join('\n') : '';
}

// ---- page wiring -----------------------------------------------------------------------------

ui.unmute.addEventListener('click', () => {
  ui.audio.muted = !ui.audio.muted;
  if (!ui.audio.muted) ui.audio.play().catch(() => {}); // this click is the user gesture play() needs
  ui.unmute.textContent = ui.audio.muted ? 'Unmute' : 'Mute';
});

/** Start over at once, without backoff: the owner asked for a different camera. */
function restartNow(message) {
  current?.end(new SessionEnd(message, { immediate: true }));
  wake?.();
  if (!running) main();
}

window.addEventListener('hashchange', () => restartNow('Switching camera…'));
window.addEventListener('online', () => { if (viewer.state === 'reconnecting') wake?.(); });
setInterval(() => updateOverlay().catch((err) => console.warn('pipe viewer: stats', err)), STATS_MS);
main();

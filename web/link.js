// pipe viewer: where the camera is. The link's fragment (`device`, the camera's `fp`, and a
// `claim` or `invite` secret that leaves the address once used), the camera's `/api/info`
// (with a deadline), and the signalling URL it names.

import { SessionEnd } from './session.js';

const INFO_TIMEOUT_MS = 5_000;
const DEVICE_ID_RE = /^[a-z2-7]{16}$/; // protocol.md "Addressing"

/** The camera's `/api/info`; a `SessionEnd` saying what went wrong otherwise. */
export async function fetchInfo() {
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

/** The fragment: `device`, `fp` (the camera's fingerprint, hex), and a `claim` or `invite` secret. */
export function readLink() {
  const p = new URLSearchParams(location.hash.slice(1));
  return { fp: p.get('fp'), claim: p.get('claim'), invite: p.get('invite') };
}

/** A used (or refused) secret leaves the address bar and history; `device` and `fp` stay. */
export function forgetSecret() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (!p.has('claim') && !p.has('invite')) return;
  p.delete('claim');
  p.delete('invite');
  history.replaceState(history.state, '', `${location.pathname}${location.search}#${p}`);
}

/** `#device=<id>` wins over the server's own id, so a rendezvous page can show any camera. */
export function pickDeviceId(info) {
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

// `signal_path` is a path on this server, or a remote rendezvous's ws(s):// URL.
export function signalUrl(path) {
  if (typeof path === 'string' && /^wss?:\/\//.test(path)) return path;
  const local = typeof path === 'string' && path.startsWith('/') ? path : '/signal';
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}${local}`;
}

// pipe viewer: the camera UI's cookies. A service worker's responses cannot set cookies and
// it never sees the `Cookie` header, so the viewer keeps the UI's cookies itself: one jar per
// camera and browser identity (the grant), in the viewer origin's IndexedDB. The essentials of
// RFC 6265: name/value, host-only (the UI is one host), Path and its default, Max-Age over
// Expires, HttpOnly (kept out of document.cookie and safe from scripts), Secure kept but
// honoured as always-met (the datachannel is encrypted), SameSite ignored within the UI.

import { objectStore } from './store.js';

const DB_NAME = 'pipe-ui';
const DB_STORE = 'cookies';
const dbDo = objectStore(DB_NAME, DB_STORE);
/** Limits against a runaway camera UI: RFC 6265's minimums are 50 per domain and 4096 bytes. */
const MAX_COOKIES = 100;
const MAX_COOKIE_BYTES = 4096;
const SAVE_DELAY_MS = 200;


/** RFC 6265 5.1.4: the directory of a request path. */
export function defaultPath(requestPath) {
  const path = requestPath.split('?')[0];
  if (!path.startsWith('/')) return '/';
  const last = path.lastIndexOf('/');
  return last <= 0 ? '/' : path.slice(0, last);
}

/** RFC 6265 5.1.4: does `cookiePath` match `requestPath`? */
export function pathMatches(cookiePath, requestPath) {
  const path = requestPath.split('?')[0] || '/';
  if (path === cookiePath) return true;
  if (!path.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || path[cookiePath.length] === '/';
}

/**
 * One `Set-Cookie` value (or a `document.cookie` assignment) -> a cookie, or null if it is
 * not one. `now` in ms.
 */
export function parseSetCookie(line, requestPath, now = Date.now()) {
  if (line.length > MAX_COOKIE_BYTES) return null;
  const [pair, ...attrs] = line.split(';');
  const eq = pair.indexOf('=');
  const name = (eq < 0 ? '' : pair.slice(0, eq)).trim();
  const value = (eq < 0 ? pair : pair.slice(eq + 1)).trim();
  if (!name && !value) return null;
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(name + value)) return null;
  const cookie = { name, value, path: defaultPath(requestPath), hostOnly: true, expires: null,
    httpOnly: false, secure: false, created: now };
  let maxAge = null;
  for (const attr of attrs) {
    const i = attr.indexOf('=');
    const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
    const val = (i < 0 ? '' : attr.slice(i + 1)).trim();
    if (key === 'expires') {
      const t = Date.parse(val);
      if (!Number.isNaN(t)) cookie.expires = t;
    } else if (key === 'max-age') {
      if (/^-?\d+$/.test(val)) maxAge = Number(val);
    } else if (key === 'domain') {
      // One host: a Domain cookie of the camera applies to the UI host like a host-only one.
      if (val) cookie.hostOnly = false;
    } else if (key === 'path') {
      cookie.path = val.startsWith('/') ? val : defaultPath(requestPath);
    } else if (key === 'httponly') {
      cookie.httpOnly = true;
    } else if (key === 'secure') {
      cookie.secure = true;
    } // SameSite and anything else: ignored
  }
  if (maxAge !== null) cookie.expires = maxAge <= 0 ? 0 : now + maxAge * 1000;
  return cookie;
}

export class CookieJar {
  constructor(key, cookies = []) {
    this.key = key;
    this.cookies = cookies;
    this.listeners = new Set();
    this.saveTimer = 0;
  }

  /** The jar of `key` (`<device id>/<certificate fingerprint>`), from IndexedDB if it can. */
  static async open(key) {
    let stored = [];
    try {
      stored = (await dbDo('readonly', (s) => s.get(key))) ?? [];
    } catch (err) {
      console.warn('pipe viewer: camera UI cookies last only as long as this page', err);
    }
    const jar = new CookieJar(key, Array.isArray(stored) ? stored : []);
    jar.expire();
    return jar;
  }

  expire(now = Date.now()) {
    const before = this.cookies.length;
    this.cookies = this.cookies.filter((c) => c.expires === null || c.expires > now);
    return before !== this.cookies.length;
  }

  /**
   * Stores one cookie line. A script (`fromScript`) cannot set an HttpOnly cookie nor replace
   * one. Returns whether the jar changed.
   */
  set(line, requestPath, { fromScript = false } = {}) {
    const cookie = parseSetCookie(line, requestPath);
    if (!cookie || (fromScript && cookie.httpOnly)) return false;
    const i = this.cookies.findIndex((c) => c.name === cookie.name && c.path === cookie.path);
    if (i >= 0) {
      if (fromScript && this.cookies[i].httpOnly) return false;
      cookie.created = this.cookies[i].created; // RFC 6265 5.3 step 11.3
      this.cookies.splice(i, 1);
    }
    if (cookie.expires === null || cookie.expires > Date.now()) {
      this.cookies.push(cookie);
      if (this.cookies.length > MAX_COOKIES) this.cookies.sort((a, b) => a.created - b.created).shift();
    }
    this.changed();
    return true;
  }

  /** The `Cookie` header for a request to `path`, or null. */
  header(path) {
    this.expire();
    const matching = this.cookies.filter((c) => pathMatches(c.path, path))
      .sort((a, b) => b.path.length - a.path.length || a.created - b.created);
    if (!matching.length) return null;
    return matching.map((c) => (c.name ? `${c.name}=${c.value}` : c.value)).join('; ');
  }

  /** The cookies a script of the UI may read (no HttpOnly), for the document.cookie shim. */
  visible() {
    this.expire();
    return this.cookies.filter((c) => !c.httpOnly)
      .map(({ name, value, path, expires, created }) => ({ name, value, path, expires, created }));
  }

  onChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed() {
    for (const listener of this.listeners) listener(this);
    clearTimeout(this.saveTimer);
    this.saveTimer = setTimeout(() => this.save(), SAVE_DELAY_MS);
  }

  async save() {
    try {
      await dbDo('readwrite', (s) => s.put(this.cookies, this.key));
    } catch (err) {
      console.warn('pipe viewer: could not keep the camera UI cookies', err);
    }
  }
}

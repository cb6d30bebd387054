// pipe viewer: the two identities docs/security.md pins at the edge. This browser's own
// certificate (kept in IndexedDB, passed to every RTCPeerConnection, renewed before it
// expires) and the camera's fingerprint this browser paired with (kept per device id).

import { objectStore } from './store.js';

const DAY_MS = 24 * 3600 * 1000;
/** Browsers cap an RTCCertificate at a year. */
export const CERT_TTL_MS = 365 * DAY_MS;
/** A certificate this close to expiry is replaced over an authorised session. */
export const RENEW_DAYS = 30;
/** A stored certificate expiring sooner than this is not worth starting a session with. */
const EXPIRED_MARGIN_MS = 60_000;

const DB_NAME = 'pipe';
const DB_STORE = 'identity';
const DB_KEY = 'certificate';
const dbDo = objectStore(DB_NAME, DB_STORE);
const PAIRING_PREFIX = 'pipe.paired.'; // + device id -> fingerprint, hex
const HEX64_RE = /^[0-9a-f]{64}$/;

// ---- fingerprints and device ids ---------------------------------------------------------

/** `AB:CD:...` or `abcd...` -> 64 lowercase hex digits, or null. */
export function toHex(fingerprint) {
  const hex = String(fingerprint ?? '').replace(/:/g, '').toLowerCase();
  return HEX64_RE.test(hex) ? hex : null;
}

/** 64 hex digits -> the SDP form the device speaks: `AB:CD:...`. */
export function toColons(hex) {
  return hex.toUpperCase().match(/../g).join(':');
}

/** The first 4 bytes, for people comparing two screens: `AB:CD:EF:01`. */
export function short(hex) {
  return toColons(hex).slice(0, 11);
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** Lowercase RFC 4648 base32 without padding. */
export function base32(bytes) {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1; // keep only the bits not yet written
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/** The device id a fingerprint pins: base32 of its first 10 bytes (protocol.md "Addressing"). */
export function deviceIdOf(hex) {
  const bytes = hex.slice(0, 20).match(/../g).map((b) => parseInt(b, 16));
  return base32(bytes);
}

/**
 * The device fingerprint an offer announces, as hex: every `a=fingerprint` line must be
 * SHA-256 and all must agree; anything else is null (and refused).
 */
export function offerFingerprint(sdp) {
  let found = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (!line.startsWith('a=fingerprint:')) continue;
    const [hash, value] = line.slice('a=fingerprint:'.length).trim().split(/\s+/);
    const hex = hash?.toLowerCase() === 'sha-256' ? toHex(value) : null;
    if (!hex || (found && found !== hex)) return null;
    found = hex;
  }
  return found;
}

// ---- pairing: which camera fingerprint this browser trusts for a device id ----------------

/** A link or a pairing that must not be used, with the reason in the owner's words. */
export class PairingError extends Error {}

function storage() {
  try {
    return window.localStorage;
  } catch {
    return null; // storage disabled: pairing then lasts as long as the page
  }
}
const memoryPairings = new Map();

export function pairedFingerprint(deviceId) {
  return storage()?.getItem(PAIRING_PREFIX + deviceId) ?? memoryPairings.get(deviceId) ?? null;
}

export function pair(deviceId, hex) {
  memoryPairings.set(deviceId, hex);
  try {
    storage()?.setItem(PAIRING_PREFIX + deviceId, hex);
  } catch { /* full or disabled storage: the in-memory pairing still protects this page */ }
}

/**
 * Checks a link's `fp` against the device id and any earlier pairing, and pairs on first
 * sight. Returns the fingerprint to hold the camera to (hex), or null when neither the link
 * nor an earlier visit named one (the first offer is then checked against the device id).
 */
export function pairFromLink(deviceId, fp) {
  const paired = pairedFingerprint(deviceId);
  if (fp == null) return paired;
  const hex = toHex(fp);
  if (!hex || deviceIdOf(hex) !== deviceId) {
    throw new PairingError("This link is damaged: the camera's id and identity in it do not match. "
      + 'Ask for the link again.');
  }
  if (paired && paired !== hex) {
    throw new PairingError('This link names a different identity for this camera than the one this '
      + 'browser paired with. It was not used: someone may be trying to impersonate your camera.');
  }
  if (!paired) pair(deviceId, hex);
  return hex;
}

// ---- this browser's certificate ---------------------------------------------------------

/** SHA-256 fingerprint of a certificate, as hex. */
export function certFingerprint(cert) {
  const fp = cert.getFingerprints().find((f) => f.algorithm.toLowerCase() === 'sha-256');
  if (!fp) throw new Error('the browser gave its certificate no SHA-256 fingerprint');
  return toHex(fp.value);
}

export function generateCertificate(ttlMs = CERT_TTL_MS) {
  return RTCPeerConnection.generateCertificate({ name: 'ECDSA', namedCurve: 'P-256', expires: ttlMs });
}

/**
 * The browser's identity: the certificate every session presents, and one made to replace it
 * (`pending`) whose renewal the device has not confirmed yet.
 */
export class Identity {
  constructor({ ttlMs = CERT_TTL_MS, renewDays = RENEW_DAYS } = {}) {
    Object.assign(this, { ttlMs, renewDays, cert: null, pending: null, offered: false, persistent: true,
      loading: null, saved: Promise.resolve() });
  }

  /**
   * The certificate to present now, loaded or created once per page: the replacement once the
   * device has taken its renewal offer (its first session proves the new key, and the grant
   * follows), else the current one.
   */
  async current() {
    if (this.cert && this.cert.expires > Date.now() + EXPIRED_MARGIN_MS) return this.presented();
    this.loading ??= this.load().finally(() => { this.loading = null; });
    await this.loading;
    return this.presented();
  }

  presented() {
    return this.offered && this.pending ? this.pending : this.cert;
  }

  /** Is `cert` the replacement on trial (presented before the device let it in)? */
  trying(cert) {
    return cert != null && cert === this.pending;
  }

  async load() {
    let stored = null;
    try {
      stored = await dbDo('readonly', (s) => s.get(DB_KEY));
    } catch (err) {
      this.persistent = false;
      console.warn('pipe viewer: no IndexedDB, this browser gets a new identity per page', err);
    }
    const live = (c) => c instanceof RTCCertificate && c.expires > Date.now() + EXPIRED_MARGIN_MS;
    this.pending = live(stored?.pending) ? stored.pending : null;
    this.offered = this.pending != null && stored?.offered === true;
    if (live(stored?.cert)) {
      this.cert = stored.cert;
    } else {
      // First visit on this origin, or a year away: a new identity (an old grant is lost). It is
      // stored while the session starts; `saved` settles before it is presented for a grant.
      this.cert = await generateCertificate(this.ttlMs);
      this.saved = this.save().catch((err) => {
        this.persistent = false;
        console.warn('pipe viewer: cannot store this browser\'s identity; it lasts this page only', err);
      });
    }
    return this.cert;
  }

  async save() {
    if (!this.persistent) return;
    const value = { cert: this.cert, pending: this.pending, offered: this.offered };
    await dbDo('readwrite', (s) => s.put(value, DB_KEY));
  }

  needsRenewal() {
    return this.cert != null && this.cert.expires - Date.now() < this.renewDays * DAY_MS;
  }

  /** A replacement certificate, kept as `pending` before the device is told about it. */
  async prepareRenewal() {
    this.pending = await generateCertificate(CERT_TTL_MS);
    this.offered = false;
    await this.save();
    return certFingerprint(this.pending);
  }

  /** The device took the offer: the next session presents the replacement to prove it. */
  async offerRenewal() {
    if (!this.pending) return;
    this.offered = true;
    await this.save();
  }

  /** The device refused the renewal, or did not let the replacement in: keep the current one. */
  async abandonRenewal() {
    this.pending = null;
    this.offered = false;
    await this.save();
  }

  /** The device let the replacement in: it is this browser's identity from now on. */
  async commitRenewal() {
    if (!this.pending) return;
    [this.cert, this.pending, this.offered] = [this.pending, null, false];
    await this.save();
  }

  /**
   * The device does not know the current certificate but a replacement is pending: a session
   * proved it and the page closed before it was committed. Present it (once: if the device does
   * not know it either, `abandonRenewal`).
   */
  async adoptPending() {
    if (!this.pending || this.offered) return false;
    await this.offerRenewal();
    return true;
  }
}

// pipe viewer: the camera-UI proxy's frame codec and the limits the device shares
// (docs/proxy.md "Frames"; the device's side is src/proxy/frame.rs and flow.rs).
// tests/js/proxy.test.mjs runs it against byte fixtures the device's code writes
// (tests/data/proxy-frames.json), so the two cannot drift. The proxy itself is proxy.js.

export const CHANNELS = 4;
const MAX_FRAME = 65536;
const HEADER_LEN = 5;
export const MAX_DATA = MAX_FRAME - HEADER_LEN;
export const MAX_WS_FRAGMENT = MAX_DATA - 1;
export const MAX_JSON = 16384;
const MAX_HEADERS = 100;
/**
 * Initial credit per stream, fixed by the protocol for each direction: what we may send the
 * device (request bodies, WebSocket messages; the device buffers it, so it is small)...
 */
export const SEND_WINDOW = 262144;
/** ...and what the device may send us (responses, WebSocket messages). */
export const RECV_WINDOW = 1048576;
/** Streams not yet closed, as the device counts them; more are queued here. */
export const MAX_STREAMS = 64;
export const MAX_WS_MESSAGE = 1024 * 1024;
export const MAX_CLOSE_REASON = 123;
/**
 * The limits the device shares (src/proxy/{frame,flow}.rs): tests/js/proxy.test.mjs checks
 * them, and the codec, against tests/data/proxy-frames.json, which the device's code writes.
 */
export const LIMITS = Object.freeze({
  MAX_FRAME, HEADER_LEN, MAX_DATA, MAX_WS_FRAGMENT, MAX_JSON, MAX_HEADERS, MAX_CLOSE_REASON,
  MAX_WS_MESSAGE, CHANNELS, SEND_WINDOW, RECV_WINDOW, MAX_STREAMS,
});

export const T = {
  REQUEST_HEAD: 1, RESPONSE_HEAD: 2, DATA: 3, END: 4, CREDIT: 5, RESET: 6, WS_MESSAGE: 7, WS_CLOSE: 8,
};

export const encoder = new TextEncoder();
export const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;
const VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** A stream's failure, with the contract's reset code (`refused`, `upstream`, ...). */
export class ProxyError extends Error {
  constructor(code, message) {
    super(message ? `${code}: ${message}` : code);
    this.code = code;
  }
}

export function encodeFrame(type, id, payload = null) {
  const len = payload ? payload.length : 0;
  const buf = new Uint8Array(HEADER_LEN + len);
  buf[0] = type;
  new DataView(buf.buffer).setUint32(1, id);
  if (payload) buf.set(payload, HEADER_LEN);
  return buf;
}

export const jsonPayload = (value) => encoder.encode(JSON.stringify(value));
export const u32 = (n) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n); return b; };

/** `[[name, value]]` as the contract wants them, or throws. */
export function checkHeaders(headers) {
  if (!Array.isArray(headers) || headers.length > MAX_HEADERS) throw new Error('bad header list');
  for (const pair of headers) {
    if (!Array.isArray(pair) || pair.length !== 2) throw new Error('bad header pair');
    const [name, value] = pair;
    if (typeof name !== 'string' || !TOKEN_RE.test(name)) throw new Error(`bad header name ${name}`);
    if (typeof value !== 'string' || !VALUE_RE.test(value)) throw new Error(`bad header value for ${name}`);
  }
  return headers;
}

/** Parses a JSON payload with exactly `members`, or throws. */
function parseJson(payload, members) {
  if (payload.length > MAX_JSON) throw new Error('JSON payload too large');
  const value = JSON.parse(strictUtf8.decode(payload));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not an object');
  const keys = Object.keys(value);
  // (JSON.parse keeps the last of duplicate members: a duplicate is not caught here.)
  if (keys.length !== members.length || !members.every((m) => keys.includes(m))) throw new Error('bad members');
  return value;
}

/**
 * A frame from the device: `{ type, id, ...fields }`. Throws `{ id, message }` (id 0 when the
 * frame names no usable stream) for anything the contract does not allow.
 */
export function decodeFrame(data) {
  const bytes = new Uint8Array(data);
  if (bytes.length > MAX_FRAME || bytes.length < HEADER_LEN) throw { id: 0, message: 'bad frame size' };
  const type = bytes[0];
  const id = new DataView(bytes.buffer, bytes.byteOffset).getUint32(1);
  if (type < T.RESPONSE_HEAD || type > T.WS_CLOSE) throw { id, message: `unexpected frame type ${type}` };
  if (id === 0) throw { id: 0, message: 'stream id 0' };
  const payload = bytes.subarray(HEADER_LEN);
  const fail = (message) => { throw { id, message }; };
  try {
    switch (type) {
      case T.RESPONSE_HEAD: {
        const head = parseJson(payload, ['status', 'headers']);
        if (!Number.isInteger(head.status) || !(head.status === 101 || (head.status >= 200 && head.status <= 599))) fail('bad status');
        return { type, id, status: head.status, headers: checkHeaders(head.headers) };
      }
      case T.DATA:
        if (!payload.length) fail('empty data');
        return { type, id, data: payload, cost: payload.length };
      case T.END:
        if (payload.length) fail('end with payload');
        return { type, id };
      case T.CREDIT: {
        if (payload.length !== 4) fail('bad credit');
        const credit = new DataView(payload.buffer, payload.byteOffset).getUint32(0);
        if (!credit) fail('zero credit');
        return { type, id, credit };
      }
      case T.RESET: {
        const reset = parseJson(payload, ['code', 'message']);
        if (typeof reset.code !== 'string' || typeof reset.message !== 'string') fail('bad reset');
        return { type, id, code: reset.code, message: reset.message };
      }
      case T.WS_MESSAGE: {
        if (!payload.length) fail('no kind byte');
        const kind = payload[0] & 0x7f;
        if (kind !== 1 && kind !== 2) fail('bad message kind');
        return { type, id, kind, more: (payload[0] & 0x80) !== 0, data: payload.subarray(1), cost: payload.length };
      }
      case T.WS_CLOSE: {
        if (payload.length < 2 || payload.length > 2 + MAX_CLOSE_REASON) fail('bad close');
        const code = new DataView(payload.buffer, payload.byteOffset).getUint16(0);
        if (code < 1000 || code > 4999) fail('bad close code');
        return { type, id, code, reason: strictUtf8.decode(payload.subarray(2)) };
      }
      default:
        return fail('unknown type');
    }
  } catch (err) {
    if (err && typeof err === 'object' && 'id' in err) throw err;
    throw { id, message: String(err?.message ?? err) };
  }
}

/** The longest prefix of UTF-8 `bytes` up to `max` that ends at a character boundary. */
export function utf8Cut(bytes, max) {
  if (bytes.length <= max) return bytes.length;
  let cut = max;
  while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut -= 1;
  return cut;
}

// The browser's proxy codec (web/frame.js) against the device's: tests/data/proxy-frames.json
// is written by the device's own encoder (tests/proxy_fixtures.rs checks it), so the two
// implementations of one wire format cannot drift apart. Run by scripts/test:
//   node --test tests/js/
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { LIMITS, T, decodeFrame, encodeFrame } from '../../web/frame.js';

const fixtures = JSON.parse(readFileSync(new URL('../data/proxy-frames.json', import.meta.url)));
const bytes = (hex) => Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, '0')).join('');
const byName = (name) => fixtures.frames.find((f) => f.name === name);

test('the limits are the device\'s', () => {
  assert.deepEqual({ ...LIMITS }, fixtures.limits);
});

test('every frame the device sends decodes to what it means', () => {
  // The device sends heads of responses only; requests go the other way.
  for (const f of fixtures.frames.filter((f) => f.meaning.type !== T.REQUEST_HEAD)) {
    const got = decodeFrame(bytes(f.hex).buffer);
    const want = { ...f.meaning };
    if ('data' in want) want.data = bytes(want.data);
    assert.deepEqual({ ...got, ...(got.data ? { data: new Uint8Array(got.data) } : {}) }, want, f.name);
  }
});

test('frames are laid out as the device lays them out', () => {
  for (const f of fixtures.frames) {
    const raw = bytes(f.hex);
    const payload = raw.subarray(LIMITS.HEADER_LEN);
    const encoded = encodeFrame(f.meaning.type, f.meaning.id, payload.length ? payload : null);
    assert.equal(toHex(encoded), f.hex, f.name);
  }
});

test('request heads are written as the device reads them', () => {
  for (const name of ['request-head', 'request-head websocket']) {
    const f = byName(name);
    const { method, path, headers, websocket } = f.meaning;
    // The same construction as UiProxy's (`jsonPayload({ method, path, headers, websocket })`).
    const payload = new TextEncoder().encode(JSON.stringify({ method, path, headers, websocket }));
    assert.equal(toHex(encodeFrame(T.REQUEST_HEAD, f.meaning.id, payload)), f.hex, name);
  }
});

test('what the device refuses, the browser refuses', () => {
  for (const f of fixtures.refused) {
    assert.throws(() => decodeFrame(bytes(f.hex).buffer), (err) => typeof err?.message === 'string', f.name);
  }
});

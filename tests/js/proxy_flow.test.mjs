// The browser's credit flow control (web/proxy.js's UiProxy) over a fake peer connection that
// records what the page sends and lets the test play the device: the limits are the device's
// (tests/data/proxy-frames.json, written by src/proxy), so a page that sent beyond its credit,
// or owed the device credit it never returned, fails here and not only against a real device.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { T, UiProxy, decodeFrame, encodeFrame } from '../../web/proxy.js';

const { limits } = JSON.parse(readFileSync(new URL('../data/proxy-frames.json', import.meta.url)));

class FakeChannel extends EventTarget {
  constructor(label) {
    super();
    Object.assign(this, { label, readyState: 'connecting', bufferedAmount: 0, sent: [] });
  }
  send(bytes) { this.sent.push(new Uint8Array(bytes)); }
  close() { this.readyState = 'closed'; }
  openNow() { this.readyState = 'open'; this.dispatchEvent(new Event('open')); }
}

function fakePeer() {
  const channels = [];
  return { channels, createDataChannel: (label) => { const c = new FakeChannel(label); channels.push(c); return c; } };
}

/** The frames the page sent on stream `id`, decoded by the device's rules for its direction. */
function sentOn(pc, id) {
  const ch = pc.channels[id % limits.CHANNELS];
  return ch.sent.map((b) => ({ type: b[0], id: new DataView(b.buffer).getUint32(1), payload: b.subarray(limits.HEADER_LEN) }))
    .filter((f) => f.id === id);
}

/** The device sends `type` on stream `id`. */
function device(pc, proxy, id, type, payload = null) {
  const frame = encodeFrame(type, id, payload);
  proxy.receive(id % limits.CHANNELS, frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.length));
}

const json = (v) => new TextEncoder().encode(JSON.stringify(v));
const u32 = (n) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n); return b; };
const tick = () => new Promise((r) => setTimeout(r, 10));

async function opened() {
  const pc = fakePeer();
  const proxy = new UiProxy(pc);
  for (const c of pc.channels) c.openNow();
  await proxy.ready;
  return { pc, proxy };
}

test('a request body stops at the credit the device gave, and goes on with more', async () => {
  const { pc, proxy } = await opened();
  const size = limits.SEND_WINDOW + 100_000;
  const body = new ReadableStream({ start(c) { c.enqueue(new Uint8Array(size).fill(7)); c.close(); } });
  const pending = proxy.request({ method: 'POST', path: '/upload', body });
  await tick();
  const id = 1;
  const dataBytes = () => sentOn(pc, id).filter((f) => f.type === T.DATA).reduce((n, f) => n + f.payload.length, 0);
  assert.equal(sentOn(pc, id)[0].type, T.REQUEST_HEAD);
  assert.equal(dataBytes(), limits.SEND_WINDOW, 'sent exactly its initial credit');
  assert.ok(sentOn(pc, id).every((f) => f.payload.length <= limits.MAX_DATA));
  assert.ok(!sentOn(pc, id).some((f) => f.type === T.END), 'ended before the body was sent');

  device(pc, proxy, id, T.CREDIT, u32(100_000));
  await tick();
  assert.equal(dataBytes(), size);
  assert.equal(sentOn(pc, id).at(-1).type, T.END);

  device(pc, proxy, id, T.RESPONSE_HEAD, json({ status: 204, headers: [] }));
  device(pc, proxy, id, T.END);
  const res = await pending;
  assert.equal(res.status, 204);
});

test('a response body is paid back in credit as it is read, half a window at a time', async () => {
  const { pc, proxy } = await opened();
  const pending = proxy.request({ method: 'GET', path: '/big' });
  await tick();
  const id = 1;
  device(pc, proxy, id, T.RESPONSE_HEAD, json({ status: 200, headers: [] }));
  const res = await pending;
  const chunk = new Uint8Array(limits.MAX_DATA).fill(1);
  let given = 0;
  while (given + chunk.length <= limits.RECV_WINDOW) {
    device(pc, proxy, id, T.DATA, chunk);
    given += chunk.length;
  }
  const reader = res.body.getReader();
  let read = 0;
  while (read < given) read += (await reader.read()).value.length;
  await tick();
  const credits = sentOn(pc, id).filter((f) => f.type === T.CREDIT)
    .map((f) => new DataView(f.payload.buffer, f.payload.byteOffset).getUint32(0));
  assert.ok(credits.length >= 1, 'no credit returned');
  assert.ok(credits.every((c) => c >= limits.RECV_WINDOW / 2), `credit in small change: ${credits}`);
  assert.ok(credits.reduce((a, b) => a + b, 0) <= read, 'credit for bytes not read');
  proxy.close('done');
});

test('data beyond the credit the page gave is a flow-control error', async () => {
  const { pc, proxy } = await opened();
  const pending = proxy.request({ method: 'GET', path: '/flood' });
  await tick();
  const id = 1;
  device(pc, proxy, id, T.RESPONSE_HEAD, json({ status: 200, headers: [] }));
  await pending;
  const chunk = new Uint8Array(limits.MAX_DATA);
  for (let sent = 0; sent <= limits.RECV_WINDOW; sent += chunk.length) device(pc, proxy, id, T.DATA, chunk);
  const reset = sentOn(pc, id).find((f) => f.type === T.RESET);
  assert.ok(reset, 'no reset');
  assert.equal(JSON.parse(new TextDecoder().decode(reset.payload)).code, 'flow-control');
  // The reset is one the device's decoder accepts (as a frame toward the page, same layout).
  assert.equal(decodeFrame(encodeFrame(T.RESET, id, reset.payload).buffer).code, 'flow-control');
});

test('more requests than the stream limit wait for a slot instead of being sent', async () => {
  const { pc, proxy } = await opened();
  const all = Array.from({ length: limits.MAX_STREAMS + 3 }, (_, i) => proxy.request({ method: 'GET', path: `/r${i}` }));
  await tick();
  const heads = pc.channels.flatMap((c) => c.sent).filter((b) => b[0] === T.REQUEST_HEAD).length;
  assert.equal(heads, limits.MAX_STREAMS);
  device(pc, proxy, 1, T.RESPONSE_HEAD, json({ status: 200, headers: [] }));
  device(pc, proxy, 1, T.END);
  (await all[0]).body.cancel();
  await tick();
  const after = pc.channels.flatMap((c) => c.sent).filter((b) => b[0] === T.REQUEST_HEAD).length;
  assert.equal(after, limits.MAX_STREAMS + 1, 'a closed stream frees one slot');
  proxy.close('done');
  await Promise.allSettled(all);
});

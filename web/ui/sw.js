// pipe camera UI, service worker (docs/ui-proxy-browser.md). Controls the whole UI origin and
// forwards every same-origin request except `/__pipe/*` to the viewer page over a MessagePort:
// the head as a message, the body as a transferred ReadableStream (chunk messages where
// streams do not transfer); the response comes back the same way and is returned as the
// camera sent it (redirects included: the browser follows them on this origin). HTML pages get
// the shim (`/__pipe/shim.js`) injected at the top of `<head>` while they stream.
//
// A worker that the browser stopped has lost its port: it asks its windows (the shim) for a
// new one, and a navigation with no window to ask gets the boot page, which brings one.
importScripts('/__pipe/common.js');

const { PortBodies, viewerOrigins } = self.pipeUi;

/** A window asked for a port answers within a round trip; after this, give up on it. */
const PORT_WAIT_MS = 5_000;
/** The camera answers or the device resets the stream; this only catches a vanished page. */
const RESPONSE_TIMEOUT_MS = 90_000;
/** Where the `<head>` of a page must have shown up by; later, the shim goes in anyway. */
const INJECT_SCAN_BYTES = 64 * 1024;
/** Request headers a service worker sees that are not the camera's business. */
const DROP_REQUEST = new Set(['cookie', 'accept-encoding', 'connection', 'keep-alive', 'upgrade',
  'te', 'trailer', 'transfer-encoding', 'host', 'origin', 'referer']);
/** Response headers not to hand the browser: cookies live in the jar; framing is ours to say. */
const DROP_RESPONSE = new Set(['set-cookie', 'set-cookie2', 'x-frame-options', 'connection',
  'keep-alive', 'transfer-encoding']);
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

let link = null; // { port, bodies, pending: Map(id -> {resolve, reject}) }
let portWaiters = [];
let nextId = 0;
let shimSource = null;
const latin1 = new TextDecoder('windows-1252');

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (ev) => ev.waitUntil(self.clients.claim()));

self.addEventListener('message', (ev) => {
  if (ev.data?.pipe !== 'port' || !ev.ports[0]) return;
  attach(ev.ports[0], ev.data.chunks === true);
  ev.source?.postMessage({ pipe: 'port-ok' });
});

/** A new port serves new requests; one still answering older requests keeps doing so. */
function attach(port, chunks) {
  const l = { port, bodies: new PortBodies(port, { chunks }), pending: new Map() };
  port.onmessage = (ev) => {
    const m = ev.data;
    if (l.bodies.handle(m)) return;
    const waiter = l.pending.get(m?.id);
    if (!waiter) return;
    l.pending.delete(m.id);
    if (m.t === 'error') waiter.reject(new Error(m.message));
    else waiter.resolve(m);
  };
  // Where the browser tells (the MessagePort `close` event), a port whose viewer page is gone
  // (another tab's, closed) is dropped at once instead of timing out its requests.
  port.addEventListener('close', () => {
    if (link === l) link = null;
    for (const waiter of l.pending.values()) waiter.reject(new PortClosed());
    l.pending.clear();
  });
  link = l;
  for (const wake of portWaiters.splice(0)) wake(l);
}

class PortClosed extends Error {
  constructor() {
    super('the viewer page closed its port');
  }
}

/** The current port, or a new one from a window of ours (the shim asks the viewer page). */
async function getLink() {
  if (link) return link;
  const waiting = new Promise((resolve, reject) => {
    portWaiters.push(resolve);
    setTimeout(() => reject(new Error('no port')), PORT_WAIT_MS);
  });
  const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  for (const w of windows) w.postMessage({ pipe: 'need-port' });
  return waiting;
}

/** Sends `message` (with `transfer`) and resolves with the viewer page's answer. */
function ask(l, message, transfer = [], signal = null) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      l.pending.delete(message.id);
      if (link === l) link = null; // the page behind this port is gone
      reject(new Error('the viewer page did not answer'));
    }, RESPONSE_TIMEOUT_MS);
    l.pending.set(message.id, {
      resolve: (m) => { clearTimeout(timer); resolve(m); },
      reject: (e) => { clearTimeout(timer); reject(e); },
    });
    signal?.addEventListener('abort', () => l.port.postMessage({ t: 'cancel', id: message.id }));
    l.port.postMessage(message, transfer);
  });
}

self.addEventListener('fetch', (ev) => {
  const url = new URL(ev.request.url);
  if (url.origin !== self.location.origin) return; // not the camera's: the browser's business
  if (url.pathname === '/__pipe/shim.js') {
    ev.respondWith(shim());
    return;
  }
  if (url.pathname.startsWith('/__pipe/')) return; // the device serves these
  ev.respondWith(forward(ev.request, url));
});

async function forward(request, url) {
  const navigate = request.mode === 'navigate';
  let l;
  try {
    l = await getLink();
  } catch {
    // No window to ask (the worker restarted between pages): the boot page brings a port.
    if (navigate && request.method === 'GET') return bootPage(url);
    return new Response('pipe: the camera UI lost its connection to the viewer page; open it again.\n',
      { status: 503, headers: { 'content-type': 'text/plain; charset=utf-8' } });
  }
  const first = await exchange(l, request, url, navigate).catch((err) => err);
  // A port that closed before it answered: a request without a body can go again.
  const retry = first instanceof PortClosed && ['GET', 'HEAD'].includes(request.method);
  const result = retry ? await getLink().then((l2) => exchange(l2, request, url, navigate)).catch((err) => err) : first;
  if (result instanceof Response) return result;
  return new Response(`pipe: the camera UI proxy got no answer from the camera (${result?.message}).\n`, {
    status: 502, headers: { 'content-type': 'text/plain; charset=utf-8' } });
}

/** One try: resolves with the Response, rejects if the viewer page did not answer. */
async function exchange(l, request, url, navigate) {
  const id = ++nextId;
  const headers = [];
  for (const [name, value] of request.headers) if (!DROP_REQUEST.has(name)) headers.push([name, value]);
  if (request.referrer && new URL(request.referrer).origin === self.location.origin) {
    headers.push(['referer', request.referrer]);
  }
  const hasBody = !['GET', 'HEAD'].includes(request.method);
  if (hasBody) headers.push(['origin', self.location.origin]); // the device rewrites it to the camera's
  let body = null;
  if (hasBody) {
    // Chromium streams request bodies; where `body` is missing the browser has it as a Blob.
    body = request.body ?? (await request.blob()).stream();
  }
  const transfer = [];
  const { field, start } = l.bodies.encode(`q${id}`, body, transfer);
  const path = url.pathname + url.search;
  const answer = ask(l, { t: 'fetch', id, method: request.method, path, headers, body: field, navigate },
    transfer, request.signal);
  start();
  return respond(l, await answer, navigate);
}

function respond(l, res, navigate) {
  let body = l.bodies.decode(`r${res.id}`, res.body);
  const headers = new Headers();
  for (const [name, value] of res.headers) {
    if (DROP_RESPONSE.has(name)) continue;
    if (name === 'content-security-policy') {
      // The camera's own policy stands, except who may frame it: the viewer, and the camera's
      // own pages (a UI may frame itself), below.
      const kept = value.split(';').filter((d) => !/^\s*frame-ancestors\b/i.test(d)).join(';');
      if (kept.trim()) headers.append(name, kept);
      continue;
    }
    headers.append(name, value);
  }
  if (navigate) headers.append('content-security-policy', `frame-ancestors 'self' ${viewerOrigins().join(' ')}`);
  // As the boot page: one agent cluster per origin across the UI origin's documents.
  if (navigate) headers.set('origin-agent-cluster', '?1');
  // The device asks the camera for no content coding; a camera that applies one anyway is
  // decoded here, since the browser does not decode a response a worker builds.
  const coding = headers.get('content-encoding')?.toLowerCase();
  if (body && (coding === 'gzip' || coding === 'deflate')) {
    body = body.pipeThrough(new DecompressionStream(coding));
    headers.delete('content-encoding');
    headers.delete('content-length');
  }
  const html = /^\s*text\/html\b/i.test(headers.get('content-type') ?? '');
  if (body && navigate && html) {
    body = body.pipeThrough(injectShim());
    headers.delete('content-length');
  }
  if (NULL_BODY.has(res.status)) {
    body?.cancel().catch(() => {});
    body = null;
  }
  return new Response(body, { status: res.status, headers });
}

async function bootPage(url) {
  const to = encodeURIComponent(url.pathname + url.search);
  return fetch(`/__pipe/boot?to=${to}`, { cache: 'no-store' });
}

/**
 * The shim with common.js, preceded by the cookies the UI's scripts may read now
 * (`document.cookie`).
 */
async function shim() {
  if (shimSource === null) {
    const get = async (path) => (await fetch(path, { cache: 'no-cache' })).text();
    const [common, page] = await Promise.all([get('/__pipe/common.js'), get('/__pipe/shim.js')]);
    shimSource = `${common}\n${page}`;
  }
  let cookies = [];
  try {
    const l = await getLink();
    const id = ++nextId;
    cookies = (await ask(l, { t: 'cookies-get', id })).list ?? [];
  } catch { /* no viewer page: no cookies */ }
  const prefix = `self.__pipeCookies = ${JSON.stringify(cookies).replace(/</g, '\\u003c')};\n`;
  return new Response(prefix + shimSource, { headers: {
    'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' } });
}

/**
 * Inserts `<script src="/__pipe/shim.js">` right after `<head ...>` (else after the doctype,
 * comments and `<html ...>`, before the first other tag), as the page streams by: never
 * before the doctype, which would put the page in quirks mode.
 */
function injectShim() {
  const tag = new TextEncoder().encode('<script src="/__pipe/shim.js"></script>');
  let held = new Uint8Array(0);
  let done = false;
  const emit = (controller, at) => {
    controller.enqueue(held.subarray(0, at));
    controller.enqueue(tag);
    if (at < held.length) controller.enqueue(held.subarray(at));
    held = null;
    done = true;
  };
  return new TransformStream({
    transform(chunk, controller) {
      if (done) {
        controller.enqueue(chunk);
        return;
      }
      const joined = new Uint8Array(held.length + chunk.length);
      joined.set(held);
      joined.set(chunk, held.length);
      held = joined;
      const at = insertionPoint(held, false);
      if (at >= 0) emit(controller, at);
      else if (held.length > INJECT_SCAN_BYTES) emit(controller, insertionPoint(held, true));
    },
    flush(controller) {
      if (!done) emit(controller, insertionPoint(held, true));
    },
  });
}

/**
 * Where the shim goes in the start of a page, or -1 if more bytes are needed to tell. With
 * `final`, the best place found so far.
 */
function insertionPoint(bytes, final) {
  // Latin-1 view of the bytes: markup is ASCII in every encoding a page may use here.
  // (windows-1252 maps every byte to one UTF-16 unit, so offsets stay byte offsets).
  const text = latin1.decode(bytes.subarray(0, Math.min(bytes.length, INJECT_SCAN_BYTES)));
  let at = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0; // UTF-8 BOM
  for (;;) {
    const ws = /^\s*/.exec(text.slice(at))[0].length;
    const rest = text.slice(at + ws);
    const skip = /^(<!--[\s\S]*?-->|<!doctype[^>]*>|<\?[^>]*>|<html(\s[^>]*)?>)/i.exec(rest);
    if (skip) {
      at += ws + skip[0].length;
      continue;
    }
    const head = /^<head(\s[^>]*)?>/i.exec(rest);
    if (head) return at + ws + head[0].length;
    // Not enough to tell: an unfinished comment, doctype or tag at the end of what we have.
    if (!final && (rest.length < 6 || /^<(!--|!|\?|h)/i.test(rest)) && !rest.includes('>')) return -1;
    if (!final && /^<!--/.test(rest) && !rest.includes('-->')) return -1;
    return at + ws;
  }
}

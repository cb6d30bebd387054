// pipe viewer: the "Camera settings" panel. The camera's own web UI runs in an iframe on an
// origin of its own (`ui-<device id>.<host>`, docs/ui-proxy-browser.md), never this page's:
// it cannot script this page, which holds the browser's certificate. Its service worker and
// shim ask this page, by postMessage, for MessagePorts; through those this page serves their
// requests and WebSockets over the proxy channels (proxy.js) and keeps their cookies
// (cookies.js). Nothing else is offered to the frame.

import './common.js';
import { CookieJar } from './cookies.js';

const { uiOrigin, PortBodies } = globalThis.pipeUi;

const $ = (id) => document.getElementById(id);

/**
 * Wires the panel in index.html. `liveProxy()` resolves with the session's ready Proxy (or
 * rejects when there is none in time). Returns `update(grant)`, called with every access
 * change: `{ deviceId, fingerprint }` while this browser may use the camera's UI, else null.
 * `chunks`: force the chunked body fallback (what Safari gets), for tests.
 */
export function uiPanel(liveProxy, { chunks = false } = {}) {
  const ui = { open: $('ui-open'), panel: $('ui-panel'), close: $('ui-close'), holder: $('ui-holder') };
  const state = { grant: null, origin: null, frame: null, jar: null, ports: new Set(), requests: 0 };

  function show(visible) {
    ui.panel.hidden = !visible;
    ui.open.setAttribute('aria-expanded', String(visible));
    if (visible && !state.frame) {
      const frame = document.createElement('iframe');
      frame.id = 'ui-frame';
      frame.title = 'Camera settings';
      // Scripts and forms run; same-origin (its own origin, not ours) is what lets it have a
      // service worker. No top navigation, no popups, no access to this page.
      frame.setAttribute('sandbox', 'allow-scripts allow-forms allow-same-origin');
      frame.referrerPolicy = 'no-referrer';
      frame.src = `${state.origin}/__pipe/boot?to=/`;
      ui.holder.replaceChildren(frame);
      state.frame = frame;
    } else if (!visible && state.frame) {
      state.frame.remove();
      state.frame = null;
      for (const port of state.ports) port.close();
      state.ports.clear();
    }
  }

  ui.open.addEventListener('click', () => show(ui.panel.hidden));
  ui.close.addEventListener('click', () => show(false));

  // Port requests from the frame: only from our frame's window and from the UI origin.
  window.addEventListener('message', (ev) => {
    if (!state.frame || ev.source !== state.frame.contentWindow || ev.origin !== state.origin) return;
    if (ev.data?.pipe !== 'port-request' || typeof ev.data.nonce !== 'string') return;
    const channel = new MessageChannel();
    serve(channel.port1);
    ev.source.postMessage({ pipe: 'port', nonce: ev.data.nonce, chunks }, state.origin, [channel.port2]);
  });

  const jar = () => {
    const key = `${state.grant.deviceId}/${state.grant.fingerprint}`;
    if (state.jar?.key !== key) {
      state.jar = { key, ready: CookieJar.open(key) };
      state.jar.ready.then((j) => j.onChange(() => {
        const list = j.visible();
        for (const port of state.ports) port.postMessage({ t: 'cookies', list });
      }));
    }
    return state.jar.ready;
  };

  /** Serves one port: requests from the worker, WebSockets and cookies from the shim. */
  function serve(port) {
    state.ports.add(port);
    const bodies = new PortBodies(port, { chunks });
    const aborts = new Map();
    const sockets = new Map();
    // Where the browser says a port's other end is gone (its page closed), its sockets close.
    port.addEventListener('close', () => {
      state.ports.delete(port);
      for (const socket of sockets.values()) socket.then((s) => s.close(1001, 'page gone'), () => {});
      sockets.clear();
    });
    port.onmessage = (ev) => {
      const m = ev.data;
      if (bodies.handle(m)) return;
      switch (m?.t) {
        case 'fetch': forward(port, bodies, aborts, m); break;
        case 'cancel': aborts.get(m.id)?.abort(); break;
        case 'cookies-get':
          jar().then((j) => port.postMessage({ t: 'cookies', id: m.id, list: j.visible() }));
          break;
        case 'set-cookie':
          if (typeof m.value === 'string' && typeof m.path === 'string') {
            jar().then((j) => j.set(m.value, m.path, { fromScript: true }));
          }
          break;
        case 'ws-open': openSocket(port, sockets, m); break;
        case 'ws-send': {
          const socket = sockets.get(m.id);
          if (!socket) break;
          const n = typeof m.data === 'string' ? m.data.length : m.data.byteLength;
          socket.then((s) => s.send(m.data)).then(() => port.postMessage({ t: 'ws-sent', id: m.id, n }), () => {});
          break;
        }
        case 'ws-close':
          sockets.get(m.id)?.then((s) => s.close(m.code ?? 1005, m.reason ?? ''), () => {});
          break;
        default: break;
      }
    };
  }

  async function forward(port, bodies, aborts, m) {
    const abort = new AbortController();
    aborts.set(m.id, abort);
    state.requests += 1;
    try {
      if (typeof m.path !== 'string' || !Array.isArray(m.headers)) throw new Error('bad request');
      const [proxy, cookies] = await Promise.all([liveProxy(), jar()]);
      const headers = m.headers.filter(([name]) => name !== 'cookie');
      const cookie = cookies.header(m.path);
      if (cookie) headers.push(['cookie', cookie]);
      const body = bodies.decode(`q${m.id}`, m.body);
      const res = await proxy.request({ method: m.method, path: m.path, headers, body, signal: abort.signal });
      const out = [];
      for (const [name, value] of res.headers) {
        if (name === 'set-cookie') cookies.set(value, m.path);
        else out.push([name, value]);
      }
      const transfer = [];
      const { field, start } = bodies.encode(`r${m.id}`, res.body, transfer);
      port.postMessage({ t: 'response', id: m.id, status: res.status, headers: out, body: field }, transfer);
      start();
    } catch (err) {
      port.postMessage({ t: 'error', id: m.id, message: String(err?.message ?? err) });
    } finally {
      aborts.delete(m.id);
    }
  }

  function openSocket(port, sockets, m) {
    const opening = (async () => {
      const [proxy, cookies] = await Promise.all([liveProxy(), jar()]);
      const headers = [['origin', state.origin]];
      const cookie = cookies.header(m.path);
      if (cookie) headers.push(['cookie', cookie]);
      const protocols = Array.isArray(m.protocols) ? m.protocols.filter((p) => typeof p === 'string') : [];
      return proxy.websocket({ path: m.path, protocols, headers }, {
        onmessage: (data) => port.postMessage({ t: 'ws-message', id: m.id, data }, data instanceof ArrayBuffer ? [data] : []),
        onclose: (code, reason, clean) => {
          sockets.delete(m.id);
          port.postMessage({ t: 'ws-closed', id: m.id, code, reason, clean });
        },
      });
    })();
    sockets.set(m.id, opening);
    opening.then((s) => port.postMessage({ t: 'ws-opened', id: m.id, protocol: s.protocol }), (err) => {
      sockets.delete(m.id);
      console.warn('pipe viewer: camera UI WebSocket', m.path, err);
      port.postMessage({ t: 'ws-closed', id: m.id, code: 1006, reason: '', clean: false });
    });
  }

  const panel = {
    get origin() { return state.origin; },
    get frame() { return state.frame; },
    get requests() { return state.requests; },
    chunks,
    show,
  };

  function update(grant) {
    const origin = grant ? uiOrigin(grant.deviceId, location, grant.uiDomain) : null;
    const same = grant && state.grant && grant.deviceId === state.grant.deviceId
      && grant.fingerprint === state.grant.fingerprint;
    if (!origin) {
      if (state.grant) show(false);
      state.grant = null;
      state.origin = null;
      ui.open.hidden = true;
      return panel;
    }
    if (!same) show(false); // another camera or identity: another jar and origin
    state.grant = grant;
    state.origin = origin;
    ui.open.hidden = false;
    return panel;
  }
  update.panel = panel;
  return update;
}

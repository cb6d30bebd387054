// pipe camera UI, page shim (docs/ui-proxy-browser.md). The service worker injects it at the
// top of every camera page it serves, preceded by common.js and `self.__pipeCookies` (the
// cookies the page's scripts may read when it loaded). It gives the camera's scripts:
// - `WebSocket`: same-origin sockets are carried over the viewer's proxy through this page's
//   own MessagePort to the viewer page (sockets outlive the worker, which may be stopped);
// - `document.cookie`: a synchronous view of the viewer's cookie jar, kept current by the
//   viewer page; writes go to the jar (HttpOnly cookies stay invisible and untouchable);
// and it gives the service worker a new port when a restarted worker asks for one.
(() => {
  if (window.__pipeShim) return;
  window.__pipeShim = true;
  const { viewerOrigins, requestPort } = globalThis.pipeUi;
  const origins = viewerOrigins();
  const NativeWebSocket = window.WebSocket;

  // ---- the port to the viewer page ----------------------------------------------------------
  let portPromise = null;
  const sockets = new Map(); // id -> PipeWebSocket
  let nextSocket = 0;

  function port() {
    portPromise ??= requestPort(origins).then(({ port: p }) => {
      p.onmessage = (ev) => onPortMessage(ev.data);
      return p;
    });
    portPromise.catch(() => { portPromise = null; });
    return portPromise;
  }

  function onPortMessage(m) {
    if (m?.t === 'cookies' && Array.isArray(m.list)) {
      cookies = m.list;
      return;
    }
    sockets.get(m?.id)?.onPort(m);
  }

  // A worker the browser stopped and restarted has no port: it asks us for one.
  navigator.serviceWorker?.addEventListener('message', (ev) => {
    if (ev.data?.pipe !== 'need-port' || !ev.source) return;
    requestPort(origins).then(({ port: p, chunks }) => {
      ev.source.postMessage({ pipe: 'port', chunks }, [p]);
      console.info('pipe camera UI: gave the restarted service worker a port');
    },
      (err) => console.warn('pipe camera UI: no port for the service worker', err));
  });
  navigator.serviceWorker?.startMessages?.();

  // ---- document.cookie ------------------------------------------------------------------------
  let cookies = Array.isArray(self.__pipeCookies) ? self.__pipeCookies : [];
  delete self.__pipeCookies;

  const pathMatches = (cookiePath, path) => path === cookiePath
    || (path.startsWith(cookiePath) && (cookiePath.endsWith('/') || path[cookiePath.length] === '/'));
  const defaultPath = (path) => {
    const last = path.lastIndexOf('/');
    return last <= 0 ? '/' : path.slice(0, last);
  };

  function readCookies() {
    const now = Date.now();
    return cookies
      .filter((c) => (c.expires == null || c.expires > now) && pathMatches(c.path, location.pathname))
      .sort((a, b) => b.path.length - a.path.length || a.created - b.created)
      .map((c) => (c.name ? `${c.name}=${c.value}` : c.value))
      .join('; ');
  }

  /** Applies a write to the local view at once (the jar's answer replaces it shortly). */
  function writeCookie(line) {
    const [pair, ...attrs] = String(line).split(';');
    const eq = pair.indexOf('=');
    const name = (eq < 0 ? '' : pair.slice(0, eq)).trim();
    const value = (eq < 0 ? pair : pair.slice(eq + 1)).trim();
    let path = defaultPath(location.pathname);
    let expires = null;
    let maxAge = null;
    let httpOnly = false;
    for (const attr of attrs) {
      const i = attr.indexOf('=');
      const key = (i < 0 ? attr : attr.slice(0, i)).trim().toLowerCase();
      const val = (i < 0 ? '' : attr.slice(i + 1)).trim();
      if (key === 'path' && val.startsWith('/')) path = val;
      else if (key === 'expires' && !Number.isNaN(Date.parse(val))) expires = Date.parse(val);
      else if (key === 'max-age' && /^-?\d+$/.test(val)) maxAge = Number(val);
      else if (key === 'httponly') httpOnly = true;
    }
    if (httpOnly || (!name && !value)) return; // scripts cannot set HttpOnly cookies
    if (maxAge !== null) expires = maxAge <= 0 ? 0 : Date.now() + maxAge * 1000;
    const old = cookies.find((c) => c.name === name && c.path === path);
    cookies = cookies.filter((c) => c !== old);
    if (expires === null || expires > Date.now()) {
      cookies.push({ name, value, path, expires, created: old?.created ?? Date.now() });
    }
    port().then((p) => p.postMessage({ t: 'set-cookie', value: String(line), path: location.pathname }),
      () => {});
  }

  Object.defineProperty(document, 'cookie', {
    configurable: true,
    enumerable: true,
    get: readCookies,
    set: writeCookie,
  });

  // ---- WebSocket ---------------------------------------------------------------------------
  const CONNECTING = 0;
  const OPEN = 1;
  const CLOSING = 2;
  const CLOSED = 3;

  /** The browser's WebSocket interface, carried over the proxy for this origin's sockets. */
  class PipeWebSocket extends EventTarget {
    constructor(url, protocols = []) {
      super();
      const resolved = new URL(url, location.href);
      if (!['ws:', 'wss:', 'http:', 'https:'].includes(resolved.protocol)) {
        throw new DOMException(`The URL's scheme must be ws or wss: ${resolved.protocol}`, 'SyntaxError');
      }
      if (resolved.hash) throw new DOMException('The URL contains a fragment', 'SyntaxError');
      const list = typeof protocols === 'string' ? [protocols] : [...protocols];
      this.url = resolved.href.replace(/^http/, 'ws');
      this.protocol = '';
      this.extensions = '';
      this.binaryType = 'blob';
      this.readyState = CONNECTING;
      this.id = ++nextSocket;
      this.buffered = 0;
      for (const name of ['onopen', 'onmessage', 'onerror', 'onclose']) this[name] = null;
      sockets.set(this.id, this);
      const path = resolved.pathname + resolved.search;
      port().then((p) => p.postMessage({ t: 'ws-open', id: this.id, path, protocols: list }),
        () => this.onPort({ t: 'ws-closed', code: 1006, reason: '', clean: false }));
    }

    get bufferedAmount() {
      return this.buffered;
    }

    fire(event) {
      const handler = this[`on${event.type}`];
      if (typeof handler === 'function') handler.call(this, event);
      this.dispatchEvent(event);
    }

    onPort(m) {
      if (m.t === 'ws-opened') {
        if (this.readyState !== CONNECTING) return;
        this.readyState = OPEN;
        this.protocol = m.protocol ?? '';
        this.fire(new Event('open'));
      } else if (m.t === 'ws-message') {
        if (this.readyState !== OPEN) return;
        let { data } = m;
        if (data instanceof ArrayBuffer && this.binaryType === 'blob') data = new Blob([data]);
        this.fire(new MessageEvent('message', { data, origin: new URL(this.url).origin }));
      } else if (m.t === 'ws-sent') {
        this.buffered = Math.max(0, this.buffered - m.n);
      } else if (m.t === 'ws-closed') {
        if (this.readyState === CLOSED) return;
        this.readyState = CLOSED;
        sockets.delete(this.id);
        if (!m.clean) this.fire(new Event('error'));
        this.fire(new CloseEvent('close', { code: m.code, reason: m.reason ?? '', wasClean: Boolean(m.clean) }));
      }
    }

    send(data) {
      if (this.readyState === CONNECTING) throw new DOMException('Still in CONNECTING state.', 'InvalidStateError');
      if (this.readyState !== OPEN) return;
      const post = (payload) => {
        const n = typeof payload === 'string' ? payload.length : payload.byteLength;
        this.buffered += n;
        port().then((p) => p.postMessage({ t: 'ws-send', id: this.id, data: payload }), () => {});
      };
      if (typeof data === 'string') post(data);
      else if (data instanceof Blob) data.arrayBuffer().then(post);
      else if (ArrayBuffer.isView(data)) post(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
      else if (data instanceof ArrayBuffer) post(data.slice(0));
      else post(String(data));
    }

    close(code, reason = '') {
      if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) {
        throw new DOMException(`The close code must be 1000 or 3000-4999: ${code}`, 'InvalidAccessError');
      }
      this.shut(code ?? 1005, reason);
    }

    /** Closes with any code (1001 when the page goes away). */
    shut(code, reason) {
      if (this.readyState === CLOSING || this.readyState === CLOSED) return;
      this.readyState = CLOSING;
      port().then((p) => p.postMessage({ t: 'ws-close', id: this.id, code, reason: String(reason) }),
        () => {});
    }
  }
  Object.assign(PipeWebSocket, { CONNECTING, OPEN, CLOSING, CLOSED });
  Object.assign(PipeWebSocket.prototype, { CONNECTING, OPEN, CLOSING, CLOSED });

  /** Same-origin sockets go over the proxy; any other host keeps the browser's own. */
  function WebSocket(url, protocols) {
    if (!new.target) throw new TypeError("Failed to construct 'WebSocket': Please use the 'new' operator");
    const resolved = new URL(url, location.href);
    if (resolved.host !== location.host) return new NativeWebSocket(url, protocols);
    return new PipeWebSocket(url, protocols);
  }
  WebSocket.prototype = PipeWebSocket.prototype;
  Object.assign(WebSocket, { CONNECTING, OPEN, CLOSING, CLOSED });
  window.WebSocket = WebSocket;

  // A page that goes away closes its sockets: each holds one of the proxy's 64 streams.
  window.addEventListener('pagehide', () => {
    for (const socket of sockets.values()) socket.shut(1001, 'page gone');
  });

  port().catch((err) => console.warn('pipe camera UI: no port to the viewer', err)); // cookie updates
})();

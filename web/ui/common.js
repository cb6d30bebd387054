// pipe camera UI: what both ends of a UI MessagePort share (docs/ui-proxy-browser.md). A classic
// script with no imports or exports, so the UI origin's service worker loads it with
// importScripts and the viewer page as a module; it defines `globalThis.pipeUi`.
//
// Origins: the viewer page frames the camera UI on another origin and site
// (docs/ui-proxy-browser.md): a viewer at 127.x uses `ui-<device id>.localhost`, a viewer on
// HTTPS `ui-<device id>.<ui_domain>`, a registrable domain of the UI's own. The UI origin's
// copy of this file is preceded by `self.__pipeViewerOrigins` (src/web/ui.rs, which also
// writes the boot page's `frame-ancestors` from the same list).
(() => {
  const DEVICE_ID_RE = /^[a-z2-7]{16}$/;
  /** Chunks in flight per body when streams cannot be transferred (Safari): bounds memory. */
  const CHUNK_WINDOW = 8;

  /** The camera UI's origin for the viewer page at `loc`, or null where there can be none. */
  function uiOrigin(deviceId, loc, uiDomain) {
    if (!DEVICE_ID_RE.test(deviceId ?? '')) return null;
    const port = loc.port ? `:${loc.port}` : '';
    // A viewer at 127.x: the UI below `localhost`, another site. Not for a viewer at
    // `localhost` (its UI would be on the same site) nor `[::1]` (CSP `frame-ancestors`
    // cannot name an IPv6 literal).
    if (/^127\.\d+\.\d+\.\d+$/.test(loc.hostname)) return `${loc.protocol}//ui-${deviceId}.localhost${port}`;
    // On HTTPS: below the camera UI's own registrable domain (`ui_domain` of /api/info), never
    // below the viewer's host, where a UI could set cookies for the viewer's site.
    const domain = typeof uiDomain === 'string' ? uiDomain.toLowerCase() : '';
    if (loc.protocol !== 'https:' || !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/.test(domain)) return null;
    return `https://ui-${deviceId}.${domain}${port}`;
  }

  /**
   * The viewer origins that may frame this UI origin (and that it talks to): written by the
   * server that serves this file on the UI origin (`src/web/ui.rs`), which alone knows them.
   */
  function viewerOrigins() {
    const origins = globalThis.__pipeViewerOrigins;
    return Array.isArray(origins) ? origins.filter((o) => typeof o === 'string') : [];
  }

  /**
   * Asks the viewer page (the parent frame) for a MessagePort to its proxy. Only a parent at
   * one of `origins` is asked (postMessage drops a message whose target origin does not
   * match), and only its answer is taken.
   */
  function requestPort(origins, timeoutMs = 10_000) {
    return new Promise((resolve, reject) => {
      if (window.parent === window) {
        reject(new Error('not in the viewer'));
        return;
      }
      const nonce = Math.random().toString(36).slice(2);
      const done = () => {
        clearTimeout(timer);
        window.removeEventListener('message', onMessage, true);
      };
      const onMessage = (ev) => {
        if (ev.source !== window.parent || !origins.includes(ev.origin)) return;
        if (ev.data?.pipe !== 'port' || ev.data.nonce !== nonce || !ev.ports[0]) return;
        ev.stopImmediatePropagation(); // not for the camera UI's own listeners
        done();
        resolve({ port: ev.ports[0], chunks: ev.data.chunks === true });
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error('the viewer did not answer'));
      }, timeoutMs);
      window.addEventListener('message', onMessage, true);
      for (const origin of origins) window.parent.postMessage({ pipe: 'port-request', nonce }, origin);
    });
  }

  let transferable = null;
  /** Whether this browser can transfer a ReadableStream through postMessage (not Safari). */
  function canTransferStreams() {
    if (transferable === null) {
      try {
        const stream = new ReadableStream();
        const { port1, port2 } = new MessageChannel();
        port1.postMessage(stream, [stream]);
        port1.close();
        port2.close();
        transferable = true;
      } catch {
        transferable = false;
      }
    }
    return transferable;
  }

  /**
   * Bodies over one MessagePort: transferred as ReadableStreams where the browser can, else
   * as chunk messages with an acknowledged window (never a whole body in one message).
   * `key` names one body on this port (`q7`: request 7, `r7`: its response).
   */
  class PortBodies {
    constructor(port, { chunks = false } = {}) {
      this.port = port;
      this.transfer = !chunks && canTransferStreams();
      this.out = new Map(); // key -> { inflight, wake, reader }
      this.in = new Map(); // key -> { queue, wake, done, error }
    }

    /**
     * The message field for `stream` (null, the stream itself, or 'chunks'), and a function
     * to call right after posting the message that carries it.
     */
    encode(key, stream, transferList) {
      if (!stream) return { field: null, start: () => {} };
      if (this.transfer) {
        transferList.push(stream);
        return { field: stream, start: () => {} };
      }
      return { field: 'chunks', start: () => this.pump(key, stream) };
    }

    /** The ReadableStream for a received body field. */
    decode(key, field) {
      if (field instanceof ReadableStream) return field;
      if (field !== 'chunks') return null;
      const entry = { queue: [], wake: null, done: false, error: null };
      this.in.set(key, entry);
      const next = () => new Promise((resolve) => { entry.wake = resolve; });
      return new ReadableStream({
        pull: async (controller) => {
          while (!entry.queue.length && !entry.done && !entry.error) await next();
          if (entry.queue.length) {
            controller.enqueue(new Uint8Array(entry.queue.shift()));
            this.port.postMessage({ t: 'chunk-ack', key });
          } else if (entry.error) {
            this.in.delete(key);
            controller.error(new Error(entry.error));
          } else {
            this.in.delete(key);
            controller.close();
          }
        },
        cancel: () => {
          this.in.delete(key);
          this.port.postMessage({ t: 'chunk-cancel', key });
        },
      }, { highWaterMark: 0 });
    }

    async pump(key, stream) {
      const reader = stream.getReader();
      const entry = { inflight: 0, wake: null, reader, cancelled: false };
      this.out.set(key, entry);
      try {
        for (;;) {
          while (entry.inflight >= CHUNK_WINDOW && !entry.cancelled) {
            await new Promise((resolve) => { entry.wake = resolve; });
          }
          if (entry.cancelled) return;
          const { value, done } = await reader.read();
          if (done) break;
          const bytes = value instanceof Uint8Array ? value : new Uint8Array(value);
          const copy = bytes.slice().buffer; // ours to transfer
          entry.inflight += 1;
          this.port.postMessage({ t: 'chunk', key, data: copy }, [copy]);
        }
        this.port.postMessage({ t: 'chunk-end', key });
      } catch (err) {
        this.port.postMessage({ t: 'chunk-error', key, message: String(err?.message ?? err) });
      } finally {
        this.out.delete(key);
      }
    }

    /** Handles a chunk message; false for any other message. */
    handle(msg) {
      switch (msg?.t) {
        case 'chunk': case 'chunk-end': case 'chunk-error': {
          const entry = this.in.get(msg.key);
          if (!entry) return true;
          if (msg.t === 'chunk') entry.queue.push(msg.data);
          else if (msg.t === 'chunk-end') entry.done = true;
          else entry.error = msg.message || 'body failed';
          entry.wake?.();
          return true;
        }
        case 'chunk-ack': case 'chunk-cancel': {
          const entry = this.out.get(msg.key);
          if (!entry) return true;
          if (msg.t === 'chunk-ack') entry.inflight -= 1;
          else {
            entry.cancelled = true;
            entry.reader.cancel().catch(() => {});
          }
          entry.wake?.();
          return true;
        }
        default:
          return false;
      }
    }
  }

  globalThis.pipeUi = { uiOrigin, viewerOrigins, requestPort, canTransferStreams, PortBodies };
})();

// pipe viewer: the browser (opener) side of the camera-UI proxy, docs/proxy.md. Four ordered,
// reliable datachannels `proxy-0..3` on the viewer's RTCPeerConnection carry binary frames; a
// stream's frames travel on channel `id % 4`. This module frames HTTP exchanges and WebSockets
// onto them with the contract's credit flow control and stream rules. Who asks (the UI
// frame's service worker and shim) is uiframe.js; the frame codec is frame.js.

import {
  CHANNELS, MAX_CLOSE_REASON, MAX_DATA, MAX_JSON, MAX_STREAMS, MAX_WS_FRAGMENT, MAX_WS_MESSAGE, ProxyError,
  RECV_WINDOW, SEND_WINDOW, T, checkHeaders, decodeFrame, encodeFrame, encoder, jsonPayload, strictUtf8, u32,
  utf8Cut,
} from './frame.js';

export { CHANNELS, LIMITS, ProxyError, T, decodeFrame, encodeFrame } from './frame.js';

/** Consumed bytes are returned as credit once half the receiving window is owed, in one frame. */
const HALF_RECV_WINDOW = RECV_WINDOW / 2;
/**
 * Body frames wait while a channel holds this much unsent; the other streams of the channel
 * share it, so it stays a few frames deep (the device does the same on its side).
 */
const BUFFER_HIGH = 512 * 1024;
const BUFFER_LOW = 128 * 1024;
/** The channels open within one round trip or two; the device may refuse them (no `view+ui`). */
const OPEN_TIMEOUT_MS = 10_000;
/** A refused stream (the device's count was behind ours) is retried this often, then fails. */
const REFUSED_RETRIES = 5;

// ---- streams ----------------------------------------------------------------------------------

/** One stream's state, both directions (docs/proxy.md "Streams", "Flow control"). */
class Stream {
  constructor(proxy, id, websocket) {
    Object.assign(this, {
      proxy, id, websocket, channel: proxy.channels[id % CHANNELS],
      sendCredit: SEND_WINDOW, // what we may still send
      recvLeft: RECV_WINDOW, // what the device may still send us
      owed: 0, // consumed, not yet returned as credit
      localEnded: false, remoteEnded: false, closed: false, counted: true,
      head: null, accepted: false, error: null,
      queue: [], // received body chunks not yet taken by the reader
      wakeReader: null, wakeSender: null,
    });
    this.headPromise = new Promise((resolve, reject) => { this.resolveHead = resolve; this.rejectHead = reject; });
    this.headPromise.catch(() => {}); // observed by whoever awaits it
  }

  send(type, payload = null) {
    this.proxy.sendFrame(this.channel, encodeFrame(type, this.id, payload));
  }

  /** Marks our sending direction ended (End or WsClose sent). */
  endLocal() {
    this.localEnded = true;
    this.maybeClosed();
  }

  endRemote() {
    this.remoteEnded = true;
    this.wakeReader?.();
    this.maybeClosed();
  }

  maybeClosed() {
    if (this.localEnded && this.remoteEnded) this.forget();
  }

  /** Closed: the proxy forgets it; buffered body data stays for its reader. */
  forget() {
    if (this.closed) return;
    this.closed = true;
    this.proxy.forget(this);
    this.wakeSender?.();
  }

  /** A reset either way: everything held is released and waiters fail. */
  fail(error) {
    this.error ??= error;
    this.queue.length = 0;
    this.forget();
    this.rejectHead(error);
    this.wakeReader?.();
    this.wakeSender?.();
    this.onFail?.(error);
  }

  reset(code, message = '') {
    if (this.closed) return;
    this.send(T.RESET, jsonPayload({ code, message: message.slice(0, 200) }));
    this.fail(new ProxyError(code, message));
  }

  /** The reader took `n` bytes: return credit once half the receiving window is owed. */
  consumed(n) {
    this.owed += n;
    if (this.owed >= HALF_RECV_WINDOW && !this.remoteEnded && !this.closed) {
      this.send(T.CREDIT, u32(this.owed));
      this.recvLeft += this.owed;
      this.owed = 0;
    }
  }

  /** Waits until some credit is available (or the stream is gone). */
  async credit(min = 1) {
    while (this.sendCredit < min && !this.closed) {
      await new Promise((resolve) => { this.wakeSender = resolve; });
    }
    if (this.closed) throw this.error ?? new ProxyError('closed', 'stream closed');
  }

  /** The response body as a ReadableStream; bytes count as consumed when it hands them on. */
  readable() {
    return new ReadableStream({
      pull: async (controller) => {
        while (!this.queue.length && !this.remoteEnded && !this.error) {
          await new Promise((resolve) => { this.wakeReader = resolve; });
        }
        if (this.queue.length) {
          const chunk = this.queue.shift();
          controller.enqueue(chunk);
          this.consumed(chunk.length);
        } else if (this.error) {
          controller.error(this.error);
        } else {
          controller.close();
        }
      },
      cancel: () => this.reset('cancel', 'response body cancelled'),
    }, { highWaterMark: 0 });
  }
}

/**
 * The request body, read once from its stream. Chunks sent on a stream the device has not yet
 * accepted are kept (at most one sending window, 256 KiB), so a `refused` stream is replayed under a
 * new id without reading the body twice.
 */
class BodySource {
  constructor(stream) {
    this.reader = stream?.getReader() ?? null;
    this.pending = []; // to send next
    this.sent = []; // sent on the current stream, not yet accepted
  }

  async next() {
    if (this.pending.length) return this.pending.shift();
    if (!this.reader) return null;
    const { value, done } = await this.reader.read();
    if (done) return null;
    return value instanceof Uint8Array ? value : new Uint8Array(value);
  }

  rewind() {
    this.pending.unshift(...this.sent);
    this.sent = [];
  }

  cancel() {
    this.reader?.cancel().catch(() => {});
  }
}

// ---- the proxy over one peer connection --------------------------------------------------------

export class UiProxy {
  /** Opens the four channels on `pc`; `ready` resolves once all are open. */
  constructor(pc) {
    this.streams = new Map();
    this.lastId = 0;
    this.open = 0; // streams not yet closed
    this.slotWaiters = [];
    this.failed = null;
    this.stats = { streams: 0, refused: 0, bytesIn: 0, bytesOut: 0 };
    this.drainWaiters = new Map();
    this.channels = Array.from({ length: CHANNELS }, (_, i) => {
      const ch = pc.createDataChannel(`proxy-${i}`, { ordered: true });
      ch.binaryType = 'arraybuffer';
      ch.bufferedAmountLowThreshold = BUFFER_LOW;
      ch.onmessage = (ev) => this.receive(i, ev.data);
      ch.onbufferedamountlow = () => this.wakeDrain(ch);
      ch.onclose = () => this.close('a proxy channel closed');
      return ch;
    });
    this.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new ProxyError('internal', 'the proxy channels did not open')), OPEN_TIMEOUT_MS);
      const check = () => {
        if (this.failed) {
          clearTimeout(timer);
          reject(this.failed);
        } else if (this.channels.every((c) => c.readyState === 'open')) {
          clearTimeout(timer);
          resolve(this);
        }
      };
      for (const ch of this.channels) ch.addEventListener('open', check);
      this.checkReady = check;
    });
    this.ready.catch(() => {});
  }

  /** Drops every stream (a channel closed, or the session ended): docs/proxy.md "Channels". */
  close(why = 'closed') {
    if (this.failed) return;
    this.failed = new ProxyError('internal', why);
    for (const s of [...this.streams.values()]) s.fail(this.failed);
    for (const ch of this.channels) {
      ch.onmessage = ch.onclose = ch.onbufferedamountlow = null;
      if (ch.readyState !== 'closed') ch.close();
      this.wakeDrain(ch);
    }
    for (const wake of this.slotWaiters.splice(0)) wake();
    this.checkReady?.();
  }

  sendFrame(channel, bytes) {
    if (channel.readyState !== 'open') return;
    this.stats.bytesOut += bytes.length;
    channel.send(bytes);
  }

  wakeDrain(ch) {
    for (const wake of this.drainWaiters.get(ch)?.splice(0) ?? []) wake();
  }

  /** Waits while the channel has much unsent data (respects bufferedAmount). */
  async drain(ch) {
    while (ch.bufferedAmount > BUFFER_HIGH && ch.readyState === 'open') {
      await new Promise((resolve) => {
        if (!this.drainWaiters.has(ch)) this.drainWaiters.set(ch, []);
        this.drainWaiters.get(ch).push(resolve);
      });
    }
  }

  /** A slot under the 64-stream limit, queueing for one. */
  async slot() {
    while (this.open >= MAX_STREAMS && !this.failed) {
      await new Promise((resolve) => this.slotWaiters.push(resolve));
    }
    if (this.failed) throw this.failed;
    this.open += 1;
  }

  forget(stream) {
    this.streams.delete(stream.id);
    if (stream.counted) {
      stream.counted = false;
      this.open -= 1;
      this.slotWaiters.shift()?.();
    }
  }

  newStream(websocket) {
    this.lastId += 1;
    const s = new Stream(this, this.lastId, websocket);
    this.streams.set(s.id, s);
    this.stats.streams += 1;
    return s;
  }

  // ---- HTTP ------------------------------------------------------------------------------------

  /**
   * One HTTP exchange: `{ method, path, headers, body (ReadableStream|null), signal }`.
   * Resolves with `{ status, headers, body (ReadableStream) }` once the response head is in.
   */
  async request({ method, path, headers = [], body = null, signal = null }) {
    await this.ready;
    const head = jsonPayload({ method, path, headers: checkHeaders(headers), websocket: false });
    if (head.length > MAX_JSON) throw new ProxyError('internal', 'request head too large');
    const source = new BodySource(body);
    let pump = Promise.resolve();
    for (let attempt = 0; ; attempt += 1) {
      await pump; // the last attempt's pump has put back what it read
      source.rewind();
      await this.slot();
      const s = this.newStream(false);
      const abort = () => s.reset('cancel', 'fetch aborted');
      signal?.addEventListener('abort', abort);
      s.send(T.REQUEST_HEAD, head);
      pump = this.sendBody(s, source).catch((err) => {
        if (!s.closed) s.reset('internal', `request body: ${err?.message ?? err}`);
      });
      try {
        const res = await s.headPromise;
        return { status: res.status, headers: res.headers, body: s.readable() };
      } catch (err) {
        signal?.removeEventListener('abort', abort);
        if (err.code === 'refused' && attempt < REFUSED_RETRIES && !signal?.aborted) {
          this.stats.refused += 1;
          await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
          continue;
        }
        source.cancel();
        throw err;
      }
    }
  }

  async sendBody(s, source) {
    for (;;) {
      if (s.closed) return;
      const chunk = await source.next();
      if (s.closed) { // refused or reset while reading: keep the chunk for a retry
        if (chunk) source.pending.unshift(chunk);
        return;
      }
      if (!chunk) break;
      if (s.accepted) source.sent = []; // the device took the stream: no replay needed
      else source.sent.push(chunk);
      let offset = 0;
      while (offset < chunk.length) {
        await s.credit(1);
        await this.drain(s.channel);
        if (s.closed) return;
        const n = Math.min(chunk.length - offset, MAX_DATA, s.sendCredit);
        s.sendCredit -= n;
        s.send(T.DATA, chunk.subarray(offset, offset + n));
        offset += n;
      }
    }
    if (!s.closed) {
      s.send(T.END);
      s.endLocal();
    }
  }

  // ---- WebSocket -------------------------------------------------------------------------------

  /**
   * A WebSocket over the proxy. `events`: `onmessage(data: string|ArrayBuffer)`,
   * `onclose(code, reason, clean)`. Resolves once the device answered 101, with
   * `{ protocol, send(data), close(code, reason), bufferedAmount() }`; rejects otherwise.
   */
  async websocket({ path, protocols = [], headers = [] }, events) {
    await this.ready;
    const all = protocols.length ? [...headers, ['sec-websocket-protocol', protocols.join(', ')]] : headers;
    const head = jsonPayload({ method: 'GET', path, headers: checkHeaders(all), websocket: true });
    for (let attempt = 0; ; attempt += 1) {
      await this.slot();
      const s = this.newStream(true);
      s.send(T.REQUEST_HEAD, head);
      try {
        const res = await s.headPromise;
        if (res.status !== 101) {
          s.readable().cancel().catch(() => {});
          throw new ProxyError('upstream', `WebSocket refused with ${res.status}`);
        }
        return new ProxiedSocket(this, s, res, events);
      } catch (err) {
        if (err.code === 'refused' && attempt < REFUSED_RETRIES) {
          await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
          continue;
        }
        throw err;
      }
    }
  }

  // ---- receiving ---------------------------------------------------------------------------------

  receive(index, data) {
    if (typeof data === 'string') return; // text messages on a proxy channel are ignored
    this.stats.bytesIn += data.byteLength;
    let f;
    try {
      f = decodeFrame(data);
    } catch (bad) {
      const s = this.streams.get(bad.id);
      if (s) s.reset('protocol', bad.message);
      return;
    }
    const s = this.streams.get(f.id);
    if (f.id % CHANNELS !== index) {
      s?.reset('protocol', 'frame on the wrong channel');
      return;
    }
    if (!s) {
      if (f.type === T.RESET || (f.id <= this.lastId && f.type === T.CREDIT)) return;
      const code = f.id <= this.lastId ? 'closed' : 'protocol';
      this.sendFrame(this.channels[index], encodeFrame(T.RESET, f.id, jsonPayload({ code, message: 'no such stream' })));
      return;
    }
    this.onFrame(s, f);
  }

  onFrame(s, f) {
    const protocol = (message) => s.reset('protocol', message);
    switch (f.type) {
      case T.RESPONSE_HEAD:
        if (s.head) return protocol('second response head');
        if (f.status === 101 && !s.websocket) return protocol('101 to an HTTP request');
        s.head = f;
        s.accepted = true;
        if (s.websocket && f.status !== 101) s.localEnded = true; // the device's End closes both ways
        s.resolveHead(f);
        return undefined;
      case T.DATA:
        if (!s.head || s.remoteEnded || (s.websocket && s.head.status === 101)) return protocol('unexpected data');
        if (f.cost > s.recvLeft) return s.reset('flow-control', 'data beyond credit');
        s.recvLeft -= f.cost;
        s.queue.push(f.data.slice());
        s.wakeReader?.();
        return undefined;
      case T.END:
        if (!s.head || s.remoteEnded || (s.websocket && s.head.status === 101)) return protocol('unexpected end');
        s.endRemote();
        return undefined;
      case T.CREDIT:
        if (s.sendCredit + f.credit > SEND_WINDOW) return s.reset('flow-control', 'credit above the window');
        s.sendCredit += f.credit;
        s.accepted = true;
        s.wakeSender?.();
        return undefined;
      case T.RESET:
        s.fail(new ProxyError(f.code, f.message));
        return undefined;
      case T.WS_MESSAGE: case T.WS_CLOSE:
        if (!s.websocket || s.head?.status !== 101 || s.remoteEnded || !s.socket) return protocol('unexpected WebSocket frame');
        if (f.type === T.WS_MESSAGE && f.cost > s.recvLeft) return s.reset('flow-control', 'message beyond credit');
        s.socket.onFrame(f);
        return undefined;
      default:
        return protocol('unexpected frame');
    }
  }
}

/** The browser's end of a bridged WebSocket (docs/proxy.md "A WebSocket bridge"). */
class ProxiedSocket {
  constructor(proxy, stream, head, events) {
    this.proxy = proxy;
    this.s = stream;
    stream.socket = this;
    this.events = events;
    this.protocol = head.headers.find(([n]) => n === 'sec-websocket-protocol')?.[1] ?? '';
    this.parts = [];
    this.partBytes = 0;
    this.partKind = 0;
    this.sending = Promise.resolve();
    this.queued = 0; // bytes accepted by send() and not yet framed
    this.closeSent = false;
    this.closedEvent = false;
    stream.onFail = (err) => this.finish(1006, err?.message ?? '', false);
  }

  bufferedAmount() {
    return this.queued;
  }

  onFrame(f) {
    const s = this.s;
    if (f.type === T.WS_CLOSE) {
      s.endRemote();
      if (!this.closeSent) this.sendClose(f.code, f.reason);
      this.finish(f.code, f.reason, true);
      return;
    }
    s.recvLeft -= f.cost;
    if (this.parts.length && f.kind !== this.partKind) {
      s.reset('protocol', 'fragments changed kind');
      return;
    }
    this.partKind = f.kind;
    this.partBytes += f.data.length;
    s.consumed(f.cost); // appended to the message being reassembled
    if (this.partBytes > MAX_WS_MESSAGE) {
      this.parts = [];
      this.close(1009, 'message too big');
      return;
    }
    this.parts.push(f.data.slice());
    if (f.more) return;
    const whole = new Uint8Array(this.partBytes);
    let at = 0;
    for (const part of this.parts) {
      whole.set(part, at);
      at += part.length;
    }
    this.parts = [];
    this.partBytes = 0;
    if (f.kind === 1) {
      let text;
      try {
        text = strictUtf8.decode(whole);
      } catch {
        s.reset('protocol', 'text message is not UTF-8');
        return;
      }
      this.events.onmessage?.(text);
    } else {
      this.events.onmessage?.(whole.buffer);
    }
  }

  /** Queues a message: a string as text, anything else (ArrayBuffer, view) as binary. */
  send(data) {
    const text = typeof data === 'string';
    const bytes = text ? encoder.encode(data) : new Uint8Array(ArrayBuffer.isView(data) ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) : data);
    this.queued += bytes.length;
    this.sending = this.sending.then(() => this.sendMessage(bytes, text ? 1 : 2)).catch(() => {});
    return this.sending;
  }

  async sendMessage(bytes, kind) {
    const s = this.s;
    let offset = 0;
    do {
      if (this.closeSent || s.closed) return;
      await s.credit(2); // room for the kind byte and at least one byte
      await this.proxy.drain(s.channel);
      if (this.closeSent || s.closed) return;
      const room = Math.min(MAX_WS_FRAGMENT, s.sendCredit - 1);
      const rest = bytes.subarray(offset);
      const n = kind === 1 ? utf8Cut(rest, room) : Math.min(rest.length, room);
      if (n === 0 && rest.length) { // not even one character fits: wait for more credit
        await s.credit(Math.min(s.sendCredit + 4, SEND_WINDOW));
        continue;
      }
      const more = offset + n < bytes.length;
      const payload = new Uint8Array(1 + n);
      payload[0] = kind | (more ? 0x80 : 0);
      payload.set(rest.subarray(0, n), 1);
      s.sendCredit -= payload.length;
      s.send(T.WS_MESSAGE, payload);
      offset += n;
      this.queued -= n;
    } while (offset < bytes.length);
  }

  /** Closes after the queued messages; `code` 1005 (or none) closes without a code upstream. */
  close(code = 1005, reason = '') {
    this.sending = this.sending.then(() => {
      if (!this.closeSent && !this.s.closed) this.sendClose(code, reason);
    });
    return this.sending;
  }

  sendClose(code, reason) {
    this.closeSent = true;
    let bytes = encoder.encode(reason ?? '');
    bytes = bytes.subarray(0, utf8Cut(bytes, MAX_CLOSE_REASON));
    const payload = new Uint8Array(2 + bytes.length);
    new DataView(payload.buffer).setUint16(0, code);
    payload.set(bytes, 2);
    this.s.send(T.WS_CLOSE, payload);
    this.s.endLocal();
  }

  finish(code, reason, clean) {
    if (this.closedEvent) return;
    this.closedEvent = true;
    this.events.onclose?.(code, reason, clean);
  }
}

// pipe viewer: the `control` datachannel the device opens in every session (docs/security.md
// "The control channel"). JSON text, one message per datachannel message. The device answers
// requests in order, so replies resolve waiting requests first in, first out; `access` and
// `camera` messages are announcements, not replies.

/** The device's limit on requests; a larger one is refused unread, so it is not sent. */
export const MAX_CONTROL_BYTES = 16 * 1024;
/**
 * Replies can be larger: a `lent` carries its QR code as SVG (about 23 KiB for a lend link).
 * Anything beyond the browser's default SCTP message size (256 KiB) is not from the device.
 */
const MAX_REPLY_CHARS = 256 * 1024;
/** Every request gets an answer or an error; a lend (QR rendering, a store write) is quick. */
const REPLY_TIMEOUT_MS = 10_000;

export class ControlError extends Error {}

export class Control {
  /**
   * @param {RTCDataChannel} channel the device's `control` channel
   * @param {(msg: object) => void} onAnnounce called with every `access` and `camera`
   *   announcement
   */
  constructor(channel, onAnnounce) {
    this.channel = channel;
    this.waiting = []; // { resolve, reject, timer }, oldest first
    channel.onmessage = (ev) => this.receive(ev.data, onAnnounce);
    channel.onclose = () => this.fail('the connection to the camera closed');
  }

  get open() {
    return this.channel.readyState === 'open';
  }

  /** Sends `message`, which the device does not answer (`alive`); false if not sent. */
  notify(message) {
    if (!this.open) return false;
    this.channel.send(JSON.stringify(message));
    return true;
  }

  /** Sends `message` and resolves with the device's reply (`error` replies included). */
  request(message) {
    const text = JSON.stringify(message);
    if (!this.open) return Promise.reject(new ControlError('not connected to the camera'));
    if (new TextEncoder().encode(text).length > MAX_CONTROL_BYTES) return Promise.reject(new ControlError('request too large'));
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject, timer: 0 };
      entry.timer = setTimeout(() => {
        // Leave the slot in place: a late reply still belongs to this request, not the next.
        entry.resolve = entry.reject = () => {};
        reject(new ControlError('the camera did not answer in time'));
      }, REPLY_TIMEOUT_MS);
      this.waiting.push(entry);
      this.channel.send(text);
    });
  }

  receive(data, onAnnounce) {
    if (typeof data !== 'string' || data.length > MAX_REPLY_CHARS) return;
    let msg = null;
    try {
      msg = JSON.parse(data);
    } catch { /* not ours to act on */ }
    if (typeof msg !== 'object' || msg === null || typeof msg.type !== 'string') return;
    if (msg.type === 'access' || msg.type === 'camera') {
      onAnnounce(msg);
      return;
    }
    const entry = this.waiting.shift();
    if (!entry) {
      console.warn('pipe viewer: unrequested control message', msg.type);
      return;
    }
    clearTimeout(entry.timer);
    entry.resolve(msg);
  }

  fail(why) {
    for (const entry of this.waiting.splice(0)) {
      clearTimeout(entry.timer);
      entry.reject(new ControlError(why));
    }
  }

  close() {
    this.channel.onmessage = this.channel.onclose = null;
    this.fail('the session ended');
  }
}

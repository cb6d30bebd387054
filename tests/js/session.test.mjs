// The viewer's session reducer (web/session.js), with no browser: events in, effects out.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  BACKOFF_MAX_MS, BACKOFF_MIN_MS, MESSAGES, NO_ACCESS_BACKOFF_MAX_MS, SessionEnd, finalEnd, initial, nextAttempt,
  noAccessMessage, step,
} from '../../web/session.js';

const DEVICE = 'abcdefghijklmnop';

/** Feeds events in order; returns the final state and every effect. */
function run(events, state = initial(DEVICE)) {
  const effects = [];
  for (const event of events) {
    const out = step(state, event);
    state = out.state;
    effects.push(...out.effects);
  }
  return { state, effects };
}

const msg = (m) => ({ type: 'message', text: JSON.stringify(m) });
const ends = (effects) => effects.filter((e) => e.do === 'end').map((e) => e.end);
const shown = (effects) => effects.filter((e) => e.do === 'show').map((e) => e.state);

test('welcome asks for the device; the session id is taken once and starts negotiating', () => {
  const { state, effects } = run([
    { type: 'socket-open' },
    msg({ type: 'welcome', server: 'x', nonce: 'n' }),
    msg({ type: 'session', session_id: 's1', device_id: DEVICE }),
    msg({ type: 'session', session_id: 's2', device_id: DEVICE }),
  ]);
  assert.equal(state.id, 's1');
  assert.deepEqual(effects.map((e) => e.do), ['ping', 'send', 'counted', 'show', 'peer-ready']);
  assert.deepEqual(effects[1].msg, { type: 'connect', device_id: DEVICE });
  assert.deepEqual(shown(effects), ['negotiating']);
});

test('signals, ends and errors count only for this session', () => {
  const start = run([msg({ type: 'session', session_id: 's1' })]).state;
  const offer = { sdp: { type: 'offer', sdp: 'v=0' } };
  let { effects } = run([
    msg({ type: 'signal', session_id: 'other', data: offer }),
    msg({ type: 'end', session_id: 'other', reason: 'x' }),
    msg({ type: 'error', session_id: 'other', code: 'unknown-session' }),
    msg({ type: 'signal', session_id: 's1', data: offer }),
    msg({ type: 'signal', session_id: 's1', data: 'not an object' }),
    { type: 'message', text: '{garbled' },
    { type: 'message', text: 'null' },
  ], start);
  assert.deepEqual(effects, [{ do: 'signal', data: offer }]);

  ({ effects } = run([msg({ type: 'end', session_id: 's1', reason: 'device-gone' })], start));
  assert.equal(ends(effects)[0].message, 'The camera went offline.');
  assert.equal(ends(effects)[0].sendEnd, false, 'the session is already gone');

  // An error about `connect` carries no session id.
  ({ effects } = run([msg({ type: 'error', code: 'bad-device-id', message: 'x' })]));
  assert.equal(ends(effects)[0].retry, false);
  ({ effects } = run([msg({ type: 'error', code: 'device-offline', message: 'x' })]));
  assert.equal(ends(effects)[0].message, 'The camera is offline.');
  assert.equal(ends(effects)[0].retry, true);
});

test('an ended session decides nothing more', () => {
  const { state } = run([msg({ type: 'error', code: 'device-offline' })]);
  assert.equal(state.done, true);
  assert.deepEqual(run([msg({ type: 'welcome' }), { type: 'socket-open' }], state).effects, []);
});

test('a connected session with an open control channel outlives its socket', () => {
  const connected = run([{ type: 'socket-open' }, { type: 'peer', state: 'connected' }]).state;
  let { effects } = run([{ type: 'socket-closed', controlOpen: true }], connected);
  assert.deepEqual(effects.map((e) => e.do), ['ping', 'signalling-lost']);
  ({ effects } = run([{ type: 'socket-closed', controlOpen: false }], connected));
  assert.equal(ends(effects)[0].message, 'Lost contact with the camera.');
  // Never opened: the camera's server could not be reached.
  ({ effects } = run([{ type: 'socket-closed', controlOpen: false }]));
  assert.equal(ends(effects)[0].message, "Can't reach the camera.");
});

test('the peer connection: connected meets the setup deadline, disconnected starts the grace timer, failed ends', () => {
  let { effects } = run([{ type: 'peer', state: 'connected' }]);
  assert.deepEqual(effects.map((e) => e.do), ['grace', 'set-up', 'show']);
  assert.deepEqual(shown(effects), ['connected'], 'checking access');

  ({ effects } = run([{ type: 'peer', state: 'connected' }, { type: 'peer', state: 'disconnected' }]));
  assert.deepEqual(effects.slice(3), [{ do: 'grace', on: false }, { do: 'show', state: 'interrupted', message: 'Connection interrupted…' }, { do: 'grace', on: true }]);

  ({ effects } = run([{ type: 'peer', state: 'failed', dtlsFailed: false }]));
  assert.equal(ends(effects)[0].message, MESSAGES.lost);
  assert.equal(ends(effects)[0].retry, true);
  ({ effects } = run([{ type: 'peer', state: 'failed', dtlsFailed: true }]));
  assert.equal(ends(effects)[0].problem, 'identity-changed', 'a failed handshake is the camera not proving itself');
  assert.equal(ends(effects)[0].retry, false);
});

test('the first picture, the camera lost and back', () => {
  let { state, effects } = run([
    { type: 'peer', state: 'connected' },
    { type: 'access', access: { role: 'owner', claimed: true }, shown: 'connected' },
    { type: 'frames', decoded: 0, shown: 'connected' },
  ]);
  assert.equal(state.delivered, false);
  assert.deepEqual(shown(effects), ['connected', 'connected']);
  ({ state, effects } = run([{ type: 'frames', decoded: 3, shown: 'connected' }], state));
  assert.equal(state.delivered, true);
  assert.deepEqual(shown(effects), ['playing']);

  ({ state, effects } = run([{ type: 'camera', live: false, framesDecoded: 90 }], state));
  assert.deepEqual(shown(effects), ['camera-lost']);
  // Reconnecting while the camera is lost keeps saying so.
  ({ state, effects } = run([{ type: 'peer', state: 'connected' }], state));
  assert.deepEqual(shown(effects), ['camera-lost']);
  ({ state, effects } = run([{ type: 'camera', live: true, framesDecoded: 90 }], state));
  assert.deepEqual(shown(effects), ['connected'], 'back: waiting for a new picture');
  ({ effects } = run([{ type: 'frames', decoded: 90, shown: 'connected' }], state));
  assert.deepEqual(shown(effects), [], 'the frozen frames do not count');
  ({ effects } = run([{ type: 'frames', decoded: 91, shown: 'connected' }], state));
  assert.deepEqual(shown(effects), ['playing']);
});

test('a browser without access is told why when the device closes it, and retries slowly', () => {
  const noAccess = run([{ type: 'access', access: { role: null, claimed: true }, shown: 'connected' }]).state;
  const closed = new SessionEnd(MESSAGES.lost);
  let end = finalEnd(noAccess, closed, { redeeming: false, linkRefused: null, hadBorrowerAccess: false });
  assert.equal(end.message, MESSAGES.noAccess);
  assert.equal(end.noAccess, true);
  end = finalEnd(noAccess, closed, { redeeming: false, linkRefused: null, hadBorrowerAccess: true });
  assert.equal(end.message, MESSAGES.accessEnded);
  assert.equal(finalEnd(noAccess, closed, { redeeming: true }), closed, 'a claim in flight decides');
  const stop = new SessionEnd('x', { retry: false });
  assert.equal(finalEnd(noAccess, stop, {}), stop);
  assert.equal(noAccessMessage({ claimed: false }), MESSAGES.unclaimed);
  assert.equal(noAccessMessage({ claimed: true }, { linkRefused: MESSAGES.claimRefused }), MESSAGES.claimRefused);
});

test('backoff between sessions: doubling to 10 s, 30 s without access, reset by a delivered picture', () => {
  let backoff = BACKOFF_MIN_MS;
  const waits = [];
  for (let i = 0; i < 6; i += 1) {
    const next = nextAttempt(backoff, Object.assign(new SessionEnd('x'), { delivered: false }));
    waits.push(next.waitMs);
    backoff = next.backoff;
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 10000, 10000]);
  assert.equal(BACKOFF_MAX_MS, 10000);
  const noAccess = nextAttempt(16000, Object.assign(new SessionEnd('x', { noAccess: true }), { delivered: false }));
  assert.deepEqual([noAccess.waitMs, noAccess.backoff], [16000, NO_ACCESS_BACKOFF_MAX_MS]);
  const worked = nextAttempt(10000, Object.assign(new SessionEnd('x'), { delivered: true }));
  assert.equal(worked.waitMs, BACKOFF_MIN_MS);
  const now = nextAttempt(8000, Object.assign(new SessionEnd('x', { immediate: true }), { delivered: false }));
  assert.deepEqual([now.waitMs, now.backoff], [0, 8000]);
  assert.equal(nextAttempt(1000, new SessionEnd('x', { retry: false })).stop, true);
});

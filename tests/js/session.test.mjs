// The viewer's session reducer (web/session.js), with no browser: events in, effects out.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  BACKOFF_MAX_MS, BACKOFF_MIN_MS, MESSAGES, NO_ACCESS_BACKOFF_MAX_MS, SessionEnd, carry, finalEnd, initial, nextAttempt,
  noAccessMessage, POOR_AFTER_MS, SILENT_AFTER_MS, step,
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

test('no video byte for SILENT_AFTER_MS starts the grace before the browser says disconnected, and bytes stop it', () => {
  const playing = [
    { type: 'peer', state: 'connected' },
    { type: 'frames', decoded: 10, heard: 1_000, shown: 'connected', at: 0 },
    { type: 'frames', decoded: 20, heard: 2_000, shown: 'playing', at: 1_000 },
  ];
  let { state, effects } = run(playing);
  // The bytes stop (a dead path): not yet, then the grace.
  ({ state, effects } = run([{ type: 'frames', decoded: 20, heard: 2_000, shown: 'poor', at: 1_000 + SILENT_AFTER_MS - 1 }], state));
  assert.deepEqual(effects.filter((e) => e.do === 'grace'), []);
  ({ state, effects } = run([{ type: 'frames', decoded: 20, heard: 2_000, shown: 'poor', at: 1_000 + SILENT_AFTER_MS }], state));
  assert.deepEqual(effects, [{ do: 'show', state: 'interrupted', message: 'Connection interrupted…' }, { do: 'grace', on: true }]);
  // The browser agreeing later does not restart the timer.
  const agreed = run([{ type: 'peer', state: 'disconnected' }], state);
  assert.deepEqual(agreed.effects, []);
  // Bytes again before the grace ran out (a blackout that ended): the grace stops.
  ({ effects } = run([{ type: 'frames', decoded: 20, heard: 2_500, shown: 'interrupted', at: 5_000 }], state));
  assert.deepEqual(effects, [{ do: 'grace', on: false }, { do: 'show', state: 'poor', message: MESSAGES.poor }]);
  // After the browser's 'disconnected', its 'connected' stops the grace as always.
  ({ effects } = run([{ type: 'frames', decoded: 20, heard: 2_500, at: 5_000 }, { type: 'peer', state: 'connected' }], agreed.state));
  assert.deepEqual(effects[0], { do: 'grace', on: false });
});

test('silence is not a dead path before the first picture, while the camera is lost, or with no byte count', () => {
  const quiet = (events) => run(events).effects.filter((e) => e.do === 'grace');
  const later = SILENT_AFTER_MS + 1_000;
  assert.deepEqual(quiet([
    { type: 'peer', state: 'connected' },
    { type: 'frames', decoded: 0, heard: 500, shown: 'connected', at: 0 },
    { type: 'frames', decoded: 0, heard: 500, shown: 'connected', at: later },
  ]).slice(1), [], 'no picture yet');
  assert.deepEqual(quiet([
    { type: 'peer', state: 'connected' },
    { type: 'frames', decoded: 10, heard: 500, shown: 'playing', at: 0 },
    { type: 'camera', live: false },
    { type: 'frames', decoded: 10, heard: 500, shown: 'camera-lost', at: later },
  ]).slice(1), [], 'a lost camera may send nothing');
  assert.deepEqual(quiet([
    { type: 'peer', state: 'connected' },
    { type: 'frames', decoded: 10, shown: 'playing', at: 0 },
    { type: 'frames', decoded: 10, shown: 'playing', at: later },
  ]).slice(1), [], 'no byte count: nothing to judge');
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

test('a picture that stops moving while playing is a poor connection, until it moves again', () => {
  let { state } = run([
    { type: 'peer', state: 'connected' },
    { type: 'access', access: { role: 'owner', claimed: true }, shown: 'connected' },
    { type: 'frames', decoded: 30, shown: 'connected', at: 1_000 },
  ]);
  let effects;
  // Still at 30 frames one tick later, but not yet for POOR_AFTER_MS.
  ({ state, effects } = run([{ type: 'frames', decoded: 30, shown: 'playing', at: 1_000 + POOR_AFTER_MS - 1 }], state));
  assert.deepEqual(shown(effects), []);
  ({ state, effects } = run([{ type: 'frames', decoded: 30, shown: 'playing', at: 1_000 + POOR_AFTER_MS }], state));
  assert.deepEqual(shown(effects), ['poor']);
  assert.equal(effects.find((e) => e.do === 'show').message, MESSAGES.poor);
  // Still frozen: said once is enough (the page already shows it).
  ({ state, effects } = run([{ type: 'frames', decoded: 30, shown: 'poor', at: 5_000 }], state));
  assert.deepEqual(shown(effects), []);
  // An access announcement while poor does not go back to "waiting for the first picture".
  ({ state, effects } = run([{ type: 'access', access: { role: 'owner', claimed: true }, shown: 'poor' }], state));
  assert.deepEqual(shown(effects), []);
  ({ state, effects } = run([{ type: 'frames', decoded: 31, shown: 'poor', at: 6_000 }], state));
  assert.deepEqual(shown(effects), ['playing']);
  // A moving picture never reads as poor, however long it plays.
  for (let i = 1; i <= 10; i += 1) {
    ({ state, effects } = run([{ type: 'frames', decoded: 31 + i * 30, shown: 'playing', at: 6_000 + i * 1_000 }], state));
    assert.deepEqual(shown(effects), []);
  }
});

test('a browser without access is told why when the device closes it, and retries slowly', () => {
  const noAccess = run([{ type: 'access', access: { role: null, claimed: true }, shown: 'connected' }]).state;
  const closed = new SessionEnd(MESSAGES.lost);
  let end = finalEnd(noAccess, closed);
  assert.equal(end.message, MESSAGES.noAccess);
  assert.equal(end.noAccess, true);
  end = finalEnd({ ...noAccess, page: { ...noAccess.page, hadBorrowerAccess: true } }, closed);
  assert.equal(end.message, MESSAGES.accessEnded);
  assert.equal(finalEnd({ ...noAccess, redeeming: true }, closed), closed, 'a claim in flight decides');
  const stop = new SessionEnd('x', { retry: false });
  assert.equal(finalEnd(noAccess, stop), stop);
  assert.equal(noAccessMessage({ claimed: false }), MESSAGES.unclaimed);
  assert.equal(noAccessMessage({ claimed: true }, { linkRefused: MESSAGES.claimRefused }), MESSAGES.claimRefused);
});

const access = (a, more = {}) => ({ type: 'access', access: a, shown: 'connected', ...more });
const dos = (effects) => effects.map((e) => e.do);
const OWNER = { role: 'owner', scope: 'view+ui', claimed: true };
const NOBODY = { role: null, claimed: true };

test('a claim or invite in the link is presented once; its answer decides', () => {
  const link = { claim: 'secret' };
  let { state, effects } = run([access({ role: null, claimed: false }, { link })]);
  assert.deepEqual(effects.find((e) => e.do === 'redeem').request, { type: 'claim', secret: 'secret' });
  assert.deepEqual(shown(effects), ['claiming']);
  assert.equal(state.redeeming, true);
  // The device announces the new access before it answers `done`.
  ({ state, effects } = run([access(OWNER, { link }), { type: 'redeemed', request: 'claim', ok: true }], state));
  assert.equal(dos(effects).filter((d) => d === 'redeem').length, 0, 'not presented twice');
  assert.deepEqual(effects.filter((e) => e.do === 'problem'), [{ do: 'problem', problem: null }]);
  assert.ok(dos(effects).includes('forget-secret'));
  assert.equal(state.redeeming, false);

  // An invite that does not work: the address forgets it and the page says why, also after the
  // device closes the session, and in the next session.
  const invite = { invite: 'token' };
  ({ state, effects } = run([access(NOBODY, { link: invite })]));
  assert.deepEqual(effects.find((e) => e.do === 'redeem').request, { type: 'redeem', token: 'token' });
  ({ state, effects } = run([access(NOBODY, { link: invite }), { type: 'redeemed', request: 'redeem', ok: false }], state));
  assert.deepEqual(dos(effects), ['forget-secret', 'problem', 'show']);
  assert.equal(effects.at(-1).message, MESSAGES.inviteRefused);
  const end = finalEnd(state, new SessionEnd(MESSAGES.lost));
  assert.equal(end.message, MESSAGES.inviteRefused);
  const next = initial(DEVICE, carry(state, end));
  ({ effects } = run([access(NOBODY), { type: 'adopted', ok: false }], next));
  assert.equal(effects.at(-1).message, MESSAGES.inviteRefused, 'remembered across sessions');
  // A new link gets its own chance.
  const fresh = initial(DEVICE, carry(state, new SessionEnd('x', { newLink: true })));
  ({ effects } = run([access(NOBODY)], fresh));
  assert.deepEqual(dos(effects), ['adopt-pending']);
});

test('no link and no access: a renewal proven earlier is adopted, else the page says why', () => {
  let { state, effects } = run([access(NOBODY)]);
  assert.deepEqual(dos(effects), ['adopt-pending']);
  ({ effects } = run([{ type: 'adopted', ok: true }], state));
  assert.equal(ends(effects)[0].immediate, true);
  ({ effects } = run([{ type: 'adopted', ok: false }], state));
  assert.deepEqual(effects, [{ do: 'problem', problem: 'no-access' }, { do: 'show', state: 'no-access', message: MESSAGES.noAccess }]);
  // Unclaimed: nothing to adopt.
  ({ effects } = run([access({ role: null, claimed: false })]));
  assert.equal(effects.at(-1).message, MESSAGES.unclaimed);
  // A borrower whose access lapsed hears that it ended.
  ({ state } = run([access({ role: 'borrower', scope: 'view', claimed: true })]));
  ({ effects } = run([access(NOBODY), { type: 'adopted', ok: false }], state));
  assert.equal(effects.at(-1).message, MESSAGES.accessEnded);
});

test('renewal: once per page when due; a renewed certificate is committed or abandoned', () => {
  let { state, effects } = run([access(OWNER, { renewalDue: true })]);
  assert.ok(dos(effects).includes('renew'));
  ({ effects } = run([access(OWNER, { renewalDue: true })], state));
  assert.ok(!dos(effects).includes('renew'), 'one renewal at a time');
  // Interrupted: the next session tries again; refused: the new certificate is dropped.
  ({ state, effects } = run([{ type: 'renewal', outcome: 'interrupted' }], state));
  assert.equal(state.page.renewing, false);
  ({ state } = run([access(OWNER, { renewalDue: true })], state));
  ({ state, effects } = run([{ type: 'renewal', outcome: 'refused' }], state));
  assert.deepEqual(dos(effects), ['abandon-renewal']);
  ({ state } = run([access(OWNER, { renewalDue: true })], state));
  ({ effects } = run([{ type: 'renewal', outcome: 'offered' }], state));
  assert.equal(ends(effects)[0].immediate, true, 'the next session presents the new certificate');

  // The session that presents it: let in, committed before anything else; shut out, abandoned
  // before the session ends (the next one must present the old certificate).
  ({ effects } = run([access(OWNER, { trying: true })]));
  assert.deepEqual(dos(effects), ['show', 'commit-renewal', 'problem', 'forget-secret']);
  ({ effects } = run([access(NOBODY, { trying: true })]));
  assert.deepEqual(dos(effects), ['abandon-renewal', 'end']);
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

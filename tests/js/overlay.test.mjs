// The overlay's words and numbers (web/overlay.js): pure functions of stats snapshots.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { estimatedDelayMs, overlayLines } from '../../web/overlay.js';

const snap = (video, rtt = 40) => ({
  rtt, connectionState: 'connected',
  video: { frameWidth: 1280, frameHeight: 720, codec: null, ...video },
});

test('the delay is half the round trip plus the recent jitter-buffer and decode time per frame', () => {
  const prev = snap({ jitterBufferDelay: 10, jitterBufferEmittedCount: 1000, totalDecodeTime: 2, framesDecoded: 1000 });
  // The last 30 frames: 1.5 s in the jitter buffer (50 ms each), 0.15 s decoding (5 ms each).
  const now = snap({ jitterBufferDelay: 11.5, jitterBufferEmittedCount: 1030, totalDecodeTime: 2.15, framesDecoded: 1030 });
  assert.equal(Math.round(estimatedDelayMs(now, prev)), 20 + 50 + 5);
  assert.match(overlayLines(now, { fps: 30, kbps: 100_000, delayMs: 75 }), /1280×720 · 30 fps · 800 kbit\/s · delay ≥75 ms/);
});

test('no delay without two snapshots, a round trip, or new frames', () => {
  const video = { jitterBufferDelay: 1, jitterBufferEmittedCount: 10, totalDecodeTime: 0.1, framesDecoded: 10 };
  assert.equal(estimatedDelayMs(snap(video), null), null);
  assert.equal(estimatedDelayMs(snap(video, null), snap(video)), null);
  assert.equal(estimatedDelayMs(snap(video), snap(video)), null, 'a frozen picture has no recent delay');
  assert.doesNotMatch(overlayLines(snap(video), { fps: 0, kbps: 0 }), /delay/);
});

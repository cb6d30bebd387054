// pipe viewer: what the overlay says. The peer connection's stats as a plain snapshot (for the
// overlay and for tests) and as the overlay's lines, and who this browser is to the camera.

/** A plain, JSON-able snapshot of the current session, for the overlay and for tests. */
export async function snapshot(pc, { state, sessions }) {
  const out = { state, connectionState: pc?.connectionState ?? 'new', sessions,
    video: { framesDecoded: null, framesReceived: null, framesDropped: null, frameWidth: null, frameHeight: null,
      framesPerSecond: null, freezeCount: null, totalFreezesDuration: null, bytesReceived: null,
      jitterBufferDelay: null, jitterBufferEmittedCount: null, totalDecodeTime: null, codec: null },
    audio: { totalSamplesReceived: null, codec: null },
    rtt: null, // milliseconds (0.1 ms steps), from the selected ICE candidate pair
    timestamp: null };
  if (!pc) return out;
  const report = await pc.getStats().catch(() => null); // null: closed mid-call; next tick sees the new pc
  if (!report) return out;
  const codecOf = (r) => {
    const c = r.codecId && report.get(r.codecId);
    return c ? { mimeType: c.mimeType ?? null, sdpFmtpLine: c.sdpFmtpLine ?? null } : null;
  };
  let pair = null;
  report.forEach((r) => {
    const kind = r.kind ?? r.mediaType; // older Firefox says mediaType
    if (r.type === 'inbound-rtp' && kind === 'video') {
      for (const key of Object.keys(out.video)) if (key !== 'codec' && r[key] !== undefined) out.video[key] = r[key];
      out.video.codec = codecOf(r);
      out.timestamp = r.timestamp;
    } else if (r.type === 'inbound-rtp' && kind === 'audio') {
      out.audio = { totalSamplesReceived: r.totalSamplesReceived ?? null, codec: codecOf(r) };
    } else if (r.type === 'transport' && r.selectedCandidatePairId) {
      pair = report.get(r.selectedCandidatePairId) ?? pair;
    } else if (r.type === 'candidate-pair' && !pair && (r.selected || (r.nominated && r.state === 'succeeded'))) {
      pair = r; // Firefox has no transport stats; it marks the pair instead
    }
  });
  if (pair?.currentRoundTripTime != null) out.rtt = Math.round(pair.currentRoundTripTime * 10_000) / 10;
  return out;
}

/**
 * The picture's delay as this browser can tell it, in ms, from two snapshots of the same
 * session: half the round trip (the way here), plus the recent time frames spent in the jitter
 * buffer and in the decoder. The camera's own capture and encoding (~15 ms on this project's
 * chains, docs/benchmarks.md) are not in it, so it is a lower bound; null when the stats
 * lack a part.
 */
export function estimatedDelayMs(now, prev) {
  const v = now.video;
  const p = prev?.video;
  if (!p || now.rtt == null) return null;
  const delta = (key) => (v[key] != null && p[key] != null ? v[key] - p[key] : null);
  const emitted = delta('jitterBufferEmittedCount');
  const decoded = delta('framesDecoded');
  const buffered = delta('jitterBufferDelay');
  const decoding = delta('totalDecodeTime');
  if (!(emitted > 0) || !(decoded > 0) || buffered == null || decoding == null) return null;
  return now.rtt / 2 + (buffered / emitted) * 1000 + (decoding / decoded) * 1000;
}

/** The overlay's text: size, rate, bitrate and delay; round trip and state; codec. */
export function overlayLines(now, { fps, kbps, relay, delayMs = null }) {
  const v = now.video;
  return [
    [v.frameWidth && `${v.frameWidth}×${v.frameHeight}`, fps != null && `${Math.round(fps)} fps`,
      kbps != null && `${Math.round((kbps * 8) / 1000)} kbit/s`, delayMs != null && `delay ≥${Math.round(delayMs)} ms`],
    [now.rtt != null && `rtt ${now.rtt} ms`, now.connectionState, relay && 'relay only'],
    [v.codec && [v.codec.mimeType, v.codec.sdpFmtpLine].filter(Boolean).join(' ')],
  ].map((line) => line.filter(Boolean).join(' · ')).filter(Boolean).join('\n');
}

/** Who this browser is to the camera: its certificate, and the access the device gave it. */
export function whoLine(fingerprint, access) {
  const lines = [];
  if (fingerprint) lines.push(`this browser: ${fingerprint.slice(0, 11)}`);
  if (access?.role === 'owner') lines.push('owner');
  if (access?.role === 'borrower') lines.push(access.expires_at ? `access until ${until(access.expires_at)}` : 'borrower');
  return lines.join(' · ');
}

/** Unix seconds -> "14:05" today, else a short date and time. */
function until(unixSecs) {
  const at = new Date(unixSecs * 1000);
  const today = at.toDateString() === new Date().toDateString();
  return today ? at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : at.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

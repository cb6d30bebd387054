// pipe viewer: the two things the page reads or changes in session descriptions as text
// (the device checks what it receives with a real SDP parser; these only look at sections).

/** Port 0 without bundle-only means the browser turned video down: no H.264 decoder. */
export function videoRejected(sdp) {
  const video = sdp.split(/(?=^m=)/m).find((section) => section.startsWith('m=video'));
  return !video || (/^m=video 0 /.test(video) && !/^a=bundle-only/m.test(video));
}

/**
 * GStreamer 1.22 names every section's stream after its RTCP cname, so the browser sees audio
 * and video as one MediaStream and lip-syncs them: video then waits for audio's deeper jitter
 * buffer. Giving audio its own stream id in the (remote) offer keeps video undelayed.
 */
export function unsyncAudio(sdp) {
  return sdp.split(/(?=^m=)/m).map((section) => (section.startsWith('m=audio')
    ? section.replace(/^(a=(?:ssrc:\d+ )?msid:)\S+/gm, '$1pipe-audio')
    : section)).join('');
}

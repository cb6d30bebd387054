//! What the benchmarks share: reading the latency barcode from every frame a page presents,
//! the video's WebRTC stats, CPU and memory of processes from /proc, and number formatting.

#![allow(dead_code)] // each benchmark uses its own subset

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde_json::Value;

/// Installed in the page as soon as it has loaded: reads the barcode of every presented frame
/// (layout and checksum as in src/media/stamp.rs) into `window.__g2g`.
pub const READ_BARCODES: &str = r#"(() => {
  const BLOCK = 16, BITS = 64, TIME_BITS = 48, RTP_WRAP_MS = 2 ** 32 / 90;
  const video = window.pipeViewer.video;
  const g = window.__g2g = {
    installedAt: performance.now(),
    presentedBeforeInstall: video.getVideoPlaybackQuality().totalVideoFrames,
    firstShown: null, firstStamp: null, firstReceived: null,
    callbacks: 0, undecoded: 0, implausible: 0, mismatched: 0, samples: [], offset: null,
    // Date.now() against timeOrigin + now(): the page's clock against the system clock.
    clockSkew: Date.now() - (performance.timeOrigin + performance.now()),
  };
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const crc16 = (ms) => {
    let crc = 0xffff;
    for (let k = 5; k >= 0; k--) {
      crc ^= (Math.floor(ms / 2 ** (8 * k)) % 256) << 8;
      for (let i = 0; i < 8; i++) crc = (crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1) & 0xffff;
    }
    return crc;
  };
  // A frame of a smaller rendition (the low one is scaled from the stamped frames) carries
  // the barcode scaled too: its blocks are `BLOCK * width / stampWidth` pixels, laid out as in
  // the stamped frame (`window.__g2gStampWidth`, set by the benchmark).
  const read = (width, height) => {
    const stampWidth = window.__g2gStampWidth || width;
    const scale = width / stampWidth, block = BLOCK * scale;
    const cols = Math.floor(stampWidth / BLOCK), rows = Math.ceil(BITS / cols);
    if (!cols || rows * block > height) return null;
    const w = Math.ceil(cols * block), h = Math.ceil(rows * block);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    ctx.drawImage(video, 0, 0, w, h, 0, 0, w, h);
    const px = ctx.getImageData(0, 0, w, h).data;
    // The mean green of the block's centre (4x4 of a 16-pixel block), away from its edges.
    const inset = Math.round(6 * scale), side = Math.max(1, Math.round(4 * scale));
    let ms = 0, check = 0;
    for (let i = 0; i < BITS; i++) {
      const x0 = Math.round((i % cols) * block) + inset, y0 = Math.round(Math.floor(i / cols) * block) + inset;
      let sum = 0;
      for (let y = y0; y < y0 + side; y++) for (let x = x0; x < x0 + side; x++) sum += px[(y * w + x) * 4 + 1];
      const bit = sum > 128 * side * side ? 1 : 0;
      if (i < TIME_BITS) ms = ms * 2 + bit; else check = check * 2 + bit;
    }
    return crc16(ms) === check ? ms : null;
  };
  const onFrame = (_now, m) => {
    g.callbacks += 1;
    const ms = read(m.width, m.height);
    if (ms === null) {
      g.undecoded += 1;
    } else {
      const latency = performance.timeOrigin + m.expectedDisplayTime - ms;
      // The stamp and the RTP timestamp both come from the capture time, so their difference
      // is constant, except when the canvas got a newer frame than the one the metadata
      // describes (drawImage takes the video's current frame: the stamp is a frame interval
      // later), or when a starved encoder skipped the barcode's blocks (an older frame's
      // stamp: earlier). Either is a lone frame; the true difference is the one that three
      // frames in a row agree on, so one odd frame can never move it.
      let late = 0;
      if (m.rtpTimestamp !== undefined) {
        const offset = ms - m.rtpTimestamp / 90;
        const wrap = (d) => ((d % RTP_WRAP_MS) + RTP_WRAP_MS * 1.5) % RTP_WRAP_MS - RTP_WRAP_MS / 2;
        if (g.offset === null) g.offset = offset;
        late = wrap(offset - g.offset);
        if (Math.abs(late) > 10) {
          const agrees = g.candidate !== undefined && Math.abs(wrap(offset - g.candidate)) <= 2;
          g.candidate = agrees ? g.candidate : offset;
          g.agreeing = agrees ? g.agreeing + 1 : 1;
          if (g.agreeing >= 3) { g.offset = g.candidate; late = 0; }
        } else {
          g.agreeing = 0;
        }
      }
      if (latency < -5 || latency > 10000) {
        g.implausible += 1; // a checksum that passed by chance
      } else if (Math.abs(late) > 10) {
        g.mismatched += 1;
      } else {
        if (g.firstShown === null) {
          g.firstShown = m.expectedDisplayTime;
          g.firstStamp = ms - performance.timeOrigin;
          g.firstReceived = m.receiveTime ?? null;
        }
        const received = m.receiveTime === undefined ? null : performance.timeOrigin + m.receiveTime - ms;
        const decode = m.processingDuration === undefined ? null : m.processingDuration * 1000;
        g.samples.push([ms, latency, received, decode]);
      }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return { installedAt: g.installedAt, presentedBeforeInstall: g.presentedBeforeInstall,
    clockSkew: g.clockSkew };
})()"#;

/// The sender's port of the page's selected candidate pair.
pub const DEVICE_PORT: &str = r#"(async () => {
  const report = await window.pipeViewer.pc.getStats();
  let pair = null;
  report.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pair = report.get(r.selectedCandidatePairId); });
  if (!pair) report.forEach((r) => { if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r; });
  return pair ? report.get(pair.remoteCandidateId).port : null;
})()"#;

/// Hands over the samples read so far and starts afresh.
pub const TAKE_SAMPLES: &str = r#"(() => {
  const g = window.__g2g;
  const out = { samples: g.samples, undecoded: g.undecoded, implausible: g.implausible,
    mismatched: g.mismatched };
  g.samples = []; g.undecoded = 0; g.implausible = 0; g.mismatched = 0;
  return out;
})()"#;

/// The video receiver's cumulative WebRTC stats, and the frames presented so far.
pub const VIDEO_STATS: &str = r#"(async () => {
  const pc = window.pipeViewer.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let v = null;
  report.forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') v = r; });
  if (!v) return null;
  const out = { presented: window.__g2g.callbacks };
  for (const k of ['jitterBufferDelay', 'jitterBufferTargetDelay', 'jitterBufferMinimumDelay',
      'jitterBufferEmittedCount', 'framesDecoded', 'framesDropped', 'totalDecodeTime',
      'totalProcessingDelay', 'totalAssemblyTime', 'framesAssembledFromMultiplePackets',
      'freezeCount', 'totalFreezesDuration', 'packetsLost', 'nackCount', 'pliCount', 'keyFramesDecoded',
      'bytesReceived', 'frameWidth', 'frameHeight']) out[k] = v[k] ?? null;
  return out;
})()"#;

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // "pid (comm) state ...": comm may hold spaces; fields 14 and 15 are utime and stime.
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Ok(field(14).unwrap_or(0) + field(15).unwrap_or(0))
}

/// CPU ticks of `root` and every process below it (Chromium's renderer, GPU, network ...).
pub fn tree_ticks(root: u32) -> u64 {
    let mut parent_of: HashMap<u32, u32> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parent_of.insert(pid, ppid);
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parent_of
                .iter()
                .filter(|&(_, &pp)| pp == parent)
                .map(|(&p, _)| p),
        );
        i += 1;
    }
    tree.iter().filter_map(|&p| cpu_ticks(p).ok()).sum()
}

pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A `VmRSS:`-style line of /proc/PID/status, in kB.
pub fn status_kb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

pub fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// The `p`th percentile (nearest rank) of `values`; NaN if there are none.
pub fn pct(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "(met)" } else { "(MISSED)" }
}

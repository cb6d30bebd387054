//! A wall-clock barcode painted into raw frames, for measuring glass-to-glass latency.
//!
//! A capture chain that contains an element named `pipe-stamp` (an `identity` on raw 8-bit YUV
//! video, just before the encoder) gets every frame stamped with the wall-clock time at which
//! it passes that element: [`BITS`] black or white [`BLOCK`]×[`BLOCK`]-pixel blocks in the top
//! rows, 48 bits of milliseconds since the Unix epoch and a 16-bit CRC. Blocks this size are
//! whole H.264 macroblocks of flat luma, which survive even a starved encoder; the CRC rejects
//! the frames where they did not. A viewer (the glass-to-glass benchmark reads it in Chromium)
//! decodes the time and subtracts it from the moment the frame is shown.
//!
//! Layout: bit `i` is block column `i % cols`, block row `i / cols`, where `cols` is
//! `width / BLOCK`; the blocks after the last bit in those rows are black. Bits are most
//! significant first, time then checksum; white is 1. Chroma under the strip is set neutral so
//! the blocks are pure grey in RGB too.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use gst::prelude::*;
use gst_video::prelude::*;
use tracing::{debug, warn};

/// The element whose output is stamped.
pub const ELEMENT: &str = "pipe-stamp";
/// Side of one block, in pixels: one H.264 macroblock.
pub const BLOCK: usize = 16;
/// Bits of milliseconds since the Unix epoch (good until the year 10889).
pub const TIME_BITS: usize = 48;
/// Bits of checksum (CRC-16/CCITT-FALSE of the time's six big-endian bytes).
pub const CHECK_BITS: usize = 16;
/// Blocks in a barcode.
pub const BITS: usize = TIME_BITS + CHECK_BITS;

/// Luma of a 0 and a 1 (video range: black and white).
const DARK: u8 = 16;
const LIGHT: u8 = 235;
/// Chroma of grey.
const NEUTRAL: u8 = 128;

/// The barcode of `ms` (milliseconds since the epoch; only the low 48 bits are kept).
pub fn encode(ms: u64) -> [bool; BITS] {
    let ms = ms & ((1 << TIME_BITS) - 1);
    let word = (ms << CHECK_BITS) | u64::from(crc16(&time_bytes(ms)));
    std::array::from_fn(|i| word >> (BITS - 1 - i) & 1 == 1)
}

/// The time in a barcode read back, or `None` if it is not [`BITS`] long or its checksum fails.
pub fn decode(bits: &[bool]) -> Option<u64> {
    if bits.len() != BITS {
        return None;
    }
    let word = bits.iter().fold(0u64, |w, &b| w << 1 | u64::from(b));
    let ms = word >> CHECK_BITS;
    let check = (word & ((1 << CHECK_BITS) - 1)) as u16;
    (crc16(&time_bytes(ms)) == check).then_some(ms)
}

/// Block columns and rows the barcode takes in a frame `width`×`height`, if it fits.
pub fn layout(width: usize, height: usize) -> Option<(usize, usize)> {
    let cols = width / BLOCK;
    if cols == 0 {
        return None;
    }
    let rows = BITS.div_ceil(cols);
    (rows * BLOCK <= height).then_some((cols, rows))
}

fn time_bytes(ms: u64) -> [u8; 6] {
    let b = ms.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0xFFFF, |mut crc, &byte| {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                crc << 1 ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// Stamps every frame leaving the `pipe-stamp` element of `pipeline`, if it has one. Returns
/// whether it did install the stamp.
pub fn install(pipeline: &gst::Pipeline) -> bool {
    let Some(element) = pipeline.by_name(ELEMENT) else {
        return false;
    };
    let Some(pad) = element.static_pad("src") else {
        warn!("{ELEMENT} has no src pad; frames are not stamped");
        return false;
    };
    // The video info of the current caps, parsed once per caps rather than once per frame.
    let parsed: Mutex<Option<(gst::Caps, Option<gst_video::VideoInfo>)>> = Mutex::new(None);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, probe| {
        let Some(caps) = pad.current_caps() else {
            return gst::PadProbeReturn::Ok;
        };
        let mut parsed = parsed.lock().unwrap_or_else(|p| p.into_inner());
        if parsed.as_ref().is_none_or(|(c, _)| *c != caps) {
            let info = gst_video::VideoInfo::from_caps(&caps)
                .ok()
                .filter(stampable);
            if info.is_none() {
                warn!(%caps, "{ELEMENT}: not 8-bit planar or packed YUV; frames are not stamped");
            }
            *parsed = Some((caps, info));
        }
        let Some((_, Some(info))) = parsed.as_ref() else {
            return gst::PadProbeReturn::Ok;
        };
        if let Some(buffer) = probe.buffer_mut() {
            // Read as late as possible: the time the frame goes on to the encoder.
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            if let Err(e) = paint(buffer.make_mut(), info, &encode(ms)) {
                debug!(error = %e, "{ELEMENT}: frame not stamped");
            }
        }
        gst::PadProbeReturn::Ok
    });
    debug!("{ELEMENT}: stamping frames with the wall-clock time");
    true
}

fn stampable(info: &gst_video::VideoInfo) -> bool {
    let f = info.format_info();
    f.is_yuv() && f.bits() == 8 && !f.is_tiled() && f.n_components() >= 3
}

/// Writes `bits` into the top rows of the frame in `buffer`.
fn paint(
    buffer: &mut gst::BufferRef,
    info: &gst_video::VideoInfo,
    bits: &[bool; BITS],
) -> Result<(), gst::glib::BoolError> {
    let (width, height) = (info.width() as usize, info.height() as usize);
    let Some((cols, rows)) = layout(width, height) else {
        return Err(gst::glib::bool_error!("{width}x{height} is too small"));
    };
    let format = info.format_info();
    let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, info)?;
    for component in 0..3 {
        let plane = format.plane()[component];
        let offset = format.poffset()[component] as usize;
        let step = format.pixel_stride()[component] as usize;
        let (w_sub, h_sub) = (format.w_sub()[component], format.h_sub()[component]);
        let stride = frame.plane_stride()[plane as usize] as usize;
        let data = frame.plane_data_mut(plane)?;
        // Subsampled sizes round up, as GStreamer's do.
        let (strip_w, strip_h) = (cols * BLOCK, rows * BLOCK);
        let w = (strip_w + (1 << w_sub) - 1) >> w_sub;
        let h = (strip_h + (1 << h_sub) - 1) >> h_sub;
        for y in 0..h {
            let block_row = (y << h_sub) / BLOCK;
            let line = y * stride + offset;
            for x in 0..w {
                let value = if component == 0 {
                    let bit = block_row * cols + x / BLOCK;
                    if bits.get(bit).copied().unwrap_or(false) {
                        LIGHT
                    } else {
                        DARK
                    }
                } else {
                    NEUTRAL
                };
                if let Some(byte) = data.get_mut(line + x * step) {
                    *byte = value;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_ccitt_false_check_value() {
        assert_eq!(crc16(b"123456789"), 0x29B1);
    }

    #[test]
    fn a_time_round_trips() {
        for ms in [
            0,
            1,
            1_700_000_000_123,
            1_767_225_600_000,
            (1 << TIME_BITS) - 1,
        ] {
            assert_eq!(decode(&encode(ms)), Some(ms), "{ms}");
        }
    }

    #[test]
    fn the_time_is_most_significant_bit_first() {
        let bits = encode(1);
        assert!(bits[TIME_BITS - 1]);
        assert!(!bits[..TIME_BITS - 1].iter().any(|&b| b));
    }

    #[test]
    fn any_single_flipped_bit_is_rejected() {
        let good = encode(1_767_225_600_123);
        for i in 0..BITS {
            let mut bad = good;
            bad[i] = !bad[i];
            assert_eq!(decode(&bad), None, "bit {i}");
        }
    }

    #[test]
    fn wrong_lengths_and_blank_frames_are_rejected() {
        let good = encode(42);
        assert_eq!(decode(&good[..BITS - 1]), None);
        assert_eq!(decode(&[false; BITS]), None, "all black");
        assert_eq!(decode(&[true; BITS]), None, "all white");
    }

    #[test]
    fn layout_wraps_narrow_frames_and_refuses_tiny_ones() {
        assert_eq!(layout(1280, 720), Some((80, 1)));
        assert_eq!(layout(640, 360), Some((40, 2)));
        assert_eq!(layout(320, 240), Some((20, 4)));
        assert_eq!(layout(8, 720), None);
        assert_eq!(layout(320, 48), None);
    }

    #[test]
    fn paint_writes_blocks_into_luma_and_grey_chroma() {
        gst::init().expect("GStreamer initialises");
        for format in [gst_video::VideoFormat::I420, gst_video::VideoFormat::Nv12] {
            let info = gst_video::VideoInfo::builder(format, 320, 240)
                .build()
                .expect("valid info");
            let mut buffer = gst::Buffer::from_mut_slice(vec![0u8; info.size()]);
            let bits = encode(1_767_225_600_123);
            paint(buffer.make_mut(), &info, &bits).expect("paints");
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(&buffer, &info).expect("maps");
            let luma = frame.plane_data(0).expect("luma");
            let stride = frame.plane_stride()[0] as usize;
            let (cols, _) = layout(320, 240).expect("fits");
            let read: Vec<bool> = (0..BITS)
                .map(|i| {
                    let (x, y) = ((i % cols) * BLOCK + 8, (i / cols) * BLOCK + 8);
                    luma[y * stride + x] > 128
                })
                .collect();
            assert_eq!(decode(&read), Some(1_767_225_600_123), "{format:?}");
            let chroma = frame.plane_data(1).expect("chroma");
            assert_eq!(chroma[0], NEUTRAL, "{format:?}");
            // Below the strip, nothing was touched.
            assert_eq!(luma[4 * BLOCK * stride], 0, "{format:?}");
        }
    }

    #[test]
    fn the_latency_probe_chain_has_the_hook() {
        let text = include_str!("../../pipelines/latency-probe.pipeline");
        let template = crate::chains::pipeline::PipelineTemplate::parse("latency-probe", text)
            .expect("latency-probe.pipeline parses");
        assert!(template.description.contains(&format!("name={ELEMENT}")));
    }

    /// Stamps a busy 720p picture, encodes it as the latency-probe chain does, decodes it and
    /// reads the barcode back from every frame.
    #[test]
    fn the_barcode_survives_x264_at_2_mbit() {
        gst::init().expect("GStreamer initialises");
        if ["x264enc", "avdec_h264"]
            .iter()
            .any(|f| gst::ElementFactory::find(f).is_none())
        {
            eprintln!("skipped: x264enc or avdec_h264 is not installed");
            return;
        }
        let pipeline = gst::parse::launch(
            "videotestsrc num-buffers=30 pattern=zone-plate kx2=20 ky2=20 kt=1 \
             ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
             ! identity name=pipe-stamp \
             ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 key-int-max=60 \
             ! avdec_h264 ! video/x-raw,format=I420 ! appsink name=out sync=false",
        )
        .expect("launches")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline");
        assert!(install(&pipeline));
        let sink = pipeline
            .by_name("out")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .expect("named above");
        pipeline.set_state(gst::State::Playing).expect("plays");
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970");
        let (mut frames, mut read) = (0, 0);
        while let Ok(sample) = sink.pull_sample() {
            frames += 1;
            let info = gst_video::VideoInfo::from_caps(sample.caps().expect("caps")).expect("info");
            let buffer = sample.buffer().expect("buffer");
            let frame =
                gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info).expect("maps");
            let luma = frame.plane_data(0).expect("luma");
            let stride = frame.plane_stride()[0] as usize;
            let (cols, _) = layout(1280, 720).expect("fits");
            let bits: Vec<bool> = (0..BITS)
                .map(|i| {
                    let (x, y) = ((i % cols) * BLOCK + 8, (i / cols) * BLOCK + 8);
                    luma[y * stride + x] > 128
                })
                .collect();
            if let Some(ms) = decode(&bits) {
                let age = before.as_millis() as i128 - i128::from(ms);
                assert!(age.abs() < 10_000, "stamped {ms}, {age} ms before the test");
                read += 1;
            }
        }
        pipeline.set_state(gst::State::Null).expect("stops");
        assert_eq!((frames, read), (30, 30));
    }
}

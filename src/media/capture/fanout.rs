//! The fan-out: each viewer's `Feed` (its appsrcs and where it stands in the stream), and the
//! list the capture chain's streaming thread pushes every encoded frame to.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::adapt::rendition::Rendition;

/// Encoded frames one viewer may have queued before it counts as stalled: ~0.5 s at 30 fps.
const MAX_QUEUED_FRAMES: u64 = 15;

/// Where a viewer's frames go: its appsrcs and its gap state.
pub struct Feed {
    video: gst_app::AppSrc,
    audio: Option<gst_app::AppSrc>,
    /// Clock time at which the viewer pipeline's running time is zero.
    base_time: gst::ClockTime,
    state: Mutex<FeedState>,
}

#[derive(Debug)]
pub(super) struct FeedState {
    /// Frames flow only once the viewer's transport is up (a frame earlier would be lost).
    pub(super) open: bool,
    /// After any gap, skip delta frames until a key frame.
    pub(super) waiting_for_keyframe: bool,
    /// The rendition the viewer is sent, and the one it is to be sent: it switches at the
    /// wanted one's next key frame, and is sent the current one until then.
    pub(super) current: Rendition,
    pub(super) wanted: Rendition,
    /// Caps last given to the appsrcs, so a change (resolution, bitrate) is passed on.
    pub(super) video_caps: Option<gst::Caps>,
    pub(super) audio_caps: Option<gst::Caps>,
}

impl Feed {
    pub fn new(
        video: gst_app::AppSrc,
        audio: Option<gst_app::AppSrc>,
        base_time: gst::ClockTime,
    ) -> Arc<Self> {
        Arc::new(Self {
            video,
            audio,
            base_time,
            state: Mutex::new(FeedState {
                open: false,
                waiting_for_keyframe: true,
                current: Rendition::Main,
                wanted: Rendition::Main,
                video_caps: None,
                audio_caps: None,
            }),
        })
    }

    pub(super) fn state(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether frames flow to this viewer.
    pub fn is_open(&self) -> bool {
        self.state().open
    }

    /// Starts the flow; true if it was closed (the caller then asks for a key frame).
    pub fn open(&self) -> bool {
        let mut state = self.state();
        let opened = !state.open;
        state.open = true;
        if opened {
            state.waiting_for_keyframe = true;
            state.current = state.wanted;
        }
        opened
    }

    /// Moves the viewer to `rendition` at its next key frame; true if that is a change (the
    /// caller then asks that rendition for a key frame).
    pub fn switch_to(&self, rendition: Rendition) -> bool {
        let mut state = self.state();
        let changed = state.wanted != rendition;
        state.wanted = rendition;
        changed
    }

    /// The rendition a key frame for this viewer must come from: the one it is switching to.
    pub fn keyframe_rendition(&self) -> Rendition {
        self.state().wanted
    }

    /// The rendition the viewer is sent now.
    pub fn rendition(&self) -> Rendition {
        self.state().current
    }

    /// A frame of rendition `from`; true if the feed now needs a key frame it did not need
    /// before (of its wanted rendition).
    pub(super) fn push_video(
        &self,
        from: Rendition,
        buffer: &gst::Buffer,
        caps: Option<&gst::Caps>,
        clock_time: gst::ClockTime,
    ) -> bool {
        let mut state = self.state();
        if !state.open {
            return false;
        }
        let is_key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if from != state.current {
            // Only the wanted rendition's key frame moves the viewer over; the new size
            // travels in-band with its SPS and in the caps below.
            if from != state.wanted || !is_key {
                return false;
            }
            state.current = from;
            state.waiting_for_keyframe = false;
        }
        if state.waiting_for_keyframe && !is_key {
            return false;
        }
        if self.video.current_level_buffers() >= MAX_QUEUED_FRAMES {
            // The viewer is not keeping up: drop, and restart cleanly from a key frame.
            let newly = !state.waiting_for_keyframe;
            state.waiting_for_keyframe = true;
            return newly;
        }
        state.waiting_for_keyframe = false;
        if let Some(caps) = caps.filter(|c| state.video_caps.as_ref() != Some(*c)) {
            state.video_caps = Some(caps.clone());
            self.video.set_caps(Some(caps));
        }
        drop(state);
        if self
            .video
            .push_buffer(self.restamp(buffer, clock_time))
            .is_err()
        {
            // Flushing or shutting down: treat as a gap.
            self.state().waiting_for_keyframe = true;
        }
        false
    }

    pub(super) fn push_audio(
        &self,
        buffer: &gst::Buffer,
        caps: Option<&gst::Caps>,
        clock_time: gst::ClockTime,
    ) {
        let Some(audio) = &self.audio else { return };
        let mut state = self.state();
        if let Some(caps) = caps.filter(|c| state.audio_caps.as_ref() != Some(*c)) {
            state.audio_caps = Some(caps.clone());
            audio.set_caps(Some(caps));
        }
        // Audio is small and never waits for anything; 50 packets is one second of Opus.
        if state.open && audio.current_level_buffers() < 50 {
            drop(state);
            let _ = audio.push_buffer(self.restamp(buffer, clock_time));
        }
    }

    /// The buffer with its timestamp moved into this viewer pipeline's running time.
    fn restamp(&self, buffer: &gst::Buffer, clock_time: gst::ClockTime) -> gst::Buffer {
        let mut buffer = buffer.clone();
        let running = clock_time.saturating_sub(self.base_time);
        let b = buffer.make_mut();
        b.set_pts(running);
        b.set_dts(gst::ClockTime::NONE);
        buffer
    }
}

#[derive(Default)]
pub(super) struct Fanout {
    pub(super) feeds: Mutex<Vec<Arc<Feed>>>,
    /// Capture pipeline's base time; frames' clock time is base + PTS.
    pub(super) base_time: Mutex<Option<gst::ClockTime>>,
    /// The encoder's output caps, for offers written before a viewer's payloader has any.
    pub(super) video_caps: Mutex<Option<gst::Caps>>,
    /// Encoded video frames and bytes out of the chain since start (across rebuilds).
    pub(super) video_frames: AtomicU64,
    pub(super) video_bytes: AtomicU64,
    /// Encoded frames of the low rendition since start.
    pub(super) low_frames: AtomicU64,
}

impl Fanout {
    pub(super) fn feeds(&self) -> Vec<Arc<Feed>> {
        // Clone the list and release the lock before pushing anything.
        self.feeds.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The clock time a sample was captured at: base time plus its running time. (Not its
    /// PTS: encoders shift timestamps, x264enc by 1000 hours, and say so in the segment.)
    pub(super) fn clock_time(
        &self,
        sample: &gst::Sample,
        buffer: &gst::Buffer,
    ) -> Option<gst::ClockTime> {
        let base = (*self.base_time.lock().unwrap_or_else(|p| p.into_inner()))?;
        let segment = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
        Some(base + segment.to_running_time(buffer.pts()?)?)
    }
}

//! The one capture + encode chain all viewers share, and the fan-out of its encoded frames to
//! the viewers' own pipelines.
//!
//! Every viewer has a separate GStreamer pipeline fed by an `appsrc` (see `session`), rather
//! than a `tee` branch: a tee stops the shared chain when any branch returns an error or
//! flushing, and here no viewer can push anything back into the capture chain. The fan-out
//! runs on the encoder's streaming thread, never blocks (appsrc queues and we cap its level),
//! and drops a stalled viewer's frames until the next key frame.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

mod fanout;
mod low;

use self::fanout::Fanout;
pub use self::fanout::Feed;
pub use self::low::ENCODER as LOW_ENCODER;
use self::low::LowBranch;
use super::controls::Controls;
use super::keyframe::{Decision, KeyframeThrottle, MIN_INTERVAL};
use super::{BusError, MediaError, Part};
use crate::adapt::rendition::Rendition;

/// How long to wait before rebuilding a capture chain that failed (a camera unplugged).
const RESTART_DELAY: Duration = Duration::from_secs(2);
/// How long the low rendition keeps running after its last viewer was moved off it: that
/// viewer is sent low frames until the main rendition's key frame reaches it.
const LOW_LINGER: Duration = Duration::from_secs(2);

/// Encoded video out of the capture chain so far: the measured frame rate and bitrate are
/// differences of two of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoOutput {
    pub frames: u64,
    pub bytes: u64,
}

/// Whether the capture chain delivers pictures. Viewers are told (`camera` on the control
/// channel) so a lost camera shows as lost, not as a frozen picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CameraState {
    Live,
    /// The chain failed (camera unplugged, source ended) and is being rebuilt.
    Lost,
}

/// The shared capture chain.
pub struct Capture {
    fanout: Arc<Fanout>,
    controls: Controls,
    keyframes: mpsc::Sender<Rendition>,
    /// The current chain's video appsink, where forced key-unit events start upstream.
    video_sink: Arc<Mutex<gst::Element>>,
    /// The current chain's low rendition (`low`), if it has one.
    low: Arc<Mutex<Option<LowBranch>>>,
    /// Whether the low rendition is to run (kept for a rebuilt chain).
    low_wanted: watch::Sender<bool>,
    clock: gst::Clock,
    has_audio: bool,
    /// Set to true to stop the chain; the supervisor answers on `stopped`.
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
    camera: watch::Sender<CameraState>,
}

impl Capture {
    /// Builds and starts `description` (a full launch line with `appsink name=video` and,
    /// when `has_audio`, `appsink name=audio`), and keeps it running: a chain that fails
    /// (camera unplugged) is logged and rebuilt after a pause. With `low_height`, a chain that
    /// names its encoder `pipe-encoder` also gets a low rendition of that height (`low`),
    /// which runs only while `set_low_wanted` says so.
    pub async fn start(
        description: String,
        has_audio: bool,
        low_height: Option<u32>,
    ) -> Result<Arc<Self>, MediaError> {
        let clock = gst::SystemClock::obtain();
        let fanout = Arc::new(Fanout::default());
        // Requests come from every viewer's gate (one a second each) and the fan-out; the task
        // coalesces them, so a full queue only loses requests that are already pending.
        let (keyframes, keyframe_rx) = mpsc::channel(16);
        let spec = Spec {
            description,
            has_audio,
            low_height,
        };
        let (first, low) = {
            let (spec, fanout, clock, k) = (
                spec.clone(),
                fanout.clone(),
                clock.clone(),
                keyframes.clone(),
            );
            let (chain, low) =
                tokio::task::spawn_blocking(move || build(&spec, &fanout, &clock, k)).await??;
            (RunningChain(chain), low)
        };
        let video_sink = Arc::new(Mutex::new(
            appsink(&first.0, "video")?.upcast::<gst::Element>(),
        ));
        let low = Arc::new(Mutex::new(low));
        tokio::spawn(keyframe_task(keyframe_rx, video_sink.clone(), low.clone()));
        let (low_wanted, low_wanted_rx) = watch::channel(false);
        tokio::spawn(low_task(low_wanted_rx, low.clone(), keyframes.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(false);
        let capture = Arc::new(Self {
            fanout,
            controls: Controls::new(video_sink.clone()),
            keyframes,
            video_sink,
            low,
            low_wanted,
            clock,
            has_audio,
            stop,
            stopped,
            camera: watch::channel(CameraState::Live).0,
        });
        tokio::spawn(supervise(first, spec, capture.clone(), stop_rx, stopped_tx));
        Ok(capture)
    }

    /// Sets the chain to NULL (the camera is released) and waits for it, at most 5 s.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let mut stopped = self.stopped.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), stopped.wait_for(|s| *s)).await;
    }

    pub fn clock(&self) -> &gst::Clock {
        &self.clock
    }

    /// Changes whenever the camera is lost or comes back.
    pub fn camera(&self) -> watch::Receiver<CameraState> {
        self.camera.subscribe()
    }

    pub fn camera_state(&self) -> CameraState {
        *self.camera.borrow()
    }

    pub fn has_audio(&self) -> bool {
        self.has_audio
    }

    pub fn attach(&self, feed: Arc<Feed>) {
        self.fanout
            .feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(feed);
    }

    pub fn detach(&self, feed: &Arc<Feed>) {
        self.fanout
            .feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|f| !Arc::ptr_eq(f, feed));
    }

    /// The RTP `profile-level-id` of what the encoder produces (`42e01f` for constrained
    /// baseline at level 3.1), once it has produced a frame.
    pub fn profile_level_id(&self) -> Option<String> {
        let caps = self
            .fanout
            .video_caps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let s = caps.structure(0)?;
        super::sdp::profile_level_id(s.get::<&str>("profile").ok()?, s.get::<&str>("level").ok()?)
    }

    /// The chain's live settings (overlay text, brightness, bitrate, size), where its
    /// description names the elements that carry them.
    pub fn controls(&self) -> &Controls {
        &self.controls
    }

    /// Encoded video frames and bytes the chain has produced so far.
    pub fn video_output(&self) -> VideoOutput {
        VideoOutput {
            frames: self.fanout.video_frames.load(Ordering::Relaxed),
            bytes: self.fanout.video_bytes.load(Ordering::Relaxed),
        }
    }

    pub fn viewer_count(&self) -> usize {
        self.fanout
            .feeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Asks a rendition's encoder for a key frame; requests are coalesced to one per 500 ms
    /// across all viewers of it.
    pub fn request_keyframe(&self, rendition: Rendition) {
        // A full queue already holds requests that will be served together: dropping is fine.
        let _ = self.keyframes.try_send(rendition);
    }

    /// A sender for callbacks on GStreamer threads (PLI/FIR from a viewer's RTCP).
    pub fn keyframe_requester(&self) -> mpsc::Sender<Rendition> {
        self.keyframes.clone()
    }

    /// Whether the chain has a low rendition (`low`).
    pub fn has_low(&self) -> bool {
        self.low.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Starts (with a key frame) or stops the low rendition's encoder. Stopping waits
    /// `LOW_LINGER`, so a viewer moving off it is not left without frames.
    pub fn set_low_wanted(&self, wanted: bool) {
        self.low_wanted.send_replace(wanted);
    }

    /// Encoded frames of the low rendition so far.
    pub fn low_frames(&self) -> u64 {
        self.fanout.low_frames.load(Ordering::Relaxed)
    }
}

/// What a chain is built from (again, after a failure).
#[derive(Clone)]
struct Spec {
    description: String,
    has_audio: bool,
    low_height: Option<u32>,
}

/// Builds the chain and hooks its appsinks to the fan-out (runs on a blocking thread). A
/// chain that does not start with its low rendition is tried once more without it: the low
/// rendition is an extra, and a second hardware encoder that cannot open (a V4L2 encoder
/// opens its device on the way to PLAYING) must not cost the camera its picture.
fn build(
    spec: &Spec,
    fanout: &Arc<Fanout>,
    clock: &gst::Clock,
    keyframes: mpsc::Sender<Rendition>,
) -> Result<(gst::Pipeline, Option<LowBranch>), MediaError> {
    match build_with(spec, spec.low_height, fanout, clock, &keyframes) {
        Err(error @ MediaError::DidNotStart { .. }) if spec.low_height.is_some() => {
            warn!(%error, "the chain did not start with a low rendition; trying without");
            build_with(spec, None, fanout, clock, &keyframes)
        }
        built => built,
    }
}

fn build_with(
    spec: &Spec,
    low_height: Option<u32>,
    fanout: &Arc<Fanout>,
    clock: &gst::Clock,
    keyframes: &mpsc::Sender<Rendition>,
) -> Result<(gst::Pipeline, Option<LowBranch>), MediaError> {
    let pipeline = gst::parse::launch(&spec.description)
        .map_err(|error| MediaError::Build {
            part: Part::Capture,
            error,
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| MediaError::NotAPipeline(Part::Capture))?;
    super::stamp::install(&pipeline);
    pipeline.use_clock(Some(clock));
    let low = low_height.and_then(|height| {
        low::insert(&pipeline, height)
            .inspect(|_| info!(height, "the chain has a low rendition"))
            .inspect_err(|error| warn!(%error, "the chain has no low rendition"))
            .ok()
    });
    fan_out(
        &appsink(&pipeline, "video")?,
        fanout,
        Rendition::Main,
        keyframes,
    );
    if let Some(low) = &low {
        fan_out(&low.sink, fanout, Rendition::Low, keyframes);
    }
    if spec.has_audio {
        let audio = appsink(&pipeline, "audio")?;
        let fan = fanout.clone();
        audio.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer_owned()
                        && let Some(clock_time) = fan.clock_time(&sample, &buffer)
                    {
                        let caps = sample.caps_owned();
                        for feed in fan.feeds() {
                            feed.push_audio(&buffer, caps.as_ref(), clock_time);
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    // Fix the base time before starting (no start time: GStreamer keeps it), so a frame's
    // clock time is known from the very first one.
    let base_time = clock.time();
    pipeline.set_start_time(gst::ClockTime::NONE);
    pipeline.set_base_time(base_time);
    *fanout.base_time.lock().unwrap_or_else(|p| p.into_inner()) = Some(base_time);
    if pipeline.set_state(gst::State::Playing).is_err() {
        let error = first_error(&pipeline);
        // Half started (a source that failed to open stays PAUSED): never dispose it so, which
        // GStreamer reports as a critical and which crashed the device while a camera stayed
        // unplugged (the rebuild failing every 2 s).
        let _ = pipeline.set_state(gst::State::Null);
        return Err(MediaError::DidNotStart {
            part: Part::Capture,
            error,
        });
    }
    Ok((pipeline, low))
}

/// Hands each encoded frame of `sink` (one rendition) to every viewer's feed.
fn fan_out(
    sink: &gst_app::AppSink,
    fanout: &Arc<Fanout>,
    rendition: Rendition,
    keyframes: &mpsc::Sender<Rendition>,
) {
    let (fan, keyframes) = (fanout.clone(), keyframes.clone());
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer_owned() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let caps = sample.caps_owned();
                if rendition == Rendition::Main {
                    fan.video_frames.fetch_add(1, Ordering::Relaxed);
                    fan.video_bytes
                        .fetch_add(buffer.size() as u64, Ordering::Relaxed);
                    let mut known = fan.video_caps.lock().unwrap_or_else(|p| p.into_inner());
                    if known.as_ref() != caps.as_ref() {
                        known.clone_from(&caps);
                    }
                } else {
                    fan.low_frames.fetch_add(1, Ordering::Relaxed);
                }
                let Some(clock_time) = fan.clock_time(&sample, &buffer) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let mut gaps = [false; 2];
                for feed in fan.feeds() {
                    if feed.push_video(rendition, &buffer, caps.as_ref(), clock_time) {
                        gaps[feed.keyframe_rendition() as usize] = true;
                    }
                }
                // Through the same throttle as every other request.
                for (wanted, r) in gaps.into_iter().zip([Rendition::Main, Rendition::Low]) {
                    if wanted {
                        let _ = keyframes.try_send(r);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn appsink(pipeline: &gst::Pipeline, name: &'static str) -> Result<gst_app::AppSink, MediaError> {
    pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| MediaError::NoAppsink(name))
}

/// The first error on the bus, for a start-up failure message.
fn first_error(pipeline: &gst::Pipeline) -> Option<BusError> {
    let bus = pipeline.bus()?;
    let msg = bus.timed_pop_filtered(
        gst::ClockTime::from_mseconds(100),
        &[gst::MessageType::Error],
    )?;
    match msg.view() {
        gst::MessageView::Error(e) => Some(BusError {
            error: e.error(),
            debug: e.debug().map(|d| d.to_string()),
        }),
        _ => None,
    }
}

/// The running chain, set to NULL when dropped: a supervisor task that is aborted, or dropped
/// with its runtime (the device failing to start after its chain did), must release the camera
/// and stop GStreamer's streaming threads, not dispose a PLAYING pipeline (GStreamer then
/// reports criticals and the process can crash).
struct RunningChain(gst::Pipeline);

impl Drop for RunningChain {
    fn drop(&mut self) {
        // A no-op when the supervisor already stopped it.
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Watches the capture bus; rebuilds the chain after an error, forever.
async fn supervise(
    mut pipeline: RunningChain,
    spec: Spec,
    capture: Arc<Capture>,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    // After a rebuild the camera counts as back with its first encoded frame.
    let mut back_after: Option<u64> = None;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        let Some(bus) = pipeline.0.bus() else { return };
        let mut messages = bus.stream();
        use futures::StreamExt;
        let failure = loop {
            let msg = tokio::select! {
                msg = messages.next() => msg,
                _ = poll.tick(), if back_after.is_some() => {
                    if back_after.is_some_and(|n| capture.fanout.video_frames.load(Ordering::Relaxed) > n) {
                        info!("the camera is back: frames flow again");
                        capture.camera.send_replace(CameraState::Live);
                        back_after = None;
                    }
                    continue;
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    let chain = pipeline.0.clone();
                    let _ = tokio::task::spawn_blocking(move || chain.set_state(gst::State::Null)).await;
                    let _ = stopped.send(true);
                    return;
                }
            };
            let Some(msg) = msg else {
                break "the capture bus closed".to_string();
            };
            match msg.view() {
                gst::MessageView::Error(e) => {
                    break format!(
                        "{}: {}",
                        e.src()
                            .map(|s| s.path_string().to_string())
                            .unwrap_or_default(),
                        e.error()
                    );
                }
                gst::MessageView::Eos(_) => break "the capture source ended".to_string(),
                gst::MessageView::Warning(w) => {
                    warn!(warning = %w.error(), "capture chain warning")
                }
                _ => {}
            }
        };
        error!(%failure, "capture chain failed; restarting in {} s", RESTART_DELAY.as_secs());
        capture.camera.send_replace(CameraState::Lost);
        back_after = Some(capture.fanout.video_frames.load(Ordering::Relaxed));
        let old = pipeline.0.clone();
        let _ = tokio::task::spawn_blocking(move || old.set_state(gst::State::Null)).await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(RESTART_DELAY) => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    let _ = stopped.send(true);
                    return;
                }
            }
            let (spec, fanout, clock, k) = (
                spec.clone(),
                capture.fanout.clone(),
                capture.clock.clone(),
                capture.keyframes.clone(),
            );
            match tokio::task::spawn_blocking(move || build(&spec, &fanout, &clock, k)).await {
                Ok(Ok((p, low))) => {
                    info!("capture chain restarted");
                    let (controls, chain) = (capture.controls.clone(), p.clone());
                    let _ = tokio::task::spawn_blocking(move || controls.reapply(&chain)).await;
                    if let Ok(sink) = appsink(&p, "video") {
                        *capture.video_sink.lock().unwrap_or_else(|e| e.into_inner()) =
                            sink.upcast();
                    }
                    *capture.low.lock().unwrap_or_else(|e| e.into_inner()) = low;
                    // The low rendition runs again if it is wanted (with a key frame).
                    capture.low_wanted.send_modify(|_| {});
                    pipeline = RunningChain(p);
                    break;
                }
                Ok(Err(e)) => warn!(error = %e, "capture chain still failing; retrying"),
                Err(e) => warn!(error = %e, "capture restart task failed"),
            }
        }
        // A chain rebuilt without its low rendition (its second encoder would not start)
        // serves everyone from the main one.
        let has_low = capture.has_low();
        for feed in capture.fanout.feeds() {
            if !has_low {
                feed.switch_to(Rendition::Main);
            }
            feed.state().waiting_for_keyframe = true;
        }
        capture.request_keyframe(Rendition::Main);
    }
}

/// Serves key-frame requests through one throttle per rendition, sending GstForceKeyUnit
/// upstream from that rendition's appsink to its encoder.
async fn keyframe_task(
    mut requests: mpsc::Receiver<Rendition>,
    main: Arc<Mutex<gst::Element>>,
    low: Arc<Mutex<Option<LowBranch>>>,
) {
    let mut throttles = [
        KeyframeThrottle::new(MIN_INTERVAL),
        KeyframeThrottle::new(MIN_INTERVAL),
    ];
    let mut due: [Option<Instant>; 2] = [None, None];
    loop {
        let fire = tokio::select! {
            request = requests.recv() => {
                let Some(rendition) = request else { return };
                let i = rendition as usize;
                match throttles[i].request(Instant::now()) {
                    Decision::Now => Some(rendition),
                    Decision::At(at) => { due[i] = Some(at); None }
                }
            }
            _ = sleep_until(due[0]) => {
                due[0] = None;
                throttles[0].fire_due(Instant::now()).then_some(Rendition::Main)
            }
            _ = sleep_until(due[1]) => {
                due[1] = None;
                throttles[1].fire_due(Instant::now()).then_some(Rendition::Low)
            }
        };
        let sink = match fire {
            None => continue,
            Some(Rendition::Main) => Some(main.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            Some(Rendition::Low) => low
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|l| l.sink.clone().upcast::<gst::Element>()),
        };
        if let Some(sink) = sink {
            debug!(rendition = ?fire, "forcing a key frame");
            let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            let _ = tokio::task::spawn_blocking(move || sink.send_event(event)).await;
        }
    }
}

/// Opens and closes the low rendition's valve as `wanted` says: at once (with a key frame)
/// to open, after `LOW_LINGER` to close.
async fn low_task(
    mut wanted: watch::Receiver<bool>,
    low: Arc<Mutex<Option<LowBranch>>>,
    keyframes: mpsc::Sender<Rendition>,
) {
    loop {
        if wanted.changed().await.is_err() {
            return;
        }
        let open = *wanted.borrow_and_update();
        if !open {
            // Unless it is wanted again meanwhile.
            if let Ok(Ok(())) = tokio::time::timeout(LOW_LINGER, wanted.changed()).await {
                wanted.mark_changed();
                continue;
            }
        }
        let Some(valve) = low
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| l.valve.clone())
        else {
            continue;
        };
        info!(
            open,
            "the low rendition {}",
            if open { "starts" } else { "stops" }
        );
        let _ = tokio::task::spawn_blocking(move || valve.set_property("drop", !open)).await;
        if open {
            let _ = keyframes.try_send(Rendition::Low);
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;

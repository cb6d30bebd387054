//! The demo UI's view of a camera, and that view of pipe's own capture chain.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::settings::{Settings, SettingsPatch};
use super::status::Output;
use crate::media::capture::Capture;
use crate::media::controls::ControlError;

/// What the UI needs from a camera. A trait so the router is tested without GStreamer.
pub trait Camera: Send + Sync + 'static {
    /// The settings now, read back from the camera; `None` fields it cannot change.
    fn settings(&self) -> BoxFuture<'_, Result<Settings, ControlError>>;
    /// Applies a validated change; the error says which setting failed and why.
    fn apply(&self, patch: SettingsPatch) -> BoxFuture<'_, Result<(), ControlError>>;
    /// Encoded video produced so far.
    fn output(&self) -> Output;
    fn viewers(&self) -> usize;
}

/// pipe's shared capture chain, through its live controls (`media::controls`).
pub struct CaptureCamera(pub Arc<Capture>);

impl Camera for CaptureCamera {
    fn settings(&self) -> BoxFuture<'_, Result<Settings, ControlError>> {
        Box::pin(async move {
            let values = self.0.controls().read().await?;
            Ok(Settings::from_controls(&values))
        })
    }

    fn apply(&self, patch: SettingsPatch) -> BoxFuture<'_, Result<(), ControlError>> {
        Box::pin(async move { self.0.controls().set(patch.to_controls()).await })
    }

    fn output(&self) -> Output {
        let out = self.0.video_output();
        Output {
            frames: out.frames,
            bytes: out.bytes,
        }
    }

    fn viewers(&self) -> usize {
        self.0.viewer_count()
    }
}

//! The viewer app in headless Chromium, as one person's browser: one Chromium per profile (a
//! profile is one browser identity: its certificate in IndexedDB, its pairings in
//! localStorage), with helpers to drive `window.pipeViewer` and count the frames it shows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use super::chromium::{Browser, Page};

/// Counts the frames from the camera the `<video>` element presents, across sessions (a new
/// stream in the same element keeps counting), and when the last one came (`Date.now()`, the
/// same clock in every browser on this machine). Idempotent: safe after every navigation.
/// Frames that came over RTP carry `rtpTimestamp`/`receiveTime`; Chromium also shows a 2x2
/// black frame of its own when a stream ends, which is not the camera's and not counted.
const COUNT_FRAMES: &str = r#"(() => {
  if (window.__frames) return true;
  const video = window.pipeViewer?.video;
  if (!video) return false;
  const t = window.__frames = { presented: 0, lastAt: 0, local: 0, meta: null };
  const onFrame = (_now, meta) => {
    if (meta.rtpTimestamp !== undefined || meta.receiveTime !== undefined) {
      t.presented += 1;
      t.lastAt = Date.now();
      t.meta = meta;
    } else {
      t.local += 1;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return true;
})()"#;

pub struct Viewer {
    pub browser: Browser,
    pub page: Page,
    pub profile: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Viewer {
    /// A new profile (a new browser identity) with the viewer open at `url`.
    pub async fn open(url: &str) -> Result<Viewer> {
        let dir = tempfile::tempdir()?;
        let mut viewer = Self::open_in(dir.path(), url, &[]).await?;
        viewer._dir = Some(dir);
        Ok(viewer)
    }

    /// An existing profile (the same browser, restarted) with extra Chromium flags.
    pub async fn open_in(profile: &Path, url: &str, flags: &[&str]) -> Result<Viewer> {
        let browser = Browser::launch_with(profile, flags).await?;
        let page = browser.new_page(url).await?;
        let viewer = Viewer {
            browser,
            page,
            profile: profile.to_owned(),
            _dir: None,
        };
        viewer.count_frames().await?;
        Ok(viewer)
    }

    /// Opens `url` in the same tab (a changed fragment only is a same-document navigation).
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.page.goto(url).await?;
        self.count_frames().await
    }

    async fn count_frames(&self) -> Result<()> {
        if self.eval("location.href").await? == "about:blank" {
            return Ok(());
        }
        self.page
            .wait_for(COUNT_FRAMES, Duration::from_secs(10))
            .await
            .context("installing the frame counter")?;
        Ok(())
    }

    pub async fn eval(&self, js: &str) -> Result<Value> {
        self.page.eval(js).await
    }

    pub async fn wait_for(&self, js: &str, timeout: Duration) -> Result<Value> {
        self.page.wait_for(js, timeout).await
    }

    /// Frames presented so far, and when the last one was (ms since the epoch, 0: none yet).
    pub async fn frames(&self) -> Result<(u64, u64)> {
        let v = self.eval("window.__frames").await?;
        Ok((
            v["presented"].as_u64().unwrap_or(0),
            v["lastAt"].as_u64().unwrap_or(0),
        ))
    }

    /// Waits until `more` frames beyond the current count have been presented.
    pub async fn watching(&self, more: u64, timeout: Duration) -> Result<u64> {
        let (now, _) = self.frames().await?;
        let js = format!(
            "window.__frames.presented >= {} && window.__frames.presented",
            now + more
        );
        let v = self
            .wait_for(&js, timeout)
            .await
            .with_context(|| format!("{more} more frames presented"))?;
        Ok(v.as_u64().unwrap_or(0))
    }

    /// The viewer's own decoder count for the live session (null between sessions).
    pub async fn frames_decoded(&self) -> Result<Value> {
        Ok(self.eval("pipeViewer.stats()").await?["video"]["framesDecoded"].clone())
    }

    /// Sends a control request on the live session and returns the device's reply.
    pub async fn control(&self, request: Value) -> Result<Value> {
        self.eval(&format!("pipeViewer.control({request})")).await
    }

    /// Waits until the device has announced `role` (`"owner"`, `"borrower"`) for this browser.
    pub async fn wait_role(&self, role: &str, timeout: Duration) -> Result<Value> {
        let js = format!(
            "pipeViewer.access?.role === {} && pipeViewer.access",
            json!(role)
        );
        self.wait_for(&js, timeout)
            .await
            .with_context(|| format!("access as {role}"))
    }

    /// This browser's certificate fingerprint, `AB:CD:...`.
    pub async fn fingerprint(&self) -> Result<String> {
        let v = self
            .wait_for("pipeViewer.fingerprint", Duration::from_secs(10))
            .await?;
        Ok(v.as_str().context("a string")?.to_owned())
    }

    /// The message the viewer shows in the middle of the page.
    pub async fn status(&self) -> Result<String> {
        let v = self
            .eval("document.getElementById('status').textContent")
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the status message contains `text`.
    pub async fn wait_status(&self, text: &str, timeout: Duration) -> Result<String> {
        let js = format!(
            "document.getElementById('status').textContent.includes({0}) && document.getElementById('status').textContent",
            json!(text)
        );
        let v = self.wait_for(&js, timeout).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// The fragment of the page's address, without `#`.
    pub async fn fragment(&self) -> Result<String> {
        let v = self.eval("location.hash.slice(1)").await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// The page's console, for failure messages.
    pub fn console(&self) -> String {
        self.page.console_log().join("\n")
    }

    /// Closes the page, so the viewer stops reconnecting, and the browser.
    pub async fn close(self) -> Result<()> {
        self.page.close().await?;
        drop(self.browser);
        Ok(())
    }
}

/// `AB:CD:EF:01` of a full `AB:CD:...` fingerprint, as the owner's list shows it.
pub fn short(fingerprint: &str) -> String {
    fingerprint.chars().take(11).collect()
}

/// `ensure!` for two frame-count samples taken after access ended.
pub fn ensure_flat(what: &str, first: u64, second: u64) -> Result<()> {
    ensure!(
        first == second,
        "{what}: frames still presented after access ended ({first} then {second})"
    );
    Ok(())
}

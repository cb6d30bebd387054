//! A small built-in camera settings UI, served on 127.0.0.1 only, for the virtual webcam: it
//! is the default camera UI upstream the device proxies to browsers (docs/proxy.md), so a new
//! user sees a real camera UI through the proxy, and the proxy's tests have one that does what
//! camera UIs do: a server-rendered page with absolute and relative links, a form POST
//! answered by `303 See Other`, a JSON API, a WebSocket pushing live status and a cookie the
//! page's script reads.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the settings page; sets `demo_visits=N` (counted up from the request's cookie) |
//! | `POST /settings` | form-urlencoded change; `303` to `/?saved=1`, or the page with an error |
//! | `GET`, `PUT /api/settings` | the settings as JSON; a partial JSON change |
//! | `GET /api/status` | what the WebSocket pushes, once |
//! | `GET /ws/status` | WebSocket: `{fps, bitrate_kbps, viewers, settings, supported}` every second and on each change |
//! | `GET /static/{style.css,app.js,logo.svg}` | assets |
//!
//! Settings (JSON and form names): `overlay_text` (at most 64 characters), `brightness`
//! (0..=100 %, 50 is neutral), `resolution` (`640x360`, `1280x720`, `1920x1080`),
//! `bitrate_kbps` (100..=20000). A setting the chain cannot change is `null` in JSON and
//! disabled on the page.
//!
//! Stable element ids, for browser tests:
//! - the form `#settings-form` (`data-supported`: the changeable settings, space-separated),
//!   its controls `#overlay-text`, `#brightness` (with `#brightness-value`), `#resolution`,
//!   `#bitrate`, the buttons `#save` (submits the form) and `#apply-live` (PUT by `fetch`,
//!   result in `#apply-result`);
//! - `#saved-banner` (only after a save), `#error` (only after a refused change),
//!   `#unsupported` (one `li[data-setting]` per setting this chain cannot change);
//! - live status from the WebSocket: `#status-connection` (`connecting`, `live`, `closed`),
//!   `#status-fps`, `#status-bitrate`, `#status-viewers`, `#status-overlay`, and
//!   `#status-updates` (messages received so far);
//! - the cookie: `#server-visits` (the count the server set) and `#cookie-visits` (what
//!   `document.cookie` says, filled in by `app.js`);
//! - `#logo` (absolute `/static/logo.svg`), `#api-link` (relative `api/settings`).
//!
//! `window.demoUi` holds the last status (`status`), the count of updates (`updates`) and
//! `apply(patch)` (a `PUT /api/settings`, resolving to the response's JSON).

pub mod camera;
pub mod page;
pub mod settings;
pub mod status;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

pub use camera::{Camera, CaptureCamera};
use settings::{Settings, SettingsError, SettingsPatch};
use status::{RateMeter, Status};

use crate::media::controls::ControlError;

const STYLE_CSS: &str = include_str!("assets/style.css");
const APP_JS: &str = include_str!("assets/app.js");
const LOGO_SVG: &str = include_str!("assets/logo.svg");

/// Largest request body: a settings form is a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;
/// Status sockets at once; each costs a task and a JSON encoding a second. A camera UI has a
/// handful of users; more is a leak or abuse.
const MAX_STATUS_SOCKETS: usize = 32;
/// Largest message a status socket accepts (it expects none but pings).
const MAX_INCOMING: usize = 4096;
/// A status push that takes longer is a stalled client: it is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DemoUiError {
    #[error("cannot listen on 127.0.0.1:{port} for the demo camera UI (ui.demo_port): {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    #[error(transparent)]
    Camera(#[from] ControlError),
}

impl DemoUiError {
    fn status_code(&self) -> StatusCode {
        match self {
            DemoUiError::Invalid(_) => StatusCode::BAD_REQUEST,
            DemoUiError::Camera(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DemoUiError::Bind { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The running UI.
pub struct DemoUi {
    /// `http://127.0.0.1:PORT/`.
    pub url: url::Url,
    /// The server; it ends after `shutdown` turns true and its connections close.
    pub task: tokio::task::JoinHandle<()>,
}

/// What every handler shares.
pub struct Shared {
    camera: Arc<dyn Camera>,
    status: watch::Sender<Status>,
    sockets: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub fn new(
        camera: Arc<dyn Camera>,
        settings: Settings,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let mut status = Status::default();
        status.set_settings(settings);
        Arc::new(Self {
            camera,
            status: watch::Sender::new(status),
            sockets: Arc::new(Semaphore::new(MAX_STATUS_SOCKETS)),
            shutdown,
        })
    }
}

/// Serves the UI on 127.0.0.1:`port` (0: any free port) until `shutdown`, and samples the
/// camera's status once a second.
pub async fn start(
    port: u16,
    camera: Arc<dyn Camera>,
    shutdown: watch::Receiver<bool>,
) -> Result<DemoUi, DemoUiError> {
    let bind = |source| DemoUiError::Bind { port, source };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(bind)?;
    let addr = listener.local_addr().map_err(bind)?;
    let settings = camera.settings().await.unwrap_or_else(|error| {
        warn!(%error, "cannot read the camera's settings");
        Settings::default()
    });
    let shared = Shared::new(camera, settings, shutdown.clone());
    tokio::spawn(sample(shared.clone(), shutdown.clone()));
    let mut stop = shutdown;
    let server = axum::serve(listener, app(shared)).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    let task = tokio::spawn(async move {
        if let Err(error) = server.await {
            warn!(%error, "the demo camera UI stopped");
        }
    });
    let url = url::Url::parse(&format!("http://{addr}/")).expect("an address makes a URL");
    info!(%url, "demo camera UI (loopback only)");
    Ok(DemoUi { url, task })
}

pub fn app(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/", get(index))
        .route("/settings", axum::routing::post(post_settings))
        .route("/api/settings", get(get_settings).put(put_settings))
        .route("/api/status", get(get_status))
        .route("/ws/status", get(ws_status))
        .route(
            "/static/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/static/logo.svg",
            get(|| async { asset(LOGO_SVG, "image/svg+xml") }),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// The page, counting this view in its cookie.
async fn index(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let visits = settings::visits(cookies(&headers)).saturating_add(1);
    let saved = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p == "saved=1"));
    let status = shared.status.borrow().clone();
    let html = page::render(&page::PageView {
        status: &status,
        visits,
        saved,
        error: None,
    });
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&settings::visits_cookie(visits)).expect("digits and ASCII"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Applies a change, then reads the settings back (also after a failure: the settings before
/// the failing one were applied) and pushes them to the status sockets.
async fn apply(shared: &Shared, patch: SettingsPatch) -> Result<Settings, DemoUiError> {
    patch.validate()?;
    let result = shared.camera.apply(patch).await;
    let settings = shared
        .camera
        .settings()
        .await
        .map_err(DemoUiError::Camera)?;
    shared
        .status
        .send_modify(|s| s.set_settings(settings.clone()));
    result.map_err(DemoUiError::Camera)?;
    Ok(settings)
}

async fn post_settings(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /settings takes application/x-www-form-urlencoded\n",
        )
            .into_response();
    }
    let result = match SettingsPatch::from_form(&body) {
        Ok(patch) => apply(&shared, patch).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(_) => Redirect::to("/?saved=1").into_response(),
        Err(error) => {
            let status = shared.status.borrow().clone();
            let html = page::render(&page::PageView {
                status: &status,
                visits: settings::visits(cookies(&headers)),
                saved: false,
                error: Some(&error.to_string()),
            });
            (error.status_code(), Html(html)).into_response()
        }
    }
}

fn json_error(status: StatusCode, error: &str) -> Response {
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

async fn get_settings(State(shared): State<Arc<Shared>>) -> Response {
    match shared.camera.settings().await {
        Ok(settings) => Json(settings).into_response(),
        Err(error) => json_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

async fn put_settings(
    State(shared): State<Arc<Shared>>,
    patch: Result<Json<SettingsPatch>, JsonRejection>,
) -> Response {
    let patch = match patch {
        Ok(Json(patch)) => patch,
        Err(rejection) => return json_error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    match apply(&shared, patch).await {
        Ok(settings) => Json(settings).into_response(),
        Err(error) => json_error(error.status_code(), &error.to_string()),
    }
}

async fn get_status(State(shared): State<Arc<Shared>>) -> Response {
    let status = shared.status.borrow().clone();
    Json(status).into_response()
}

async fn ws_status(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let Ok(permit) = shared.sockets.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many status connections\n",
        )
            .into_response();
    };
    let (status, shutdown) = (shared.status.subscribe(), shared.shutdown.clone());
    ws.max_message_size(MAX_INCOMING)
        .on_upgrade(move |socket| async move {
            let _permit = permit;
            let (tx, rx) = socket.split();
            push_status(tx, rx, status, shutdown).await;
        })
}

/// Sends the status now and on every change (the sampler changes it every second) until the
/// client leaves, stalls, or the device shuts down. Generic, so it is tested with channels.
async fn push_status<Tx, Rx, E>(
    mut tx: Tx,
    mut rx: Rx,
    mut status: watch::Receiver<Status>,
    mut shutdown: watch::Receiver<bool>,
) where
    Tx: Sink<Message> + Unpin,
    Rx: Stream<Item = Result<Message, E>> + Unpin,
{
    status.mark_changed();
    loop {
        tokio::select! {
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                // Serialised under the watch's lock, which is released before sending.
                let text = serde_json::to_string(&*status.borrow_and_update())
                    .expect("a status serialises");
                match tokio::time::timeout(SEND_TIMEOUT, tx.send(Message::Text(text.into()))).await {
                    Ok(Ok(())) => {}
                    _ => break,
                }
            }
            incoming = rx.next() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, tx.send(Message::Close(None))).await;
}

/// Measures the camera's output and re-reads its settings once a second, until shutdown.
async fn sample(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut meter = RateMeter::new(status::WINDOW);
    let mut tick = tokio::time::interval(status::SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
        }
        meter.record(Instant::now(), shared.camera.output());
        let settings = shared.camera.settings().await.ok();
        let (rates, viewers) = (meter.rates(), shared.camera.viewers());
        shared.status.send_modify(|s| {
            s.measured(rates, viewers);
            if let Some(settings) = settings {
                s.set_settings(settings);
            }
        });
    }
}

#[cfg(test)]
mod tests;

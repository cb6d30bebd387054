//! Headless Chromium driven over the Chrome DevTools Protocol (CDP), for end-to-end tests.
//!
//! One WebSocket to the browser carries everything: pages are attached with flattened
//! sessions (`Target.attachToTarget` with `flatten: true`), so each command and event names
//! its `sessionId` and a single reader task routes replies and console events. No HTTP
//! `/json` endpoints and no socket per page.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Chromium writes its DevTools port within a second or two; 20 s allows for a cold disk.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest wait for the reply to one command (an `eval` awaiting a promise included).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Console lines kept per page: enough to debug a failure, bounded against a chatty page.
const CONSOLE_LINES: usize = 2000;

const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox", // tests run as root in CI, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required", // <video> plays without a click
    "--remote-debugging-port=0", // Chromium picks a free port and writes it to the profile
];

/// Turns the viewer URL's hook parameters into `__pipeTestHooks`, and asks for the
/// `window.pipeViewer` handle tests read the viewer's state through.
const TEST_HOOKS: &str = r#"(() => {
  const query = new URLSearchParams(location.search);
  const hooks = { handle: true };
  for (const name of ['relay', 'cert_ttl_ms', 'renew_days', 'lend_secs', 'ui_chunks']) {
    if (query.has(name)) hooks[name] = query.get(name);
  }
  globalThis.__pipeTestHooks = hooks;
})();"#;

type WsSink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// A running Chromium. Dropping it kills the browser and its child processes.
pub struct Browser {
    process: Process,
    conn: Arc<Conn>,
    profile: PathBuf,
}

/// A tab, attached through its own CDP session.
pub struct Page {
    conn: Arc<Conn>,
    target_id: String,
    session_id: String,
}

impl Browser {
    /// Starts `$CHROMIUM` (default `/usr/bin/chromium`) with `profile_dir` as its profile and
    /// connects to its DevTools WebSocket.
    pub async fn launch(profile_dir: &Path) -> Result<Browser> {
        Self::launch_with(profile_dir, &[]).await
    }

    /// `launch` with extra command-line flags (e.g. `--host-resolver-rules=...`).
    pub async fn launch_with(profile_dir: &Path, extra_flags: &[&str]) -> Result<Browser> {
        let exe = std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into());
        std::fs::create_dir_all(profile_dir)?;
        let port_file = profile_dir.join("DevToolsActivePort");
        // A file left by an earlier run would name a dead port.
        let _ = std::fs::remove_file(&port_file);
        let log = File::create(profile_dir.join("chromium.log"))?;
        let child = Command::new(&exe)
            .args(FLAGS)
            .args(extra_flags)
            .arg(format!("--user-data-dir={}", profile_dir.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting {exe:?} (scripts/setup-deps test installs it; or set $CHROMIUM)")
            })?;
        let mut process = Process {
            child,
            killed: false,
        };

        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let ws_url = loop {
            if let Some(url) = read_port_file(&port_file) {
                break url;
            }
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "chromium exited ({status}) before DevTools was up:\n{}",
                    log_tail(profile_dir)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "no {} after {LAUNCH_TIMEOUT:?}:\n{}",
                    port_file.display(),
                    log_tail(profile_dir)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let (ws, _) = tokio::time::timeout(CALL_TIMEOUT, tokio_tungstenite::connect_async(&ws_url))
            .await
            .map_err(|_| anyhow!("connecting to {ws_url}: timed out"))?
            .with_context(|| format!("connecting to {ws_url}"))?;
        let (sink, stream) = ws.split();
        let conn = Arc::new(Conn {
            sink: tokio::sync::Mutex::new(sink),
            next_id: AtomicU64::new(1),
            pending: Mutex::default(),
            consoles: Mutex::default(),
            closed: AtomicBool::new(false),
            reader: Mutex::new(None),
        });
        let reader = tokio::spawn(read_loop(Arc::downgrade(&conn), stream));
        *conn.reader.lock().expect("reader lock") = Some(reader);
        // `process` moves into the Browser only now: on any early return above, its Drop
        // has already killed the half-started browser.
        Ok(Browser {
            process,
            conn,
            profile: profile_dir.to_owned(),
        })
    }

    /// Opens a new tab, attaches to it, starts collecting its console, loads `url` and waits
    /// for the load to complete.
    pub async fn new_page(&self, url: &str) -> Result<Page> {
        self.create_page(url, false).await
    }

    /// A page in a window of its own: visible beside the others, where a second tab of one
    /// window would be a background tab (its video frame callbacks throttled to none).
    pub async fn new_window(&self, url: &str) -> Result<Page> {
        self.create_page(url, true).await
    }

    async fn create_page(&self, url: &str, new_window: bool) -> Result<Page> {
        let created = self
            .conn
            .call(
                None,
                "Target.createTarget",
                json!({"url": "about:blank", "newWindow": new_window}),
            )
            .await?;
        let target_id = str_field(&created, "targetId")?;
        // Enabled before navigating, so messages logged while the page loads are kept.
        let page = Page::attach(&self.conn, target_id, &["Page.enable"]).await?;
        page.goto(url).await?;
        Ok(page)
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Kills the browser abruptly (SIGKILL, as a crash would): open peer connections vanish
    /// without a goodbye. Calls on its pages fail from then on.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// What Chromium printed to stdout/stderr so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(reader) = self.conn.reader.lock().expect("reader lock").take() {
            reader.abort();
        }
        // A Page that outlives its Browser then fails at once instead of timing out.
        self.conn.closed.store(true, Ordering::SeqCst);
        self.conn.lock_pending().clear();
        self.process.kill();
    }
}

impl Page {
    /// Navigates to `url` and waits until its document has loaded.
    pub async fn goto(&self, url: &str) -> Result<()> {
        let nav = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
            bail!("loading {url}: {err}");
        }
        // `location.href` guards against seeing the about:blank document that came before.
        let loaded = if url == "about:blank" {
            "document.readyState === 'complete'"
        } else {
            "document.readyState === 'complete' && location.href !== 'about:blank'"
        };
        self.wait_for(loaded, Duration::from_secs(20)).await?;
        Ok(())
    }

    /// Evaluates `js` in the page; a promise is awaited. The value comes back as JSON
    /// (`undefined` as null). A thrown exception becomes an error with its text.
    pub async fn eval(&self, js: &str) -> Result<Value> {
        let params = json!({
            "expression": js,
            "awaitPromise": true,
            "returnByValue": true,
            "userGesture": true,
        });
        let reply = self.call("Runtime.evaluate", params).await?;
        if let Some(exc) = reply.get("exceptionDetails") {
            let text = exc["exception"]["description"]
                .as_str()
                .or(exc["text"].as_str())
                .unwrap_or("exception");
            bail!("JS `{}` threw: {text}", short(js));
        }
        Ok(reply["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Evaluates `js_predicate` every 100 ms until it is truthy, and returns its value.
    /// Exceptions count as "not yet" (the page may still be setting up); the last one is
    /// reported on timeout, with the end of the console log.
    pub async fn wait_for(&self, js_predicate: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.eval(js_predicate).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => format!("last value {v}"),
                Err(e) => format!("last error {e:#}"),
            };
            if Instant::now() > deadline {
                let console = self.console_log();
                let tail = &console[console.len().saturating_sub(20)..];
                bail!(
                    "waited {timeout:?} for `{}`; {last}; console:\n{}",
                    short(js_predicate),
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Console messages, log entries and uncaught exceptions of this page so far.
    pub fn console_log(&self) -> Vec<String> {
        let consoles = self.conn.lock_consoles();
        consoles
            .get(&self.session_id)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A cross-origin iframe of this browser whose current URL starts with `url_prefix`, as a
    /// `Page` of its own (site isolation puts it in its own target): `eval` runs in the frame.
    /// Its console is collected from then on. Do not `close` it: that closes the frame's target.
    pub async fn frame(&self, url_prefix: &str, timeout: Duration) -> Result<Page> {
        let deadline = Instant::now() + timeout;
        let target_id = loop {
            let targets = self.conn.call(None, "Target.getTargets", json!({})).await?;
            let found = targets["targetInfos"].as_array().and_then(|all| {
                all.iter().find(|t| {
                    t["type"] == "iframe"
                        && t["url"].as_str().is_some_and(|u| u.starts_with(url_prefix))
                })
            });
            if let Some(t) = found {
                break str_field(t, "targetId")?;
            }
            if Instant::now() > deadline {
                bail!("no iframe target at {url_prefix} within {timeout:?}: {targets}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Page::attach(&self.conn, target_id, &[]).await
    }

    /// Attaches to a target (a tab or a cross-origin frame), starts collecting its console,
    /// and enables the runtime, the log and the `extra` domains.
    async fn attach(conn: &Arc<Conn>, target_id: String, extra: &[&str]) -> Result<Page> {
        let attach = json!({"targetId": target_id, "flatten": true});
        let attached = conn.call(None, "Target.attachToTarget", attach).await?;
        let session_id = str_field(&attached, "sessionId")?;
        conn.lock_consoles()
            .insert(session_id.clone(), VecDeque::new());
        let page = Page {
            conn: conn.clone(),
            target_id,
            session_id,
        };
        for domain in ["Runtime.enable", "Log.enable"].iter().chain(extra) {
            page.call(domain, json!({})).await?;
        }
        // The viewer's test hooks: set here, before any of the page's scripts run, never by a
        // link (web/viewer.js reads `__pipeTestHooks` only). Tests still write them as query
        // parameters of the viewer's URL; this turns those into hooks.
        page.call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": TEST_HOOKS }),
        )
        .await?;
        Ok(page)
    }

    /// Sends a raw CDP command to this page's session (e.g. `ServiceWorker.stopAllWorkers`).
    pub async fn command(&self, method: &str, params: Value) -> Result<Value> {
        self.call(method, params).await
    }

    pub async fn close(self) -> Result<()> {
        let target = json!({"targetId": self.target_id});
        self.conn.call(None, "Target.closeTarget", target).await?;
        self.conn.lock_consoles().remove(&self.session_id);
        Ok(())
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.conn.call(Some(&self.session_id), method, params).await
    }
}

/// The CDP connection: commands go out through `sink`; the reader task resolves `pending`
/// by id and files console events under their session.
struct Conn {
    sink: tokio::sync::Mutex<WsSink>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value>>>>,
    consoles: Mutex<HashMap<String, VecDeque<String>>>,
    closed: AtomicBool,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Conn {
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            msg["sessionId"] = json!(session);
        }
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, tx);
        // Checked after inserting: the reader sets `closed` before draining `pending`, so
        // either it fails this call or we see the flag.
        if self.closed.load(Ordering::SeqCst) {
            self.lock_pending().remove(&id);
            bail!("{method}: browser connection closed");
        }
        let sent = self
            .sink
            .lock()
            .await
            .send(Message::text(msg.to_string()))
            .await;
        if let Err(e) = sent {
            self.lock_pending().remove(&id);
            return Err(e).with_context(|| format!("sending {method}"));
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply.with_context(|| method.to_owned()),
            Ok(Err(_)) => bail!("{method}: browser connection closed"),
            Err(_) => {
                self.lock_pending().remove(&id);
                bail!("{method}: no reply within {CALL_TIMEOUT:?}")
            }
        }
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Result<Value>>>> {
        self.pending.lock().expect("pending lock poisoned")
    }

    fn lock_consoles(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<String>>> {
        self.consoles.lock().expect("consoles lock poisoned")
    }

    /// Routes one message from the browser.
    fn dispatch(&self, msg: Value) {
        if let Some(id) = msg["id"].as_u64() {
            let reply = match msg.get("error") {
                Some(err) => Err(anyhow!("CDP error: {err}")),
                None => Ok(msg["result"].clone()),
            };
            if let Some(tx) = self.lock_pending().remove(&id) {
                let _ = tx.send(reply); // the caller may have timed out
            }
            return;
        }
        let (Some(session), Some(line)) = (msg["sessionId"].as_str(), console_line(&msg)) else {
            return;
        };
        if let Some(lines) = self.lock_consoles().get_mut(session) {
            if lines.len() == CONSOLE_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }
}

async fn read_loop(
    conn: std::sync::Weak<Conn>,
    mut stream: impl futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
    + Unpin,
) {
    while let Some(Ok(msg)) = stream.next().await {
        let Some(conn) = conn.upgrade() else { return };
        if let Message::Text(text) = msg
            && let Ok(value) = serde_json::from_str::<Value>(text.as_str())
        {
            conn.dispatch(value);
        }
    }
    if let Some(conn) = conn.upgrade() {
        conn.closed.store(true, Ordering::SeqCst);
        conn.lock_pending().clear(); // dropping the senders fails the waiting calls
    }
}

/// One readable line for a console event, or None for other events.
fn console_line(msg: &Value) -> Option<String> {
    let p = &msg["params"];
    match msg["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let args: Vec<String> = p["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| match &a["value"] {
                    Value::String(s) => s.clone(),
                    Value::Null => a["description"].as_str().unwrap_or("undefined").to_owned(),
                    v => v.to_string(),
                })
                .collect();
            Some(format!(
                "[console.{}] {}",
                p["type"].as_str().unwrap_or("log"),
                args.join(" ")
            ))
        }
        "Log.entryAdded" => {
            let e = &p["entry"];
            let url = e["url"]
                .as_str()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            Some(format!(
                "[log.{}] {}{url}",
                e["level"].as_str().unwrap_or("?"),
                e["text"].as_str().unwrap_or("")
            ))
        }
        "Runtime.exceptionThrown" => {
            let d = &p["exceptionDetails"];
            let text = d["exception"]["description"]
                .as_str()
                .or(d["text"].as_str())
                .unwrap_or("?");
            Some(format!("[exception] {text}"))
        }
        _ => None,
    }
}

/// The browser process. Killing it also kills its children (renderers, GPU, network), which
/// would otherwise linger for a second or two after the parent dies.
struct Process {
    child: Child,
    killed: bool,
}

impl Process {
    fn kill(&mut self) {
        if self.killed {
            return;
        }
        self.killed = true;
        // Collected first: once the parent is dead its children are re-parented.
        let children = descendants(self.child.id());
        let _ = self.child.kill();
        if !children.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(children.iter().map(u32::to_string))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// All processes below `root`, from /proc/*/stat.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and ')', so split after the last.
        let after = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
        if let Some(ppid) = after
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u32>().ok())
        {
            parent_of.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|&&(_, pp)| pp == parent)
                .map(|&(p, _)| p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// `ws://127.0.0.1:PORT/devtools/browser/ID` once Chromium has written the whole file.
fn read_port_file(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let port: u16 = lines.next()?.trim().parse().ok()?;
    let ws_path = lines.next()?.trim();
    ws_path
        .starts_with("/devtools/browser/")
        .then(|| format!("ws://127.0.0.1:{port}{ws_path}"))
}

fn log_tail(profile_dir: &Path) -> String {
    let log = std::fs::read_to_string(profile_dir.join("chromium.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn str_field(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no {key} in {v}"))
}

/// JavaScript truthiness of a returned value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `js` cut to a length that fits in an error message.
fn short(js: &str) -> String {
    match js.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &js[..i]),
        None => js.to_owned(),
    }
}

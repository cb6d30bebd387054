// The demo camera's page script: live status from the WebSocket, the visit cookie as this
// page sees it, and settings applied with fetch (the form also works without it).
'use strict';

const $ = (id) => document.getElementById(id);
const demoUi = (window.demoUi = { status: null, updates: 0, apply });

function showCookie() {
  const match = document.cookie.match(/(?:^|;\s*)demo_visits=(\d+)/);
  $('cookie-visits').textContent = match ? match[1] : 'none';
}

function showStatus(status) {
  demoUi.status = status;
  demoUi.updates += 1;
  $('status-fps').textContent = status.fps.toFixed(1);
  $('status-bitrate').textContent = String(status.bitrate_kbps);
  $('status-viewers').textContent = String(status.viewers);
  $('status-overlay').textContent = status.settings.overlay_text ?? '';
  $('status-updates').textContent = String(demoUi.updates);
}

function connect() {
  // Same host and path as the page, ws: or wss: as the page is http: or https:.
  const url = new URL('/ws/status', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(url);
  socket.onopen = () => { $('status-connection').textContent = 'live'; };
  socket.onmessage = (event) => showStatus(JSON.parse(event.data));
  socket.onclose = () => {
    $('status-connection').textContent = 'closed';
    setTimeout(connect, 2000);
  };
}

/** PUT /api/settings with a partial change; resolves to the response's JSON. */
async function apply(patch) {
  const response = await fetch('/api/settings', {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(patch),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

/** The enabled form controls as a change (numbers as numbers). */
function formPatch() {
  const patch = {};
  for (const el of $('settings-form').elements) {
    if (!el.name || el.disabled || el.type === 'submit') continue;
    patch[el.name] = el.type === 'range' || el.type === 'number' ? Number(el.value) : el.value;
  }
  return patch;
}

$('brightness').addEventListener('input', (e) => {
  $('brightness-value').textContent = e.target.value;
});
$('apply-live').addEventListener('click', async () => {
  const result = $('apply-result');
  result.textContent = 'applying…';
  try {
    await apply(formPatch());
    result.textContent = 'applied';
  } catch (error) {
    result.textContent = `not applied: ${error.message}`;
  }
});

showCookie();
connect();

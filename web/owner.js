// pipe viewer: the owner's "Share" panel. Lend the camera (a single-use link and its QR
// code, minted on the device), see who has access, revoke a borrower. Everything goes over
// the control channel; nothing here is shown to borrowers.

const DURATIONS = [ // seconds, label
  [15 * 60, '15 minutes'],
  [3600, '1 hour'],
  [24 * 3600, '1 day'],
  [7 * 24 * 3600, '7 days'],
];
/** The list changes when borrowers come and go; refreshed this often while it is shown. */
const REFRESH_MS = 5_000;

const $ = (id) => document.getElementById(id);

/**
 * Wires the panel in index.html to `request` (message -> Promise of the device's reply).
 * Returns `update(access)`, called with every `access` announcement (or null between sessions).
 * `extraDurations` (`[secs, label]` pairs) go before the usual lending choices.
 */
export function ownerPanel(request, { extraDurations = [] } = {}) {
  const ui = {
    open: $('share-open'), panel: $('share'), close: $('share-close'), form: $('lend-form'),
    secs: $('lend-secs'), scope: $('lend-scope'), lent: $('lent'), qr: $('lent-qr'), link: $('lent-link'),
    copy: $('lent-copy'), warning: $('lent-warning'), error: $('share-error'), grants: $('grants-body'),
  };
  const durations = [...extraDurations, ...DURATIONS];
  for (const [secs, label] of durations) ui.secs.append(new Option(label, String(secs)));
  ui.secs.value = String(3600);

  let owner = false;
  let timer = 0;

  const showError = (message) => {
    ui.error.textContent = message ?? '';
    ui.error.hidden = !message;
  };

  async function ask(message) {
    try {
      const reply = await request(message);
      if (reply.type === 'error') throw new Error(reply.message ?? 'refused');
      showError(null);
      return reply;
    } catch (err) {
      showError(`The camera refused: ${err.message}`);
      return null;
    }
  }

  async function refresh() {
    const reply = await ask({ type: 'grants' });
    if (reply?.type === 'grants' && Array.isArray(reply.grants)) renderGrants(ui.grants, reply.grants, revoke);
  }

  async function revoke(id) {
    if (await ask({ type: 'revoke', id })) await refresh();
  }

  function show(visible) {
    ui.panel.hidden = !visible;
    ui.open.setAttribute('aria-expanded', String(visible));
    clearInterval(timer);
    if (visible) {
      refresh();
      timer = setInterval(refresh, REFRESH_MS);
    }
  }

  ui.open.addEventListener('click', () => show(ui.panel.hidden));
  ui.close.addEventListener('click', () => show(false));
  ui.form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const reply = await ask({ type: 'lend', scope: ui.scope.value, secs: Number(ui.secs.value) });
    if (reply?.type !== 'lent') return;
    ui.link.value = reply.link;
    // The SVG is the device's own rendering; as an image it can run nothing.
    ui.qr.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(reply.qr_svg)}`;
    ui.warning.textContent = reply.warning ?? '';
    ui.warning.hidden = !reply.warning;
    ui.lent.hidden = false;
    refresh();
  });
  ui.copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(ui.link.value);
      ui.copy.textContent = 'Copied';
    } catch { // no clipboard (not a secure context): leave it selected for the owner
      ui.link.select();
      ui.copy.textContent = 'Press Ctrl+C';
    }
    setTimeout(() => { ui.copy.textContent = 'Copy'; }, 2000);
  });

  return function update(access) {
    const isOwner = access?.role === 'owner';
    if (isOwner === owner) return;
    owner = isOwner;
    ui.open.hidden = !owner;
    if (!owner) {
      show(false);
      ui.lent.hidden = true;
    }
  };
}

function renderGrants(tbody, grants, revoke) {
  const rows = grants.map((g) => {
    const tr = document.createElement('tr');
    const cells = [
      g.role, g.scope, g.fingerprint,
      g.expires_at == null ? 'never' : relative(g.expires_at),
      g.last_seen == null ? '–' : relative(g.last_seen),
      g.connected ? 'connected' : '',
    ];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = String(text ?? '');
      tr.append(td);
    }
    const action = document.createElement('td');
    if (g.role === 'borrower') {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = 'Revoke';
      button.addEventListener('click', () => { button.disabled = true; revoke(g.id); });
      action.append(button);
    }
    tr.append(action);
    tr.dataset.id = g.id;
    return tr;
  });
  tbody.replaceChildren(...rows);
}

const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

/** Unix seconds -> "in 2 hours", "5 minutes ago". */
export function relative(unixSecs) {
  const secs = unixSecs - Date.now() / 1000;
  const abs = Math.abs(secs);
  const [value, unit] = abs < 60 ? [secs, 'second'] : abs < 3600 ? [secs / 60, 'minute']
    : abs < 86400 ? [secs / 3600, 'hour'] : [secs / 86400, 'day'];
  return relativeFormat.format(Math.round(value), unit);
}

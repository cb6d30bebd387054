// The viewer's test seam in test builds (`test-hooks` cargo feature): served as /hooks.js in
// place of web/hooks.js. The harness (tests/support/chromium.rs) sets `__pipeTestHooks` over
// DevTools before the page's scripts run; no link can, so a link cannot shorten a visitor's
// certificate lifetime or force relay-only ICE even on a test build.

const hooks = globalThis.__pipeTestHooks ?? {};

/** A positive number from the hooks, or undefined (the viewer keeps its own value). */
const positive = (name) => (Number(hooks[name]) > 0 ? Number(hooks[name]) : undefined);

const lendSecs = positive('lend_secs');

/** Values that replace the viewer's own; absent ones leave the viewer's in place. */
export const overrides = Object.freeze({
  forceRelay: hooks.relay === '1',
  certTtlMs: positive('cert_ttl_ms'),
  renewDays: positive('renew_days'),
  // A short lending choice ahead of the usual ones (`lend_secs=3`).
  lendDurations: lendSecs ? [[lendSecs, `${lendSecs} seconds (testing)`]] : [],
  uiChunks: hooks.ui_chunks === '1',
});

/** Publishes the viewer's state as `window.pipeViewer`, which the harness reads. */
export function expose(viewer) {
  if (hooks.handle) window.pipeViewer = viewer;
}

// pipe camera UI, boot page (docs/ui-proxy-browser.md): served by the device for
// `/__pipe/boot?to=PATH` and for every camera path asked without the service worker (first
// load, hard reload). It registers the worker for the whole origin, gets a MessagePort to the
// viewer page (the parent frame, strictly by origin) for it, and then loads the camera's page.
(() => {
  const { viewerOrigins, requestPort } = globalThis.pipeUi;
  const WORKER_TIMEOUT_MS = 10_000;

  const say = (text) => {
    const p = document.getElementById('boot-status');
    if (p) p.textContent = text;
  };

  /** Where to go: `?to=` on the boot address, else the address this page answered. */
  function target() {
    if (location.pathname !== '/__pipe/boot') return location.pathname + location.search + location.hash;
    const to = new URLSearchParams(location.search).get('to') ?? '/';
    // A path of the camera's on this origin, nothing else (no `//host`, no `/__pipe/`).
    const url = new URL(to, location.origin);
    const ok = url.origin === location.origin && !url.pathname.startsWith('/__pipe/') && !to.startsWith('//');
    return ok ? url.pathname + url.search + url.hash : '/';
  }

  function activated(registration) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the service worker did not start')), WORKER_TIMEOUT_MS);
      const check = () => {
        if (registration.active?.state === 'activated') {
          clearTimeout(timer);
          resolve(registration.active);
          return true;
        }
        return false;
      };
      if (check()) return;
      const worker = registration.installing ?? registration.waiting ?? registration.active;
      worker?.addEventListener('statechange', check);
      registration.addEventListener('updatefound', () => registration.installing?.addEventListener('statechange', check));
    });
  }

  /** Hands `port` to the worker and waits for its receipt, so the next load finds it. */
  function handOver(worker, port, chunks) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the service worker did not take the port')), WORKER_TIMEOUT_MS);
      navigator.serviceWorker.addEventListener('message', function onMessage(ev) {
        if (ev.data?.pipe !== 'port-ok') return;
        navigator.serviceWorker.removeEventListener('message', onMessage);
        clearTimeout(timer);
        resolve();
      });
      navigator.serviceWorker.startMessages?.();
      worker.postMessage({ pipe: 'port', chunks }, [port]);
    });
  }

  async function boot() {
    if (!('serviceWorker' in navigator) || !window.isSecureContext) {
      say("This browser cannot show the camera's settings here (no service worker: open the viewer over HTTPS or on this computer).");
      return;
    }
    const origins = viewerOrigins();
    if (window.parent === window || !origins.length) {
      say("Open the camera's settings from its viewer page.");
      return;
    }
    const registration = await navigator.serviceWorker.register('/__pipe/sw.js', { scope: '/' });
    const worker = await activated(registration);
    const { port, chunks } = await requestPort(origins);
    await handOver(worker, port, chunks);
    console.info('pipe camera UI: service worker ready, loading', target());
    location.replace(target());
  }

  boot().catch((err) => {
    console.error('pipe camera UI: boot failed', err);
    say(`The camera's settings could not be loaded (${err.message}). Close and open them again.`);
  });
})();

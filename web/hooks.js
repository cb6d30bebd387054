// The viewer's test seam, as the camera serves it: no overrides, no handle. Builds with the
// `test-hooks` cargo feature serve testkit/web/hooks.js under this name instead; only
// `cargo test` turns that feature on (Cargo.toml). Release builds, the container image,
// meta-pipe and Buildroot never do, so no page a user loads can be told to shorten its
// certificate, force relay-only ICE or expose its state.

/** Values that replace the viewer's own (none here). */
export const overrides = Object.freeze({});

/** Publishes the viewer's state for a test harness (nothing here). */
export function expose() {}

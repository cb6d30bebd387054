#!/usr/bin/env bash
# Smoke test of the container image: build it, run it with the host network inside a private
# loopback-only namespace (scripts/netns, so ICE stays on 127.0.0.0/8), wait until its health
# check passes, run `pipe doctor` in it, and check that headless Chromium, claiming the device
# with the link the container printed, is shown frames (tests/docker_viewer.rs).
#
#   tests/docker/smoke.sh          (as root; slow: the first build compiles every crate)
#
# Environment:
#   DOCKER=podman|docker   the engine. Default: docker when its daemon answers, else podman
#                          (prepared, with local base images, by ../shared/tools/
#                          container-engine.sh when that exists). The viewer step needs podman:
#                          docker's daemon puts a --network=host container in its own network
#                          namespace, not in this script's loopback-only one.
#   PIPE_IMAGE             the tag to build and run (default localhost/pipe:smoke)
#   BUILDER_IMAGE, RUNTIME_IMAGE   the Dockerfile's base images (rust:bookworm, debian:bookworm)
#   PIPE_DOCKER_VENDOR=1   `cargo vendor` into the build context first, for builders that
#                          cannot reach crates.io (vendor/ is removed afterwards, never committed)
#   PIPE_SMOKE_SKIP_BUILD=1  run an image built before
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'smoke: %s\n' "$*" >&2; }
took() { printf '%ss' $((SECONDS - $1)); }

# Inside the namespace: run the container, wait for health, doctor, viewer.
if [ "${1:-}" = --inside ]; then
  engine=$2 image=$3
  name=pipe-smoke-$$
  trap '"$engine" rm -f -v "$name" >/dev/null 2>&1 || true' EXIT
  start=$SECONDS
  "$engine" run -d --name "$name" --network=host "$image" >/dev/null
  log "container $name started; waiting for its health check"
  healthy=
  for _ in $(seq 1 60); do
    if [ "$("$engine" inspect -f '{{.State.Running}}' "$name")" != true ]; then
      "$engine" logs "$name" >&2 || true
      log "FAIL: the container stopped"
      exit 1
    fi
    if [ "$engine" = podman ]; then
      # podman runs health checks from systemd timers, absent here: run it now.
      podman healthcheck run "$name" >/dev/null 2>&1 && healthy=1
    else
      [ "$(docker inspect -f '{{.State.Health.Status}}' "$name")" = healthy ] && healthy=1
    fi
    [ -n "$healthy" ] && break
    sleep 2
  done
  if [ -z "$healthy" ]; then
    "$engine" logs "$name" >&2 || true
    log "FAIL: not healthy after 120 s"
    exit 1
  fi
  log "healthy after $(took "$start")"

  log "pipe doctor in the container:"
  "$engine" exec "$name" pipe doctor
  log "pipe doctor: exit 0"

  link=$("$engine" logs "$name" 2>/dev/null | grep -o 'http://[^ ]*claim=[^ ]*' | head -n1 || true)
  if [ -z "$link" ]; then
    "$engine" logs "$name" >&2 || true
    log "FAIL: the container printed no claim link"
    exit 1
  fi
  start=$SECONDS
  log "viewer: headless Chromium opens the claim link"
  PIPE_TEST_DEVICE_URL=$link cargo test --locked --offline --test docker_viewer -- \
    --ignored --nocapture
  log "viewer got frames ($(took "$start"))"
  exit 0
fi

engine=${DOCKER:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  else
    engine=podman
  fi
fi
prepare=../shared/tools/container-engine.sh
if [ "$engine" = podman ] && [ -f "$prepare" ]; then
  bash "$prepare" >/dev/null
fi
command -v "$engine" >/dev/null || { log "no container engine ($engine) found"; exit 1; }
image=${PIPE_IMAGE:-localhost/pipe:smoke}

if [ -z "${PIPE_SMOKE_SKIP_BUILD:-}" ]; then
  build_args=(
    --build-arg "BUILDER_IMAGE=${BUILDER_IMAGE:-rust:bookworm}"
    --build-arg "RUNTIME_IMAGE=${RUNTIME_IMAGE:-debian:bookworm}"
  )
  # podman's default OCI image format has no HEALTHCHECK; the docker format keeps it.
  [ "$engine" = podman ] && build_args+=(--format docker)
  if [ "${PIPE_DOCKER_VENDOR:-}" = 1 ]; then
    log "vendoring crates into the build context"
    cargo vendor --locked vendor >/dev/null
    trap 'rm -rf vendor' EXIT
  fi
  start=$SECONDS
  log "building $image with $engine"
  "$engine" build "${build_args[@]}" -t "$image" .
  log "built $image ($(took "$start"))"
  [ "${PIPE_DOCKER_VENDOR:-}" = 1 ] && rm -rf vendor
fi
log "image size: $("$engine" image inspect -f '{{.Size}}' "$image") bytes"

# Built out here: crates.io is unreachable inside the namespace.
cargo test --locked --test docker_viewer --no-run

if [ "$engine" = docker ]; then
  log "docker: the viewer step needs the container in this script's namespace; use DOCKER=podman"
  exit 1
fi
start=$SECONDS
scripts/netns "$0" --inside "$engine" "$image"
log "PASS ($(took "$start") from container start to frames)"

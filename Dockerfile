# pipe in a container: a Rust builder stage, then a Debian runtime with only the GStreamer
# plugins pipe needs (docs/images.md, "Docker").
#
#   docker build -t pipe .                 (or: podman build --format docker -t pipe .)
#   docker run --rm -p 8080:8080 pipe      virtual webcam + demo camera UI
#   docker run --rm -p 8080:8080 --device /dev/video0 pipe    a real webcam (auto-selected)
#
# The base images are build arguments, so a machine without a registry can use local ones:
# RUNTIME_IMAGE=debian:bookworm-slim makes a smaller image where that image exists (the
# default, debian:bookworm, is the one `container-engine.sh` prepares locally).
ARG BUILDER_IMAGE=rust:bookworm
ARG RUNTIME_IMAGE=debian:bookworm

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
# The build packages of scripts/setup-deps, the one list (tests/debian_packages.rs).
COPY Cargo.toml ./
COPY scripts/setup-deps scripts/
RUN scripts/setup-deps build && rm -rf /var/lib/apt/lists/*
COPY . .
# Crates come from crates.io, or from ./vendor when the context has one (`cargo vendor`, for
# builders without network; tests/docker/smoke.sh makes it with PIPE_DOCKER_VENDOR=1).
# The cache mounts keep the registry and the target directory between builds, so a change to
# pipe's own code rebuilds pipe alone. Stripped: 60 MB with line tables, about a third without.
RUN --mount=type=cache,id=pipe-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=pipe-target,target=/src/target \
    if [ -d vendor ]; then \
      mkdir -p .cargo \
      && printf '[source.crates-io]\nreplace-with = "vendored"\n[source.vendored]\ndirectory = "vendor"\n' \
         > .cargo/config.toml; \
    fi \
 && cargo build --release --locked --bin pipe \
 && install -s -m 0755 target/release/pipe /usr/local/bin/pipe

FROM ${RUNTIME_IMAGE}
# The runtime packages of scripts/setup-deps, the one list: exactly those that provide
# the elements of src/media/plugins.rs for every chain auto-selection can pick here (`pipe
# doctor` lists them; tests/debian_packages.rs checks the list). No gstreamer1.0-libcamera: a
# Pi camera module belongs to an OS image (meta-pipe, buildroot-external), not to a container.
COPY scripts/setup-deps /tmp/pipe-deps/
RUN /tmp/pipe-deps/setup-deps runtime && rm -rf /var/lib/apt/lists/* /tmp/pipe-deps
# A system user in `video`, so that a camera passed with --device is readable (a host whose
# video group has another gid than Debian's 44 needs --group-add with that gid). GStreamer
# keeps its registry cache in the home directory, not in the state volume.
RUN useradd --system --user-group --groups video --create-home --home-dir /home/pipe \
      --shell /usr/sbin/nologin pipe \
 && install -d -o pipe -g pipe -m 0700 /var/lib/pipe
COPY --from=build /usr/local/bin/pipe /usr/local/bin/pipe
USER pipe
ENV PIPE_STATE_DIR=/var/lib/pipe
# The build's own smoke test: every element pipe needs is here and a chain can run (exit 1
# otherwise). It also leaves GStreamer's registry cache in ~pipe, so a container starts faster.
RUN pipe doctor --port 0 --state-dir /tmp/pipe-doctor-state
VOLUME /var/lib/pipe
# The viewer app, the embedded rendezvous and /healthz. WebRTC media goes over UDP ports ICE
# picks (set [ice] port_min/port_max to publish a range; README "Docker").
EXPOSE 8080
# The binary checks itself: a GET of the device's /healthz (no curl in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["pipe", "doctor", "--health"]
# `pipe` alone runs `pipe device`; `docker run IMAGE doctor` runs another subcommand.
ENTRYPOINT ["pipe"]
CMD ["device"]

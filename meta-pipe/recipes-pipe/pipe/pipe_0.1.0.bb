SUMMARY = "pipe: secure remote access to a camera behind NAT, with nothing but a browser"
DESCRIPTION = "A Rust supervisor that captures H.264 from the camera and streams it over \
               WebRTC to its owner's browser, dialling out to a rendezvous server (no port \
               forwarding)."
# No HOMEPAGE: pipe has no public home page yet (.oelint.cfg says so too).
SECTION = "multimedia"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=7;endline=7;md5=86b31c7756a1a7962f28b62856ed4f05"

# gstreamer-rs links GStreamer core, app, sdp, video (plugins-base) and webrtc (plugins-bad).
DEPENDS += "glib-2.0 gstreamer1.0 gstreamer1.0-plugins-bad gstreamer1.0-plugins-base"

# The sources are the repository this layer sits in (PIPE_SRCDIR, set in conf/layer.conf), so
# pipe-crates.inc and the Cargo.lock built are always the same commit's. Only what the build
# reads is copied (not target/ or tests/).
# nooelint: oelint.vars.fileextrapaths,oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${PIPE_SRCDIR}:"
SRC_URI = "file://Cargo.toml;subdir=pipe \
           file://Cargo.lock;subdir=pipe \
           file://src;subdir=pipe \
           file://web;subdir=pipe \
           file://pipelines;subdir=pipe \
           file://benches;subdir=pipe \
           file://testkit;subdir=pipe \
           file://pipe.service \
           file://pipe.toml \
           "
# Every crate in Cargo.lock, fetched by bitbake (do_fetch), so cargo builds --frozen offline.
# Written by scripts/pipe-crates-inc (`bitbake -c update_crates pipe` writes the same entries
# under another header, which scripts/test's check would then report as stale).
require ${BPN}-crates.inc

S = "${UNPACKDIR}/pipe"

inherit cargo cargo-update-recipe-crates pkgconfig systemd useradd features_check

# pipe only runs with the GStreamer features conf/distro/include/pipe.inc turns on.
REQUIRED_DISTRO_FEATURES = "pipe systemd"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${UNPACKDIR}/pipe.service ${D}${systemd_system_unitdir}/pipe.service
    install -d ${D}${sysconfdir}/pipe/pipelines
    install -m 0644 ${UNPACKDIR}/pipe.toml ${D}${sysconfdir}/pipe/pipe.toml
}

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --user-group --groups video --home-dir ${localstatedir}/lib/pipe \
                       --no-create-home --shell ${base_sbindir}/nologin pipe"

SYSTEMD_SERVICE:${PN} = "pipe.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

FILES:${PN} += "${sysconfdir}/pipe"
CONFFILES:${PN} = "${sysconfdir}/pipe/pipe.toml"

# What every capture chain needs (the viewer side: webrtcbin and what it creates inside). The
# cameras and encoders are in packagegroup-pipe.
RDEPENDS:${PN} += "gstreamer1.0-plugins-bad-dtls \
                   gstreamer1.0-plugins-bad-sctp \
                   gstreamer1.0-plugins-bad-srtp \
                   gstreamer1.0-plugins-bad-videoparsersbad \
                   gstreamer1.0-plugins-bad-webrtc \
                   gstreamer1.0-plugins-base-app \
                   gstreamer1.0-plugins-good-rtp \
                   gstreamer1.0-plugins-good-rtpmanager \
                   libnice \
                   "
